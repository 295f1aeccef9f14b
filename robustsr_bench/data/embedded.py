"""The embedded default data set: photos that ship inside installed packages.

With no data configured, a new user still gets a real benchmark: scikit-image and matplotlib ship
a handful of natural photographs. The split is fixed and documented so that no model is ever
evaluated on an image it was trained on:

* held out (evaluation only): astronaut, chelsea, coffee, rocket;
* training: every other natural photo (grayscale ones are replicated to RGB). The stereo pair
  motorcycle_left/right stays together on the training side so no near-duplicate leaks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import DataError

HELD_OUT = ("skimage/astronaut.png", "skimage/chelsea.png", "skimage/coffee.png",
            "skimage/rocket.jpg")
TRAIN = ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png",
         "skimage/hubble_deep_field.jpg", "skimage/ihc.png", "skimage/retina.jpg",
         "matplotlib/grace_hopper.jpg", "skimage/camera.png", "skimage/brick.png",
         "skimage/grass.png", "skimage/gravel.png", "skimage/moon.png", "skimage/coins.png")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"embedded data needs the '{package}' package; pip install {package}")
    return Path(list(spec.submodule_search_locations)[0])


def image_path(ref: str) -> Path:
    """``"skimage/astronaut.png"`` -> the file inside the installed package."""
    package, _, name = ref.partition("/")
    if package == "skimage":
        return _package_dir("skimage") / "data" / name
    return _package_dir("matplotlib") / "mpl-data" / "sample_data" / name


def train_paths() -> list[Path]:
    return [image_path(r) for r in TRAIN]


def held_out_paths() -> list[Path]:
    return [image_path(r) for r in HELD_OUT]
