"""Verdicts: which differences between table rows are more than noise (numbers: :mod:`.stats`).

Three things are built here from per-image records, so that report.py stays about layout:

* **significance-aware bold** (:func:`mark_bold`): in every column the best row and every row
  not significantly worse than it are bold, so ties are visible as ties;
* **verdict tables** (:func:`method_verdicts`, :func:`ablation_verdicts`): per robust method, A - B
  vs the clean baseline (esrgan) and vs its equal-schedule control (the method YAML's
  ``control:``, e.g. RSR's ``no_attack``); per ablation table, each variant vs the full method.
  Cells are ``diff [95% CI]``, ``*`` where significant; below each table, one quotable line per
  comparison;
* the per-image frame both need (:func:`per_image`), read from the same records as the table
  cells (a cell's run is the run its per-image values come from).

Our choices: the *seen* suite is ``clean`` (every method trains on bicubic LR), the others are
*unseen*; a summary line speaks of the table's first metric; the Holm family is one comparison's
suites (one row of a verdict table) or one column's rows (bold marking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from . import registry, stats
from .errors import ConfigError
from .metric_specs import metric_label
from .tables import AVERAGE, SEED_KEYS, Cell, _digits, _tex, higher_is_better, row_label

SEEN_SUITE = "clean"
BASELINE_KEY = {"method": "esrgan", "ablation": ""}  # the clean baseline every method is held to
BOLD_RULE = ("**Bold**: the best row and every row not significantly worse than it (paired "
             "t-test over images, Holm-corrected across the column's rows, and a 95% "
             "hierarchical-bootstrap CI of the difference excluding 0; see `robustsr_bench.stats`)")


def _read_images(path: str) -> pd.DataFrame | None:
    try:
        frame = pd.read_csv(Path(path) / "metrics.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not {"suite", "image", "metric", "value"} <= set(frame.columns):
        return None
    frame = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"))
    return frame[["suite", "image", "metric", "value"]].dropna(subset=["value"])


def per_image(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per-image values behind the seed-level cells of ``seeds`` (a report's record frame):
    SEED_KEYS + suite, metric, image, value. Records without an ``image`` column add nothing."""
    parts = []
    for run_id, cells in seeds.groupby("run_id", sort=False):
        images = _read_images(str(cells["path"].iloc[0]))
        if images is None:
            continue
        keys = cells[SEED_KEYS + ["suite", "metric"]]
        parts.append(images.merge(keys, on=["suite", "metric"], how="inner"))
    columns = SEED_KEYS + ["suite", "metric", "image", "value"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _rows_of(images: pd.DataFrame, key: dict[str, str]) -> pd.DataFrame:
    mask = pd.Series(True, index=images.index)
    for k, v in key.items():
        mask &= images[k] == v
    return images[mask]


def _group_values(frame: pd.DataFrame, group: str, suites: Sequence[str],
                  metric: str) -> pd.DataFrame:
    """Per (seed, image) values of one table group: a suite, or the average over ``suites``
    where a (seed, image) has every suite."""
    frame = frame[frame["metric"] == metric]
    if group != AVERAGE:
        return frame[frame["suite"] == group]
    frame = frame[frame["suite"].isin(list(suites))]
    agg = frame.groupby(["seed", "image"])["value"].agg(["mean", "count"]).reset_index()
    complete = agg[agg["count"] == len(suites)]
    return complete.rename(columns={"mean": "value"}).assign(suite=AVERAGE, metric=metric)


def _diff(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    if a.empty or b.empty:
        return np.empty((0, 0))
    return stats.paired_matrix(a, b, stats.is_fixed(a), stats.is_fixed(b))


# ---------------------------------------------------------------------------------------------
# bold marking


def mark_bold(cells: list[list[Cell]], rows: Sequence[dict[str, str]], images: pd.DataFrame,
              suites: Sequence[str], metrics: Sequence[str], groups: int) -> None:
    """Set ``rank = 1`` (bold) on the best cell of each column and on every cell not
    significantly worse than it; other cells get rank 0. Columns are ``groups`` x ``metrics``,
    the groups being ``suites`` and, if one more, the average over them. A row without
    per-image values is bold only if its mean equals the best."""
    names = list(suites) + [AVERAGE]
    frames = [_rows_of(images, key) for key in rows]
    for col in range(groups * len(metrics)):
        metric, group = metrics[col % len(metrics)], names[col // len(metrics)]
        direction = higher_is_better(metric)
        column = [(i, row[col]) for i, row in enumerate(cells) if row[col].mean is not None]
        for _, cell in column:
            cell.rank = 0
        if direction is None or not column:
            continue
        best_i, best = max(column, key=lambda ic: ic[1].mean if direction else -ic[1].mean)
        best.rank = 1
        ref = _group_values(frames[best_i], group, suites, metric)
        diffs = {i: _diff(ref, _group_values(frames[i], group, suites, metric))
                 for i, _ in column if i != best_i}
        tested = {c.suite: c for c in stats.compare({str(i): d for i, d in diffs.items()},
                                                    metric, direction)}
        for i, cell in column:
            result = tested.get(str(i))
            tie = math.isclose(cell.mean, best.mean, abs_tol=1e-12)
            if i != best_i and (tie or (result is not None and not result.significant)):
                cell.rank = 1


# ---------------------------------------------------------------------------------------------
# verdict tables


@dataclass
class VerdictRow:
    """A vs B on one metric: one :class:`stats.Comparison` per group (suites, then average)."""

    a: str
    b: str
    metric: str
    results: dict[str, stats.Comparison]


@dataclass
class VerdictTable:
    name: str
    caption: str
    groups: list[str]
    rows: list[VerdictRow]
    summaries: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        headers = ["A", "vs B", "metric"] + self.groups
        body = [[r.a, r.b, metric_label(r.metric) + ("↑" if higher_is_better(r.metric) else "↓")]
                + [_verdict_cell(r.results.get(g), r.metric) for g in self.groups]
                for r in self.rows]
        lines = [f"**{self.caption}**", "",
                 tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), "",
                 ("Cells: mean of A - B over seeds x images [95% CI, hierarchical bootstrap]; "
                  "`*` = significant (paired t-test over images, Holm-corrected across the row's "
                  "columns, p < 0.05, and the CI excludes 0). P(A better) per pair is in the CSV."),
                 ""]
        lines += [f"- {s}" for s in self.summaries]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:

        spec = "lll" + "c" * len(self.groups)
        head = " & ".join(_tex(h) for h in ["A", "vs B", "metric", *self.groups]) + r" \\"
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(self.caption)}}}",
                 rf"\label{{tab:{self.name}}}", r"\resizebox{\linewidth}{!}{%",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, r"\midrule"]
        for r in self.rows:
            texts = [_tex(r.a), _tex(r.b), _tex(metric_label(r.metric))]
            texts += [_tex(_verdict_cell(r.results.get(g), r.metric)) for g in self.groups]
            lines.append(" & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        rows = []
        for r in self.rows:
            for group in self.groups:
                c = r.results.get(group)
                if c is None:
                    continue
                rows.append({"a": r.a, "b": r.b, "metric": r.metric, "group": group,
                             "diff": _round(c.diff), "ci_low": _round(c.low),
                             "ci_high": _round(c.high), "p": _round(c.p),
                             "p_holm": _round(c.p_holm), "significant": c.significant,
                             "prob_improvement": _round(c.prob_improvement),
                             "n_seeds": c.n_seeds, "n_images": c.n_images})
        return pd.DataFrame(rows).to_csv(index=False, lineterminator="\n")


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


def _signed(value: float, metric: str) -> str:
    return f"{value:+.{_digits(metric)}f}".replace("-", "−")


def _verdict_cell(c: stats.Comparison | None, metric: str) -> str:
    if c is None:
        return "–"
    text = f"{_signed(c.diff, metric)} [{_signed(c.low, metric)}, {_signed(c.high, metric)}]"
    return text + ("*" if c.significant else "")


def _unit(metric: str) -> str:
    return " dB" if "psnr" in metric else ""


def summary_line(row: VerdictRow, seen: str = SEEN_SUITE) -> str:
    """One quotable sentence: how many suites A is better / worse on (and how many of those are
    significant), then the seen suite (or the average) as ``diff [CI]``."""
    suites = {g: c for g, c in row.results.items() if g != AVERAGE}
    unseen = {g: c for g, c in suites.items() if g != seen}
    pool, word = (unseen, "unseen suites") if seen in suites and unseen else (suites, "suites")
    better = [c for c in pool.values() if c.better]
    worse = [c for c in pool.values() if not c.better and c.diff != 0]
    text = (f"{row.a} vs {row.b} ({metric_label(row.metric)}): better on {len(better)} of "
            f"{len(pool)} {word}, {sum(c.significant for c in better)} significant; worse on "
            f"{len(worse)}, {sum(c.significant for c in worse)} significant")
    for name in ([seen] if seen in suites else []) + ([AVERAGE] if AVERAGE in row.results else []):
        c = row.results[name]
        label = "average" if name == AVERAGE else name
        text += (f"; {label} {_signed(c.diff, row.metric)}{_unit(row.metric)} "
                 f"[{_signed(c.low, row.metric)}, {_signed(c.high, row.metric)}]"
                 + ("*" if c.significant else ""))
    return text


def compare_rows(images: pd.DataFrame, a: dict[str, str], b: dict[str, str],
                 suites: Sequence[str], metric: str, with_average: bool = True) -> VerdictRow:
    """A vs B (row keys over SEED_KEYS columns) on ``suites`` (+ their average), Holm across
    the suites (the average is reported but not part of the Holm family)."""
    fa, fb = _rows_of(images, a), _rows_of(images, b)
    direction = bool(higher_is_better(metric))
    diffs = {s: _diff(_group_values(fa, s, suites, metric), _group_values(fb, s, suites, metric))
             for s in suites}
    results = {c.suite: c for c in stats.compare(diffs, metric, direction)}
    if with_average and len(suites) > 1 and all(s in results for s in suites):
        avg = _diff(_group_values(fa, AVERAGE, suites, metric),
                    _group_values(fb, AVERAGE, suites, metric))
        results.update({c.suite: c for c in stats.compare({AVERAGE: avg}, metric, direction)})
    return VerdictRow(row_label(a["method"], a.get("ablation", "")),
                      row_label(b["method"], b.get("ablation", "")), metric, results)


def shared_suites(images: pd.DataFrame, keys: Sequence[dict[str, str]],
                  order: Sequence[str]) -> list[str]:
    """The suites (in ``order``) that every row of ``keys`` was evaluated on."""
    sets = [set(_rows_of(images, k)["suite"]) for k in keys]
    return [s for s in order if sets and all(s in x for x in sets)]


def control_of(method: str) -> dict[str, str] | None:
    """The equal-schedule control the method YAML declares (``control: {method, ablation}``)."""
    try:
        control = registry.method_spec(method).control
    except ConfigError:
        return None
    if not control:
        return None
    return {"method": control.get("method", method), "ablation": control.get("ablation", "")}


def method_verdicts(images: pd.DataFrame, method: str, order: Sequence[str],
                    metrics: Sequence[str], profile: str) -> VerdictTable | None:
    """``method`` vs the clean baseline and vs its control, on the suites both were evaluated
    on (in ``order``). Runs trained on different data are compared with the baseline and
    control trained on the same data (where those exist)."""
    rows = []
    trained = sorted(set(_rows_of(images, {"method": method, "ablation": ""})["trained_on"]))
    for data in trained:
        full = {"method": method, "ablation": "", "trained_on": data}
        for other in [BASELINE_KEY] + ([control_of(method)] if control_of(method) else []):
            same = {**other, "trained_on": data}
            other = same if not _rows_of(images, same).empty else other
            if other["method"] == method and other["ablation"] == "" \
                    or _rows_of(images, other)["trained_on"].nunique() != 1:
                continue  # itself, absent, or ambiguous (several training sets, none this one)
            suites = shared_suites(images, [full, other], order)
            found = [compare_rows(images, full, other, suites, m) for m in metrics if suites]
            if len(trained) > 1:
                for r in found:
                    r.a += f" ({data})"
            rows += found
    rows = [r for r in rows if r.results]
    if not rows:
        return None
    groups = [g for g in [*order, AVERAGE] if any(g in r.results for r in rows)]
    summaries = [summary_line(r) for r in rows if r.metric == metrics[0]]
    return VerdictTable(f"verdict_{method}", f"Verdict for {method} ({profile} profile): "
                        f"A - B vs the clean baseline and vs its equal-schedule control.",
                        groups, rows, summaries)


def ablation_verdicts(images: pd.DataFrame, method: str, ablations: Sequence[str],
                      suites: Sequence[str], metrics: Sequence[str],
                      profile: str) -> VerdictTable | None:
    """Each ablation of ``method`` vs the full method, on the ablation table's suites."""
    full = {"method": method, "ablation": ""}
    if _rows_of(images, full).empty:
        return None
    rows = [compare_rows(images, {"method": method, "ablation": a}, full, suites, m)
            for a in ablations if a for m in metrics]
    rows = [r for r in rows if r.results]
    if not rows:
        return None
    groups = [g for g in [*suites, AVERAGE] if any(g in r.results for r in rows)]
    return VerdictTable(f"verdict_ablation_{method}", f"Ablations of {method} ({profile} "
                        f"profile): each variant A - the full method B.", groups, rows,
                        [summary_line(r) for r in rows if r.metric == metrics[0]])
