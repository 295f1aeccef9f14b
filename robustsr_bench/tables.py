"""Table primitives shared by ``report``, ``verdicts`` and ``run``'s view: the keys that
identify a row, one cell, and how numbers are printed. They live below all three so that the
verdict tables can be built without importing the report that shows them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cache

from .metric_specs import direction

log = logging.getLogger("robustsr_bench")

ROW_KEYS = ["method", "ablation", "profile", "trained_on"]
SEED_KEYS = ROW_KEYS + ["seed"]
AVERAGE = "Average"
PRETRAINED = "pretrained"  # records written by `evaluate` (robustsr_bench.pretrained)


@dataclass
class Cell:
    """One table entry: mean over seeds (``None`` = missing, with a footnote key)."""

    mean: float | None
    std: float | None = None
    n: int = 0
    note: str = ""
    rank: int = 0


@cache
def higher_is_better(metric: str) -> bool | None:
    """The metric spec's direction; ``None`` where nobody knows (shown unmarked)."""
    known = direction(metric)
    if known is None:
        log.warning("metric %r has no known direction; its best cells are not marked", metric)
    return known


def _digits(metric: str) -> int:
    """Four decimals for the [0, 1] scores (SSIM, LPIPS), two for dB, seconds and NIQE-style
    scores, as SR papers print them."""
    return 4 if "ssim" in metric or "lpips" in metric else 2


def format_cell(cell: Cell, metric: str) -> str:
    if cell.mean is None:
        return ""
    d = _digits(metric)
    text = f"{cell.mean:.{d}f}"
    # a std that prints as 0 over several seeds is a deterministic row (bicubic, whose seeds
    # differ only by float rounding across processes): no "± 0.00" as if it had noise
    noisy = cell.std is not None and not math.isnan(cell.std) and round(cell.std, d) > 0
    return text + (f" ± {cell.std:.{d}f}" if noisy else "")


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"),
                 ("✓", r"\checkmark"), ("✗", r"$\times$")):
        text = text.replace(a, b)
    return text


def row_label(method: str, ablation: str) -> str:
    return method + (f" [{ablation}]" if ablation else "")


def record_method(summary: dict) -> str:
    """The method column of a record: ``pretrained:<label>`` for a checkpoint scored with
    ``evaluate`` (each published model is its own row), else the method name."""
    if summary["method"] == PRETRAINED and summary.get("label"):
        return f"{PRETRAINED}:{summary['label']}"
    return summary["method"]
