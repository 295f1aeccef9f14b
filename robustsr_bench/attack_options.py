"""The attack settings RSR, BAPD and AND share, as typed config sections.

Torch-free on purpose: the registry checks every ``--set attack.*`` value from these dataclasses
before anything imports torch, so a bad value answers in well under a second. The attacks
themselves are in :mod:`robustsr_bench.attacks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import check

ATTACK_LOSSES = ("l1+percep", "l1", "percep")


@dataclass
class AttackObjective:
    """Which content loss an attack maximises (RSR's Table 1 "Loss" column).

    ``l1+percep`` weighs L1 and the VGG perceptual loss by ``pixel_weight`` / ``perceptual_weight``
    (only their ratio matters to a signed-gradient attack); ``l1`` and ``percep`` use one term
    with weight 1. Shared by every attack config so the choice reads the same everywhere.
    """

    loss: str = "l1+percep"
    pixel_weight: float = 0.01
    perceptual_weight: float = 1.0

    def check_objective(self, section: str) -> None:
        check(self.loss in ATTACK_LOSSES, f"{section}.loss", self.loss,
              f"one of: {', '.join(ATTACK_LOSSES)}")
        for name in ("pixel_weight", "perceptual_weight"):
            value = getattr(self, name)
            check(value >= 0, f"{section}.{name}", value, "a number >= 0")

    def loss_weights(self) -> tuple[float, float]:
        """(L1 weight, perceptual weight) of the attacked objective."""
        if self.loss == "l1":
            return 1.0, 0.0
        if self.loss == "percep":
            return 0.0, 1.0
        return self.pixel_weight, self.perceptual_weight


@dataclass
class LinfPGDConfig:
    """The settings of :func:`linf_pgd`, shared by RSR's attack and BAPD's pixel attack so they
    are named and checked alike (each subclass sets its paper's defaults)."""

    eps: float = 14 / 255
    iters: int = 2
    alpha: float = 1 / 255
    structure: float = 1.5
    random_start: bool = True

    def check_pgd(self, section: str, eps_range: str = "(0, 1]") -> None:
        """``eps_range``: ``(0, 1]`` or ``[0, 1]`` (where eps 0 is an allowed no-op)."""
        low_ok = self.eps >= 0 if eps_range.startswith("[") else self.eps > 0
        check(low_ok and self.eps <= 1, f"{section}.eps", self.eps,
              f"a number in {eps_range}, e.g. {round(type(self).eps * 255)}/255")  # the default
        check(self.iters >= 0, f"{section}.iters", self.iters, "an integer >= 0")
        check(self.alpha >= 0, f"{section}.alpha", self.alpha, "a number >= 0, e.g. 1/255")
        check(self.structure >= 1, f"{section}.structure", self.structure, "a number >= 1")
