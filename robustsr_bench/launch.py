"""Launch a sweep's runs: in-process (``debug``), on this machine (``local``) or on Slurm.

Every launcher runs the same job, :class:`RunJob`, which calls ``runner.execute`` -- the function
``run`` calls -- so a run launched anywhere is the same run with the same id and record.

Dependencies (our choice, following the papers' protocol): a robust fine-tune starts from the
clean baseline of its profile and seed (``train.init: baseline`` / ``method:NAME``); that baseline
run is added to the plan (when not already finished) and submitted first, and the fine-tunes wait
on it: Slurm ``--dependency=afterok:<ids>`` with ``--kill-on-invalid-dep=yes`` (a failed baseline
cancels its dependants instead of leaving them pending forever); the local launcher starts a run
only when its dependencies are done.

Slurm: runs are grouped by their dependency set and each group is one job array (``%`` array
parallelism). :class:`RunJob` is a submitit ``Checkpointable``: on preemption or time-out Slurm
sends USR2, submitit requeues the job, and the requeued job resumes from the trainer's last
checkpoint (``train.ckpt_every``). A finished run is never redone (``summary.json`` is written
once, atomically), so a job requeued after finishing records nothing twice.

State of a sweep lives in ``<workdir>/sweeps/<name>/``: ``plan.json`` (the run ids of the last
submission), ``jobs.json`` (launcher, job id and log paths per run; only the submitting process
writes it), ``state/<run_id>.json`` (written by the job: running, or failed with the error and
log path) and ``submitit/`` (job scripts and logs). ``status`` combines these with the run records
and, for Slurm, the scheduler's own state (``sacct``), so a job killed without a chance to write
anything (out of memory, time-out without requeue) still shows as failed.

Multi-GPU: a job has one Slurm task per GPU (``tasks_per_node`` defaults to ``gpus_per_node``)
and the tasks train the run data-parallel, joining one process group through submitit's job
environment (see ``robustsr_bench.distributed``); only task 0 writes the sweep's markers and the
run's record. ``runtime.world_size`` in a sweep's ``set`` spawns that many processes inside a
``debug``/``local`` job instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import submitit
import torch

from . import distributed, sweeps, world
from . import plan as planning  # launch.plan() is the sweep's dependency order
from .errors import ConfigError, UserError
from .files import Workdir, atomic_write_text, safe_name
from .results import RunDir
from .sweeps import RunSpec

log = logging.getLogger("robustsr_bench")

LAUNCHERS = ("debug", "local", "slurm")
STATES = ("done", "running", "pending", "failed", "not submitted")
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "RESIZING"}
_SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED",
                  "SIGNALING", "PREEMPTED"}


# ---------------------------------------------------------------------------------------------
# options


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


# ---------------------------------------------------------------------------------------------
# planning


@dataclass
class Planned:
    """A run of the plan and the run ids it must wait for."""

    spec: RunSpec
    deps: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def plan(specs: Sequence[RunSpec], root: Path) -> list[Planned]:
    """The sweep's runs plus the unfinished runs they start from, dependencies first."""
    ordered: dict[str, Planned] = {}

    def visit(spec: RunSpec, chain: tuple[str, ...]) -> None:
        if spec.run_id in ordered:
            return
        if spec.run_id in chain:
            raise ConfigError(f"run {spec.run_id} depends on itself through train.init")
        deps = []
        bases = planning.dependencies(spec.config())  # the one init rule; cycles refused
        if bases:
            base = RunSpec.from_config(bases[-1])
            if not _run_dir(root, base.run_id).is_done():
                visit(base, chain + (spec.run_id,))
                deps.append(base.run_id)
        ordered[spec.run_id] = Planned(spec, deps)

    for spec in specs:
        visit(spec, ())
    return list(ordered.values())


def _run_dir(root: Path, rid: str) -> RunDir:
    return RunDir(Workdir(root).run(rid))


# ---------------------------------------------------------------------------------------------
# sweep state on disk


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


# ---------------------------------------------------------------------------------------------
# the job


def _job_log(default: Path) -> str:
    """The log a failure should point at: submitit's stderr inside a job, else ``default``."""
    try:
        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return str(default)


class RunJob(submitit.helpers.Checkpointable):
    """One run as a job. Requeued on preemption/time-out by submitit (``checkpoint`` is the
    inherited "resubmit me"); the requeued job resumes from the run's last checkpoint."""

    def __init__(self, spec: RunSpec, root: str, sweep: str, threads: int = 0):
        self.spec, self.root, self.sweep, self.threads = spec, str(root), sweep, threads

    def __call__(self) -> str:
        if getattr(self, "threads", 0):  # a job pickled before the field existed has none
            torch.set_num_threads(self.threads)
        state = SweepState(Path(self.root), self.sweep)
        rid = self.spec.run_id
        run_log = _run_dir(Path(self.root), rid).path / "train.log"
        main = distributed.env_rank() == 0  # a multi-task (multi-GPU) job: task 0 speaks for the job
        if main:
            state.mark(rid, state="running", log=_job_log(run_log), pid=os.getpid())
        try:
            world.execute(self.spec.config(), Path(self.root))
        except Exception as exc:  # SystemExit (preemption requeue) is not a failure
            if main:  # an input refused before training has no log: the error says it all
                job_log = _job_log(run_log)
                state.mark(rid, state="failed", error=f"{type(exc).__name__}: {exc}",
                           log=job_log if Path(job_log).is_file() else "")
            raise
        if main:
            state.clear_marker(rid)
        return rid


# ---------------------------------------------------------------------------------------------
# status


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
    run = _run_dir(state.root, rid)
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
                               if not _run_dir(state.root, rid).is_done()})
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


# ---------------------------------------------------------------------------------------------
# submission


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
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher '{launcher}' is unknown; valid: {', '.join(LAUNCHERS)}")
    state = SweepState(root, name)
    state.write_plan([p.run_id for p in planned])
    todo, skipped = to_launch(state, planned)
    for item in todo:
        state.clear_marker(item.run_id)
    launch: Callable[..., dict[str, str]] = {"debug": _run_debug, "local": _run_local,
                                             "slurm": _submit_slurm}[launcher]
    submitted = launch(todo, state, slurm=slurm or SlurmOptions(), parallel=parallel) if todo else {}
    return Submission(submitted, skipped)


def _job_record(launcher: str, job: Any, state: SweepState) -> dict[str, Any]:
    return {"launcher": launcher, "job_id": str(job.job_id), "folder": str(state.logs),
            "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
            "submitted": time.time()}


def _run_debug(todo: Sequence[Planned], state: SweepState, **_: Any) -> dict[str, str]:
    """In this process, one after another; a failure is recorded and the rest go on."""
    state.add_jobs({p.run_id: {"launcher": "debug", "job_id": "", "submitted": time.time()}
                    for p in todo})
    ended: dict[str, str] = {}
    for item in todo:
        failed_dep = [d for d in item.deps if ended.get(d) == "failed"]
        if failed_dep:
            state.mark(item.run_id, state="failed", error=f"dependency {failed_dep[0]} failed")
            ended[item.run_id] = "failed"
            continue
        try:
            RunJob(item.spec, str(state.root), state.dir.name)()
            ended[item.run_id] = "done"
        except Exception as exc:  # noqa: BLE001 - recorded by RunJob; the sweep goes on
            log.error("%s failed: %s", item.run_id, exc)
            log.debug("%s", traceback.format_exc())
            ended[item.run_id] = "failed"
    return {rid: "in-process" for rid in ended}


def local_threads(parallel: int) -> int:
    """torch threads per local job: the cores shared out between the ``parallel`` jobs. torch's
    default (every core in every job) oversubscribes the CPU ``parallel`` times over, and its
    OpenMP threads then wait on each other; an explicit OMP_NUM_THREADS is respected."""
    if os.environ.get("OMP_NUM_THREADS"):
        return 0
    return max(1, (os.cpu_count() or 1) // parallel)


def _run_local(todo: Sequence[Planned], state: SweepState, parallel: int,
               **_: Any) -> dict[str, str]:
    """submitit's local executor, at most ``parallel`` jobs at once, dependencies respected."""
    if parallel < 1:
        raise ConfigError(f"--parallel={parallel} is invalid; expected >= 1")
    executor = submitit.LocalExecutor(folder=str(state.logs / "%j"))
    executor.update_parameters(timeout_min=7 * 24 * 60)
    waiting, running, ended, ids = list(todo), {}, {}, {}
    while waiting or running:
        for rid, job in list(running.items()):
            if job.done():
                ended[rid] = "done" if _run_dir(state.root, rid).is_done() else "failed"
                del running[rid]
        for item in list(waiting):
            deps = [ended.get(d, "done" if _run_dir(state.root, d).is_done() else "")
                    for d in item.deps]
            if "failed" in deps:
                state.mark(item.run_id, state="failed", error="a dependency failed")
                ended[item.run_id] = "failed"
                waiting.remove(item)
            elif all(d == "done" for d in deps) and len(running) < parallel:
                job = executor.submit(RunJob(item.spec, str(state.root), state.dir.name,
                                             local_threads(parallel)))
                state.add_jobs({item.run_id: _job_record("local", job, state)})
                running[item.run_id], ids[item.run_id] = job, str(job.job_id)
                waiting.remove(item)
        time.sleep(0.2)
    return ids


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


def describe(sub: Submission) -> str:
    lines = [f"submitted {rid} ({job})" for rid, job in sub.submitted.items()]
    lines += [f"skipped   {rid} ({why})" for rid, why in sub.skipped.items()]
    lines.append(f"{len(sub.submitted)} submitted, {len(sub.skipped)} skipped")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the two commands (cli.py parses, these do)


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
    if launcher == "slurm" and wait_after:
        statuses = wait(Path(root), sweep.name)
    if launcher != "slurm" or wait_after:
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
