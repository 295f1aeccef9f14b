"""Image primitives the degradation ops are made of: resizing, blur kernels, noise, codecs.

Torch tensors NCHW float in [0, 1]; randomness only from an explicit ``numpy.random.Generator``.
A leaf of the data layer (it imports nothing above :mod:`.io`), so methods, datasets and figures
use the same bicubic as the suites without importing the op language (:mod:`.degradations`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

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


def interpolate(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
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
