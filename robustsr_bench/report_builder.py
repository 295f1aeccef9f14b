"""What one ``report`` call shows: the tables and figures of the selected records, in order.

:class:`ReportBuilder` picks the columns (the profile's protocol suites, other suites, severity
levels) and builds the cross-dataset, extra-suites, verdict, ablation, sweep and robustness
tables plus their figures and visual grids; writing them is ``report.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from . import registry
from .errors import ConfigError
from .metric_specs import SPECS, metric_label
from .plan import BASELINE_METHOD
from .report_records import Records, Skipped, select, sweep_runs
from .report_tables import build_table
from .tables import SEED_KEYS, row_label
from .verdicts import BASELINE_KEY, ablation_verdicts, method_verdicts, per_image, shared_suites


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
        # full variants scored on some of the table's suites (DDSR's own crop suite alone
        # belongs to the extra-suites table, not to a row of dashes here)
        full = self.seeds[(self.seeds["ablation"] == "") & self.seeds["suite"].isin(self.suites)]
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

