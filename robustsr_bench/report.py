"""Tables from run records.

This first piece renders the table ``run`` prints: rows = runs (bicubic first), columns = each
metric per suite plus the average over suites.
"""

from __future__ import annotations

from typing import Sequence

from tabulate import tabulate

from .results import RunDir

_LABELS = {"psnr_y": "PSNR", "ssim_y": "SSIM", "psnr_rgb": "PSNR-RGB", "ssim_rgb": "SSIM-RGB"}


def run_label(summary: dict) -> str:
    return summary["method"] + (f" [{summary['ablation']}]" if summary.get("ablation") else "")


def run_table(runs: Sequence[RunDir], metrics: Sequence[str], suites: Sequence[str],
              fmt: str = "github") -> str:
    """One row per run: ``<metric> <suite>`` columns, then ``<metric> avg``."""
    headers = ["model"]
    for metric in metrics:
        label = _LABELS.get(metric, metric)
        headers += [f"{label} {s}" for s in suites] + [f"{label} avg"]
    rows = []
    for run in runs:
        summary = run.read_summary()
        means = summary.get("means", {})
        row: list = [run_label(summary)]
        for metric in metrics:
            values = [means.get(s, {}).get(metric) for s in suites]
            present = [v for v in values if v is not None]
            avg = sum(present) / len(present) if len(present) == len(values) else None
            row += values + [avg]
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt=fmt, floatfmt=".4f", missingval="n/a")
