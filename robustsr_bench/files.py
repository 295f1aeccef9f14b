"""File utilities every layer may use: atomic writes, file hashes, safe names, workdir paths.

A leaf module (it imports only :mod:`errors`), so that the data layer, the trainer and the
results store write files the same way without importing one another.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UserError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


def configs_dir() -> Path:
    """The built-in ``configs/`` shipped inside the package (user folders are layered over it:
    ``registry.config_dirs``).

    The package's ``configs`` is package data (in the source tree a link to the repository's
    top-level ``configs/``), so a wheel installed anywhere finds its profiles and suites.
    """
    shipped = importlib.resources.files("robustsr_bench") / "configs"
    if not isinstance(shipped, Path):  # a zip import: the YAML files need a real folder
        raise UserError("robustsr_bench is installed as a zip; set ROBUSTSR_CONFIGS to a "
                        "copy of its configs/ folder")
    return shipped


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


def current_umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_workdir(root: str | os.PathLike) -> None:
    """``--workdir`` must be a writable folder, or one that can be created; checked before any
    run starts, and without touching the path itself: the ranks of one job check at once, so a
    trial folder one of them created and removed would be a moving target for the others. A
    missing work dir is tried by creating (and removing) a uniquely named folder in its deepest
    existing parent, which is what creating it would need."""
    path = Path(root)
    hint = "choose another with --workdir DIR (or $ROBUSTSR_WORKDIR)"
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"work dir {path} is not writable; {hint}")
        return
    if path.exists():
        raise UserError(f"work dir {path} is a file, not a folder; {hint}")
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise UserError(f"work dir {path} cannot be created ({parent} is a file); {hint}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".robustsr-try-", dir=parent))
    except OSError as exc:
        raise UserError(f"work dir {path} cannot be created ({exc.strerror}); {hint}") from None
