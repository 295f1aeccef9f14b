"""A sweep's launch order: its runs plus the unfinished runs they start from, dependencies first.

Dependencies (our choice, following the papers' protocol): a robust fine-tune starts from the
clean baseline of its profile and seed (``train.init: baseline`` / ``method:NAME``); that baseline
run is added to the plan (when not already finished) and submitted first, and the fine-tunes wait
on it. Which run starts from which is :func:`plan.dependencies` (the one init rule). A run that
only re-evaluates another planned run's training (same training hash, other suites) waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Sequence

from . import plan as planning  # plan() below is the sweep's dependency order
from .config import to_dict, training_hash
from .errors import ConfigError
from .results import RunDir
from .sweeps import RunSpec


@dataclass
class Planned:
    """A run of the plan and the run ids it must wait for."""

    spec: RunSpec
    deps: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def plan(specs: Sequence[RunSpec], root: Path, redo: Collection[str] = ()) -> list[Planned]:
    """The sweep's runs plus the unfinished runs they start from, dependencies first. A finished
    run needs nothing it started from (its baseline may be gone), unless its id is in ``redo``."""
    ordered: dict[str, Planned] = {}

    def visit(spec: RunSpec, chain: tuple[str, ...]) -> None:
        if spec.run_id in ordered:
            return
        if spec.run_id in chain:
            raise ConfigError(f"run {spec.run_id} depends on itself through train.init")
        deps = []
        bases = planning.dependencies(spec.config())  # the one init rule; cycles refused
        if RunDir.for_id(spec.run_id, root).is_done() and spec.run_id not in redo:
            bases = []
        if bases:
            base = RunSpec.from_config(bases[-1])
            if not RunDir.for_id(base.run_id, root).is_done():
                visit(base, chain + (spec.run_id,))
                deps.append(base.run_id)
        ordered[spec.run_id] = Planned(spec, deps)

    for spec in specs:
        visit(spec, ())
    _wait_for_shared_training(list(ordered.values()), root)
    return list(ordered.values())


def _wait_for_shared_training(planned: list[Planned], root: Path) -> None:
    """A run trained exactly like an earlier unfinished run of the plan (same training hash,
    other eval suites) waits for it and then evaluates its weights
    (``runner.adopt_trained_weights``): started side by side, both would train them."""
    trainer_of: dict[str, str] = {}
    for item in planned:
        if not planning.trains(item.spec.method):
            continue
        key = training_hash(to_dict(item.spec.config()))
        donor = trainer_of.setdefault(key, item.run_id)
        if donor != item.run_id and not RunDir.for_id(donor, root).is_done() \
                and donor not in item.deps:
            item.deps.append(donor)

