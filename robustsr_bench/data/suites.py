"""Evaluation suites: named, seeded degradations of held-out images, generated once and cached.

A suite is the smoke profile's stand-in for a real-world test set: each is a column of the result
table. Its YAML (``configs/suites/<name>.yaml``) lists degradation ops; a two-number range is drawn
per image from a generator seeded with ``(suite seed, image index)``, so every model is evaluated
on exactly the same LR images. The LR/HR pairs are written to
``<workdir>/cache/suites/<name>-x<scale>-<hash>/`` with ``meta.json`` written last, and reused.
Where an op knows the true blur kernel (``kernel_downscale``) it is kept as ``kernels/<stem>.npy``
so that kernel-estimating methods can be scored on it.

A suite may set ``crop: N``: every image is degraded whole, then its central ``N`` x ``N`` LR
pixels and the matching ``N*scale`` HR pixels are kept (the DDSR code crops its large test images
the same way). Test-time methods, whose cost grows with the image, stay affordable on a CPU, and
every method, bicubic included, is scored on exactly the same crops because the crop belongs to
the suite.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from ..errors import ConfigError, DataError
from ..files import Workdir, atomic_write_text, current_umask
from ..metrics import _SSIM_WINDOW
from .degradations import apply_ops, realesrgan_ops, validate_ops
from .image_ops import mod_crop
from .datasets import size_problem
from .io import load_image, save_image, to_tensor
from .layouts import data_root as resolve_root
from .layouts import discover
from .pairs import list_images
from .suite_spec import SuiteSpec

FORMAT_VERSION = 1


@dataclass(frozen=True)
class EvalImage:
    """One test image; ``kernel`` is the true blur kernel where the suite's ops know it."""

    name: str
    lr: np.ndarray
    hr: np.ndarray | None
    kernel: np.ndarray | None = None


def suite_ops(spec: SuiteSpec) -> list[dict]:
    """The suite's degradation steps (``ops: realesrgan`` expands to Real-ESRGAN's pipeline at
    the suite's ``level``)."""
    ops = spec.fields.get("ops")
    if ops == "realesrgan":
        return realesrgan_ops(float(spec.fields.get("level", 1.0)))
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{spec.where}: ops: must be a list of degradation steps or "
                          f"'realesrgan'")
    return ops


def check_suite(spec: SuiteSpec) -> None:
    """Refuse a suite with a malformed op, in one line naming its file and field, before any
    training starts (an unknown name is refused by the registry that builds ``spec``)."""
    if spec.generated:
        validate_ops(suite_ops(spec), f"{spec.where}: ops")


def _cache_dir(spec: SuiteSpec, scale: int, images: Sequence[Path], root: Path) -> Path:
    key = json.dumps({"spec": dict(spec.fields), "ops": suite_ops(spec), "scale": scale,
                      "v": FORMAT_VERSION, "images": [str(p) for p in images]},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return Workdir(root).suite_cache / f"{spec.name}-x{scale}-{digest}"


def suite_crop(spec: SuiteSpec, scale: int) -> int:
    """The suite's central LR crop side (0: whole images), refused when metrics could not score
    it (see :func:`min_eval_side`) or when the suite's images are not generated here."""
    crop = spec.fields.get("crop", 0)
    least = min_eval_side(scale) // scale
    if crop is None or isinstance(crop, bool) or not isinstance(crop, int) or (
            crop != 0 and crop < least):
        raise ConfigError(f"suite '{spec.name}': crop={crop!r} must be 0 (whole images) or an "
                          f"integer >= {least} LR pixels (the smallest side the metrics score "
                          f"at x{scale})")
    if crop and not spec.generated:
        raise ConfigError(f"suite '{spec.name}': crop applies to generated suites only, not to "
                          f"'dataset' or 'lr_dir' suites")
    return int(crop)


def centre_crop(lr: Tensor, hr: Tensor, crop: int, scale: int) -> tuple[Tensor, Tensor]:
    """The central ``crop`` x ``crop`` LR pixels and the HR pixels they were made from; a side
    shorter than ``crop`` is kept whole."""
    h, w = lr.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return (lr[..., top:top + ch, left:left + cw],
            hr[..., top * scale:(top + ch) * scale, left * scale:(left + cw) * scale])


def min_eval_side(scale: int) -> int:
    """The smallest HR side every metric can score: SSIM's 11x11 window after the ``scale``
    border each side is cropped, rounded up to a multiple of ``scale``. A smaller test image is
    refused at load time, naming the file, instead of failing inside a resize or a metric."""
    return scale * -(-(_SSIM_WINDOW + 2 * scale) // scale)


def _generate(spec: SuiteSpec, scale: int, images: Sequence[Path], out: Path) -> None:
    seed, ops, crop = spec.seed, suite_ops(spec), suite_crop(spec, scale)
    # A private temp folder per process: concurrent jobs (a sweep) may generate the same suite.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700 whatever the umask
    for index, path in enumerate(images):
        hr = mod_crop(to_tensor(load_image(path, min_size=min_eval_side(scale))), scale)
        record: dict = {}
        lr = apply_ops(hr, ops, scale, np.random.default_rng([seed, index]), record)
        if crop:
            lr, hr = centre_crop(lr, hr, crop, scale)
        save_image(tmp / "hr" / f"{path.stem}.png", hr)
        save_image(tmp / "lr" / f"{path.stem}.png", lr)
        if "kernel" in record:
            (tmp / "kernels").mkdir(exist_ok=True)
            np.save(tmp / "kernels" / f"{path.stem}.npy", record["kernel"])
    atomic_write_text(tmp / "meta.json", json.dumps({"suite": spec.name, "scale": scale,
                                                     "images": [p.stem for p in images]}))
    try:
        tmp.rename(out)
    except OSError:  # another process's identical copy is already in place
        shutil.rmtree(tmp, ignore_errors=True)


def load_suite(spec: SuiteSpec, scale: int, images: Sequence[Path], root: Path,
               data_root: str = "") -> list[EvalImage]:
    """The suite's (LR, HR) pairs, generated on first use; a suite with ``lr_dir: PATH`` is a
    no-reference set (real LR photos, no HR), which gets no-reference metrics only; one with
    ``dataset: NAME`` (and ``split:``) is a registered dataset's own pairs under ``data_root``
    (``--data-root``, else ``$ROBUSTSR_DATA``), e.g. RealSR Canon x4 test."""
    suite_crop(spec, scale)  # a crop on a dataset or lr_dir suite is refused, not ignored
    if spec.dataset:
        return dataset_images(spec.dataset, spec.split, scale, data_root)
    if spec.lr_dir:
        return [EvalImage(p.stem, load_image(p), None, None)
                for p in list_images(Path(spec.lr_dir).expanduser())]
    out = _cache_dir(spec, scale, images, root)
    if not (out / "meta.json").is_file():
        _generate(spec, scale, images, out)
    stems = json.loads((out / "meta.json").read_text())["images"]
    return [EvalImage(stem, load_image(out / "lr" / f"{stem}.png"),
                      load_image(out / "hr" / f"{stem}.png"), _true_kernel(out, stem))
            for stem in stems]


def dataset_images(dataset: str, split: str, scale: int, data_root: str) -> list[EvalImage]:
    """A registered dataset's real LR images with their HR (None for no-reference sets); each
    LR x ``scale`` == HR is checked at load time, naming the file."""
    out = []
    for pair in discover(dataset, resolve_root(data_root), scale, split or None):
        if pair.lr is None:
            raise DataError(f"dataset {dataset} has no LR images to evaluate on; name it in "
                            f"eval.images instead, to degrade its HR images with each suite")
        lr = load_image(pair.lr)
        hr = load_image(pair.hr, min_size=min_eval_side(scale)) if pair.hr else None
        problem = size_problem(pair, hr.shape, lr.shape, scale) if hr is not None else None
        if problem:
            raise DataError(problem)
        out.append(EvalImage((pair.hr or pair.lr).stem, lr, hr, None))
    return out


def _true_kernel(out: Path, stem: str) -> np.ndarray | None:
    """The blur kernel the suite applied to ``stem``, where its ops recorded one."""
    path = out / "kernels" / f"{stem}.npy"
    return np.load(path) if path.is_file() else None

