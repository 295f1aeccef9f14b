"""DDSR's config sections (``dip:``, ``kernel:``, ``loop:``, ``forward:``), with the code's defaults.

Torch-free on purpose: the registry builds the run config from these dataclasses (the method's
YAML names this module in ``options:``), so every ``--set`` value is checked in well under a
second, before the adapter and torch are imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robustsr_bench.config import check
from robustsr_bench.data.kernel_options import CENTRES, variance_range

COVER_MODES = ("none", "auto")


@dataclass
class DIPConfig:
    """Image prior: skip U-Net size, its Adam learning rate, and the scale of its noise input."""

    channels: int = 128
    skip_channels: int = 16
    levels: int = 5
    lr: float = 5e-3
    input_scale: float = 0.1

    def __post_init__(self) -> None:
        check(self.channels >= 1, "dip.channels", self.channels, "an integer >= 1")
        check(self.skip_channels >= 0, "dip.skip_channels", self.skip_channels, "an integer >= 0")
        check(self.levels >= 1, "dip.levels", self.levels, "an integer >= 1")
        check(self.lr > 0, "dip.lr", self.lr, "a number > 0")
        check(self.input_scale > 0, "dip.input_scale", self.input_scale, "a number > 0")


@dataclass
class KernelConfig:
    """Kernel generator and the random Gaussian kernels it learns from.

    ``size: 0`` means the code's ``min(4 * scale + 3, 21)``. Random kernels have eigen-variances
    in ``[var_per_scale_min * s + var_min_offset + (s - 4), min(var_per_scale_max * s, var_cap) +
    var_max_offset + (s - 4)]``, the code's ranges (3.7 to 20 at x4). ``centre``: where random
    kernels are centred, ``aligned`` with bicubic downscaling (our choice) or as in the ``code``
    (see :mod:`robustsr_bench.data.blur_kernels`).
    """

    size: int = 0
    code_dim: int = 200
    hidden: int = 1000
    code_scale: float = 0.1
    lr: float = 1e-4
    var_per_scale_min: float = 0.175
    var_per_scale_max: float = 2.5
    var_cap: float = 10.0
    var_min_offset: float = 3.0
    var_max_offset: float = 10.0
    centre: str = "aligned"

    def __post_init__(self) -> None:
        check(self.size == 0 or (self.size >= 3 and self.size % 2 == 1), "kernel.size", self.size,
              "0 (the code's min(4*scale+3, 21)) or an odd integer >= 3")
        for name in ("code_dim", "hidden"):
            check(getattr(self, name) >= 1, f"kernel.{name}", getattr(self, name),
                  "an integer >= 1")
        check(self.lr > 0, "kernel.lr", self.lr, "a number > 0")
        check(self.code_scale > 0, "kernel.code_scale", self.code_scale, "a number > 0")
        check(self.centre in CENTRES, "kernel.centre", self.centre, f"one of: {', '.join(CENTRES)}")

    def variances(self, scale: int) -> tuple[float, float]:
        shift = scale - 4
        return variance_range(scale, self.var_per_scale_min, self.var_per_scale_max, self.var_cap,
                              self.var_min_offset + shift, self.var_max_offset + shift)


@dataclass
class LoopConfig:
    """The alternating optimisation and its schedule (the code's defaults).

    ``image_steps`` image-prior steps in all, ``inner`` per outer step (so ``image_steps // inner``
    outer steps); ``samples`` random kernels per outer step; a generator step on the accumulated
    kernel loss every ``kernel_every`` image steps; ``1 - SSIM`` for outer steps ``<= ssim_until``,
    then MSE; ``disturbance`` is the code's "image disturbance": Gaussian noise with a standard
    deviation drawn from ``U(0, disturbance)`` added to the LR target of the image step.
    """

    warmup: int = 200
    image_steps: int = 1000
    inner: int = 5
    samples: int = 5
    kernel_every: int = 3
    ssim_until: int = 80
    prior_weight: float = 0.0002
    prior_exponent: float = 0.67
    disturbance: float = 0.0

    def __post_init__(self) -> None:
        check(self.warmup >= 0, "loop.warmup", self.warmup, "an integer >= 0")
        check(self.inner >= 1, "loop.inner", self.inner, "an integer >= 1")
        check(self.image_steps >= self.inner, "loop.image_steps", self.image_steps,
              f"an integer >= loop.inner ({self.inner})")
        check(self.samples >= 0, "loop.samples", self.samples, "an integer >= 0 (0 = no meta step)")
        check(self.kernel_every >= 1, "loop.kernel_every", self.kernel_every, "an integer >= 1")
        check(self.prior_weight >= 0, "loop.prior_weight", self.prior_weight, "a number >= 0")
        check(self.prior_exponent > 0, "loop.prior_exponent", self.prior_exponent, "a number > 0")
        check(self.disturbance >= 0, "loop.disturbance", self.disturbance, "a number >= 0")

    @property
    def outer_steps(self) -> int:
        return self.image_steps // self.inner


@dataclass
class ForwardConfig:
    """What besides blur and subsampling the LR went through: a cover and a darkness factor."""

    cover: str = "none"
    dark: float = 1.0

    def __post_init__(self) -> None:
        check(self.cover in COVER_MODES, "forward.cover", self.cover,
              f"one of: {', '.join(COVER_MODES)}")
        check(0 < self.dark <= 1, "forward.dark", self.dark, "a number in (0, 1] (1 = not dark)")


@dataclass
class DDSROptions:
    """Config sections DDSR adds to the run config."""

    dip: DIPConfig = field(default_factory=DIPConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
