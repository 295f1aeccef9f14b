"""Sweep files: a named set of runs, expanded to the exact configs (and run ids) ``run`` uses.

``configs/sweeps/<name>.yaml``::

    name: rsr_table1                 # defaults to the file name
    description: one line or more
    profile: smoke                   # or profiles: [smoke, paper]
    seeds: [0, 1, 2]
    set: {train.iters: 1000}         # optional, applied to every run
    runs:                            # explicit runs ...
      - {method: esrgan, ablation: ""}
      - {method: rsr, ablation: eps12, set: {attack.iters: 4}}
    grid:                            # ... and/or a grid: methods x ablations x overrides
      methods: [rsr, bapd]
      ablations: ["", no_attack]     # or per method: {rsr: ["", eps12], bapd: [no_attack]}
      overrides: [{}, {train.lr: 1.0e-4}]
    slurm: {partition: gpu, gpus_per_node: 1, time_min: 240}   # launcher defaults (launch_slurm.py)
    include: [smoke_benchmark, sr_c]  # other sweeps' runs, each with its own profile/seeds/set

Every entry is crossed with every seed and profile. Override layers, later wins: sweep ``set``,
the run's ``set``/grid override, the CLI's ``--set``. Runs that resolve to the same run id are
listed once (first wins). ``include`` puts other sweeps' runs first, each expanded with its own
profiles, seeds and ``set`` (the CLI's ``--set``/``--profile`` apply to all): one plan, one pool of
workers, so a machine stays busy across what would be several sweeps (``reference`` = the
committed benchmark, its robustness curves and SR-C). Our choice: the format extends the existing ``runs:`` files rather than
adopting Hydra's sweeper syntax, so the report's ``--sweep`` filter keeps reading them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import registry
from .config import flatten, read_yaml, to_dict
from .errors import ConfigError
from .plan import run_id

_KEYS = {"name", "description", "profile", "profiles", "seeds", "set", "runs", "grid", "slurm",
         "include"}
_RUN_KEYS = {"method", "ablation", "set"}
_GRID_KEYS = {"methods", "ablations", "overrides"}
# Fields that ``resolve_config`` takes as arguments, so they never travel as overrides.
_NAME_FIELDS = ("method", "ablation", "profile", "seed")


@dataclass(frozen=True)
class Entry:
    """One line of a sweep before seeds and profiles are crossed in."""

    method: str
    ablation: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """Everything a job needs to rebuild one run's config in another process.

    ``values`` is the whole resolved config flattened, so the job runs exactly what was planned
    even if ``configs/`` changes between submission and start (checked through ``run_id``).
    """

    run_id: str
    method: str
    ablation: str
    profile: str
    seed: int
    values: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: Any) -> "RunSpec":
        values = {k: v for k, v in flatten(to_dict(cfg)).items()
                  if k.split(".")[0] not in _NAME_FIELDS}
        return cls(run_id(cfg), cfg.method, cfg.ablation, cfg.profile, cfg.seed, values)

    def config(self) -> Any:
        cfg = registry.resolve_config(self.method, self.profile, self.ablation, self.seed,
                                      self.values)
        if run_id(cfg) != self.run_id:
            raise ConfigError(f"run {self.run_id}: its config now resolves to {run_id(cfg)}; "
                              f"the method's options changed since submission, submit again")
        return cfg


@dataclass
class Sweep:
    name: str
    description: str
    profiles: list[str]
    seeds: list[int]
    overrides: dict[str, Any]
    entries: list[Entry]
    slurm: dict[str, Any]
    source: str
    includes: list["Sweep"] = field(default_factory=list)


def sweep_path(name_or_path: str) -> Path:
    """A sweep name (``configs/sweeps/<name>.yaml``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    found = registry.find_config("sweeps", name_or_path)
    if found is None:
        raise registry.unknown("sweep", name_or_path, registry.names_in("sweeps"))
    return found


def _check_keys(data: Mapping[str, Any], valid: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    extra = set(data) - valid
    if extra:
        raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'; valid keys: "
                          f"{', '.join(sorted(valid))}")


def _as_list(value: Any, where: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: an empty list makes the sweep empty")
    return items


def _grid_entries(grid: Mapping[str, Any], where: str) -> list[Entry]:
    _check_keys(grid, _GRID_KEYS, where)
    if "methods" not in grid:
        raise ConfigError(f"{where}: needs 'methods: [...]'")
    methods = _as_list(grid["methods"], f"{where}.methods")
    ablations = grid.get("ablations", [""])
    overrides = _as_list(grid.get("overrides", [{}]), f"{where}.overrides")
    entries = []
    for method in methods:
        mine = ablations.get(method, [""]) if isinstance(ablations, Mapping) else ablations
        for ablation, over in itertools.product(_as_list(mine, f"{where}.ablations"), overrides):
            entries.append(Entry(method, ablation or "", dict(over or {})))
    return entries


def load(name_or_path: str, _within: tuple[str, ...] = ()) -> Sweep:
    """Parse a sweep file (and the sweeps it includes); every mistake is one line naming the
    file and key."""
    path = sweep_path(name_or_path)
    where = str(path)
    if where in _within:
        raise ConfigError(f"{where}: includes itself (through {' -> '.join(_within)})")
    data = read_yaml(path)
    _check_keys(data, _KEYS, where)
    includes = [load(str(name), _within + (where,))
                for name in _as_list(data["include"], f"{where}: include")] \
        if "include" in data else []
    entries = []
    for i, run in enumerate(data.get("runs") or []):
        _check_keys(run, _RUN_KEYS, f"{where}: runs[{i}]")
        if "method" not in run:
            raise ConfigError(f"{where}: runs[{i}] needs 'method:'")
        entries.append(Entry(run["method"], run.get("ablation") or "", dict(run.get("set") or {})))
    if data.get("grid"):
        entries += _grid_entries(data["grid"], f"{where}: grid")
    if not entries and not includes:
        raise ConfigError(f"{where}: lists no runs; add 'runs:', 'grid:' or 'include:'")
    profiles = data.get("profiles", data.get("profile", "smoke"))
    return Sweep(name=data.get("name") or path.stem, description=data.get("description", ""),
                 profiles=[str(p) for p in _as_list(profiles, f"{where}: profiles")],
                 seeds=[int(s) for s in _as_list(data.get("seeds", [0]), f"{where}: seeds")],
                 overrides=dict(data.get("set") or {}), entries=entries,
                 slurm=dict(data.get("slurm") or {}), source=where, includes=includes)


def expand(sweep: Sweep, overrides: Mapping[str, Any] | None = None,
           profile: str | None = None) -> list[RunSpec]:
    """Every run of the sweep as a :class:`RunSpec`, in file order, without duplicates.

    ``profile`` replaces the file's profiles (e.g. try a paper sweep on ``smoke`` first).
    """
    specs: dict[str, RunSpec] = {}
    for part in sweep.includes:
        for spec in expand(part, overrides, profile):
            specs.setdefault(spec.run_id, spec)
    profiles = [profile] if profile else sweep.profiles
    for entry, prof, seed in itertools.product(sweep.entries, profiles, sweep.seeds):
        layers = {**flatten(sweep.overrides), **flatten(dict(entry.overrides)),
                  **flatten(dict(overrides or {}))}
        cfg = registry.resolve_config(entry.method, prof, entry.ablation, seed, layers)
        spec = RunSpec.from_config(cfg)
        specs.setdefault(spec.run_id, spec)
    return list(specs.values())


def names() -> list[str]:
    return registry.names_in("sweeps")


def keys(specs: Iterable[RunSpec]) -> set[tuple[str, str, str, int]]:
    """(method, ablation, profile, seed) of each run, the identity the report filters by."""
    return {(s.method, s.ablation, s.profile, s.seed) for s in specs}
