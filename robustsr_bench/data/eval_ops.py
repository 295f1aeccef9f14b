"""Degradation ops for evaluation suites beyond the synthetic pipelines.

DDSR's blind-SR test images (a random known kernel, a partial cover, darkness) and SR-C's
library corruptions (``imagecorruptions``' ImageNet-C set) and WebP. They are ops like any other
(usable in any suite, checked the same way); they live apart so that :mod:`.degradations` reads
as the synthetic pipeline language and its Real-ESRGAN preset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .blur_kernels import blur_downsample, gaussian_kernels
from .image_ops import webp
from .kernel_options import kernel_size_for, variance_range
from .op_spec import OpContext, OpTable, draw, draw_int, number, odd_kernel_size

EVAL_OPS = OpTable()

# --------------------------------------------------------------------------- known-kernel (DDSR)
# Blind-SR test images as DDSR's data preparation makes them: a random anisotropic Gaussian
# kernel, circular padding, blur and plain subsampling (robustsr_bench.data.blur_kernels), whose
# kernel is recorded so kernel estimates can be scored; then optional noise (the ``noise`` op), a
# partial cover and darkness, the degradations the DDSR seed names.


@EVAL_OPS("kernel_downscale", optional={"var": number(1e-3), "size": odd_kernel_size})
def _run_kernel_downscale(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    """Blur with a random DDSR kernel and subsample by the suite scale; records ``kernel``.

    Variances default to DDSR's data ranges ``[0.175 s, min(2.5 s, 10)]``, the size to
    ``min(4 s + 3, 21)``; the kernel is centred on the bicubic grid (``blur_kernels``).
    """
    low, high = variance_range(ctx.scale)
    var = op.get("var", [low, high])
    size = int(op.get("size", kernel_size_for(ctx.scale)))
    var1, var2 = draw(var, ctx.rng), draw(var, ctx.rng)
    theta = float(ctx.rng.uniform(0.0, math.pi))
    params = torch.tensor([var1, var2, theta], dtype=torch.float64)
    kernel = gaussian_kernels(size, ctx.scale, params[:1], params[1:2], params[2:]).float()
    ctx.record["kernel"] = kernel[0, 0].numpy()
    return blur_downsample(x, kernel.to(x), ctx.scale).clamp(0.0, 1.0)


@EVAL_OPS("cover", {"size": number(1, integer=True)})
def _run_cover(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    """DDSR's partial cover: a ``size`` x ``size`` black box at a uniformly random position.

    (The DDSR code draws a row and a column but uses the row for both; both are used here.)
    """
    h, w = x.shape[-2:]
    size = min(draw_int(op["size"], ctx.rng), h, w)
    top = int(ctx.rng.integers(0, h - size + 1))
    left = int(ctx.rng.integers(0, w - size + 1))
    out = x.clone()
    out[..., top:top + size, left:left + size] = 0.0
    return out


@EVAL_OPS("dark", {"factor": number(0.0, 1.0)})
def _run_dark(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    """DDSR's dark case: every value multiplied by ``factor`` (the code's ``dark_fc``)."""
    return x * draw(op["factor"], ctx.rng)


# --------------------------------------------------------------------------- library corruptions


def _check_corruption(value: Any, where: str) -> None:
    from .corruptions import check_name

    check_name(value, where)


@EVAL_OPS("corrupt", {"name": _check_corruption, "severity": number(1, 5, integer=True)})
def _run_corrupt(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    """An ImageNet-C corruption from ``imagecorruptions`` (:mod:`.corruptions`), seeded from
    the suite's per-image generator."""
    from .corruptions import corrupt_batch

    return corrupt_batch(x, str(op["name"]), int(op["severity"]), ctx.rng)


@EVAL_OPS("webp", {"quality": number(1, 100, integer=True)})
def _run_webp(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    return webp(x, draw_int(op["quality"], ctx.rng))
