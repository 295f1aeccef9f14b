"""RSR's config sections (``attack:``), with the paper's defaults.

Torch-free on purpose: the registry builds the run config from these dataclasses (the method's
YAML names this module in ``options:``), so every ``--set`` value is checked in well under a
second, before the adapter and torch are imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robustsr_bench.attack_options import AttackObjective, LinfPGDConfig
from robustsr_bench.config import check


@dataclass
class AttackConfig(LinfPGDConfig, AttackObjective):
    """RSR's PGD attack on the LR input; defaults are the paper's (Table 1, bold row).

    ``eps`` bounds ``|delta|_inf`` (accepts ``14/255``); ``alpha`` is the step size; ``structure``
    the noise-grouping scale of the random start (1 = i.i.d. per pixel); ``loss`` the attacked
    objective; ``pixel_weight`` / ``perceptual_weight`` weigh ``l1+percep`` (our choice: ESRGAN's
    0.01 / 1.0); ``random_start: false`` with ``iters: 0`` disables the attack.
    """

    def __post_init__(self) -> None:
        self.check_pgd("attack")
        self.check_objective("attack")
        check(self.loss != "l1+percep" or self.pixel_weight + self.perceptual_weight > 0,
              "attack.pixel_weight", self.pixel_weight,
              "a positive weight on at least one of the two losses")

    @property
    def enabled(self) -> bool:
        """Whether the attack changes the input at all."""
        return self.iters > 0 or self.random_start


@dataclass
class RSROptions:
    """Config sections RSR adds to the run config."""

    attack: AttackConfig = field(default_factory=AttackConfig)
