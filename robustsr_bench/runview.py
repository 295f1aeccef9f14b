"""What ``run`` does after parsing: train/evaluate one or more seeds, then print a terminal table.

The table answers the question a researcher runs the command for: is this run better than what
it started from? One block per metric, suites down the page (so it fits 100 columns at default
settings, however many suites), one column per model: bicubic, the clean baseline the method
fine-tunes from, the full method when this run is an ablation whose full run with the same
settings is finished, and the run itself. The last column is the paired difference of the run
against the most specific of those (full method, else baseline, else bicubic) with its 95% CI
over seeds x images (:mod:`.stats`); ``*`` marks a significant difference (Holm over suites).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from . import distributed, plan, registry, stats
from .errors import ConfigError
from .launch_local import run_in_process
from .metric_specs import RECORDED, metric_label
from .results import RunDir
from .sweep_plan import plan as plan_runs
from .sweeps import RunSpec
from .tables import _digits, higher_is_better
from .verdicts import AVERAGE, _diff, _group_values

_RUN_COLUMN = 12  # a longer run label is shown as "run" and spelled out above the table


@dataclass
class Column:
    """One model of the table: its label and its finished runs (one per seed)."""

    label: str
    runs: list[RunDir]


def parse_seeds(text: str | None, seed: int) -> list[int]:
    """``--seeds 0,1,2`` (or the single ``--seed``) as a list of distinct ints."""
    if not text:
        return [seed]
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is invalid; expected integers joined by commas, "
                          "e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} is invalid; expected distinct integers, e.g. 0,1,2")
    return seeds


def execute_seeds(method: str, profile: str, ablation: str, seeds: Sequence[int],
                  overrides: dict, root: Path, force: bool = False) -> list[Column] | None:
    """Run every seed as a one-node sweep: plan [baseline?, run, bicubic] per seed with the
    sweeps' planner, execute it in this process (finished runs are reused), then gather the
    comparison columns; None on ranks other than 0 of a multi-process run (rank 0 reports)."""
    configs = [registry.resolve_config(method, profile, ablation, s, overrides) for s in seeds]
    references = [plan.reference_config(cfg) for cfg in configs]
    forced = {plan.run_id(cfg) for cfg in configs} if force else set()
    planned = plan_runs([RunSpec.from_config(c) for c in [*configs, *references]], root, forced)
    run_in_process([p for p in planned if p.run_id in forced
                    or not RunDir.for_id(p.run_id, root).is_done()], root, forced)
    if distributed.env_rank() != 0:
        return None
    runs = [RunDir.for_config(cfg, root) for cfg in configs]
    columns = [Column("bicubic", [RunDir.for_config(c, root) for c in references])]
    source = plan.start_method(configs[0])
    base = [RunDir.for_config(plan.baseline_config(c, source), root)
            for c in configs] if source and source != method else []
    if base and all(r.is_done() for r in base):  # a finished run's deleted baseline: no column
        columns.append(Column(source, base))
    if ablation:
        full = [RunDir.for_config(registry.resolve_config(method, profile, "", s, overrides),
                                  root) for s in seeds]
        done = [r for r in full if r.is_done()]
        if done:
            columns.append(Column(method, done))
    label = method + (f" [{ablation}]" if ablation else "")
    if not (method == "bicubic" and runs[0].run_id == columns[0].runs[0].run_id):
        columns.append(Column(label, runs))
    return columns


def _per_image(runs: Sequence[RunDir]) -> pd.DataFrame:
    frames = [run.read_metrics().assign(seed=run.read_summary().get("seed", i))
              for i, run in enumerate(runs)]
    return pd.concat(frames, ignore_index=True)


def render(columns: Sequence[Column], metrics: Sequence[str], suites: Sequence[str]) -> str:
    """One block per recorded metric: suites (+ average) down, models across, then Δ [CI]."""
    frames = {c.label: _per_image(c.runs) for c in columns}
    run, ref = columns[-1], columns[-2] if len(columns) > 1 else None
    head = [c.label if c is not run or len(c.label) <= _RUN_COLUMN else "run" for c in columns]
    seeds = sorted({int(r.read_summary().get("seed", 0)) for r in run.runs})
    images = frames[run.label]["image"].nunique()
    lines = [(f"{run.label}: {len(seeds)} seed{'s' * (len(seeds) > 1)} "
              f"({', '.join(map(str, seeds))}) x {images} images; means over seeds and images")]
    if ref is not None:
        lines.append(f"Δ = {head[-1]} − {ref.label}, paired over seeds x images [95% CI]; "
                     f"* significant (Holm over suites)")
    recorded = set(frames[run.label]["metric"])
    for metric in [m for m in metrics if m in recorded]:
        d = _digits(metric)
        groups = [*suites, AVERAGE] if len(suites) > 1 else list(suites)
        vals = {c.label: {g: _group_values(frames[c.label], g, suites, metric)["value"]
                          for g in groups} for c in columns}
        delta = {}
        if ref is not None:
            diffs = {g: _diff(_group_values(frames[run.label], g, suites, metric),
                              _group_values(frames[ref.label], g, suites, metric))
                     for g in suites}
            direction = bool(higher_is_better(metric))
            delta = {c.suite: c for c in stats.compare(diffs, metric, direction)}
            if AVERAGE in groups:
                avg = _diff(_group_values(frames[run.label], AVERAGE, suites, metric),
                            _group_values(frames[ref.label], AVERAGE, suites, metric))
                delta.update({c.suite: c for c in stats.compare({AVERAGE: avg}, metric,
                                                                direction)})
        rows = []
        for g in groups:
            row = [g.lower() if g == AVERAGE else g]
            row += [f"{vals[c.label][g].mean():.{d}f}" if len(vals[c.label][g]) else "n/a"
                    for c in columns]
            if ref is not None:
                c = delta.get(g)
                row.append("" if c is None else f"{c.diff:+.{d}f} [{c.low:+.{d}f}, "
                           f"{c.high:+.{d}f}]{'*' if c.significant else ''}")
            rows.append(row)
        arrow = {True: "↑", False: "↓"}.get(higher_is_better(metric), "")
        headers = [f"{metric_label(metric)}{arrow}", *head] + (["Δ [95% CI]"] if ref else [])
        lines += ["", tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True,
                               colalign=["left"] + ["right"] * (len(headers) - 1))]
    lines += [f"n/a {n}" for n in _unavailable_notes(run.runs, metrics)]
    return "\n".join(lines)


def run_and_show(method: str, profile: str, ablation: str, seeds: Sequence[int],
                 overrides: dict, root: Path, force: bool = False) -> int:
    """``run``: execute, print where each run is, print the comparison table."""
    columns = execute_seeds(method, profile, ablation, seeds, overrides, root, force)
    if columns is None:
        return 0
    cfg = columns[-1].runs[0].read_config() or {}
    evaluation = cfg.get("eval") or {}
    print()
    for run in columns[-1].runs:
        print(f"run {run.run_id} -> {run.path}")
    print()
    metrics = [*evaluation.get("metrics", []), *evaluation.get("optional_metrics", []),
               "kernel_psnr"]  # where recorded (known-kernel suites); no note where not
    print(render(columns, metrics, list(evaluation.get("suites", []))))
    return 0


def _unavailable_notes(runs: Sequence[RunDir], metrics: Sequence[str]) -> list[str]:
    """Why a requested metric is n/a: the reason each run recorded (``unavailable_metrics``)."""
    notes: dict[str, str] = {}
    for run in runs:
        summary = run.read_summary()
        for metric, reason in summary.get("unavailable_metrics", {}).items():
            if metric in metrics:
                notes.setdefault(metric, f"{metric_label(metric)}: unavailable, {reason}")
        recorded = {m for values in summary.get("means", {}).values() for m in values}
        for metric in metrics:  # kernel PSNR, seconds: recorded only where they apply
            if metric not in recorded and metric not in RECORDED \
                    and metric not in summary.get("unavailable_metrics", {}):
                notes.setdefault(f"{metric} {run.run_id}", f"{metric_label(metric)}: not recorded "
                                 f"by {run.run_id} (finished before it was asked for; --force "
                                 f"recomputes)")
    return list(notes.values())
