"""The report's data: every finished run record read into one tidy frame, and what is left out.

Which records count (our choice): a record is identified by (method, ablation, profile, seed,
training data). Its *training* configuration (everything but ``eval`` and ``runtime``) must equal
what ``configs/`` resolves for those names today, otherwise it is an override experiment or an
outdated run and is listed as not shown (``--include-stale`` keeps it). Records that differ only
in their eval suites are merged; where two records cover the same cell the newer one wins.

Where the record files are and how they are copied is ``records.py``; this module reads them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from . import registry, sweeps
from .config import to_dict, training_hash
from .errors import ConfigError
from .records import record_paths
from .results import RunDir
from .tables import PRETRAINED, ROW_KEYS, SEED_KEYS, record_method

log = logging.getLogger("robustsr_bench")


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


def _current_training_hash(method: str, ablation: str, profile: str, seed: int) -> str | None:
    """The training hash ``configs/`` gives this run today; cached per config layers, so a
    process that changes ``$ROBUSTSR_CONFIGS`` (a test, a notebook) never reads another
    layering's answer."""
    layers = tuple(str(d) for d in registry.config_dirs())
    return _training_hash_in(layers, method, ablation, profile, seed)


@cache
def _training_hash_in(layers: tuple[str, ...], method: str, ablation: str, profile: str,
                      seed: int) -> str | None:
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

