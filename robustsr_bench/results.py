"""Run records: one directory per run, written atomically, aggregated by a separate step.

``<workdir>/runs/<run_id>/`` holds ``config.yaml`` (resolved), ``metrics.csv`` (tidy: one row per
image x metric x suite), ``summary.json`` (written last: its presence with ``status: done`` is what
"finished" means), ``models/`` and ``training_states/`` (BasicSR naming), ``train.log`` and
``tb/``. Nothing is a shared mutable file, so concurrent runs cannot tear each other's records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .config import dump_yaml
# moved to files.py (re-exported here for callers of the old location)
from .files import (Workdir, atomic_path, atomic_write_text, check_workdir,  # noqa: F401
                    current_umask, safe_name, workdir)
from .plan import run_id  # noqa: F401  (moved to plan.py)

if TYPE_CHECKING:  # pandas is imported where used: `list` and `--help` stay instant
    import pandas as pd

METRIC_COLUMNS = ["run_id", "method", "ablation", "profile", "seed", "suite", "image", "metric",
                  "value"]


@dataclass
class RunDir:
    """The folder of one run and the files in it."""

    path: Path

    @classmethod
    def for_config(cls, cfg: Any, root: Path) -> "RunDir":
        return cls.for_id(run_id(cfg), root)

    @classmethod
    def for_id(cls, rid: str, root: Path) -> "RunDir":
        return cls(Workdir(root).run(rid))

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def is_done(self) -> bool:
        return self.read_summary().get("status") == "done"

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def read_config(self) -> dict[str, Any] | None:
        """The saved ``config.yaml`` as a dict; ``None`` when missing or not a YAML mapping."""
        try:
            cfg = yaml.safe_load((self.path / "config.yaml").read_text())
        except (FileNotFoundError, yaml.YAMLError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def write_config(self, cfg: Any) -> None:
        atomic_write_text(self.path / "config.yaml", dump_yaml(cfg))

    def write_metrics(self, frame: pd.DataFrame) -> None:
        atomic_write_text(self.path / "metrics.csv", frame.to_csv(index=False))

    def read_metrics(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.path / "metrics.csv")

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True))


def summarize(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean of every metric per suite: ``{suite: {metric: mean}}``."""
    means = frame.groupby(["suite", "metric"])["value"].mean()
    out: dict[str, dict[str, float]] = {}
    for (suite, metric), value in means.items():
        out.setdefault(str(suite), {})[str(metric)] = float(value)
    return out
