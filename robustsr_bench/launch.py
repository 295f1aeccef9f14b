"""Launch a sweep's runs: in-process (``debug``), on this machine (``local``) or on Slurm.

Every launcher runs the same job, :class:`run_job.RunJob`, which calls ``runner.execute``; ``run``
executes its own small plan with that job too (``launch_local.run_in_process``), so a run
launched anywhere is the same run with the same id and record.
Fine-tunes wait on the baseline they start from (``sweep_plan``): the local launchers start a run
only when its dependencies are done, Slurm jobs wait with ``afterok``.

One job per module: ``launchers`` (the registry of launcher names), ``sweep_plan`` (the order),
``sweep_state`` (files on disk, statuses), ``run_job`` (the job), ``launch_local`` (``debug``,
``local``), ``launch_slurm`` (``slurm``); here: submitting a plan and the ``sweep`` and ``status``
commands. The names below are also importable from here (the old single-module home).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import launchers, sweeps
from .launch_local import local_threads
from .launch_slurm import SlurmOptions, _dependency_groups
from .launchers import LAUNCHERS
from .run_job import RunJob
from .sweep_plan import Planned, plan
from .sweep_state import (STATES, RunStatus, SweepState, known_sweeps, run_status, status_table,
                          summarize, sweep_status, wait)

__all__ = ["LAUNCHERS", "STATES", "Planned", "RunJob", "RunStatus", "SlurmOptions",
           "Submission", "SweepState", "_dependency_groups", "describe", "known_sweeps",
           "local_threads", "plan", "run_status", "status_command", "status_table", "submit",
           "summarize", "sweep_command", "sweep_status", "to_launch", "wait"]


@dataclass
class Submission:
    """What ``sweep`` did with each run: submitted (with a job id) or skipped (and why)."""

    submitted: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def to_launch(state: SweepState, planned: Sequence[Planned]) -> tuple[list[Planned], dict[str, str]]:
    """Runs that need a job: not finished and not already pending or running somewhere."""
    todo, skipped = [], {}
    current_states = sweep_status(state.root, state.dir.name, [p.run_id for p in planned])
    for item, status in zip(planned, current_states):
        current = status.state
        if current in ("done", "running", "pending"):
            skipped[item.run_id] = current
        else:
            todo.append(item)
    return todo, skipped


def submit(planned: Sequence[Planned], root: Path, name: str, launcher: str,
           slurm: SlurmOptions | None = None, parallel: int = 2) -> Submission:
    """Launch what is not finished or in flight; ``debug``/``local`` return when all ended."""
    launch = launchers.get(launcher).executor()  # an unknown name fails before any file
    state = SweepState(root, name)
    state.write_plan([p.run_id for p in planned])
    todo, skipped = to_launch(state, planned)
    for item in todo:
        state.clear_marker(item.run_id)
    submitted = launch(todo, state, slurm=slurm or SlurmOptions(), parallel=parallel) if todo else {}
    return Submission(submitted, skipped)


def describe(sub: Submission) -> str:
    lines = [f"submitted {rid} ({job})" for rid, job in sub.submitted.items()]
    lines += [f"skipped   {rid} ({why})" for rid, why in sub.skipped.items()]
    lines.append(f"{len(sub.submitted)} submitted, {len(sub.skipped)} skipped")
    return "\n".join(lines)


def sweep_command(name: str, launcher: str, root: Path, overrides: dict[str, Any],
                  profile: str | None, slurm_cli: dict[str, Any], parallel: int, dry_run: bool,
                  wait_after: bool) -> int:
    """``sweep``: expand, plan (baselines first), skip what is finished or in flight, launch."""
    sweep = sweeps.load(name)
    planned = plan(sweeps.expand(sweep, overrides, profile), Path(root))
    if dry_run:
        for item in planned:
            after = f"  (after {', '.join(item.deps)})" if item.deps else ""
            print(f"{item.run_id}{after}")
        print(f"{len(planned)} runs in sweep {sweep.name}")
        return 0
    options = SlurmOptions.merged(sweep.slurm, slurm_cli) if launcher == "slurm" else None
    result = submit(planned, Path(root), sweep.name, launcher, options, parallel)
    print(describe(result))
    statuses = sweep_status(Path(root), sweep.name)
    queued = launchers.get(launcher).queues  # runs still wait in a queue: table on --wait
    if queued and wait_after:
        statuses = wait(Path(root), sweep.name)
    if not queued or wait_after:
        print(status_table(statuses))
    return 1 if any(s.state == "failed" for s in statuses) else 0


def status_command(name: str | None, root: Path, wait_for_end: bool,
                   timeout_s: float | None = None) -> int:
    """``status``: a table per sweep; exit 1 when a run failed."""
    names = [sweeps.load(name).name] if name else known_sweeps(Path(root))
    if not names:
        print(f"no sweeps submitted under {root}")
        return 0
    failed = False
    for sweep_name in names:
        statuses = (wait(Path(root), sweep_name, timeout_s=timeout_s) if wait_for_end
                    else sweep_status(Path(root), sweep_name))
        counts = ", ".join(f"{v} {k}" for k, v in summarize(statuses).items())
        print(f"sweep {sweep_name}: {counts or 'no runs'}")
        print(status_table(statuses))
        failed |= any(s.state == "failed" for s in statuses)
    return 1 if failed else 0

