"""The numbers behind blind SR's random kernels that configs name: size, centring, variances.

Torch-free, so DDSR's ``kernel:`` section is checked before anything imports torch; the kernels
themselves are in :mod:`robustsr_bench.data.blur_kernels`.
"""

from __future__ import annotations

CENTRES = ("aligned", "code")


def kernel_size_for(scale: int, size: int = 0) -> int:
    """``size`` if set, else the code's ``min(4 * scale + 3, 21)``."""
    return size if size > 0 else min(4 * scale + 3, 21)


def variance_range(scale: int, per_scale_min: float = 0.175, per_scale_max: float = 2.5,
                   max_cap: float = 10.0, min_offset: float = 0.0,
                   max_offset: float = 0.0) -> tuple[float, float]:
    """``(0.175 s + min_offset, min(2.5 s, 10) + max_offset)``: the code's variance range."""
    low = per_scale_min * scale + min_offset
    high = min(per_scale_max * scale, max_cap) + max_offset
    if not 0 < low <= high:
        raise ValueError(f"kernel variance range ({low}, {high}) must satisfy 0 < low <= high")
    return low, high
