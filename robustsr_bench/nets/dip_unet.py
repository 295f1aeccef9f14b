"""The deep-image-prior "skip" U-Net that DDSR (after DIP, Double-DIP, FKP) uses as image prior.

Follows the DIP code's ``skip(...)`` as DDSR configures it: ``levels`` scales, each going down by a
stride-2 3x3 conv + 3x3 conv with ``channels`` features, a 1x1 skip branch with ``skip_channels``
features, concatenation, BatchNorm, a 3x3 and a 1x1 conv on the way up, bilinear x2 upsampling,
reflection padding, LeakyReLU 0.2 after every conv, and a 1x1 conv + sigmoid at the output.

Our choice: where the two branches of a level differ in size (odd sizes), both are centre-cropped to
the smaller one, as the DIP code's ``Concat`` does; the output then keeps the input's size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_SLOPE = 0.2


def _conv(cin: int, cout: int, size: int, stride: int = 1) -> nn.Sequential:
    """Reflection-padded conv + BatchNorm + LeakyReLU, the DIP building block."""
    pad = (size - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers += [nn.Conv2d(cin, cout, size, stride), nn.BatchNorm2d(cout),
               nn.LeakyReLU(_SLOPE, inplace=True)]
    return nn.Sequential(*layers)


def _centre_crop(x: Tensor, h: int, w: int) -> Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


class _Level(nn.Module):
    """One scale: ``cat(skip(x), up(inner(down(x))))`` -> BN -> 3x3 conv -> 1x1 conv."""

    def __init__(self, cin: int, channels: int, skip_channels: int, inner: nn.Module | None,
                 inner_out: int):
        super().__init__()
        self.skip = _conv(cin, skip_channels, 1) if skip_channels else None
        self.down = nn.Sequential(_conv(cin, channels, 3, stride=2), _conv(channels, channels, 3))
        self.inner = inner
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        merged = skip_channels + inner_out
        self.merge = nn.Sequential(nn.BatchNorm2d(merged), _conv(merged, channels, 3),
                                   _conv(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = self.up(deep)
        if self.skip is None:
            return self.merge(deep)
        skip = self.skip(x)
        h, w = min(skip.shape[-2], deep.shape[-2]), min(skip.shape[-1], deep.shape[-1])
        # skip features first, then the deeper ones: the DIP code's ``Concat`` order
        return self.merge(torch.cat([_centre_crop(skip, h, w), _centre_crop(deep, h, w)], dim=1))


class SkipUNet(nn.Module):
    """Maps a fixed (1, in_ch, H, W) noise input to a (1, out_ch, H, W) image in (0, 1)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, channels: int = 128,
                 skip_channels: int = 16, levels: int = 5):
        super().__init__()
        if levels < 1:
            raise ValueError(f"SkipUNet levels={levels!r} must be >= 1")
        inner: nn.Module | None = None
        for depth in reversed(range(levels)):
            cin = in_ch if depth == 0 else channels
            inner = _Level(cin, channels, skip_channels, inner, channels)
        assert inner is not None
        self.body = inner
        self.head = nn.Sequential(nn.Conv2d(channels, out_ch, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
