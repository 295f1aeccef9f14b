"""Names -> things: methods, ablations, profiles, eval suites.

A method is registered by its YAML file, ``configs/methods/<name>.yaml``, whose ``adapter:`` line
names the class to import (``methods.rsr:RSR``). Nothing is imported until a method is used, and
nothing is discovered by file-name magic. Third-party packages register adapters through the
entry-point group ``robustsr_bench.methods``; such an adapter may carry its YAML as a
``config_file`` class attribute.

Every unknown name raises one :class:`ConfigError` line that lists the valid names.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .config import (
    merge_layer,
    read_yaml,
    schema_for,
    to_object,
    typed_base,
)
from .errors import ConfigError

ENTRY_POINT_GROUP = "robustsr_bench.methods"


def configs_dir() -> Path:
    """``$ROBUSTSR_CONFIGS`` or the repository's ``configs/`` folder."""
    env = os.environ.get("ROBUSTSR_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def unknown(kind: str, name: str, valid: Sequence[str]) -> ConfigError:
    return ConfigError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid)) or '(none)'}")


@dataclass(frozen=True)
class Ablation:
    """A named ablation. ``off`` lists the components it switches off, for the check-mark
    columns of ablation tables: YAML ``disables: [...]`` (not ``off:``, which YAML reads as
    ``false``), else ``no_<component>`` switches off ``<component>``."""

    name: str
    help: str
    overrides: dict[str, Any]
    off: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodSpec:
    """What a method's YAML says: adapter, defaults, per-profile values and named ablations."""

    name: str
    adapter: str
    description: str
    source: str
    config: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    ablations: dict[str, Ablation] = field(default_factory=dict)

    def load_adapter(self) -> Any:
        """Import and instantiate the adapter class named by ``adapter: module:Class``."""
        module_name, _, cls_name = self.adapter.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.source}: adapter '{self.adapter}' cannot be imported "
                              f"({exc})") from None
        return cls()


_SPEC_KEYS = {"adapter", "description", "config", "profiles", "ablations"}


def _parse_spec(name: str, data: dict[str, Any], source: str) -> MethodSpec:
    extra = set(data) - _SPEC_KEYS
    if extra:
        raise ConfigError(f"{source}: unknown key '{sorted(extra)[0]}'; valid keys: "
                          f"{', '.join(sorted(_SPEC_KEYS))}")
    if "adapter" not in data:
        raise ConfigError(f"{source}: missing 'adapter: module:Class'")
    ablations = {}
    for abl_name, abl in (data.get("ablations") or {}).items():
        _check_ablation_name(abl_name, source)
        if not isinstance(abl, dict) or "help" not in abl:
            raise ConfigError(f"{source}: ablation '{abl_name}' needs 'help:' and 'set:'")
        unknown_keys = set(abl) - {"help", "set", "disables"}
        if unknown_keys:
            raise ConfigError(f"{source}: ablation '{abl_name}': unknown key "
                              f"{sorted(map(str, unknown_keys))[0]!r}; valid: help, set, disables")
        implicit = [abl_name[3:]] if abl_name.startswith("no_") else []
        off = abl.get("disables", implicit)
        if not isinstance(off, list) or not all(isinstance(c, str) for c in off):
            raise ConfigError(f"{source}: ablation '{abl_name}': 'disables:' must be a list of "
                              f"component names, got {off!r}")
        ablations[abl_name] = Ablation(abl_name, abl["help"], dict(abl.get("set") or {}),
                                       tuple(off))
    return MethodSpec(name=name, adapter=data["adapter"], description=data.get("description", ""),
                      source=source, config=dict(data.get("config") or {}),
                      profiles=dict(data.get("profiles") or {}), ablations=ablations)


def _check_ablation_name(name: Any, source: str) -> None:
    """An ablation name becomes part of the run folder's name, so it must be safe there
    (``../x`` would escape ``runs/``) and free of ``+``, which joins ablations."""
    from .results import safe_name  # lazy: results imports pandas

    if not isinstance(name, str) or "+" in name:
        raise ConfigError(f"{source}: ablation name {name!r} is not allowed; use letters, digits "
                          f"and _ . = -")
    safe_name(name, f"{source}: ablation name")


def _entry_point_specs() -> dict[str, MethodSpec]:
    specs = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        config_file = getattr(cls, "config_file", None)
        data = read_yaml(Path(config_file)) if config_file else {}
        data.setdefault("adapter", ep.value)
        specs[ep.name] = _parse_spec(ep.name, data, f"entry point {ep.name}")
    return specs


@lru_cache(maxsize=None)
def _all_specs(root: Path) -> dict[str, MethodSpec]:
    specs = {p.stem: _parse_spec(p.stem, read_yaml(p), str(p))
             for p in sorted((root / "methods").glob("*.yaml"))}
    for name, spec in _entry_point_specs().items():
        specs.setdefault(name, spec)
    return specs


def method_names() -> list[str]:
    return sorted(_all_specs(configs_dir()))


def method_spec(name: str) -> MethodSpec:
    specs = _all_specs(configs_dir())
    if name not in specs:
        raise unknown("method", name, list(specs))
    return specs[name]


def _named_yaml(kind: str, folder: str, name: str) -> dict[str, Any]:
    from .results import safe_name  # lazy: results imports pandas

    path = configs_dir() / folder / f"{safe_name(name, kind + ' name')}.yaml"
    if not path.is_file():
        raise unknown(kind, name, names_in(folder))
    return read_yaml(path)


def names_in(folder: str) -> list[str]:
    return sorted(p.stem for p in (configs_dir() / folder).glob("*.yaml"))


def profile(name: str) -> dict[str, Any]:
    return _named_yaml("profile", "profiles", name)


def suite(name: str) -> dict[str, Any]:
    return _named_yaml("suite", "suites", name)


def split_ablation(spec: MethodSpec, ablation: str) -> list[Ablation]:
    """``"no_attack+no_distillation"`` -> the ablations, refusing unknown names and overlaps.

    Two ablations that set the same key cannot be combined: one would silently undo or repeat the
    other (``no_attack+no_pixel_attack``), which would make the run's name lie about it.
    """
    if not ablation:
        return []
    chosen: list[Ablation] = []
    for part in ablation.split("+"):
        if part not in spec.ablations:
            raise unknown(f"ablation for method '{spec.name}'", part, list(spec.ablations))
        chosen.append(spec.ablations[part])
    seen: dict[str, str] = {}
    for abl in chosen:
        for key in abl.overrides:
            if key in seen:
                raise ConfigError(f"ablations '{seen[key]}' and '{abl.name}' cannot be combined: "
                                  f"both set {key}")
            seen[key] = abl.name
    return chosen


def resolve_config(method: str, profile_name: str = "smoke", ablation: str = "", seed: int = 0,
                   overrides: dict[str, Any] | None = None) -> Any:
    """Build the typed config of one run from its names and the user's overrides."""
    spec = method_spec(method)
    adapter = spec.load_adapter()
    base = typed_base(schema_for(getattr(adapter, "options", None)))
    return _merged(base, spec, profile_name, ablation, seed, overrides, lambda layer: layer)


def precheck_config(method: str, profile_name: str = "smoke", ablation: str = "", seed: int = 0,
                    overrides: dict[str, Any] | None = None) -> None:
    """:func:`resolve_config` without importing the method's adapter (which imports torch):
    the same layers in the same order, restricted to the shared sections, so that most input
    errors answer in well under a second. The method's own sections are checked by
    :func:`resolve_config`."""
    from .config import RunConfig, flatten

    shared = {f.name for f in dataclasses.fields(RunConfig)}

    def only_shared(layer: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in flatten(layer).items() if k.split(".")[0] in shared}

    _merged(typed_base(RunConfig), method_spec(method), profile_name, ablation, seed,
            overrides, only_shared)


def _merged(base: Any, spec: MethodSpec, profile_name: str, ablation: str, seed: int,
            overrides: dict[str, Any] | None, keep: Any) -> Any:
    prof = dict(profile(profile_name))
    prof.pop("description", None)
    merge_layer(base, keep(prof), str(configs_dir() / "profiles" / f"{profile_name}.yaml"))
    merge_layer(base, keep(spec.config), spec.source)
    merge_layer(base, keep(spec.profiles.get(profile_name) or {}),
                f"{spec.source} (profiles.{profile_name})")
    for abl in split_ablation(spec, ablation):
        merge_layer(base, keep(abl.overrides), f"{spec.source} (ablations.{abl.name})")
    merge_layer(base, keep(overrides or {}), "--set")
    merge_layer(base, {"method": spec.name, "ablation": ablation, "profile": profile_name,
                       "seed": seed}, "run")
    return to_object(base)
