"""Bicubic upsampling: the reference row of every table.

A test-time "method" with nothing to train, so it shares the run-record format and appears in
reports like any other row (training data: none). Never tiled: it has no activations to bound,
and whole-image interpolation is what the reference row means.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustsr_bench.methods.base import Method, Restored
from robustsr_bench.data.image_ops import bicubic_resize


class Bicubic(Method):
    name = "bicubic"
    trains = False
    tiles = False

    @torch.no_grad()
    def restore(self, lr: Tensor, net: nn.Module | None, cfg: Any) -> Restored:
        return Restored(bicubic_resize(lr, scale_factor=cfg.scale))
