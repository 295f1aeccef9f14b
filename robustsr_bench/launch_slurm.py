"""The ``slurm`` executor: job arrays through submitit, with the sweep file's ``slurm:`` options.

Runs are grouped by their dependency set and each group is one job array (``%`` array
parallelism), waiting on the jobs it needs: ``--dependency=afterok:<ids>`` with
``--kill-on-invalid-dep=yes`` (a failed baseline cancels its dependants instead of leaving them
pending forever). :class:`RunJob` is a submitit ``Checkpointable``: on preemption or time-out
Slurm sends USR2, submitit requeues the job, and the requeued job resumes from the trainer's last
checkpoint (``train.ckpt_every``). A finished run is never redone (``summary.json`` is written
once, atomically), so a job requeued after finishing records nothing twice. Registered in
``launchers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import submitit

from .errors import ConfigError
from .run_job import RunJob, _job_record
from .sweep_plan import Planned
from .sweep_state import SweepState


@dataclass
class SlurmOptions:
    """Slurm settings: sweep file ``slurm:`` section, then CLI flags (later wins).

    ``time_min`` is per job; ``signal_delay_s`` is how long before the limit Slurm sends USR2 (the
    requeue signal), so it must leave room to requeue. ``tasks_per_node`` (default
    ``gpus_per_node``, at least 1): processes per job, which train the run data-parallel (one
    per GPU; set it alone for CPU processes). ``extra`` are sbatch options as
    ``--key=value`` or ``--flag``; ``setup`` are shell lines run before the job
    (``module load cuda``, ``source ~/venv/bin/activate``).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int = 4
    mem_gb: float | None = None
    time_min: int = 240
    array_parallelism: int = 64
    signal_delay_s: int = 120
    max_timeouts: int = 3
    extra: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("cpus_per_task", "time_min", "array_parallelism"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"slurm.{name}={getattr(self, name)} is invalid; expected >= 1")
        if self.gpus_per_node < 0 or self.max_timeouts < 0:
            raise ConfigError("slurm.gpus_per_node and slurm.max_timeouts must be >= 0")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise ConfigError(f"slurm.tasks_per_node={self.tasks_per_node} is invalid; "
                              f"expected >= 1")
        if not 0 < self.signal_delay_s < self.time_min * 60:
            raise ConfigError(f"slurm.signal_delay_s={self.signal_delay_s} is invalid; expected "
                              f"0 < signal_delay_s < time_min * 60 = {self.time_min * 60}")

    @classmethod
    def merged(cls, *layers: dict[str, Any]) -> "SlurmOptions":
        valid = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for layer in layers:
            for key, value in layer.items():
                if key not in valid:
                    raise ConfigError(f"unknown slurm option '{key}'; valid: "
                                      f"{', '.join(sorted(valid))}")
                if value is not None and value != []:
                    values[key] = value
        return cls(**values)

    def extra_parameters(self) -> dict[str, Any]:
        """``--key=value`` / ``--flag`` strings as submitit's ``additional_parameters``."""
        out: dict[str, Any] = {}
        for arg in self.extra:
            key, sep, value = arg.lstrip("-").partition("=")
            if not key:
                raise ConfigError(f"sbatch argument {arg!r}: expected --key=value or --flag")
            out[key.replace("-", "_")] = value if sep else True
        return out

    @property
    def tasks(self) -> int:
        """Processes per job: one per GPU (data-parallel training), unless set."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    def executor_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "timeout_min": self.time_min, "cpus_per_task": self.cpus_per_task,
            "tasks_per_node": self.tasks, "nodes": 1, "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s, "slurm_setup": list(self.setup)}
        optional = {"slurm_partition": self.partition, "slurm_account": self.account,
                    "slurm_qos": self.qos, "slurm_constraint": self.constraint,
                    "gpus_per_node": self.gpus_per_node or None,
                    "mem_gb": self.mem_gb}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


def _dependency_groups(todo: Sequence[Planned]) -> list[list[Planned]]:
    """Split into waves (a run after everything it waits for), then by identical dependencies:
    each resulting group is one job array with one ``--dependency``."""
    level: dict[str, int] = {}
    for item in todo:  # plan order puts dependencies first
        level[item.run_id] = 1 + max((level.get(d, -1) for d in item.deps), default=-1)
    groups: dict[tuple[int, tuple[str, ...]], list[Planned]] = {}
    for item in todo:
        groups.setdefault((level[item.run_id], tuple(sorted(item.deps))), []).append(item)
    return [groups[k] for k in sorted(groups)]


def _submit_slurm(todo: Sequence[Planned], state: SweepState, slurm: SlurmOptions,
                  **_: Any) -> dict[str, str]:
    """One job array per dependency group, each waiting (afterok) on the jobs it needs."""
    executor = submitit.AutoExecutor(folder=str(state.logs / "%j"), cluster="slurm",
                                     slurm_max_num_timeout=slurm.max_timeouts)
    jobs = state.jobs()
    ids: dict[str, str] = {}
    for group in _dependency_groups(todo):
        needed = sorted({ids.get(d) or jobs.get(d, {}).get("job_id", "")
                         for item in group for d in item.deps} - {""})
        extra = slurm.extra_parameters()
        if needed:
            extra.update(dependency="afterok:" + ":".join(needed), kill_on_invalid_dep="yes")
        executor.update_parameters(name=f"rsr-{state.dir.name}", slurm_additional_parameters=extra,
                                   **slurm.executor_parameters())
        with executor.batch():
            submitted = [executor.submit(RunJob(p.spec, str(state.root), state.dir.name))
                         for p in group]
        records = {p.run_id: _job_record("slurm", job, state) for p, job in zip(group, submitted)}
        state.add_jobs(records)
        ids.update({rid: rec["job_id"] for rid, rec in records.items()})
    return ids

