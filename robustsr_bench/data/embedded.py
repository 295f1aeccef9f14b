"""The embedded default data set: photos that ship inside installed packages.

With no data configured, a new user still gets a real benchmark: scikit-image and matplotlib ship
a handful of natural photographs, and pyiqa (a dependency, for the no-reference metrics) ships
five Kodak photos in its wheel (``ResultsCalibra/ref_dir``, the TID2013 reference images I03,
I04, I06, I08, I19 = kodim03/04/06/08/19, 512x384). The split is fixed and documented so that no
model is ever evaluated on an image it was trained on:

* held out (evaluation only): astronaut, chelsea, coffee, rocket and the five Kodak photos. Nine
  images, so that a paired confidence interval over images x seeds can be narrow (four gave
  half-widths of 0.03-0.19 dB on the smoke models);
* training: every other natural photo (grayscale ones are replicated to RGB). The stereo pair
  motorcycle_left/right stays together on the training side so no near-duplicate leaks. No Kodak
  photo is trained on.

The held-out list is part of every run id that evaluates on ``embedded`` (:func:`identity`), so a
run evaluated on an older, smaller split is never mistaken for one on this split (its trained
weights are still reused: the training hash leaves out ``eval``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from ..errors import DataError

HELD_OUT = ("skimage/astronaut.png", "skimage/chelsea.png", "skimage/coffee.png",
            "skimage/rocket.jpg", "pyiqa/ResultsCalibra/ref_dir/I03.bmp",
            "pyiqa/ResultsCalibra/ref_dir/I04.bmp", "pyiqa/ResultsCalibra/ref_dir/I06.bmp",
            "pyiqa/ResultsCalibra/ref_dir/I08.bmp", "pyiqa/ResultsCalibra/ref_dir/I19.bmp")
TRAIN = ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png",
         "skimage/hubble_deep_field.jpg", "skimage/ihc.png", "skimage/retina.jpg",
         "matplotlib/grace_hopper.jpg", "skimage/camera.png", "skimage/brick.png",
         "skimage/grass.png", "skimage/gravel.png", "skimage/moon.png", "skimage/coins.png")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"embedded data needs the '{package}' package; pip install {package}")
    return Path(list(spec.submodule_search_locations)[0])


def _distribution_file(dist: str, name: str) -> Path:
    """A data file an installed distribution ships outside its import package (pyiqa puts its
    calibration photos in a top-level ``ResultsCalibra`` folder)."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(name)))
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"embedded data needs the '{dist}' package; pip install {dist}") from None
    if not path.is_file():
        raise DataError(f"embedded held-out photo {name} is missing from the installed {dist} "
                        f"(looked at {path}); install pyiqa 0.1.16, or evaluate on your own "
                        "photos with --set eval.images=/path/to/HR")
    return path


def image_path(ref: str) -> Path:
    """``"skimage/astronaut.png"`` -> the file inside the installed package."""
    package, _, name = ref.partition("/")
    if package == "pyiqa":
        return _distribution_file("pyiqa", name)
    if package == "skimage":
        return _package_dir("skimage") / "data" / name
    return _package_dir("matplotlib") / "mpl-data" / "sample_data" / name


def train_paths() -> list[Path]:
    return [image_path(r) for r in TRAIN]


def held_out_paths() -> list[Path]:
    return [image_path(r) for r in HELD_OUT]


def identity() -> str:
    """What ``eval.images: embedded`` means today, for the run id: the held-out file names."""
    return "embedded:" + ",".join(ref.rpartition("/")[2] for ref in HELD_OUT)
