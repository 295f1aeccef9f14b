"""Reports from run records: one tidy frame, paper-style tables, figures and ``results/``.

Layout follows the papers: the cross-dataset table is RSR's Table 2 (rows = method x training
data, columns = each metric per eval suite plus the average, best two marked), the ablation tables
are RSR's Table 1 / AND's Table 2 (one method's variants, with check marks for the components that
``no_<component>`` ablations switch off). Our choices: seeds are aggregated as mean +- sample std
(n shown); a missing cell is shown as missing with a footnote, never as zero; the average over
suites exists only where every suite is present; a cell's "best" follows the metric registry's
direction, and metrics of unknown direction are shown unmarked.

Which records count (our choice): a record is identified by (method, ablation, profile, seed,
training data). Its *training* configuration (everything but ``eval`` and ``runtime``) must equal
what ``configs/`` resolves for those names today, otherwise it is an override experiment or an
outdated run and is listed as not shown (``--include-stale`` keeps it). Records that differ only
in their eval suites are merged; where two records cover the same cell the newer one wins.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from . import registry, sweeps
from .config import to_dict, training_hash
from .errors import ConfigError, NothingToReport
from .files import atomic_write_text
# metric_label moved to metric_specs.py (re-exported here for callers of the old location)
from .metric_specs import SPECS, metric_label
from .plan import BASELINE_METHOD
from .records import copy_records, record_paths
from .results import RunDir
from .tables import (AVERAGE, PRETRAINED, ROW_KEYS, SEED_KEYS, Cell, _tex, format_cell,
                     higher_is_better, record_method, row_label)
from .verdicts import (BASELINE_KEY, BOLD_RULE, ablation_verdicts, mark_bold, method_verdicts,
                       per_image, shared_suites)

log = logging.getLogger("robustsr_bench")

NOTES = {"a": "not evaluated: the run's eval.suites lack this suite",
         "b": "metric not recorded on this suite",
         "c": "average needs every suite of the row"}


def run_label(summary: dict) -> str:
    return record_method(summary) + (f" [{summary['ablation']}]" if summary.get("ablation")
                                     else "")


# ---------------------------------------------------------------------------------------------
# metric facts


def default_metrics(present: Iterable[str]) -> list[str]:
    """Quality metrics of the registry that the records hold, in the registry's order."""
    present = set(present)
    return [m for m in SPECS if m in present]


@cache
def severity(suite: str) -> dict[str, Any] | None:
    """A suite's ``severity: {family, value, label}`` block (robustness-curve levels)."""
    try:
        block = registry.suite(suite).get("severity")
    except ConfigError:
        return None
    return block if isinstance(block, dict) and "family" in block and "value" in block else None


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class Skipped:
    """A record that is not shown, and why."""

    path: str
    reason: str


@dataclass
class Records:
    """Seed-level frame (one row per run x suite x metric, the mean over images) + what was
    left out. ``suites`` is the order in which suites first appear in the records."""

    frame: pd.DataFrame
    suites: list[str]
    skipped: list[Skipped] = field(default_factory=list)


@cache
def _current_training_hash(method: str, ablation: str, profile: str, seed: int) -> str | None:
    try:
        cfg = registry.resolve_config(method, profile, ablation, seed)
        return training_hash(to_dict(cfg))
    except ConfigError:
        return None


def _read_run(path: Path, include_stale: bool) -> tuple[pd.DataFrame | None, dict, str]:
    """The run's per-suite means and summary, or ``None`` and why it is skipped."""
    try:
        summary = json.loads((path / "summary.json").read_text())
    except FileNotFoundError:
        return None, {}, "unfinished (no summary.json)"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, {}, "summary.json is not valid JSON"
    if isinstance(summary, dict) and summary.get("status") == "failed":
        return None, {}, f"failed: {summary.get('reason') or 'no reason recorded'}"
    if not isinstance(summary, dict) or summary.get("status") != "done":
        return None, {}, f"status is {summary.get('status') if isinstance(summary, dict) else None!r}, not 'done'"
    missing = [k for k in ("method", "ablation", "profile", "seed") if k not in summary]
    if missing:
        return None, {}, f"summary.json lacks {', '.join(missing)}"
    try:
        metrics = pd.read_csv(path / "metrics.csv")
    except FileNotFoundError:
        return None, {}, "metrics.csv is missing"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return None, {}, f"metrics.csv is unreadable ({str(exc).splitlines()[0]})"
    lacking = {"suite", "metric", "value"} - set(metrics.columns)
    if lacking:
        return None, {}, f"metrics.csv lacks column(s) {', '.join(sorted(lacking))}"
    cfg = RunDir(path).read_config()
    if not include_stale:
        stale = _stale_reason(cfg, summary)
        if stale:
            return None, {}, stale
    values = pd.to_numeric(metrics["value"], errors="coerce")
    means = metrics.assign(value=values).groupby(["suite", "metric"], sort=False)["value"].mean()
    frame = means.reset_index().dropna(subset=["value"])
    evaluated_on = _evaluated_on(summary, metrics, cfg)
    return frame.assign(evaluated_on=frame["suite"].map(evaluated_on)), summary, ""


def _stale_reason(cfg: dict | None, summary: dict) -> str:
    if cfg is None:
        return "config.yaml is missing or not valid YAML"
    if summary["method"] == PRETRAINED:  # no training config: its checkpoint's sha256 names it
        return ""
    current = _current_training_hash(summary["method"], summary["ablation"] or "",
                                     summary["profile"], int(summary["seed"]))
    if current is None:
        return "its method/ablation/profile no longer resolves in configs/"
    if training_hash(cfg) != current:
        return "training config differs from configs/ (an override or an older setting)"
    return ""


def _evaluated_on(summary: dict, metrics: pd.DataFrame, cfg: dict | None) -> dict[str, str]:
    """Per suite, what the run scored it on: its record's ``eval_data`` (dataset, image count);
    for records that predate it, the images counted in ``metrics.csv`` and ``eval.images``."""
    recorded = summary.get("eval_data")
    if isinstance(recorded, dict) and recorded:
        return {suite: _images(d.get("dataset", "?"), d.get("images", "?"))
                for suite, d in recorded.items() if isinstance(d, dict)}
    source = ((cfg or {}).get("eval") or {}).get("images", "?")
    if "image" not in metrics.columns:
        return {}
    counts = metrics.groupby("suite")["image"].nunique()
    return {str(suite): _images(source, n) for suite, n in counts.items()}


def _images(source: Any, count: Any) -> str:
    return f"{source}, {count} image{'' if count == 1 else 's'}"


def load_records(root: Path, include_stale: bool = False, extra: Sequence[Path] = ()) -> Records:
    """Every finished run under ``<root>/runs`` and in the ``extra`` record folders (committed
    ``results/records/``); broken, stale and superseded ones are listed. Where two records cover
    the same cell the newer wins; a committed record counts as older than any workdir run (its
    file times are checkout times), ties broken by run id, so a clone reads what was written."""
    parts, skipped, suites = [], [], []
    for path, committed in record_paths(root, extra):
        frame, summary, reason = _read_run(path, include_stale)
        if frame is None:
            log.warning("skipping run record %s: %s", path, reason)
            skipped.append(Skipped(str(path), reason))
            continue
        ident = {"method": record_method(summary), "profile": summary["profile"]}
        ident.update(ablation=summary["ablation"] or "", seed=int(summary["seed"]),
                     trained_on=str(summary.get("trained_on", "unknown")), run_id=path.name,
                     path=str(path),
                     finished=0 if committed else (path / "summary.json").stat().st_mtime_ns)
        parts.append(frame.assign(**ident))
        suites += [s for s in summary.get("suites", []) if s not in suites]
    columns = SEED_KEYS + ["suite", "metric", "value", "evaluated_on", "run_id", "path",
                           "finished"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    frame = frame[columns].sort_values(["finished", "run_id"], kind="stable")
    kept = frame.drop_duplicates(SEED_KEYS + ["suite", "metric"], keep="last")
    for path in sorted(set(frame["path"]) - set(kept["path"])):
        skipped.append(Skipped(path, "superseded: a newer record covers all its cells"))
    suites += sorted(set(kept["suite"]) - set(suites))
    kept = kept.drop(columns="finished").sort_values(SEED_KEYS + ["suite", "metric"])
    return Records(kept.reset_index(drop=True), suites, skipped)


def sweep_runs(name: str) -> tuple[str, list[tuple[str, str, str, int]]]:
    """The sweep's name and (method, ablation, profile, seed) of every run it expands to
    (``runs:`` and ``grid:``, every profile and seed), in file order, as ``sweep`` plans them."""
    sweep = sweeps.load(name)
    return sweep.name, [(s.method, s.ablation, s.profile, s.seed) for s in sweeps.expand(sweep)]


def sweep_keys(name: str) -> set[tuple[str, str, str, int]]:
    return set(sweep_runs(name)[1])


def select(frame: pd.DataFrame, sweep: str | None = None, methods: Sequence[str] = (),
           profile: str | None = None) -> pd.DataFrame:
    """Rows of the records that a sweep / method list / profile filter keeps."""
    keep = pd.Series(True, index=frame.index)
    if sweep:
        keys = sweep_keys(sweep)
        listed = [k in keys for k in zip(frame["method"], frame["ablation"], frame["profile"],
                                          frame["seed"])]
        keep &= pd.Series(listed, index=frame.index, dtype=bool)
    if methods:  # `pretrained` also selects every pretrained:<label> row
        base = frame["method"].str.split(":").str[0]
        keep &= frame["method"].isin(list(methods)) | base.isin(list(methods))
    if profile:
        keep &= frame["profile"] == profile
    return frame[keep]


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Seeds -> mean, sample std and n per (row, suite, metric)."""
    grouped = frame.groupby(ROW_KEYS + ["suite", "metric"])["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


# ---------------------------------------------------------------------------------------------
# tables


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


def _arrow(metric: str, up: str, down: str) -> str:
    direction = higher_is_better(metric)
    return "" if direction is None else (up if direction else down)


def to_markdown(table: Table) -> str:
    headers = table.label_headers + [f"{g} {metric_label(m)}{_arrow(m, '↑', '↓')}"
                                     for g in table.groups for m in table.metrics]
    body = []
    for labels, row in zip(table.labels, table.cells):
        texts = []
        for i, cell in enumerate(row):
            text = format_cell(cell, table.metrics[i % len(table.metrics)])
            text = (f"**{text}**" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2
                    else text)
            texts.append(text if cell.mean is not None else f"–<sup>{cell.note}</sup>")
        body.append(labels + texts)
    lines = [f"**{table.caption}**", "", tabulate(body, headers=headers, tablefmt="github",
                                                  disable_numparse=True), ""]
    if table.paired:

        lines.append(f"Mean over seeds and images; ± is the sample std over seeds (where a row "
                     f"has several seeds that differ). {BOLD_RULE}; ↑ higher is better, ↓ lower "
                     f"is better.")
    else:
        lines.append("Mean over seeds (± sample std where n > 1). Best in **bold**, second best "
                     "<u>underlined</u>; ↑ higher is better, ↓ lower is better.")
    lines += [f"<sup>{k}</sup> {v}." for k, v in table.notes().items()]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    """booktabs table: grouped header with cmidrules; needs booktabs and amssymb."""
    nl, nm = len(table.label_headers), len(table.metrics)
    spec = "l" * nl + "c" * (len(table.groups) * nm)
    top = [_tex(h) for h in table.label_headers]
    rules = []
    for i, group in enumerate(table.groups):
        start = nl + i * nm + 1
        top.append(rf"\multicolumn{{{nm}}}{{c}}{{{_tex(group)}}}" if nm > 1 else _tex(group))
        rules.append(rf"\cmidrule(lr){{{start}-{start + nm - 1}}}")
    sub = [""] * nl + [_tex(metric_label(m)) + _arrow(m, r"$\uparrow$", r"$\downarrow$")
                       for _ in table.groups for m in table.metrics]
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(table.caption)}}}",
             rf"\label{{tab:{table.name}}}", r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(top) + r" \\",
             "".join(rules), " & ".join(sub) + r" \\", r"\midrule"]
    for labels, row in zip(table.labels, table.cells):
        texts = [_tex(x) for x in labels]
        for i, cell in enumerate(row):
            text = _tex(format_cell(cell, table.metrics[i % nm]))
            text = (rf"\textbf{{{text}}}" if cell.rank == 1 else rf"\underline{{{text}}}"
                    if cell.rank == 2 else text)
            texts.append(text if cell.mean is not None else rf"--$^{{{cell.note}}}$")
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    notes = [rf"$^{{{k}}}$ {_tex(v)}." for k, v in table.notes().items()]
    if notes:
        lines.append(r"\par\footnotesize " + " ".join(notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Long form: one line per cell with mean, std, n, rank and the footnote key."""
    rows = []
    for labels, row in zip(table.labels, table.cells):
        for i, cell in enumerate(row):
            rows.append({**dict(zip(table.label_headers, labels)),
                         "group": table.groups[i // len(table.metrics)],
                         "metric": table.metrics[i % len(table.metrics)],
                         "mean": _round(cell.mean), "std": _round(cell.std), "n": cell.n,
                         "rank": cell.rank, "note": NOTES.get(cell.note, "")})
    return pd.DataFrame(rows).to_csv(index=False, lineterminator="\n")


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


# ---------------------------------------------------------------------------------------------
# the whole report


REGENERATE = "python -m robustsr_bench report --workdir work --out results"


@dataclass
class ReportOptions:
    """What ``report`` shows; see ``python -m robustsr_bench report --help``."""

    sweep: str | None = None
    methods: tuple[str, ...] = ()
    profile: str = "smoke"
    metrics: tuple[str, ...] = ()
    include_stale: bool = False
    crop: tuple[int, float, float] = (96, 0.5, 0.4)
    suites: tuple[str, ...] = ()  # table and verdict columns; default: what the runs share


def _method_order(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(method, trained_on) rows: bicubic first, then test-time methods, then trained ones."""
    return sorted(set(keys), key=lambda k: (k[0] != "bicubic", k[1] != "none", k[0], k[1]))


def _ablation_order(method: str, present: Iterable[str]) -> list[str]:
    """The full method first, then its ablations in the order its YAML lists them."""
    try:
        listed = list(registry.method_spec(method).ablations)
    except ConfigError:
        listed = []
    rank = {name: i for i, name in enumerate(listed)}
    return sorted(set(present), key=lambda a: (a != "", rank.get(a.split("+")[0], len(rank)), a))


def _switched_off(method: str, ablation: str) -> set[str]:
    """Components a (``+``-joined) ablation switches off, as its YAML declares (``off:``)."""
    try:
        declared = registry.method_spec(method).ablations
    except ConfigError:
        declared = {}
    parts = [p for p in ablation.split("+") if p]
    return {c for p in parts for c in (declared[p].off if p in declared
                                       else [p[3:]] if p.startswith("no_") else [])}


@dataclass
class Report:
    """Everything one ``report`` call produces, before it is written."""

    tables: list[Any]  # Table, or verdicts.VerdictTable (renders itself)
    figures: list[tuple[str, Path]]  # (caption, PNG path relative to out)
    skipped: list[Skipped]
    profile: str
    runs: int
    shown: pd.DataFrame  # the records the filters kept (records.csv)
    eval_sets: dict[str, str] = field(default_factory=dict)  # suite -> what it was scored on


class ReportBuilder:
    """Builds the tables and figures of the records selected by ``options`` into ``out``."""

    def __init__(self, records: Records, options: ReportOptions, root: Path, out: Path,
                 draw: bool = True):
        self.opts, self.root, self.out, self.draw = options, Path(root), Path(out), draw
        self.seeds = select(records.frame, options.sweep, options.methods, options.profile)
        self.records = records
        present = self.seeds["metric"].unique()
        self.metrics = list(options.metrics) or default_metrics(present)
        from .sr_c import family_of  # SR-C family suites get their own section (sr_c.py)

        shown = {s for s in self.seeds["suite"].unique() if not family_of(s)}
        self.levelled = [s for s in records.suites if severity(s) and s in shown]
        protocol = list(options.suites) or _profile_suites(options.profile)
        self.suites = [s for s in protocol or records.suites if s in shown
                       and s not in self.levelled]
        self.extra = [] if options.suites else [
            s for s in records.suites if s in shown and s not in self.suites
            and s not in self.levelled]

        self.images = per_image(self.seeds)
        self.tables: list[Any] = []
        self.figures: list[tuple[str, Path]] = []

    def build(self) -> Report:
        if self.opts.sweep:
            self._sweep_table()
        else:
            self._cross_dataset()
            self._extra_suites()
            for method in sorted(self.seeds["method"].unique()):
                self._verdict(method)
            for method in sorted(self.seeds["method"].unique()):
                self._ablation(method)
        self._robustness()
        self._grids()
        shown = [*self.suites, *self.extra, *self.levelled]
        known = self.seeds.dropna(subset=["evaluated_on"])
        scored_on = known.groupby("suite")["evaluated_on"].unique()
        sets = {suite: "; ".join(sorted(scored_on.get(suite, ["unknown"]))) for suite in shown}
        return Report(self.tables, self.figures, self.records.skipped, self.opts.profile,
                      self.seeds["run_id"].nunique(), self.seeds, sets)

    def _labelled(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(label=[row_label(m, a) for m, a in zip(frame["method"],
                                                                     frame["ablation"])])

    def _cross_dataset(self) -> None:
        full = self.seeds[self.seeds["ablation"] == ""]
        keys = _method_order(zip(full["method"], full["trained_on"]))
        if not keys or not self.suites or not self.metrics:
            return
        rows = [{"method": m, "trained_on": t, "ablation": ""} for m, t in keys]
        table = build_table("cross_dataset", f"Cross-dataset generalisation ({self.opts.profile} "
                            f"profile): each method's full variant on every eval suite.",
                            full, rows, ["Method", "Training data"], keys, self.suites,
                            self.metrics, images=self.images)
        self.tables.append(table)
        order = [m for m, _ in keys]
        for metric in self.metrics:
            self._figure(f"{metric_label(metric)} per eval suite (full variants)",
                         "per_suite_" + metric, lambda stem, metric=metric: _figures().plot_per_suite(
                             self._labelled(full), metric, self.suites, order, stem))

    def _extra_suites(self) -> None:
        """Suites outside the profile's protocol (a method's own test sets): no average. Kernel
        PSNR is shown where recorded (known-kernel suites), unless ``--metrics`` chose."""
        data = self.seeds[self.seeds["suite"].isin(self.extra) & (self.seeds["ablation"] == "")]
        keys = _method_order(zip(data["method"], data["trained_on"]))
        metrics = list(self.metrics)
        if not self.opts.metrics and (data["metric"] == "kernel_psnr").any():
            metrics.append("kernel_psnr")
        if keys and self.extra and self.metrics:
            rows = [{"method": m, "trained_on": t, "ablation": ""} for m, t in keys]
            self.tables.append(build_table(
                "extra_suites", f"Suites outside the {self.opts.profile} profile's protocol "
                f"(evaluated by some methods only).", data, rows, ["Method", "Training data"],
                keys, self.extra, metrics, with_average=False, images=self.images))

    def _ablation(self, method: str) -> None:
        own = self.seeds[self.seeds["method"] == method]
        ablations = _ablation_order(method, own["ablation"])
        suites = (self._shared_suites([{"method": method, "ablation": a} for a in ablations])
                  or [s for s in self.suites if s in set(own["suite"])])
        if len(ablations) < 2 or not suites or not self.metrics:
            return
        off = {a: _switched_off(method, a) for a in ablations}
        components = sorted(set().union(*off.values()))
        labels = [[row_label(method, a)] + ["✗" if c in off[a] else "✓" for c in components]
                  for a in ablations]
        rows = [{"method": method, "ablation": a} for a in ablations]
        table = build_table(f"ablation_{method}", f"Ablation of {method} ({self.opts.profile} "
                            f"profile): ✓ = component on, ✗ = switched off.", own, rows,
                            ["Variant"] + [c.replace("_", " ") for c in components], labels,
                            suites, self.metrics, images=self.images)
        self.tables.append(table)

        verdict = ablation_verdicts(self.images, method, ablations, suites, self.metrics,
                                    self.opts.profile)
        if verdict:
            self.tables.append(verdict)
        averages = self._suite_averages(own, suites)
        order = [row_label(method, a) for a in ablations]
        self._figure(f"Ablation of {method}: average over suites", f"ablation_{method}",
                     lambda stem: _figures().plot_ablation(averages, self.metrics, order, stem))

    def _shared_suites(self, keys: Sequence[dict[str, str]]) -> list[str]:
        """The suites every row of ``keys`` was evaluated on: ``--suites`` if given, else the
        profile's protocol suites followed by any other (non-levelled) suite they all have."""

        order = list(self.opts.suites) or [*self.suites, *self.extra]
        return shared_suites(self.seeds, keys, order)

    def _verdict(self, method: str) -> None:
        """Verdict table of a robust method: vs the clean baseline and vs its control."""

        if method in ("bicubic", BASELINE_KEY["method"]) or not self.metrics:
            return
        order = list(self.opts.suites) or [*self.suites, *self.extra]
        verdict = method_verdicts(self.images, method, order, self.metrics, self.opts.profile)
        if verdict:
            self.tables.append(verdict)

    def _suite_averages(self, frame: pd.DataFrame,
                        suites: Sequence[str] | None = None) -> pd.DataFrame:
        """Per seed, the average over all table suites (seeds missing a suite are left out)."""
        suites = self.suites if suites is None else suites
        frame = frame[frame["suite"].isin(suites)]
        counts = frame.groupby(SEED_KEYS + ["metric"])["value"].agg(["mean", "count"])
        complete = counts[counts["count"] == len(suites)].reset_index()
        return self._labelled(complete.rename(columns={"mean": "value"}))

    def _sweep_table(self) -> None:
        name, planned = sweep_runs(self.opts.sweep or "")
        seen = set(zip(self.seeds["method"], self.seeds["ablation"]))
        order = list(dict.fromkeys((m, a) for m, a, _, _ in planned if (m, a) in seen))
        if not order or not self.suites or not self.metrics:
            return
        rows = [{"method": m, "ablation": a} for m, a in order]
        labels = [row_label(m, a) for m, a in order]
        self.tables.append(build_table(f"sweep_{name}", f"Sweep {name} ({self.opts.profile} "
                                       f"profile).", self.seeds, rows, ["Run"],
                                       [[label] for label in labels], self.suites, self.metrics,
                                       images=self.images))
        averages = self._suite_averages(self.seeds)
        self._figure(f"Sweep {name}: average over suites", f"sweep_{name}",
                     lambda stem: _figures().plot_ablation(averages, self.metrics, labels, stem))

    def _robustness(self) -> None:
        families: dict[str, list[str]] = {}
        for suite in self.levelled:
            families.setdefault(str(severity(suite)["family"]), []).append(suite)
        for family, suites in sorted(families.items()):
            suites = sorted(suites, key=lambda s: float(severity(s)["value"]))
            data = self.seeds[self.seeds["suite"].isin(suites) & (self.seeds["ablation"] == "")]
            keys = _method_order(zip(data["method"], data["trained_on"]))
            if not keys or not self.metrics:
                continue
            xlabel = str(severity(suites[0]).get("label", family))
            rows = [{"method": m, "trained_on": t, "ablation": ""} for m, t in keys]
            names = [f"{severity(s)['value']}" for s in suites]
            self.tables.append(build_table(
                f"robustness_{family}", f"Robustness to {family.replace('_', ' ')}: columns are "
                f"{xlabel} levels ({self.opts.profile} profile).", data, rows,
                ["Method", "Training data"], keys, suites, self.metrics, with_average=False,
                group_names=names, images=self.images))
            curve = self._labelled(data).assign(
                severity=[float(severity(s)["value"]) for s in data["suite"]])
            order = [m for m, _ in keys]
            self._figure(f"Robustness curve: {xlabel}", f"robustness_{family}",
                         lambda stem, c=curve, x=xlabel, o=order: _figures().plot_robustness(
                             c, self.metrics, x, o, stem))

    def _figure(self, caption: str, name: str, draw: Any) -> None:
        stem = self.out / "figures" / name
        if self.draw:
            draw(stem)
        self.figures.append((caption, stem.with_suffix(".png").relative_to(self.out)))

    def _grids(self) -> None:
        """Per (suite, image) that some shown run saved an SR output for: one comparison of the
        methods' full variants, and one of the ablations (each next to its full method)."""
        runs = self.seeds.drop_duplicates("run_id")
        methods = sorted(set(runs["method"]), key=lambda m: (m != BASELINE_METHOD, m))
        keys = [(m, a) for m in methods
                for a in _ablation_order(m, runs[runs["method"] == m]["ablation"])]
        found: dict[tuple[str, str], dict[tuple[str, str], Path]] = {}
        for method, ablation in keys:
            if method == "bicubic":  # drawn from the suite's LR input in every grid
                continue
            rows = runs[(runs["method"] == method) & (runs["ablation"] == ablation)]
            for png in sorted(Path(rows.sort_values("seed")["path"].iloc[0]).glob(
                    "images/*/*.png")):
                found.setdefault((png.parent.name, png.stem), {})[(method, ablation)] = png
        place = {s: i for i, s in enumerate(self.suites + self.extra + self.levelled)}
        for (suite, stem), by_key in sorted(
                found.items(), key=lambda kv: (place.get(kv[0][0], len(place)), kv[0])):
            ablated = {m for m, a in by_key if a}
            full = [(row_label(m, a), p) for (m, a), p in by_key.items() if not a]
            ablations = [(row_label(m, a), p) for (m, a), p in by_key.items() if m in ablated]
            for kind, panels, name in (("full variants", full, f"{suite}_{stem}"),
                                       ("ablations", ablations, f"{suite}_{stem}_ablations")):
                if not panels:
                    continue
                path = self.out / "grids" / f"{name}.png"
                if self.draw:
                    self._draw_grid(suite, stem, panels, path, kind)
                self.figures.append((f"Visual comparison ({kind}): {suite}, {stem}",
                                     path.relative_to(self.out)))

    def _draw_grid(self, suite: str, stem: str, panels: list[tuple[str, Path]],
                   path: Path, kind: str = "") -> None:
        from .data.io import load_image

        figures = _figures()
        hr, bicubic = figures.suite_pair(panels[0][1].parents[2], suite, stem, self.root)
        images = [("GT", hr), ("bicubic", bicubic)] + [(lbl, load_image(p)) for lbl, p in panels]
        title = f"{suite} / {stem}" + (f": {kind}" if kind else "")
        figures.visual_grid(images, figures.GridCrop(*self.opts.crop), title, path)


def _profile_suites(profile: str) -> list[str]:
    """The profile's ``eval.suites``: the protocol that defines the main table's columns."""
    try:
        suites = (registry.profile(profile).get("eval") or {}).get("suites") or []
    except ConfigError:
        return []
    return [str(s) for s in suites]


def _figures() -> Any:
    from . import figures

    return figures


def readme(report: Report, sections: dict[str, str]) -> str:
    """``results/README.md``: the command, every table, every figure, and what was left out."""
    lines = [f"# Reference results ({report.profile} profile)", "",
             (f"Generated from {report.runs} run records by `python -m robustsr_bench report`; "
              "do not edit by hand. Regenerate all of it with"), "", f"    {REGENERATE}", "",
             ("and check that the committed files match the records with `--check` added. "
              "Tables are also in `tables/` as LaTeX (booktabs) and CSV; figures in `figures/` "
              "as PNG and PDF."), ""]
    for table in report.tables:
        lines += [f"## {table.name.replace('_', ' ')}", "", sections[table.name]]
    if report.eval_sets:
        lines += ["## Evaluated on", "", "| suite | images scored |", "|---|---|"]
        lines += [f"| {suite} | {text} |" for suite, text in report.eval_sets.items()]
        lines.append("")
    if report.figures:
        lines += ["## Figures", ""]
        lines += [f"![{caption}]({path.as_posix()})\n\n*{caption}*\n" for caption, path in
                  report.figures]
    if report.skipped:
        lines += ["## Records not shown", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in report.skipped]
        lines.append("")
    return "\n".join(lines)


def write_report(root: Path, out: Path, options: ReportOptions, draw: bool = True,
                 records_dir: Path | None = None) -> list[Path]:
    """Write tables (md/tex/csv), figures, grids, ``records.csv`` and ``README.md`` into ``out``.

    Reads the workdir's runs and the committed records in ``records_dir`` (default
    ``<out>/records``), and copies the record files (:data:`RECORD_FILES`) of every shown workdir
    run into ``<out>/records/<run_id>/``, so what is written is a function of ``<out>/records``
    alone: a clone checks it with no workdir. Problems with workdir runs are logged; the README
    lists only those of committed records (it must not depend on one machine's workdir).
    Returns the text files written (what ``--check`` compares). Temp files a killed report left
    behind (``.<name>.*.tmp``, see ``results.atomic_path``) are removed first, so they never end
    up committed with the results.
    When no finished record matches the filters nothing is written and :class:`NothingToReport`
    names the folders searched: an empty or wrong ``--workdir`` must never replace a committed
    report with an empty one. Otherwise only the files the report regenerates are replaced,
    each atomically.
    """
    records_dir = Path(out) / "records" if records_dir is None else Path(records_dir)
    records = load_records(Path(root), options.include_stale, [records_dir])
    if select(records.frame, options.sweep, options.methods, options.profile).empty:
        skipped = f"; {len(records.skipped)} not shown (unfinished, failed or stale)" \
            if records.skipped else ""
        raise NothingToReport(f"no finished run record under {Path(root) / 'runs'} or "
                              f"{records_dir} matches "
                              f"profile={options.profile}"
                              f"{' sweep=' + options.sweep if options.sweep else ''}"
                              f"{' method=' + ','.join(options.methods) if options.methods else ''}"
                              f"{skipped}; {out} left unchanged (--workdir DIR: where the runs "
                              f"are)")
    for stray in Path(out).rglob(".*.tmp"):
        stray.unlink(missing_ok=True)
    report = ReportBuilder(records, options, Path(root), Path(out), draw).build()
    copy_records(report.shown, Path(out) / "records")
    report.skipped = [Skipped(f"records/{Path(s.path).name}", s.reason) for s in report.skipped
                      if Path(s.path).parent == records_dir]
    written: list[Path] = []
    sections = {}
    for table in report.tables:
        renders = ((to_markdown(table), to_latex(table), to_csv(table))
                   if isinstance(table, Table) else (table.markdown(), table.latex(), table.csv()))
        sections[table.name] = renders[0]
        for suffix, text in zip((".md", ".tex", ".csv"), renders):
            written.append(_write(Path(out) / "tables" / f"{table.name}{suffix}", text))
    written.append(_write(Path(out) / "records.csv", report.shown.drop(columns="path").to_csv(
        index=False, lineterminator="\n")))
    from .sr_c import report_section

    sr_c_text, sr_c_files = report_section(report.shown, Path(out), draw)
    written += sr_c_files
    written.append(_write(Path(out) / "README.md", readme(report, sections) + sr_c_text))
    return written


def _write(path: Path, text: str) -> Path:
    """Atomic, so a report killed mid-way leaves every file either old or new, never torn."""
    atomic_write_text(path, text)
    return path


TEXT_SUFFIXES = (".md", ".csv", ".tex")
OTHER_OUTPUTS = ("bench.md",)  # written into results/ by `bench`, not by `report`


def check_report(root: Path, out: Path, options: ReportOptions) -> list[str]:
    """Text outputs that differ between ``out`` and what the records produce now (sorted)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        try:
            write_report(root, fresh, options, draw=False, records_dir=Path(out) / "records")
        except NothingToReport as exc:  # name the folder the user gave, not the temp one
            raise NothingToReport(str(exc).replace(str(fresh), str(out))) from None
        names = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*")
                 if p.suffix in TEXT_SUFFIXES}
        names |= {p.relative_to(out).as_posix() for p in Path(out).rglob("*")
                  if p.suffix in TEXT_SUFFIXES} - set(OTHER_OUTPUTS)
        names = {n for n in names if not n.startswith("records/")}  # inputs, not outputs
        return sorted(n for n in names if _read(fresh / n) != _read(Path(out) / n))


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def options_from_cli(sweep: str | None, methods: Sequence[str], profile: str,
                     metrics: str | None, include_stale: bool, crop: str,
                     suites: str | None = None) -> ReportOptions:
    """Parse the ``report`` command's text arguments, with one-line errors."""
    try:
        size, cx, cy = (float(x) for x in crop.split(","))
    except ValueError:
        raise ConfigError(f"--crop {crop!r} is invalid; expected SIZE,CX,CY, e.g. 96,0.5,0.4") \
            from None
    if size < 8 or not (0 <= cx <= 1 and 0 <= cy <= 1):
        raise ConfigError(f"--crop {crop!r} is invalid; expected size >= 8 and centre in [0, 1]")
    if sweep:
        sweep_keys(sweep)  # unknown sweep names fail here, before anything is written
    names = tuple(m.strip() for m in (metrics or "").split(",") if m.strip())
    columns = tuple(x.strip() for x in (suites or "").split(",") if x.strip())
    if columns:
        from . import registry

        for suite in columns:
            registry.suite(suite)  # one line naming the unknown suite and the valid ones
    return ReportOptions(sweep, tuple(methods), profile, names, include_stale,
                         (int(size), cx, cy), columns)
