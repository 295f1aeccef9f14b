"""The launchers ``sweep`` can use, declared once: name, help, where its executor lives.

The command line's ``--launcher`` choices and help and :func:`launch.submit` read this table.
An executor is imported only when a sweep uses it (``module:function``, like method adapters),
so parsing the command line imports neither torch nor submitit. A new launcher is one entry here
and one function with the :class:`Executor` signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigError

if TYPE_CHECKING:
    from .launch_slurm import SlurmOptions
    from .sweep_plan import Planned
    from .sweep_state import SweepState


class Executor(Protocol):
    """Starts ``todo`` (planned runs, dependencies first) of the sweep whose files ``state``
    holds; returns {run id: job id}. Every executor gets every option and reads its own."""

    def __call__(self, todo: Sequence[Planned], state: SweepState, *, slurm: SlurmOptions,
                 parallel: int) -> dict[str, str]: ...


@dataclass(frozen=True)
class Launcher:
    name: str
    help: str
    target: str  # "module:function", an :class:`Executor`
    queues: bool = False  # submitting returns while runs wait in a queue (else: when all ended)

    def executor(self) -> Executor:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


LAUNCHERS: dict[str, Launcher] = {launcher.name: launcher for launcher in (
    Launcher("debug", "in this process, one run after another",
             "robustsr_bench.launch_local:_run_debug"),
    Launcher("local", "submitit on this machine, --parallel runs at once",
             "robustsr_bench.launch_local:_run_local"),
    Launcher("slurm", "job arrays on a Slurm cluster", "robustsr_bench.launch_slurm:_submit_slurm",
             queues=True),
)}


def get(name: str) -> Launcher:
    """The launcher called ``name``; one line naming the valid ones otherwise."""
    try:
        return LAUNCHERS[name]
    except KeyError:
        raise ConfigError(f"launcher '{name}' is unknown; valid: {', '.join(LAUNCHERS)}") from None
