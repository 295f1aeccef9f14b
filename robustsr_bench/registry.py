"""Names -> things: methods, ablations, profiles, eval suites.

A method is registered by its YAML file, ``configs/methods/<name>.yaml``, whose ``adapter:`` line
names the class to import (``robustsr_bench.methods.rsr:RSR``; the pre-0.2 spelling
``methods.rsr:RSR`` still works with a FutureWarning). Nothing is imported until a method is used, and
nothing is discovered by file-name magic. Third-party packages register adapters through the
entry-point group ``robustsr_bench.methods``; such an adapter may carry its YAML as a
``config_file`` class attribute.

Every unknown name raises one :class:`ConfigError` line that lists the valid names.

Config folders are layered: ``--configs DIR`` / ``$ROBUSTSR_CONFIGS`` folders first, then the
built-in ``configs/`` (:func:`config_dirs`). Family files (``families/*.yaml``,
:mod:`robustsr_bench.families`) add generated suites named ``<prefix>/<family>/<severity>``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .config import (
    RunConfig,
    check,
    flatten,
    merge_layer,
    read_yaml,
    schema_for,
    to_object,
    typed_base,
)
from .data.layouts import is_registered
from .data.layouts import names as dataset_names
from .data.suite_spec import SuiteSpec
from .errors import ConfigError
from .families import expand_file
from .files import configs_dir, safe_name

ENTRY_POINT_GROUP = "robustsr_bench.methods"


CONFIGS_ENV = "ROBUSTSR_CONFIGS"
log = logging.getLogger("robustsr_bench")


# --------------------------------------------------------------------------- user config layers
# ``--configs DIR`` / ``$ROBUSTSR_CONFIGS`` (several folders, os.pathsep-separated, first wins)
# are searched before the built-in folder, file by file: a user's suites/x.yaml adds suite x (or
# shadows the built-in x, reported once) without a copy of the package's configs/.


def config_dirs() -> list[Path]:
    """The user folders of ``$ROBUSTSR_CONFIGS`` (first wins), then the built-in folder."""
    users = [Path(p).expanduser() for p in os.environ.get(CONFIGS_ENV, "").split(os.pathsep) if p]
    builtin = configs_dir()
    return [d for d in users if d.resolve() != builtin.resolve()] + [builtin]


_SHADOW_REPORTED: set[tuple[str, str]] = set()


def layered_files(folder: str) -> dict[str, Path]:
    """``<name> -> path`` of every ``<layer>/<folder>/*.yaml``; a user's file shadowing a
    built-in one is logged once per process."""
    found: dict[str, Path] = {}
    for layer in config_dirs():
        for path in sorted((layer / folder).glob("*.yaml")):
            if path.stem not in found:
                found[path.stem] = path
            elif (layer == configs_dir() and (folder, path.stem) not in _SHADOW_REPORTED
                  and found[path.stem].read_bytes() != path.read_bytes()):
                _SHADOW_REPORTED.add((folder, path.stem))
                log.warning("%s shadows the built-in %s/%s.yaml", found[path.stem], folder,
                            path.stem)
    return found


def find_config(folder: str, name: str) -> Path | None:
    """The file that defines ``name`` in ``folder`` (first layer that has it), else None."""
    return layered_files(folder).get(name)


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
    # The equal-schedule control its verdict compares against: {method, ablation} (report).
    control: dict[str, str] = field(default_factory=dict)
    # ``options: module:Class`` (the adapter's config sections, importable without torch),
    # ``none`` (the method adds none) or "" (not declared: read from the adapter)
    options: str = ""

    def load_adapter(self) -> Any:
        """Import and instantiate the adapter class named by ``adapter: module:Class``."""
        return _import_named(self.adapter, "adapter", self.source)()

    @property
    def options_declared(self) -> bool:
        """Whether the YAML names the method's config sections, so that its config can be
        built without importing the adapter (and torch)."""
        return bool(self.options)

    def load_options(self) -> type | None:
        """The dataclass of the config sections the method adds (None: it adds none)."""
        if self.options == "none":
            return None
        if self.options:
            return _import_named(self.options, "options", self.source)
        return getattr(self.load_adapter(), "options", None)


def _import_named(target: str, key: str, source: str) -> Any:
    """The object ``module:Name`` names; the old top-level ``methods`` package is accepted
    with a FutureWarning."""
    module_name, _, attr = target.partition(":")
    if module_name == "methods" or module_name.startswith("methods."):
        warnings.warn(f"{source}: {key} '{target}' uses the old top-level 'methods' package; "
                      f"write 'robustsr_bench.{target}'", FutureWarning, stacklevel=3)
        module_name = f"robustsr_bench.{module_name}"
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{source}: {key} '{target}' cannot be imported ({exc})") from None


_SPEC_KEYS = {"adapter", "options", "description", "config", "profiles", "ablations",
              "control"}


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
    control = data.get("control") or {}
    if not isinstance(control, dict) or set(control) - {"method", "ablation"}:
        raise ConfigError(f"{source}: control: must be {{method: NAME, ablation: NAME}} (either "
                          f"may be left out), got {control!r}")
    options = data.get("options") or ""
    if not isinstance(options, str) or not (options in ("", "none") or ":" in options):
        raise ConfigError(f"{source}: options: must be 'module:Class' (the method's config "
                          f"sections) or 'none', got {options!r}")
    return MethodSpec(name=name, adapter=data["adapter"], description=data.get("description", ""),
                      options=options,
                      source=source, config=dict(data.get("config") or {}),
                      profiles=dict(data.get("profiles") or {}), ablations=ablations,
                      control={k: str(v) for k, v in control.items()})


def _check_ablation_name(name: Any, source: str) -> None:
    """An ablation name becomes part of the run folder's name, so it must be safe there
    (``../x`` would escape ``runs/``) and free of ``+``, which joins ablations."""
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
def _all_specs(dirs: tuple[Path, ...]) -> dict[str, MethodSpec]:
    specs = {name: _parse_spec(name, read_yaml(p), str(p))
             for name, p in sorted(layered_files("methods").items())}
    for name, spec in _entry_point_specs().items():
        specs.setdefault(name, spec)
    return specs


def method_names() -> list[str]:
    return sorted(_all_specs(tuple(config_dirs())))


def method_spec(name: str) -> MethodSpec:
    specs = _all_specs(tuple(config_dirs()))
    if name not in specs:
        raise unknown("method", name, list(specs))
    return specs[name]


def _named_yaml(kind: str, folder: str, name: str) -> dict[str, Any]:
    path = find_config(folder, safe_name(name, kind + ' name'))
    if path is None:
        extra = sorted(_prefixes()) if folder == "suites" else []  # not 150 family suites
        raise unknown(kind, name, [*layered_files(folder), *extra])
    return read_yaml(path)


def names_in(folder: str) -> list[str]:
    names = sorted(layered_files(folder))
    return names + list(family_suites()) if folder == "suites" else names


def profile(name: str) -> dict[str, Any]:
    return _named_yaml("profile", "profiles", name)


def suite(name: str) -> dict[str, Any]:
    """A suite's spec: ``configs/suites/<name>.yaml``, or a generated family suite
    ``<prefix>/<family>/<severity>`` (:mod:`robustsr_bench.families`)."""
    if "/" in name:
        generated = family_suites()
        if name not in generated:
            if ".." in name or name.startswith("/"):
                safe_name(name, "suite name")  # raises: a path, not a family suite
            prefix = name.split("/", 1)[0] + "/"
            families = {s.rsplit("/", 1)[0] + "/*" for s in generated if s.startswith(prefix)}
            raise unknown("suite", name, sorted(families) or sorted(_prefixes()))
        return dict(generated[name])
    return _named_yaml("suite", "suites", name)


def suite_spec(name: str) -> SuiteSpec:
    """Suite ``name`` as the data layer takes it: its fields and the file that defines it."""
    fields = suite(name)
    block = fields.get("corruption")
    source = (f"{block['file']} (suite {name})" if block
              else str(find_config("suites", name) or ""))
    return SuiteSpec(name, fields, source)


def suite_specs(names: Sequence[str]) -> dict[str, SuiteSpec]:
    return {name: suite_spec(name) for name in names}


def family_suites() -> dict[str, dict[str, Any]]:
    """Every suite the family files (``families/*.yaml`` of every layer) generate, by name."""
    files = layered_files("families").values()
    return _family_suites(tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


@lru_cache(maxsize=8)
def _family_suites(files: tuple[tuple[Path, int, int], ...]) -> dict[str, dict[str, Any]]:
    """Cached per (path, mtime, size): expanding is cheap, but suites are looked up per image."""
    specs: dict[str, dict[str, Any]] = {}
    for path, _, _ in files:
        specs.update(expand_file(path))
    return specs


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
    base = typed_base(schema_for(spec.load_options()))
    return _merged(base, spec, profile_name, ablation, seed, overrides, lambda layer: layer)


def precheck_config(method: str, profile_name: str = "smoke", ablation: str = "", seed: int = 0,
                    overrides: dict[str, Any] | None = None) -> None:
    """Every input error of :func:`resolve_config` without importing torch, so that it answers
    in well under a second. A method whose YAML declares ``options:`` is resolved in full (its
    option dataclasses are torch-free); for one that does not (a plugin), the shared sections
    are checked here and its own ones by :func:`resolve_config`, which imports the adapter."""
    spec = method_spec(method)
    if spec.options_declared:
        cfg = resolve_config(method, profile_name, ablation, seed, overrides)
    else:
        shared = {f.name for f in dataclasses.fields(RunConfig)}

        def only_shared(layer: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in flatten(layer).items() if k.split(".")[0] in shared}

        cfg = _merged(typed_base(RunConfig), spec, profile_name, ablation, seed, overrides,
                      only_shared)
    for name in cfg.eval.suites:  # a misspelt suite; its ops are checked with the data layer
        suite(name)


def _merged(base: Any, spec: MethodSpec, profile_name: str, ablation: str, seed: int,
            overrides: dict[str, Any] | None, keep: Any) -> Any:
    prof = dict(profile(profile_name))
    prof.pop("description", None)
    merge_layer(base, keep(prof), str(find_config("profiles", profile_name)))
    merge_layer(base, keep(spec.config), spec.source)
    merge_layer(base, keep(spec.profiles.get(profile_name) or {}),
                f"{spec.source} (profiles.{profile_name})")
    for abl in split_ablation(spec, ablation):
        merge_layer(base, keep(abl.overrides), f"{spec.source} (ablations.{abl.name})")
    merge_layer(base, keep(overrides or {}), "--set")
    merge_layer(base, {"method": spec.name, "ablation": ablation, "profile": profile_name,
                       "seed": seed}, "run")
    cfg = to_object(base)
    # post-merge: the dataset catalogue is data, which the config schema does not import
    check(cfg.data.train in ("embedded", "folder") or is_registered(cfg.data.train), "data.train",
          cfg.data.train, f"one of: embedded, folder, {', '.join(dataset_names())}")
    cfg.eval.suites = expand_suites(cfg.eval.suites)
    return cfg


def expand_suites(names: Sequence[str]) -> list[str]:
    """``eval.suites`` with family patterns expanded: ``src/*`` (every SR-C suite),
    ``src/gaussian_noise/*``; a pattern that matches nothing is an unknown suite."""
    import fnmatch

    out: list[str] = []
    for name in names:
        if "*" not in name:
            out.append(name)
            continue
        found = [s for s in family_suites() if fnmatch.fnmatchcase(s, name)]
        if not found:
            raise ConfigError(f"eval.suites: pattern {name!r} matches no family suite; "
                              f"family prefixes: {', '.join(sorted(_prefixes())) or '(none)'}")
        out += [s for s in found if s not in out]
    return list(dict.fromkeys(out))


def _prefixes() -> set[str]:
    return {name.split("/", 1)[0] + "/*" for name in family_suites()}
