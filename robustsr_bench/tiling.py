"""Tiled inference: super-resolve an image of any size within a bounded memory budget.

An RRDBNet's activations at full resolution grow with the image (about 14 kB per LR pixel for the
paper-size net, mostly the 64-channel upsampling tail at HR resolution), so a 1024x1024 LR image
does not fit a laptop and a 2K one does not fit most GPUs. :func:`tiled_restore` cuts the LR
image into a grid of *core* tiles of ``tile`` pixels, runs each core with ``overlap`` pixels of
context on every side that has a neighbour, and pastes the outputs back, cross-fading adjacent
tiles over ``blend`` pixels on each side of their shared edge.

Why equal to the untiled output: a tile's output pixel equals the untiled one whenever the
network's receptive field around it lies inside the tile's input. The accepted region of a tile
reaches ``blend`` pixels past its core, so every accepted pixel has at least ``overlap - blend``
pixels of context; for a network whose receptive radius is within that, tiled == untiled up to
floating-point rounding, whatever the weights. For deeper nets (the paper's RRDBNet sees hundreds
of pixels) the outputs differ slightly near tile edges and the linear cross-fade hides the seams.

Follows Real-ESRGAN's ``tile`` / ``tile_pad`` inference (tiles with padding). Our choice: the
linear cross-fade (a separable partition of unity, so a constant image stays constant), tile
edges aligned to ``multiple`` (x2/x1 RRDBNets pixel-unshuffle their input), and the defaults in
:class:`robustsr_bench.config.EvalConfig`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def needs_tiling(height: int, width: int, tile: int, budget_mp: float) -> bool:
    """Whether an LR image of ``height x width`` should be tiled: tiling is on (``tile > 0``), the
    image exceeds ``budget_mp`` LR megapixels, and it is larger than one tile."""
    return tile > 0 and height * width > budget_mp * 1e6 and max(height, width) > tile


def _starts(length: int, tile: int, multiple: int) -> list[int]:
    """Start offsets of core tiles of ``tile`` pixels covering ``length`` (edges on ``multiple``)."""
    tile = max(multiple, tile - tile % multiple)
    return list(range(0, length, tile)) + [length]


def _ramp(length: int, cut: int | None, blend: int, rising: bool, device: torch.device) -> Tensor:
    """1-D weights over output pixels ``0..length-1`` (tile coordinates): a linear ramp of width
    ``2 * blend`` centred on the cut, rising or falling; all ones when there is no cut (image
    edge). Pixel centres sit at ``i + 0.5``, so rising + falling ramps sum to exactly 1."""
    if cut is None or blend == 0:
        return torch.ones(length, device=device)
    centres = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    t = ((centres - cut) / (2 * blend) + 0.5).clamp(0, 1)
    return t if rising else 1 - t


def _axis(starts: list[int], i: int, length: int, overlap: int, blend: int, scale: int,
          device: torch.device) -> tuple[slice, slice, Tensor]:
    """For core ``i`` along one axis: the LR input slice, the HR output slice that the tile
    contributes to (core plus ``blend`` each side), and its weights over that HR slice."""
    lo, hi = starts[i], starts[i + 1]
    first, last = i == 0, i == len(starts) - 2
    src = slice(max(0, lo - overlap), min(length, hi + overlap))
    dst_lo = lo if first else max(0, lo - blend)
    dst_hi = hi if last else min(length, hi + blend)
    n = (dst_hi - dst_lo) * scale
    rise = _ramp(n, None if first else (lo - dst_lo) * scale, blend * scale, True, device)
    fall = _ramp(n, None if last else (hi - dst_lo) * scale, blend * scale, False, device)
    return src, slice(dst_lo * scale, dst_hi * scale), rise * fall


def tiled_restore(restore: Callable[[Tensor], Tensor], lr: Tensor, scale: int, tile: int,
                  overlap: int = 16, blend: int = 8, multiple: int = 1) -> Tensor:
    """``restore(lr)`` (N x C x h x w -> N x C' x h*scale x w*scale) computed tile by tile.

    ``tile``: core tile side in LR pixels; ``overlap``: LR context pixels on each inner side;
    ``blend``: LR pixels each side of an inner edge over which neighbours are cross-faded
    (``blend <= overlap``; 0 = hard cut); ``multiple``: tile edges fall on multiples of it.
    Peak memory is one tile's activations plus the HR output and a weight map.
    """
    if tile < 1 or overlap < 0 or not 0 <= blend <= overlap:
        raise ValueError(f"tile={tile}, overlap={overlap}, blend={blend}: expected tile >= 1 and "
                         f"0 <= blend <= overlap")
    h, w = lr.shape[-2:]
    rows, cols = _starts(h, tile, multiple), _starts(w, tile, multiple)
    blend = min(blend, tile // 2)  # a ramp never spans more than half a core
    out: Tensor | None = None
    weight = torch.zeros(1, 1, h * scale, w * scale, device=lr.device)
    for i in range(len(rows) - 1):
        ys, yd, wy = _axis(rows, i, h, overlap, blend, scale, lr.device)
        for j in range(len(cols) - 1):
            xs, xd, wx = _axis(cols, j, w, overlap, blend, scale, lr.device)
            sr = restore(lr[..., ys, xs])
            if out is None:
                out = torch.zeros(*sr.shape[:2], h * scale, w * scale, device=lr.device,
                                  dtype=torch.float32)
            oy, ox = yd.start - ys.start * scale, xd.start - xs.start * scale
            piece = sr[..., oy:oy + yd.stop - yd.start, ox:ox + xd.stop - xd.start]
            mask = wy[:, None] * wx[None, :]
            out[..., yd, xd] += piece.float() * mask
            weight[..., yd, xd] += mask
            del sr, piece
    assert out is not None
    return out.div_(weight).to(lr.dtype)  # in place: no third HR-sized buffer at the end
