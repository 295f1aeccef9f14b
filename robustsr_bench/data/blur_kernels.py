"""Blur kernels and the blur + subsample forward model of kernel-estimating (blind) SR.

Shared by DDSR (``methods/ddsr.py``), which samples random kernels and explains its LR input
through :func:`blur_downsample`, and by the evaluation suites that degrade HR images with a known
kernel, so that the estimated kernel can be scored against the true one.

Follows the DDSR / DIP-DKP / FKP code:

* kernel size ``min(4 * scale + 3, 21)`` (19 at x4);
* anisotropic Gaussian: eigen-variances ``lambda_1, lambda_2 ~ U(var_min, var_max)``, angle
  ``theta ~ U(0, pi)``, covariance ``Q diag(lambda) Q^T``; normalised to sum 1;
* forward model: circular padding by ``k // 2``, per-channel correlation (``F.conv2d``), then
  plain subsampling ``[..., ::scale, ::scale]``.

Our choice:

* Centring. The code moves every kernel's centre of mass to ``(k - scale) / 2`` (its
  ``kernel_move`` to ``(scale + 1) * 3 / 2``, the "wanted centre of mass for F.conv2d"), believing
  ``F.conv2d`` flips the kernel. It does not (it is a correlation), so the code's LR pixel ``j``
  sits at HR position ``s*j - (s-1)/2``, ``s - 1`` HR pixels off the grid that bicubic
  downscaling, every other suite and every other method use (``s*j + (s-1)/2``). By default
  (``aligned``) kernels are centred at ``(k - 1)/2 + (s - 1)/2`` instead, which puts LR pixel
  ``j`` at ``s*j + (s-1)/2``; ``centre="code"`` reproduces the code's convention.
* The code evaluates the Gaussian off-centre and then moves it with a spline interpolation
  (``scipy.ndimage.shift``); here the Gaussian's mean is moved instead, a few fixed-point steps,
  until the *truncated* kernel's centre of mass is at the target. Same target, no interpolation
  blur, and on any device.
* The code's optional multiplicative kernel noise is 0 in DDSR and not implemented.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .kernel_options import CENTRES

_CENTRING_STEPS = 8


def kernel_centre(size: int, scale: int, centre: str = "aligned") -> float:
    """Where a kernel's centre of mass sits (both axes): ``aligned`` with bicubic downscaling,
    or at the DDSR code's ``(size - scale) / 2``."""
    if centre not in CENTRES:
        raise ValueError(f"kernel centre {centre!r} must be one of: {', '.join(CENTRES)}")
    return (size - 1) / 2 + (scale - 1) / 2 if centre == "aligned" else (size - scale) / 2


def centre_of_mass(kernel: Tensor) -> Tensor:
    """(row, col) centre of mass of a (..., k, k) kernel."""
    k = kernel.shape[-1]
    idx = torch.arange(k, dtype=kernel.dtype, device=kernel.device)
    total = kernel.sum(dim=(-2, -1))
    rows = (kernel.sum(dim=-1) * idx).sum(dim=-1) / total
    cols = (kernel.sum(dim=-2) * idx).sum(dim=-1) / total
    return torch.stack([rows, cols], dim=-1)


def gaussian_kernels(size: int, scale: int, var1: Tensor, var2: Tensor, theta: Tensor,
                     centre: str = "aligned") -> Tensor:
    """(n, 1, size, size) anisotropic Gaussians, normalised, centre of mass at the target."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    # inverse covariance Q diag(1/var) Q^T, written out per kernel
    a = cos ** 2 / var1 + sin ** 2 / var2
    b = cos * sin * (1 / var1 - 1 / var2)
    c = sin ** 2 / var1 + cos ** 2 / var2
    grid = torch.arange(size, dtype=var1.dtype, device=var1.device)
    target = torch.full((var1.shape[0], 2), kernel_centre(size, scale, centre), dtype=var1.dtype,
                        device=var1.device)
    mean = target.clone()
    for _ in range(_CENTRING_STEPS):
        kernel = _gaussian(grid, mean, a, b, c)
        mean = mean + (target - centre_of_mass(kernel))
    kernel = _gaussian(grid, mean, a, b, c)
    return (kernel / kernel.sum(dim=(-2, -1), keepdim=True)).unsqueeze(1)


def _gaussian(grid: Tensor, mean: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    dy = grid.view(1, -1, 1) - mean[:, 0].view(-1, 1, 1)  # rows
    dx = grid.view(1, 1, -1) - mean[:, 1].view(-1, 1, 1)  # columns
    quad = a.view(-1, 1, 1) * dx ** 2 + 2 * b.view(-1, 1, 1) * dx * dy + c.view(-1, 1, 1) * dy ** 2
    return torch.exp(-0.5 * quad)


def random_gaussian_kernels(n: int, size: int, scale: int, var_min: float, var_max: float,
                            generator: torch.Generator | None = None,
                            device: torch.device | str = "cpu", centre: str = "aligned") -> Tensor:
    """``n`` random anisotropic Gaussian kernels, (n, 1, size, size), from torch's RNG."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64).to(device)
    var1 = var_min + u[:, 0] * (var_max - var_min)
    var2 = var_min + u[:, 1] * (var_max - var_min)
    theta = u[:, 2] * math.pi
    return gaussian_kernels(size, scale, var1, var2, theta, centre).float()


def blur_downsample(x: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """(1, C, H, W) image, (n, 1, k, k) kernels -> (n, C, H/s, W/s): circular pad, blur, stride.

    All kernels are applied in one grouped convolution; gradients flow to both arguments. The
    convolution strides by ``scale`` rather than subsampling a full-size blur: the same values,
    computing only the LR pixels (DDSR's loop spent half its time on the discarded ones).
    """
    if x.shape[0] != 1:
        raise ValueError(f"blur_downsample expects one image, got a batch of {x.shape[0]}")
    k = kernels.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="circular")
    out = F.conv2d(xp.transpose(0, 1), kernels, stride=scale)  # (C, n, h, w): channel x kernel
    return out.transpose(0, 1)


def kernel_psnr(estimate: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> float:
    """The code's kernel PSNR: ``20 log10(1 / RMSE)`` between two kernels (peak 1)."""
    diff = torch.as_tensor(estimate, dtype=torch.float64) - torch.as_tensor(truth,
                                                                            dtype=torch.float64)
    mse = float((diff ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)
