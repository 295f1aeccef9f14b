"""How BAPD's edge maps are computed, as a typed config section (``edges:``).

Torch-free, so the registry checks ``--set edges.*`` before anything imports torch; the edge maps
themselves are in :mod:`robustsr_bench.data.edges`, which documents the choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check

EDGE_METHODS = ("sobel", "canny")


@dataclass
class EdgeConfig:
    """How edge maps are computed (our choice; see the module docstring).

    ``canny_sigma`` is the Gaussian pre-smoothing; ``canny_low`` / ``canny_high`` are the
    hysteresis thresholds on the normalised magnitude (a unit step edge has magnitude 1).
    """

    method: str = "sobel"
    canny_sigma: float = 1.0
    canny_low: float = 0.1
    canny_high: float = 0.2

    def __post_init__(self) -> None:
        check(self.method in EDGE_METHODS, "edges.method", self.method,
              f"one of: {', '.join(EDGE_METHODS)}")
        check(self.canny_sigma > 0, "edges.canny_sigma", self.canny_sigma, "a number > 0")
        check(0 <= self.canny_low <= self.canny_high, "edges.canny_low", self.canny_low,
              "a number in [0, edges.canny_high]")
