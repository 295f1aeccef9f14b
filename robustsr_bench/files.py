"""File utilities every layer may use: atomic writes, file hashes, safe names, workdir paths.

A leaf module (it imports only :mod:`errors`), so that the data layer, the trainer and the
results store write files the same way without importing one another.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UserError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


def workdir(override: str | os.PathLike | None = None) -> Path:
    """Where runs and caches live: ``--workdir``, else ``$ROBUSTSR_WORKDIR``, else ``./work``."""
    return Path(override or os.environ.get("ROBUSTSR_WORKDIR") or "work")


@dataclass(frozen=True)
class Workdir:
    """The folders under a work dir, named once: ``runs/``, ``cache/suites/``, ``sweeps/``."""

    root: Path

    @property
    def runs(self) -> Path:
        return Path(self.root) / "runs"

    def run(self, run_id: str) -> Path:
        return self.runs / run_id

    @property
    def suite_cache(self) -> Path:
        return Path(self.root) / "cache" / "suites"

    @property
    def sweeps(self) -> Path:
        return Path(self.root) / "sweeps"


def safe_name(name: str, what: str = "run name") -> str:
    """Refuse names that could escape the runs folder (``../x``, ``/abs``, empty)."""
    if not _SAFE.match(name) or ".." in name:
        raise UserError(f"{what} {name!r} is not allowed; use letters, digits and _ . + = - "
                        f"(no '/', no '..')")
    return name


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename.

    A crash (or a full disk) leaves the old file untouched and only a stray ``.tmp`` behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == 28:
            raise UserError(f"{path}: disk full while writing; the previous file is intact") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
