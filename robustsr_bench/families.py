"""Corruption families: one YAML file declares many suites named ``<prefix>/<family>/<severity>``.

SR-C has 20+ families x 5 severities; 100+ suite files would be unreadable and drift apart, so a
family file (``configs/families/<name>.yaml``) declares each family once and the registry expands
it into ordinary suite specs (``registry.suite("src/gaussian_noise/3")`` works like any suite)::

    prefix: src                      # suite names: src/<family>/<severity>
    description: one line
    seed: 21                         # default seed of every family (per family: seed:)
    severities: [1, 2, 3, 4, 5]
    families:
      gaussian_noise: {group: noise, corruption: gaussian_noise}             # on the LR
      camera_blur: {group: blur, corruption: defocus_blur, before_downscale: true}
      realesrgan: {group: pipelines, pipeline: realesrgan}                   # level = s / 5
      my_family: {group: digital, ops: [{op: downscale}, {op: jpeg, quality: $severity}]}
      one_shot: {group: pipelines, levels: {1: [ ...ops... ]}}               # explicit per level

``corruption`` is an ImageNet-C corruption run by ``imagecorruptions`` (op ``corrupt``), after the
benchmark's bicubic downscale unless ``before_downscale`` (a camera: blur/noise on the scene).
In ``ops`` every value ``$severity`` is replaced by the level. Every family of a file draws its
randomness from the same ``(seed, image)`` at every severity (common random numbers), so a curve
over severities compares like with like: severity 3's noise is severity 2's, scaled up.

Each expanded spec carries ``corruption: {family, group, severity, file}`` so the report can tell
them from hand-written suites and group them. Layer: above ``config``, below ``registry``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import read_yaml
from .errors import ConfigError

GROUPS = ("noise", "blur", "digital", "weather", "pipelines")
SEVERITY = "$severity"
_FILE_KEYS = {"prefix", "description", "seed", "severities", "families", "how_chosen", "score"}
SCORES = ("ce", "acceptance")  # mCE over severities, or SEAL's acceptance ratio per level
_FAMILY_KEYS = {"group", "corruption", "before_downscale", "pipeline", "ops", "levels", "seed",
                "description", "library"}


def expand_file(path: Path) -> dict[str, dict[str, Any]]:
    """Every suite spec a family file declares, by suite name; malformed files fail in one line
    naming the file and the field."""
    data = read_yaml(path)
    _check_keys(data, _FILE_KEYS, str(path))
    prefix = data.get("prefix", path.stem)
    if not isinstance(prefix, str) or not prefix or "/" in prefix:
        raise ConfigError(f"{path}: prefix: {prefix!r} is not a name; expected e.g. src")
    families = data.get("families")
    if not isinstance(families, dict) or not families:
        raise ConfigError(f"{path}: families: expected a mapping of family names to entries")
    score = data.get("score", "ce")
    if score not in SCORES:
        raise ConfigError(f"{path}: score: {score!r} is not a score; expected one of "
                          f"{', '.join(SCORES)}")
    severities = data.get("severities", [1, 2, 3, 4, 5])
    if not isinstance(severities, list) or not all(isinstance(s, int) for s in severities):
        raise ConfigError(f"{path}: severities: {severities!r} is not a list of integers")
    specs = {}
    for family, entry in families.items():
        where = f"{path}: families.{family}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with group: and corruption:/ops:")
        _check_keys(entry, _FAMILY_KEYS, where)
        group = entry.get("group")
        if group not in GROUPS:
            raise ConfigError(f"{where}.group: {group!r} is not a group; expected one of "
                              f"{', '.join(GROUPS)}")
        seed = int(entry.get("seed", data.get("seed", 0)))
        for level, ops in _levels(entry, severities, where).items():
            name = f"{prefix}/{family}/{level}"
            specs[name] = {
                "description": _describe(entry, family, level),
                "seed": seed, **ops,
                "corruption": {"family": family, "group": group, "severity": level,
                               "prefix": prefix, "file": str(path), "score": score,
                               "library": entry.get("library", _library(entry))}}
    return specs


def _check_keys(data: dict, valid: set[str], where: str) -> None:
    extra = sorted(map(str, set(data) - valid))
    if extra:
        raise ConfigError(f"{where}: unknown field '{extra[0]}'; valid: {', '.join(sorted(valid))}")


def _levels(entry: dict, severities: list[int], where: str) -> dict[int, dict[str, Any]]:
    """The suite body (``ops`` and, for pipelines, ``level``) of each severity."""
    kinds = [k for k in ("corruption", "pipeline", "ops", "levels") if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: expected exactly one of corruption, pipeline, ops, levels; "
                          f"got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    if kind == "levels":
        levels = entry["levels"]
        if not isinstance(levels, dict) or not levels:
            raise ConfigError(f"{where}.levels: expected a mapping of severity to an ops list")
        bad = [k for k in levels if not isinstance(k, int) or k < 1]
        if bad:
            raise ConfigError(f"{where}.levels: {bad[0]!r} is not a severity; expected integers "
                              f">= 1 as keys")
        return {int(k): {"ops": v} for k, v in levels.items()}
    if kind == "pipeline":
        if entry["pipeline"] != "realesrgan":
            raise ConfigError(f"{where}.pipeline: {entry['pipeline']!r} is not a pipeline; "
                              f"expected realesrgan")
        top = max(severities)
        return {s: {"ops": "realesrgan", "level": s / top} for s in severities}
    if kind == "corruption":
        corrupt = {"op": "corrupt", "name": entry["corruption"], "severity": SEVERITY}
        down = {"op": "downscale"}
        template = [corrupt, down] if entry.get("before_downscale") else [down, corrupt]
    else:
        template = entry["ops"]
        if not isinstance(template, list) or not template:
            raise ConfigError(f"{where}.ops: expected a non-empty list of ops")
    return {s: {"ops": _substitute(template, s)} for s in severities}


def _substitute(value: Any, level: int) -> Any:
    if value == SEVERITY:
        return level
    if isinstance(value, dict):
        return {k: _substitute(v, level) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, level) for v in value]
    return value


def _library(entry: dict) -> str:
    if "corruption" in entry:
        return "imagecorruptions"
    return "robustsr_bench (Real-ESRGAN pipeline)" if "pipeline" in entry else "robustsr_bench"


def _describe(entry: dict, family: str, level: int) -> str:
    text = entry.get("description")
    if text:
        return f"{text} (severity {level})"
    if "corruption" in entry:
        where = "on the HR before" if entry.get("before_downscale") else "after"
        return (f"ImageNet-C {entry['corruption']} (imagecorruptions) severity {level}, "
                f"{where} bicubic downscaling")
    return f"{family} severity {level}"
