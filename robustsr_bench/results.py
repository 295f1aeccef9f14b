"""Run records: one directory per run, written atomically, aggregated by a separate step.

``<workdir>/runs/<run_id>/`` holds ``config.yaml`` (resolved), ``metrics.csv`` (tidy: one row per
image x metric x suite), ``summary.json`` (written last: its presence with ``status: done`` is what
"finished" means), ``models/`` and ``training_states/`` (BasicSR naming), ``train.log`` and
``tb/``. Nothing is a shared mutable file, so concurrent runs cannot tear each other's records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from .config import config_hash, dump_yaml
from .errors import UserError

if TYPE_CHECKING:  # pandas is imported where used: `list` and `--help` stay instant
    import pandas as pd

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
METRIC_COLUMNS = ["run_id", "method", "ablation", "profile", "seed", "suite", "image", "metric",
                  "value"]


def workdir(override: str | os.PathLike | None = None) -> Path:
    """Where runs and caches live: ``--workdir``, else ``$ROBUSTSR_WORKDIR``, else ``./work``."""
    return Path(override or os.environ.get("ROBUSTSR_WORKDIR") or "work")


def check_workdir(root: str | os.PathLike) -> None:
    """``--workdir`` must be a writable folder, or one that can be created; checked before any
    run starts, and without leaving anything behind (a folder created to try is removed)."""
    path = Path(root)
    hint = "choose another with --workdir DIR (or $ROBUSTSR_WORKDIR)"
    if path.exists() and not path.is_dir():
        raise UserError(f"work dir {path} is a file, not a folder; {hint}")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"work dir {path} is not writable; {hint}")
        return
    created = [p for p in [path, *path.parents] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)  # exist_ok: ranks of one job check at once
    except OSError as exc:
        raise UserError(f"work dir {path} cannot be created ({exc.strerror}); {hint}") from None
    for folder in created:  # deepest first: leave the file system as it was
        try:
            folder.rmdir()
        except OSError:  # another process (a rank, a parallel job) is using it already
            break


def safe_name(name: str, what: str = "run name") -> str:
    """Refuse names that could escape the runs folder (``../x``, ``/abs``, empty)."""
    if not _SAFE.match(name) or ".." in name:
        raise UserError(f"{what} {name!r} is not allowed; use letters, digits and _ . + = - "
                        f"(no '/', no '..')")
    return name


def run_id(cfg: Any) -> str:
    """``<method>[-<ablation>]-<profile>-s<seed>-<hash8>``: readable, and unique per config.

    A fine-tune's hash also covers the run it starts from (``train.init: baseline`` or
    ``method:NAME``), so changing the baseline's schedule never reuses fine-tunes of the old one.
    """
    digest = config_hash(cfg)
    start = _start_run_id(cfg)
    if start:
        digest = hashlib.sha256(f"{digest}:{start}".encode()).hexdigest()
    parts = [cfg.method] + ([cfg.ablation] if cfg.ablation else [])
    parts += [cfg.profile, f"s{cfg.seed}", digest[:8]]
    return safe_name("-".join(parts))


def _start_run_id(cfg: Any) -> str | None:
    from .runner import baseline_config, init_method  # runner builds on this module

    source = init_method(cfg.train.init)
    return run_id(baseline_config(cfg, source)) if source else None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename.

    A crash (or a full disk) leaves the old file untouched and only a stray ``.tmp`` behind.
    ``mkstemp`` creates the file 0600 whatever the umask; it gets the mode a plain ``open``
    would give (0644 under umask 022), so colleagues can read the results as they can
    ``train.log``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == 28:
            raise UserError(f"{path}: disk full while writing; the previous file is intact") from None
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


@dataclass
class RunDir:
    """The folder of one run and the files in it."""

    path: Path

    @classmethod
    def for_config(cls, cfg: Any, root: Path) -> "RunDir":
        return cls(root / "runs" / run_id(cfg))

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
