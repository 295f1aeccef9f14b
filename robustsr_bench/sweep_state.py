"""A sweep's state on disk and each run's status, as ``status`` and ``sweep`` show them.

State of a sweep lives in ``<workdir>/sweeps/<name>/``: ``plan.json`` (the run ids of the last
submission), ``jobs.json`` (launcher, job id and log paths per run; only the submitting process
writes it), ``state/<run_id>.json`` (written by the job: running, or failed with the error and
log path) and ``submitit/`` (Slurm's job scripts and logs; local runs' logs). ``status``
combines these with the run records and, for Slurm, the scheduler's own state (``sacct``), so a
job killed without a chance to write anything (out of memory, time-out without requeue) still shows as failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import submitit

from .errors import UserError
from .files import Workdir, atomic_write_text, safe_name
from .results import RunDir

STATES = ("done", "running", "pending", "failed", "not submitted")
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "RESIZING"}
_SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED",
                  "SIGNALING", "PREEMPTED"}


class SweepState:
    """The files of one sweep under ``<workdir>/sweeps/<name>/`` (see the module docstring)."""

    def __init__(self, root: Path, name: str):
        self.root = Path(root).resolve()
        self.dir = Workdir(self.root).sweeps / safe_name(name, "sweep name")
        self.states = self.dir / "state"
        self.logs = self.dir / "submitit"

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.dir / name).read_text())
        except FileNotFoundError:
            return None

    def plan(self) -> list[str]:
        return self.read_json("plan.json") or []

    def write_plan(self, run_ids: list[str]) -> None:
        atomic_write_text(self.dir / "plan.json", json.dumps(run_ids, indent=1))

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.read_json("jobs.json") or {}

    def add_jobs(self, jobs: dict[str, dict[str, Any]]) -> None:
        atomic_write_text(self.dir / "jobs.json",
                          json.dumps({**self.jobs(), **jobs}, indent=1, sort_keys=True))

    def marker(self, rid: str) -> dict[str, Any]:
        try:
            return json.loads((self.states / f"{rid}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def mark(self, rid: str, **info: Any) -> None:
        info.update(host=socket.gethostname(), time=time.time())
        atomic_write_text(self.states / f"{rid}.json", json.dumps(info, indent=1))

    def clear_marker(self, rid: str) -> None:
        (self.states / f"{rid}.json").unlink(missing_ok=True)


@dataclass
class RunStatus:
    run_id: str
    state: str
    job_id: str = ""
    log: str = ""
    error: str = ""


def _scheduler_states(jobs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each job's state as the launcher sees it: running, pending, failed, ended (gone without
    saying more) or unknown. Slurm is asked once for all jobs (``sacct``, through submitit)."""
    slurm = {rid: j for rid, j in jobs.items() if j.get("launcher") == "slurm"}
    watched = {rid: submitit.SlurmJob(folder=j["folder"], job_id=j["job_id"])
               for rid, j in slurm.items()}
    if watched:
        submitit.SlurmJob.watcher.update()
    out = {}
    for rid, job in jobs.items():
        if rid in watched:
            raw = watched[rid].watcher.get_state(job["job_id"], mode="cache").split()[0]
            out[rid] = ("running" if raw in _SLURM_RUNNING else "pending" if raw in _SLURM_PENDING
                        else "unknown" if raw == "UNKNOWN" else "ended" if raw == "COMPLETED"
                        else "failed")
        elif job.get("launcher") == "local":
            out[rid] = "running" if _pid_alive(job["job_id"]) else "ended"
        else:
            out[rid] = "unknown"
    return out


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def run_status(state: SweepState, rid: str, job: dict[str, Any] | None,
               sched: str = "unknown") -> RunStatus:
    """One run's state from its record, its job's marker and the scheduler (in that order)."""
    run = RunDir.for_id(rid, state.root)
    if run.is_done():
        return RunStatus(rid, "done", (job or {}).get("job_id", ""))
    marker = state.marker(rid)
    job_id = (job or {}).get("job_id", "")
    log_path = marker.get("log") or (job or {}).get("stderr", "")
    if marker.get("state") == "failed":
        return RunStatus(rid, "failed", job_id, log_path, marker.get("error", ""))
    recorded = run.read_summary()
    if recorded.get("status") == "failed" and marker.get("state") != "running":
        return RunStatus(rid, "failed", job_id, log_path, recorded.get("reason", ""))
    if job is None:
        return RunStatus(rid, "not submitted")
    if sched in ("failed", "ended") and not run.is_done():  # re-read: it may just have finished
        return RunStatus(rid, "failed", job_id, log_path, "the job ended without a result")
    if sched in ("running", "pending"):
        return RunStatus(rid, sched, job_id, log_path)
    if marker.get("state") != "running":
        return RunStatus(rid, "pending", job_id, log_path)
    return RunStatus(rid, "running", job_id, log_path)


def sweep_status(root: Path, name: str, run_ids: Sequence[str] | None = None) -> list[RunStatus]:
    state = SweepState(root, name)
    ids = list(run_ids) if run_ids is not None else state.plan()
    jobs = {rid: job for rid, job in state.jobs().items() if rid in ids}
    sched = _scheduler_states({rid: job for rid, job in jobs.items()
                               if not RunDir.for_id(rid, state.root).is_done()})
    return [run_status(state, rid, jobs.get(rid), sched.get(rid, "unknown")) for rid in ids]


def known_sweeps(root: Path) -> list[str]:
    return sorted(p.parent.name for p in Workdir(root).sweeps.glob("*/plan.json"))


def wait(root: Path, name: str, poll_s: float = 2.0, timeout_s: float | None = None,
         progress: bool = True) -> list[RunStatus]:
    """Block until no run is pending or running; a tqdm bar counts finished runs."""
    from tqdm import tqdm

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    statuses = sweep_status(root, name)
    progress = progress and sys.stderr.isatty()  # a file or pipe gets no carriage returns
    with tqdm(total=len(statuses), desc=name, unit="run", disable=not progress) as bar:
        while True:
            statuses = sweep_status(root, name)
            ended = sum(s.state in ("done", "failed") for s in statuses)
            bar.update(ended - bar.n)
            failed = sum(s.state == "failed" for s in statuses)
            bar.set_postfix_str(f"failed={failed}" if failed else "")
            if all(s.state in ("done", "failed", "not submitted") for s in statuses):
                return statuses
            if deadline is not None and time.monotonic() > deadline:
                raise UserError(f"sweep {name}: still unfinished after {timeout_s:.0f} s")
            time.sleep(poll_s)


def summarize(statuses: Iterable[RunStatus]) -> dict[str, int]:
    counts = {s: 0 for s in STATES}
    for status in statuses:
        counts[status.state] += 1
    return {k: v for k, v in counts.items() if v}


def status_table(statuses: Sequence[RunStatus]) -> str:
    """One line per run; failures carry their log path (and error, when the job wrote one)."""
    from tabulate import tabulate

    rows = [[s.run_id, s.state, s.job_id, (s.log + (f"  ({s.error})" if s.error else ""))
             if s.state == "failed" else ""] for s in statuses]
    return tabulate(rows, headers=["run", "state", "job", "log"], tablefmt="github")

