"""Paper-style tables as data: rows of seed-aggregated cells with their best-two marks.

Layout follows the papers: the cross-dataset table is RSR's Table 2 (rows = method x training
data, columns = each metric per eval suite plus the average, best two marked), the ablation tables
are RSR's Table 1 / AND's Table 2 (one method's variants, with check marks for the components that
``no_<component>`` ablations switch off). Our choices: seeds are aggregated as mean +- sample std
(n shown); a missing cell is shown as missing with a footnote, never as zero; the average over
suites exists only where every suite is present; a cell's "best" follows the metric registry's
direction, and metrics of unknown direction are shown unmarked. Cells, keys and number formats
are ``tables.py`` (shared with verdicts and ``run``'s view); rendering is ``report_render.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .tables import AVERAGE, Cell, higher_is_better
from .verdicts import mark_bold

NOTES = {"a": "not evaluated: the run's eval.suites lack this suite",
         "b": "metric not recorded on this suite",
         "c": "average needs every suite of the row"}


@dataclass
class Table:
    """A rendered-to-anything table: label columns, then (group x metric) value columns."""

    name: str
    caption: str
    label_headers: list[str]
    labels: list[list[str]]
    groups: list[str]
    metrics: list[str]
    cells: list[list[Cell]]
    paired: bool = False  # bold marks ties by paired tests (verdicts.mark_bold), not ranks

    def notes(self) -> dict[str, str]:
        used = {c.note for row in self.cells for c in row if c.note}
        return {k: v for k, v in NOTES.items() if k in used}


def _cell(values: Sequence[float]) -> Cell:
    values = [float(v) for v in values]
    std = float(pd.Series(values).std()) if len(values) > 1 else None
    return Cell(sum(values) / len(values), std, len(values))


def _row_cells(seeds: pd.DataFrame, suites: Sequence[str], metrics: Sequence[str],
               with_average: bool) -> list[Cell]:
    """Cells of one table row from its seed-level records."""
    evaluated = set(seeds["suite"])
    cells = []
    for suite in suites:
        for metric in metrics:
            values = seeds[(seeds["suite"] == suite) & (seeds["metric"] == metric)]["value"]
            if len(values):
                cells.append(_cell(values))
            else:
                cells.append(Cell(None, note="a" if suite not in evaluated else "b"))
    if with_average:
        for metric in metrics:
            per_seed = seeds[seeds["metric"] == metric].pivot_table(
                index="seed", columns="suite", values="value", aggfunc="mean")
            complete = per_seed.reindex(columns=list(suites)).dropna() if len(per_seed) else per_seed
            cells.append(_cell(complete.mean(axis=1)) if len(complete) and len(suites)
                         else Cell(None, note="c"))
    return cells


def _mark_ranks(cells: list[list[Cell]], metrics: Sequence[str], groups: int) -> None:
    """Best (rank 1) and second best (rank 2) per column; needs 2 / 3 rows to mean anything."""
    for col in range(groups * len(metrics)):
        direction = higher_is_better(metrics[col % len(metrics)])
        column = [row[col] for row in cells if row[col].mean is not None]
        if direction is None or len(column) < 2:
            continue
        ordered = sorted({round(c.mean, 10) for c in column}, reverse=direction)
        for c in column:
            place = ordered.index(round(c.mean, 10)) + 1
            c.rank = place if place == 1 or (place == 2 and len(column) >= 3) else 0


def build_table(name: str, caption: str, frame: pd.DataFrame, rows: Sequence[dict[str, str]],
                label_headers: Sequence[str], labels: Sequence[Sequence[str]],
                suites: Sequence[str], metrics: Sequence[str], with_average: bool = True,
                group_names: Sequence[str] | None = None,
                images: pd.DataFrame | None = None) -> Table:
    """A table with one row per ``rows`` key (a dict over some of ROW_KEYS). With ``images``
    (per-image values, :func:`verdicts.per_image`) bold is significance-aware."""
    cells = []
    for key in rows:
        mask = pd.Series(True, index=frame.index)
        for k, v in key.items():
            mask &= frame[k] == v
        cells.append(_row_cells(frame[mask], suites, metrics, with_average))
    groups = list(group_names or suites) + ([AVERAGE] if with_average else [])
    paired = images is not None and not images.empty
    if paired:

        mark_bold(cells, rows, images, suites, metrics, len(groups))
    else:
        _mark_ranks(cells, metrics, len(groups))
    return Table(name, caption, list(label_headers), [list(x) for x in labels], groups,
                 list(metrics), cells, paired)

