"""BAPD's config sections (``attack:``, ``defense:``, ``edges:``): the attack layer's two levels and the defense layer.

Torch-free on purpose: the registry builds the run config from these dataclasses (the method's
YAML names this module in ``options:``), so every ``--set`` value is checked in well under a
second, before the adapter and torch are imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robustsr_bench.attack_options import AttackObjective, LinfPGDConfig
from robustsr_bench.config import check
from robustsr_bench.data.edge_options import EdgeConfig

DISTILLATION_MODES = ("bidirectional", "one_way", "none")


@dataclass
class PixelAttackConfig(LinfPGDConfig):
    """Pixel-level attack: L-inf PGD on the LR input (RSR's code; eps 8/255, 1 step)."""

    enabled: bool = True
    eps: float = 8 / 255
    iters: int = 1

    def __post_init__(self) -> None:
        self.check_pgd("attack.pixel", eps_range="[0, 1]")


@dataclass
class HFAttackConfig:
    """High-frequency attack: per-channel mean/std shift of the head features' HF component."""

    enabled: bool = True
    steps: int = 1
    step_frac: float = 1.0
    mu_box: float = 0.1
    sigma_box: float = 0.2
    blur_sigma: float = 1.0
    blur_size: int = 5

    def __post_init__(self) -> None:
        check(self.steps >= 1, "attack.hf.steps", self.steps, "an integer >= 1 (paper: 1 or 2)")
        check(self.step_frac > 0, "attack.hf.step_frac", self.step_frac, "a number > 0")
        check(self.mu_box >= 0, "attack.hf.mu_box", self.mu_box, "a number >= 0")
        check(0 <= self.sigma_box < 1, "attack.hf.sigma_box", self.sigma_box,
              "a number in [0, 1) (the std must stay positive)")
        check(self.blur_sigma > 0, "attack.hf.blur_sigma", self.blur_sigma, "a number > 0")
        check(self.blur_size >= 3 and self.blur_size % 2 == 1, "attack.hf.blur_size",
              self.blur_size, "an odd integer >= 3")


@dataclass
class BAPDAttackConfig(AttackObjective):
    """The attack layer (training only) and the content loss both of its levels maximise."""

    pixel: PixelAttackConfig = field(default_factory=PixelAttackConfig)
    hf: HFAttackConfig = field(default_factory=HFAttackConfig)

    def __post_init__(self) -> None:
        self.check_objective("attack")

    @property
    def enabled(self) -> bool:
        return self.pixel.enabled or self.hf.enabled


@dataclass
class DefenseConfig:
    """The defense layer: bidirectional distillation and the detail-recovery branch."""

    distillation: str = "bidirectional"
    distill_weight: float = 1.0
    lambda_back: float = 0.5
    detail_recovery: bool = True
    detail_channels: int = 0
    edge_weight: float = 0.1

    def __post_init__(self) -> None:
        check(self.distillation in DISTILLATION_MODES, "defense.distillation", self.distillation,
              f"one of: {', '.join(DISTILLATION_MODES)}")
        for name in ("distill_weight", "lambda_back", "edge_weight"):
            value = getattr(self, name)
            check(value >= 0, f"defense.{name}", value, "a number >= 0")
        check(self.detail_channels >= 0, "defense.detail_channels", self.detail_channels,
              "an integer >= 0 (0 = model.num_feat)")


@dataclass
class BAPDOptions:
    """Config sections BAPD adds to the run config."""

    attack: BAPDAttackConfig = field(default_factory=BAPDAttackConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    edges: EdgeConfig = field(default_factory=EdgeConfig)
