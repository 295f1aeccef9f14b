"""Edge maps: one function for data preparation (``train_EDGE_sub``), training and inference.

BAPD's detail-recovery branch reads the LR edge map and is trained with an L1 loss between the
edge maps of SR and HR. The HR edge maps may be precomputed into a ``train_EDGE_sub`` folder or
computed on the fly; both go through :func:`edge_map`, so they agree (up to 8-bit quantisation
when stored, and a one-pixel border where a crop's neighbourhood differs from the full image's).

All of it is **our choice** (the BAPD source only names the folder):

* the edge map is computed on the luma (ITU-R BT.601 weights) of an RGB image in [0, 1];
* ``sobel`` (default): the Sobel gradient magnitude with replicate padding, divided by 4 so that
  a unit step edge has magnitude 1, clipped to [0, 1]. It is differentiable, which the edge loss
  on SR needs;
* ``canny``: Canny's edge set (Gaussian smoothing, Sobel, non-maximum suppression in four
  directions, hysteresis between ``canny_low`` and ``canny_high``), returned as the smoothed
  Sobel magnitude *on* those edges and 0 elsewhere rather than as a binary mask, so the edge loss
  still has a gradient (through the magnitude; the edge set itself is a constant).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .edge_options import EdgeConfig

_LUMA = (0.299, 0.587, 0.114)
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_NORM = 4.0  # the Sobel response of a unit step edge
_SQRT_EPS = 1e-12  # keeps the magnitude's gradient finite where the image is flat


def luma(img: Tensor) -> Tensor:
    """Bx3xHxW RGB -> Bx1xHxW luma; a 1-channel input is returned as it is."""
    if img.shape[1] == 1:
        return img
    weights = img.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (img * weights).sum(1, keepdim=True)


def gaussian_kernel1d(sigma: float, size: int, like: Tensor) -> Tensor:
    """Normalised 1-D Gaussian taps of odd length ``size``."""
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    k = torch.exp(-x.pow(2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float, size: int, mode: str = "reflect") -> Tensor:
    """Separable per-channel Gaussian blur of a BxCxHxW tensor, same size out."""
    k = gaussian_kernel1d(sigma, size, x)
    c, pad = x.shape[1], size // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode=mode), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode=mode), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def sobel(gray: Tensor) -> tuple[Tensor, Tensor]:
    """(gx, gy) of a Bx1xHxW image, replicate-padded; gy grows downwards."""
    kx = gray.new_tensor(_SOBEL_X).view(1, 1, 3, 3)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))


def _magnitude(gx: Tensor, gy: Tensor) -> Tensor:
    return torch.sqrt(gx.pow(2) + gy.pow(2) + _SQRT_EPS) / _SOBEL_NORM


def sobel_edges(img: Tensor) -> Tensor:
    """Normalised Sobel magnitude of the luma, in [0, 1]."""
    return _magnitude(*sobel(luma(img))).clamp(0, 1)


def _neighbours(mag: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """``mag`` shifted by (+dy, +dx) and (-dy, -dx), zero outside the image."""
    h, w = mag.shape[-2:]
    padded = F.pad(mag, (1, 1, 1, 1))
    fwd = padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    bwd = padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
    return fwd, bwd


@torch.no_grad()
def _canny_mask(mag: Tensor, gx: Tensor, gy: Tensor, low: float, high: float) -> Tensor:
    """Canny's edge set: non-maximum suppression across the gradient, then hysteresis."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180
    sector = (((angle + 22.5) // 45) % 4).long()  # 0: horiz. grad, 1: 45, 2: vert., 3: 135
    local_max = torch.zeros_like(mag, dtype=torch.bool)
    for index, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        fwd, bwd = _neighbours(mag, dy, dx)
        local_max |= (sector == index) & (mag >= fwd) & (mag >= bwd)
    weak = local_max & (mag >= low)
    edges = weak & (mag >= high)
    for _ in range(mag.shape[-2] * mag.shape[-1]):  # grow strong edges along weak ones
        grown = weak & (F.max_pool2d(edges.float(), 3, 1, 1) > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def canny_edges(img: Tensor, sigma: float, low: float, high: float) -> Tensor:
    """Smoothed Sobel magnitude on Canny's edge set, 0 elsewhere (see the module docstring)."""
    size = 2 * math.ceil(3 * sigma) + 1
    gray = gaussian_blur(luma(img), sigma, size, mode="replicate")
    gx, gy = sobel(gray)
    mag = _magnitude(gx, gy)
    return (mag * _canny_mask(mag.detach(), gx.detach(), gy.detach(), low, high)).clamp(0, 1)


def edge_map(img: Tensor, cfg: EdgeConfig | None = None) -> Tensor:
    """Bx3xHxW (or Bx1xHxW) image in [0, 1] -> Bx1xHxW edge map in [0, 1]."""
    cfg = cfg or EdgeConfig()
    if cfg.method == "canny":
        return canny_edges(img, cfg.canny_sigma, cfg.canny_low, cfg.canny_high)
    return sobel_edges(img)


def edge_image(img: np.ndarray, cfg: EdgeConfig | None = None) -> np.ndarray:
    """HxWx3 float image in [0, 1] -> HxW float32 edge map: what data preparation stores."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
    return edge_map(t, cfg)[0, 0].numpy()
