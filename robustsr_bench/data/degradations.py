"""Degradations: the building blocks of evaluation suites and of on-the-fly LR images.

Everything works on torch tensors NCHW float in [0, 1]. Every random choice comes from an explicit
``numpy.random.Generator`` (never a global RNG, never torch's): a suite is then a pure function of
its seed, identical on CPU and GPU and independent of whatever else the process has drawn.

A degradation *pipeline* is a list of op dicts, as written in ``configs/suites/*.yaml``::

    - {op: blur, sigma: [0.2, 3], sigma_y: [0.2, 3], theta: [-3.1416, 3.1416], size: 21}
    - {op: downscale}                       # antialiased bicubic by the suite's scale
    - {op: resize, factor: [0.15, 1.5], mode: [area, bilinear, bicubic]}
    - {op: noise, sigma: 15/255, gray_prob: 0.4}
    - {op: poisson, scale: [0.05, 3]}
    - {op: jpeg, quality: [30, 95]}
    - {op: resize_to_target}                # exactly H/scale x W/scale, random mode
    - {op: one_of, probs: [0.5, 0.5], choices: [[...ops...], [...ops...]]}

A two-number list is a range drawn uniformly per application (integers for ``quality``); a list of
mode names is a uniform choice; numbers may be fraction strings like ``"14/255"``. Every op also
takes ``prob`` (apply with this probability). ``resize`` also takes ``updown_prob: [up, down,
keep]`` (Real-ESRGAN's way of drawing a factor: up in [1, hi], down in [lo, 1], or 1) and
``base: input|target`` (scale the current size, or the final LR size as Real-ESRGAN's second
stage does).

Two resizes on purpose: ``downscale`` is MATLAB's antialiased bicubic ``imresize`` (the literature's
"bicubic LR"), while ``resize``/``resize_to_target`` call ``F.interpolate`` without antialiasing,
as Real-ESRGAN does, because its aliasing is part of the degradation it models.

The caller crops the HR to a multiple of ``scale`` first (:func:`mod_crop`); :func:`apply_ops`
then guarantees an LR of exactly ``(H // scale, W // scale)`` and quantises it to 8-bit levels,
so LR made on the fly equals LR saved to (and reloaded from) a PNG suite.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .blur_kernels import blur_downsample, gaussian_kernels
from .kernel_options import kernel_size_for, variance_range
from .io import quantize

RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL_SIZE = 21
_FRACTION = re.compile(r"^([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*/\s*(\d+(?:\.\d*)?)$")
_LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------- numbers and sizes


def parse_number(value: Any, where: str = "value") -> float:
    """A finite float from a number or a string such as ``"0.5"`` or ``"14/255"``.

    Fractions are accepted because the literature states noise levels and attack budgets that
    way, and ``14/255`` in a YAML file is more honest than ``0.0549019...``.
    """
    result: float | None = None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        result = _parse_text(value.strip())
    if result is None or not math.isfinite(result):
        raise ConfigError(f"{where}: {value!r} is not a number; expected e.g. 2, 0.5 or a "
                          f"fraction like 14/255")
    return result


def _parse_text(text: str) -> float | None:
    match = _FRACTION.match(text)
    if match:
        den = float(match.group(2))
        return float(match.group(1)) / den if den else None
    try:
        return float(text)
    except ValueError:
        return None


def mod_crop(x: Tensor, scale: int) -> Tensor:
    """Crop the bottom/right of an (N)CHW tensor so H and W are multiples of ``scale``.

    Done before degrading so the HR and the ``scale``x-upscaled LR cover exactly the same pixels.
    """
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]


def _scaled_size(x: Tensor, factor: float) -> tuple[int, int]:
    """``floor(size * factor)`` per side, robust to 1/3-style rounding (99 * (1/3) -> 33)."""
    h, w = x.shape[-2:]
    return max(1, math.floor(h * factor + 1e-6)), max(1, math.floor(w * factor + 1e-6))


# --------------------------------------------------------------------------- resizing and blur


def bicubic_resize(x: Tensor, scale_factor: float | None = None,
                   size: tuple[int, int] | None = None) -> Tensor:
    """MATLAB ``imresize(x, ..., 'bicubic')`` (antialiased when downscaling), clamped to [0, 1].

    The output size is computed here (not by ``F.interpolate``) so that ``scale_factor=1/3`` of a
    99-pixel side gives 33, not 32 from floating-point rounding.
    """
    return imresize(x, scale_factor, size).clamp(0.0, 1.0)


def imresize(x: Tensor, scale_factor: float | None = None,
             size: tuple[int, int] | None = None) -> Tensor:
    """MATLAB's bicubic ``imresize`` on float NCHW, unclamped and differentiable (any channels).

    Standard LR benchmark sets are made with it, so it is matched exactly, borders included:
    MATLAB mirrors the kernel's out-of-range taps (``symmetric`` indices) where torch's antialias
    path truncates and renormalises, which moved the outer 2 LR pixels by up to 12/255. Each axis
    is one dense ``out x in`` matrix (:func:`imresize_matrix`), applied rows then columns.
    """
    if (scale_factor is None) == (size is None):
        raise ValueError("bicubic_resize needs exactly one of scale_factor or size")
    h, w = x.shape[-2:]
    out_h, out_w = tuple(size) if size is not None else _scaled_size(x, float(scale_factor))
    sh, sw = ((out_h / h, out_w / w) if size is not None
              else (float(scale_factor), float(scale_factor)))
    mh = imresize_matrix(h, out_h, sh).to(x.device, x.dtype)
    mw = imresize_matrix(w, out_w, sw).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(mh, x), mw.t())


@functools.lru_cache(maxsize=64)
def imresize_matrix(in_len: int, out_len: int, scale: float) -> Tensor:
    """MATLAB ``imresize``'s ``contributions`` for one axis as an ``out_len x in_len`` matrix.

    Output pixel ``i`` (1-based) sits at input coordinate ``u = i/scale + (1 - 1/scale)/2``; when
    downscaling the cubic kernel (a = -0.5) is stretched by ``1/scale`` (antialiasing); weights
    are normalised to sum 1, and taps outside ``[1, in_len]`` are mirrored back
    (``[1..n, n..1]``), accumulating on the mirrored pixel. float64; callers cast.
    """
    width = 4.0 / scale if scale < 1 else 4.0
    stretch = scale if scale < 1 else 1.0
    u = torch.arange(1, out_len + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]
    weights = stretch * _cubic(stretch * (u[:, None] - idx))
    weights = weights / weights.sum(1, keepdim=True)
    mirror = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    cols = mirror[(idx.long() - 1) % (2 * in_len)]
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, cols, weights)
    return matrix


def _cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _interpolate(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Real-ESRGAN's random resize: plain ``F.interpolate`` (no antialiasing), clamped."""
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **corners).clamp(0.0, 1.0)


def default_kernel_size(sigma: float) -> int:
    """``2 * ceil(3 sigma) + 1`` (covers +-3 sigma), capped at Real-ESRGAN's 21."""
    return min(MAX_KERNEL_SIZE, 2 * math.ceil(3.0 * sigma) + 1)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> Tensor:
    """Anisotropic Gaussian ``size x size`` kernel, centred on the middle pixel, summing to 1.

    ``theta`` (radians) rotates the ``sigma_x`` axis counter-clockwise from the image x axis;
    the covariance is ``R diag(sigma_x^2, sigma_y^2) R^T`` as in Real-ESRGAN's kernels.
    """
    if size < 1 or size % 2 == 0 or min(sigma_x, sigma_y) <= 0:
        raise ValueError(f"gaussian_kernel needs an odd size >= 1 and sigmas > 0, got "
                         f"size={size}, sigma_x={sigma_x}, sigma_y={sigma_y}")
    cos, sin = math.cos(theta), math.sin(theta)
    rot = np.array([[cos, -sin], [sin, cos]])
    inv_cov = np.linalg.inv(rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T)
    r = np.arange(size) - size // 2
    grid = np.stack(np.meshgrid(r, r), axis=-1).astype(np.float64)  # (..., [x, y])
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", grid, inv_cov, grid))
    return torch.from_numpy(kernel / kernel.sum()).float()


def blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Filter every channel with ``kernel`` (depthwise), reflect-padded so the size is kept.

    Falls back to replicate padding when the image is smaller than the kernel's radius (a tiny
    intermediate of a random resize), where reflection is undefined.
    """
    k = kernel.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    weight = kernel.to(x).expand(x.shape[1], 1, k, k)
    return F.conv2d(padded, weight, groups=x.shape[1]).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- noise and JPEG


def _gaussian(rng: np.random.Generator, shape: Sequence[int], like: Tensor) -> Tensor:
    return torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32)).to(like)


def add_gaussian_noise(x: Tensor, sigma: float, rng: np.random.Generator,
                       gray_prob: float = 0.0) -> Tensor:
    """Additive white Gaussian noise of std ``sigma`` (in [0, 1] units), clamped.

    With probability ``gray_prob`` the same noise is added to all channels (luminance noise), as
    in Real-ESRGAN; otherwise each channel gets its own (colour noise).
    """
    gray = rng.random() < gray_prob
    n, c, h, w = x.shape
    noise = _gaussian(rng, (n, 1 if gray else c, h, w), x) * sigma
    return (x + noise).clamp(0.0, 1.0)


def _poisson_levels(q: np.ndarray) -> np.ndarray:
    """Real-ESRGAN's photon count: ``2 ** ceil(log2(#distinct 8-bit levels))`` per image."""
    counts = [len(np.unique(img)) for img in q]
    return np.array([2.0 ** math.ceil(math.log2(c)) for c in counts]).reshape(-1, 1, 1, 1)


def add_poisson_noise(x: Tensor, scale: float, rng: np.random.Generator,
                      gray_prob: float = 0.0) -> Tensor:
    """Signal-dependent (shot) noise, Real-ESRGAN style, clamped.

    As Real-ESRGAN's ``generate_poisson_noise_pt``: quantise to 8 bits, ``vals = 2**ceil(log2(
    number of distinct levels))``, ``noise = Poisson(img * vals) / vals - img``, then add ``scale *
    noise``. So ``scale`` multiplies the noise amplitude (Real-ESRGAN's range 0.05-3); it is not
    the ``vals = 10**scale`` photon count of BSRGAN-style Poisson noise. With probability
    ``gray_prob`` the noise is computed on luminance and shared by all channels.
    """
    gray = rng.random() < gray_prob
    src = x.detach().cpu().double().numpy()
    if gray:
        src = np.tensordot(np.array(_LUMA), src, axes=([0], [1]))[:, None]
    q = np.clip(np.round(src * 255.0), 0, 255) / 255.0
    vals = _poisson_levels(q)
    noise = (rng.poisson(q * vals) / vals - q) * scale
    return (x + torch.from_numpy(noise).to(x)).clamp(0.0, 1.0)


def _jpeg_one(rgb: np.ndarray, quality: int) -> np.ndarray:
    """One HxWx3 uint8 RGB image through OpenCV's JPEG encoder and decoder."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV failed to JPEG-encode an image of shape {rgb.shape}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG compression artefacts: an encode/decode round trip at ``quality`` (1-100)."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    u8 = (x.detach().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([_jpeg_one(np.ascontiguousarray(img), int(quality)) for img in u8])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x) / 255.0


# --------------------------------------------------------------------------- op validation

_Check = Callable[[Any, str], None]


def _parts(value: Any, where: str) -> list[Any]:
    """A scalar, or the two ends of a ``[lo, hi]`` range."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ConfigError(f"{where}: {list(value)!r} is not a range; expected a number or "
                              f"[low, high]")
        return list(value)
    return [value]


def _number(low: float, high: float = math.inf, integer: bool = False) -> _Check:
    """A check for a number or ``[lo, hi]`` range within ``[low, high]``."""
    def check(value: Any, where: str) -> None:
        nums = [parse_number(v, where) for v in _parts(value, where)]
        for num in nums:
            if not low <= num <= high or (integer and num != int(num)):
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"{where}: {num:g} is out of range; expected {kind} in "
                                  f"[{low:g}, {high:g}]")
        if nums[0] > nums[-1]:
            raise ConfigError(f"{where}: range {value!r} is reversed; expected [low, high]")
    return check


def _kernel_size(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
            or value % 2 == 0:
        raise ConfigError(f"{where}: {value!r} is not a kernel size; expected an odd integer "
                          f">= 1, e.g. 21")


def _modes(value: Any, where: str) -> None:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, Sequence) \
        else [value]
    bad = [n for n in names if n not in RESIZE_MODES]
    if bad or not names:
        raise ConfigError(f"{where}: {bad[0] if bad else value!r} is not a resize mode; expected "
                          f"one of {', '.join(RESIZE_MODES)} (or a list of them)")


def _probs(count: int | None) -> _Check:
    """A list of non-negative probabilities summing to 1 (of ``count`` items if given)."""
    def check(value: Any, where: str) -> None:
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        nums = [parse_number(v, where) for v in value] if ok else []
        if not nums or (count and len(nums) != count) or min(nums) < 0 \
                or abs(sum(nums) - 1) > 1e-6:
            size = f"{count} " if count else ""
            raise ConfigError(f"{where}: {value!r} is not a probability list; expected {size}"
                              f"non-negative numbers summing to 1")
    return check


def _base(value: Any, where: str) -> None:
    if value not in ("input", "target"):
        raise ConfigError(f"{where}: {value!r} is not a resize base; expected input or target")


def _choices(value: Any, where: str) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of op lists")
    for i, choice in enumerate(value):
        validate_ops(choice, f"{where}[{i}]")


@dataclass(frozen=True)
class Op:
    """One degradation op, described once: the fields it accepts, each with its value check
    (``prob``, the chance the op is applied, is accepted by every op), and how it runs."""

    name: str
    run: Callable[[Tensor, Mapping[str, Any], Any], Tensor]
    required: Mapping[str, _Check]
    optional: Mapping[str, _Check]


_PROB = {"prob": _number(0.0, 1.0)}
OPS: dict[str, Op] = {}


def _op(name: str, required: Mapping[str, _Check] | None = None,
        optional: Mapping[str, _Check] | None = None) -> Callable[[Callable], Callable]:
    """Register the decorated ``run(x, op, ctx)`` as the built-in op ``name``."""
    def register(run: Callable) -> Callable:
        OPS[name] = Op(name, run, dict(required or {}), {**(optional or {}), **_PROB})
        return run
    return register


def _validate_op(op: Any, where: str) -> None:
    if not isinstance(op, Mapping) or "op" not in op:
        raise ConfigError(f"{where}: {op!r} is not an op; expected a mapping with an 'op' field "
                          f"(one of {', '.join(OPS)})")
    name = op["op"]
    if name not in OPS:
        load_entry_point_ops()
    if name not in OPS:
        raise ConfigError(f"{where}: unknown op {name!r}; expected one of {', '.join(OPS)}")
    spec, here = OPS[name], f"{where} ({name})"
    valid = [*spec.required, *spec.optional]
    for key in op:
        if key != "op" and key not in valid:
            raise ConfigError(f"{here}: unknown field {key!r}; valid fields: "
                              f"{', '.join(valid) or 'none'}")
    for key in spec.required:
        if key not in op:
            raise ConfigError(f"{here}: missing field {key!r}")
    for key, check in {**spec.required, **spec.optional}.items():
        if key in op:
            check(op[key], f"{here}.{key}")
    _validate_cross_fields(name, op, here)


def _validate_cross_fields(name: str, op: Mapping[str, Any], where: str) -> None:
    """Constraints between fields: ``updown_prob`` needs a range around 1, probs match choices."""
    if name == "resize" and "updown_prob" in op:
        ends = [parse_number(v, where) for v in _parts(op["factor"], where)]
        if len(ends) != 2 or not ends[0] <= 1.0 <= ends[1]:
            raise ConfigError(f"{where}.factor: with updown_prob, expected a range [low, high] "
                              f"with low <= 1 <= high, got {op['factor']!r}")
    if name == "one_of" and "probs" in op and len(op["probs"]) != len(op["choices"]):
        raise ConfigError(f"{where}.probs: {len(op['probs'])} probabilities for "
                          f"{len(op['choices'])} choices; expected one per choice")


def validate_ops(ops: Any, where: str = "ops") -> None:
    """Check a whole pipeline before any pixel is touched, so a typo fails in one line at once."""
    if not isinstance(ops, Sequence) or isinstance(ops, str) or not ops:
        raise ConfigError(f"{where}: expected a non-empty list of ops (one of "
                          f"{', '.join(OPS)})")
    for i, op in enumerate(ops):
        _validate_op(op, f"{where}[{i}]")


# --------------------------------------------------------------------------- op execution


@dataclass(frozen=True)
class _Context:
    """What every op may use besides its fields: the suite scale, the final LR size, the RNG,
    and ``record``, where an op leaves side outputs for the caller (the true blur kernel)."""

    scale: int
    target: tuple[int, int]
    rng: np.random.Generator
    record: dict[str, Any] = field(default_factory=dict)


def _draw(value: Any, rng: np.random.Generator) -> float:
    """A number, or a uniform draw from a ``[lo, hi]`` range."""
    parts = _parts(value, "value")
    if len(parts) == 1:
        return parse_number(parts[0])
    return float(rng.uniform(parse_number(parts[0]), parse_number(parts[1])))


def _draw_int(value: Any, rng: np.random.Generator) -> int:
    """An integer, or a uniform integer draw from ``[lo, hi]`` inclusive."""
    parts = [int(parse_number(v)) for v in _parts(value, "value")]
    return parts[0] if len(parts) == 1 else int(rng.integers(parts[0], parts[1] + 1))


def _draw_mode(value: Any, rng: np.random.Generator) -> str:
    if isinstance(value, str):
        return value
    names = list(value)
    return str(names[int(rng.integers(len(names)))])


def _resize_factor(op: Mapping[str, Any], rng: np.random.Generator) -> float:
    """The factor of a ``resize``: uniform, or Real-ESRGAN's up/down/keep draw."""
    if "updown_prob" not in op:
        return _draw(op["factor"], rng)
    low, high = (parse_number(v) for v in op["factor"])
    kind = int(rng.choice(3, p=[parse_number(p) for p in op["updown_prob"]]))
    if kind == 0:
        return float(rng.uniform(1.0, high))
    return float(rng.uniform(low, 1.0)) if kind == 1 else 1.0


@_op("blur", {"sigma": _number(1e-6)},
     {"sigma_y": _number(1e-6), "size": _kernel_size, "theta": _number(-math.inf)})
def _run_blur(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    sigma_x = _draw(op["sigma"], ctx.rng)
    sigma_y = _draw(op["sigma_y"], ctx.rng) if "sigma_y" in op else sigma_x
    theta = _draw(op.get("theta", 0.0), ctx.rng)
    size = int(op["size"]) if "size" in op else default_kernel_size(max(sigma_x, sigma_y))
    return blur(x, gaussian_kernel(size, sigma_x, sigma_y, theta))


@_op("downscale")
def _run_downscale(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    return bicubic_resize(x, scale_factor=1.0 / ctx.scale)


@_op("resize", {"factor": _number(1e-3)}, {"mode": _modes, "updown_prob": _probs(3), "base": _base})
def _run_resize(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    factor = _resize_factor(op, ctx.rng)
    mode = _draw_mode(op.get("mode", "bicubic"), ctx.rng)
    h, w = ctx.target if op.get("base", "input") == "target" else x.shape[-2:]
    return _interpolate(x, (max(1, int(h * factor)), max(1, int(w * factor))), mode)


@_op("resize_to_target", optional={"mode": _modes})
def _run_resize_to_target(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    return _interpolate(x, ctx.target, _draw_mode(op.get("mode", RESIZE_MODES), ctx.rng))


@_op("noise", {"sigma": _number(0.0)}, {"gray_prob": _number(0.0, 1.0)})
def _run_noise(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    sigma = _draw(op["sigma"], ctx.rng)
    return add_gaussian_noise(x, sigma, ctx.rng, parse_number(op.get("gray_prob", 0.0)))


@_op("poisson", {"scale": _number(0.0)}, {"gray_prob": _number(0.0, 1.0)})
def _run_poisson(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    scale = _draw(op["scale"], ctx.rng)
    return add_poisson_noise(x, scale, ctx.rng, parse_number(op.get("gray_prob", 0.0)))


@_op("jpeg", {"quality": _number(1, 100, integer=True)})
def _run_jpeg(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    return jpeg(x, _draw_int(op["quality"], ctx.rng))


@_op("one_of", {"choices": _choices}, {"probs": _probs(None)})
def _run_one_of(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    choices = op["choices"]
    probs = [parse_number(p) for p in op["probs"]] if "probs" in op else None
    return _run_ops(x, choices[int(ctx.rng.choice(len(choices), p=probs))], ctx)


def _run_ops(x: Tensor, ops: Sequence[Mapping[str, Any]], ctx: _Context) -> Tensor:
    for op in ops:
        if "prob" in op and ctx.rng.random() >= parse_number(op["prob"]):
            continue
        x = OPS[op["op"]].run(x, op, ctx)
    return x


def apply_ops(hr: Tensor, ops: Sequence[Mapping[str, Any]], scale: int,
              rng: np.random.Generator, record: dict[str, Any] | None = None) -> Tensor:
    """Degrade an NCHW HR batch (H, W multiples of ``scale``) into its ``scale``x smaller LR.

    One draw of every random parameter per call (suites call it per image with a per-image
    generator). The result is exactly ``(H // scale, W // scale)`` and quantised to 8-bit levels.
    Ops that know something the LR cannot tell (``kernel_downscale``: the true kernel) write it
    into ``record`` when one is given.
    """
    validate_ops(ops)
    h, w = hr.shape[-2:]
    if hr.ndim != 4 or h % scale or w % scale:
        raise ValueError(f"apply_ops needs an NCHW tensor with H and W multiples of scale={scale}, "
                         f"got shape {tuple(hr.shape)}; crop it with mod_crop first")
    ctx = _Context(scale=scale, target=(h // scale, w // scale), rng=rng,
                   record=record if record is not None else {})
    lr = _run_ops(hr, ops, ctx)
    if tuple(lr.shape[-2:]) != ctx.target:
        raise ConfigError(f"ops: produce a {lr.shape[-1]}x{lr.shape[-2]} image from a {w}x{h} HR "
                          f"at scale {scale}; expected {w // scale}x{h // scale}: add "
                          f"{{op: downscale}} or end with {{op: resize_to_target}}")
    return quantize(lr)


# --------------------------------------------------------------------------- Real-ESRGAN


def _noise_choice(sigma: list[float], poisson: list[float]) -> dict[str, Any]:
    """Real-ESRGAN's noise step: Gaussian or Poisson with probability 0.5, gray 40% of the time."""
    return {"op": "one_of", "probs": [0.5, 0.5], "choices": [
        [{"op": "noise", "sigma": sigma, "gray_prob": 0.4}],
        [{"op": "poisson", "scale": poisson, "gray_prob": 0.4}],
    ]}


def _blur(sigma: list[float], **extra: Any) -> dict[str, Any]:
    return {"op": "blur", "sigma": sigma, "sigma_y": sigma, "theta": [-math.pi, math.pi], **extra}


def realesrgan_ops(level: float = 1.0) -> list[dict[str, Any]]:
    """One draw of Real-ESRGAN's second-order degradation (``train_realesrgan_x4plus.yml``).

    First stage: blur sigma [0.2, 3], resize [0.15, 1.5] (up/down/keep 0.2/0.7/0.1), Gaussian
    noise [1, 30]/255 or Poisson [0.05, 3], JPEG [30, 95]. Second stage: blur sigma [0.2, 1.5]
    with probability 0.8, resize [0.3, 1.2] of the target size (0.3/0.4/0.3), noise [1, 25]/255 or
    Poisson [0.05, 2.5], then, in random order as in Real-ESRGAN, resize to the target size and
    JPEG [30, 95].

    ``level`` in (0, 1] (SR-C's severity / 5) shrinks every strength range towards its mild end:
    blur sigma and noise to ``[lo, lo + level (hi - lo)]``, JPEG quality to ``[hi - level (hi -
    lo), hi]``; resizes and probabilities stay (they are the scale mixture, not a strength).
    Level 1 is the published pipeline. Our choice: Real-ESRGAN defines no severities.

    Simplifications: blur kernels are anisotropic Gaussians only (Real-ESRGAN also draws
    isotropic, generalised and plateau Gaussians and sinc filters, and a random kernel size
    7-21); JPEG is OpenCV's rather than DiffJPEG; the HR is not USM-sharpened first.
    """
    if not 0.0 < level <= 1.0:
        raise ConfigError(f"realesrgan level: {level!r} is out of range; expected (0, 1]")

    def up(lo: float, hi: float) -> list[float]:
        return [lo, lo + level * (hi - lo)]

    def quality() -> list[int]:
        return [round(95 - level * (95 - 30)), 95]

    random_modes = list(RESIZE_MODES)
    return [
        _blur(up(0.2, 3.0)),
        {"op": "resize", "factor": [0.15, 1.5], "updown_prob": [0.2, 0.7, 0.1],
         "mode": random_modes},
        _noise_choice(up(1 / 255, 30 / 255), up(0.05, 3.0)),
        {"op": "jpeg", "quality": quality()},
        _blur(up(0.2, 1.5), prob=0.8),
        {"op": "resize", "factor": [0.3, 1.2], "updown_prob": [0.3, 0.4, 0.3],
         "mode": random_modes, "base": "target"},
        _noise_choice(up(1 / 255, 25 / 255), up(0.05, 2.5)),
        {"op": "one_of", "probs": [0.5, 0.5], "choices": [
            [{"op": "resize_to_target"}, {"op": "jpeg", "quality": quality()}],
            [{"op": "jpeg", "quality": quality()}, {"op": "resize_to_target"}],
        ]},
    ]


# --------------------------------------------------------------------------- known-kernel (DDSR)
# Blind-SR test images as DDSR's data preparation makes them: a random anisotropic Gaussian
# kernel, circular padding, blur and plain subsampling (robustsr_bench.data.blur_kernels), whose
# kernel is recorded so kernel estimates can be scored; then optional noise (the ``noise`` op), a
# partial cover and darkness, the degradations the DDSR seed names.


@_op("kernel_downscale", optional={"var": _number(1e-3), "size": _kernel_size})
def _run_kernel_downscale(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    """Blur with a random DDSR kernel and subsample by the suite scale; records ``kernel``.

    Variances default to DDSR's data ranges ``[0.175 s, min(2.5 s, 10)]``, the size to
    ``min(4 s + 3, 21)``; the kernel is centred on the bicubic grid (``blur_kernels``).
    """
    low, high = variance_range(ctx.scale)
    var = op.get("var", [low, high])
    size = int(op.get("size", kernel_size_for(ctx.scale)))
    var1, var2 = _draw(var, ctx.rng), _draw(var, ctx.rng)
    theta = float(ctx.rng.uniform(0.0, math.pi))
    params = torch.tensor([var1, var2, theta], dtype=torch.float64)
    kernel = gaussian_kernels(size, ctx.scale, params[:1], params[1:2], params[2:]).float()
    ctx.record["kernel"] = kernel[0, 0].numpy()
    return blur_downsample(x, kernel.to(x), ctx.scale).clamp(0.0, 1.0)


@_op("cover", {"size": _number(1, integer=True)})
def _run_cover(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    """DDSR's partial cover: a ``size`` x ``size`` black box at a uniformly random position.

    (The DDSR code draws a row and a column but uses the row for both; both are used here.)
    """
    h, w = x.shape[-2:]
    size = min(_draw_int(op["size"], ctx.rng), h, w)
    top = int(ctx.rng.integers(0, h - size + 1))
    left = int(ctx.rng.integers(0, w - size + 1))
    out = x.clone()
    out[..., top:top + size, left:left + size] = 0.0
    return out


@_op("dark", {"factor": _number(0.0, 1.0)})
def _run_dark(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    """DDSR's dark case: every value multiplied by ``factor`` (the code's ``dark_fc``)."""
    return x * _draw(op["factor"], ctx.rng)



# --------------------------------------------------------------------------- library corruptions


def _check_corruption(value: Any, where: str) -> None:
    from .corruptions import check_name

    check_name(value, where)


@_op("corrupt", {"name": _check_corruption, "severity": _number(1, 5, integer=True)})
def _run_corrupt(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    """An ImageNet-C corruption from ``imagecorruptions`` (:mod:`.corruptions`), seeded from
    the suite's per-image generator."""
    from .corruptions import corrupt_batch

    return corrupt_batch(x, str(op["name"]), int(op["severity"]), ctx.rng)


def webp(x: Tensor, quality: int) -> Tensor:
    """WebP artefacts: an OpenCV (libwebp) encode/decode round trip at ``quality`` (1-100).
    imagecorruptions has JPEG only; the codec itself is libwebp's, nothing is re-implemented."""
    u8 = (x.detach().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for img in u8:
        bgr = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".webp", bgr, [int(cv2.IMWRITE_WEBP_QUALITY), int(quality)])
        if not ok:
            raise RuntimeError(f"OpenCV failed to WebP-encode an image of shape {img.shape}")
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x) / 255.0


@_op("webp", {"quality": _number(1, 100, integer=True)})
def _run_webp(x: Tensor, op: Mapping[str, Any], ctx: _Context) -> Tensor:
    return webp(x, _draw_int(op["quality"], ctx.rng))



# --------------------------------------------------------------------------- user ops
# Third-party packages add ops through the entry-point group below, like methods do: the entry
# point names a callable ``run(x, op, ctx) -> x`` (NCHW float in [0, 1]; ``ctx.rng`` is the only
# allowed source of randomness, ``ctx.scale``/``ctx.target`` the suite scale and LR size), with
# optional attributes ``required_fields`` / ``optional_fields`` (field names; values are the op's
# own business). No edit of this package is needed.

OP_ENTRY_POINT_GROUP = "robustsr_bench.degradations"


def register_op(name: str, run: Callable[[Tensor, Mapping[str, Any], Any], Tensor],
                required: Sequence[str] = (), optional: Sequence[str] = ()) -> None:
    """Make ``{op: name, ...}`` usable in suites; refuses to replace a built-in op."""
    if name in _BUILTIN_OPS:
        raise ConfigError(f"degradation op {name!r} is built in and cannot be replaced")

    def anything(value: Any, where: str) -> None:
        return None

    OPS[name] = Op(name, run, {k: anything for k in required},
                   {**{k: anything for k in optional}, **_PROB})


_BUILTIN_OPS = frozenset(OPS)
_ENTRY_POINTS_LOADED: list[bool] = []


def load_entry_point_ops() -> None:
    """Register every op of the ``robustsr_bench.degradations`` entry-point group (once)."""
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.append(True)
    from importlib import metadata

    for ep in metadata.entry_points(group=OP_ENTRY_POINT_GROUP):
        run = ep.load()
        register_op(ep.name, run, getattr(run, "required_fields", ()),
                    getattr(run, "optional_fields", ()))
