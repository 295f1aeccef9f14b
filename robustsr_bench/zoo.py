"""The model zoo: published SR checkpoints listed in ``configs/zoo.yaml``.

An entry says what a release *is* (spandrel architecture id, scale, file name, URL, sha256,
size, licence, paper) so that ``weights fetch NAME`` can put it into the cache and refuse a file
that is not the published one, and ``evaluate NAME`` can refuse a cached file whose hash or
architecture differs. ``build`` (spandrel class + hyper-parameters) lets ``bench --zoo`` time an
architecture with random weights; it is never used to load a file (spandrel reads the
hyper-parameters from the state dict). This module only parses the file: fetching lives in
:mod:`robustsr_bench.weights`, loading and evaluating in :mod:`robustsr_bench.pretrained`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import read_yaml
from .errors import ConfigError
from .files import safe_name
from .registry import config_dirs

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("architecture", "scale", "file", "url", "sha256", "licence", "paper")
_OPTIONAL = ("sha256_source", "size", "build")
CACHE_SUBDIR = "robustsr_bench"  # $TORCH_HOME/hub/<this>/<file>, shared with `--init` files


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint (see ``configs/zoo.yaml`` for what each field means)."""

    name: str
    architecture: str
    scale: int
    file: str
    url: str
    sha256: str | None
    licence: str
    paper: str
    sha256_source: str = ""
    size: int | None = None
    build: dict[str, Any] = field(default_factory=dict, compare=False)


def zoo_paths() -> list[Path]:
    """Every ``zoo.yaml`` of the config layers, the built-in one last: a user's folder
    (``--configs`` / ``$ROBUSTSR_CONFIGS``) adds entries or replaces one of the same name."""
    return [d / "zoo.yaml" for d in config_dirs() if (d / "zoo.yaml").is_file()]


def _entry(name: str, data: Any, source: str) -> ZooEntry:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: entry '{name}' must be a mapping of fields")
    missing = [k for k in _REQUIRED if k not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown field {unknown[0]!r}"
        raise ConfigError(f"{source}: entry '{name}' {what}; fields: "
                          f"{', '.join(_REQUIRED + _OPTIONAL)}")
    sha = data["sha256"]
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ConfigError(f"{source}: {name}.sha256={sha!r} is invalid; expected 64 lower-case "
                          f"hex digits or null (no published hash)")
    if data["scale"] not in (1, 2, 3, 4, 8):
        raise ConfigError(f"{source}: {name}.scale={data['scale']!r} is invalid; expected one "
                          f"of 1, 2, 3, 4, 8")
    file = str(data["file"])
    if "/" in file or "\\" in file or file.startswith("."):
        raise ConfigError(f"{source}: {name}.file={file!r} is invalid; expected a bare file name")
    return ZooEntry(name=name, architecture=str(data["architecture"]), scale=int(data["scale"]),
                    file=file, url=str(data["url"]), sha256=sha, licence=str(data["licence"]),
                    paper=str(data["paper"]), sha256_source=str(data.get("sha256_source") or ""),
                    size=data.get("size"), build=dict(data.get("build") or {}))


def load_zoo() -> dict[str, ZooEntry]:
    """Every entry of the layered ``zoo.yaml`` files by name (a user's entry wins)."""
    entries: dict[str, ZooEntry] = {}
    for path in reversed(zoo_paths()):
        entries.update({safe_name(str(name), f"{path}: zoo name"): _entry(str(name), data,
                                                                         str(path))
                        for name, data in read_yaml(path).items()})
    return entries


def zoo_entry(name: str) -> ZooEntry | None:
    return load_zoo().get(name)
