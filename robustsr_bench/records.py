"""Run records as files in a repository: the small text files behind every committed table.

A run folder holds checkpoints, images and logs; its *record* is the three text files a report
needs (:data:`RECORD_FILES`). ``report`` copies the records of the runs it shows into
``<out>/records/<run_id>/`` and reads that folder back next to the workdir, so the committed
``results/`` is a function of ``results/records/`` alone and a fresh clone can check it with
``report --check`` without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .files import Workdir, atomic_write_text

RECORD_FILES = ("config.yaml", "metrics.csv", "summary.json")  # summary last: "finished"


def record_paths(root: Path, extra: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(run folder, is a committed record) of ``<root>/runs/*`` and each ``extra`` folder of
    records; a run id present in both is read from the workdir (the copy is identical or older)."""
    runs = sorted(p for p in Workdir(Path(root)).runs.glob("*") if p.is_dir())
    seen = {p.name for p in runs}
    found = [(p, False) for p in runs]
    for folder in extra:
        found += [(p, True) for p in sorted(Path(folder).glob("*"))
                  if p.is_dir() and p.name not in seen]
    return found


def copy_records(shown: pd.DataFrame, dest: Path) -> list[Path]:
    """Copy the record files of every shown run that is not already in ``dest`` byte for byte
    into ``dest/<run_id>/`` (atomic per file, summary.json last); returns the folders written."""
    copied = []
    for run_id, path in sorted(set(zip(shown["run_id"], shown["path"]))):
        source, target = Path(path), Path(dest) / run_id
        if source.resolve() == target.resolve():
            continue
        texts = {n: (source / n).read_text(encoding="utf-8") for n in RECORD_FILES
                 if (source / n).is_file()}
        if all(_read(target / n) == t for n, t in texts.items()):
            continue
        for name in RECORD_FILES:
            if name in texts:
                atomic_write_text(target / name, texts[name])
        copied.append(target)
    return copied


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None
