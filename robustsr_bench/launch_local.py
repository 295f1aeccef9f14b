"""Executors on this machine: ``debug`` (in this process) and ``local`` (one process per run).

Both start a run only when the runs it starts from are done; a failed dependency fails its
dependants without starting them. Registered in ``launchers.py``.

A ``local`` run is a fresh process (its own seeds, thread pools and memory, as a Slurm job has),
forked from a server process that imported torch, pyiqa and the harness once: a process started
from scratch spends ~6 s of CPU importing them before its first step, which on the 72 short runs
of the reference sweep was ~7 of its ~84 CPU-minutes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

from . import runner
from .distributed import process_group
from .errors import ConfigError
from .results import RunDir
from .run_job import RunJob, _job_record
from .sweep_plan import Planned
from .sweep_state import SweepState

log = logging.getLogger("robustsr_bench")


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


def run_in_process(todo: Sequence[Planned], root: Path, force: Collection[str] = ()) -> None:
    """``run``'s small plan ([baseline?, run, bicubic], dependencies first) executed as the debug
    launcher executes a sweep's: the same :class:`RunJob` per run, one after another in this
    process, but without sweep markers and stopping at the first failure, whose error is the
    command's. Every run's inputs are checked before the first starts, so a missing file fails
    before the baseline trains for hours. ``force`` names the run ids to redo if finished."""
    configs = [item.spec.config() for item in todo]
    for cfg in configs:
        runner.preflight(cfg, root)
    if not configs:
        return
    runtime = configs[0].runtime  # torchrun's ranks join their group once, for every run
    with process_group(runtime.device, runtime.dist_timeout_min):
        for item in todo:
            RunJob(item.spec, str(root), sweep=None, force=item.run_id in force)()


def local_threads(parallel: int) -> int:
    """torch threads per local job: the cores shared out between the ``parallel`` jobs. torch's
    default (every core in every job) oversubscribes the CPU ``parallel`` times over, and its
    OpenMP threads then wait on each other; an explicit OMP_NUM_THREADS is respected."""
    if os.environ.get("OMP_NUM_THREADS"):
        return 0
    return max(1, (os.cpu_count() or 1) // parallel)


# imported once by the server every local run is forked from (``multiprocessing`` skips any that
# fails to import; the run then imports it itself)
PRELOAD = ["robustsr_bench.run_job", "pyiqa"]


@dataclass(frozen=True)
class _LogPaths:
    stdout: Path
    stderr: Path


class LocalJob:
    """One run in a process forked from the preloaded server; its output goes to two log files.
    Has what the sweep records of a job: ``job_id`` (the pid), ``paths``, ``done()``."""

    def __init__(self, job: RunJob, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = _LogPaths(folder / "log.out", folder / "log.err")
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        self.process = ctx.Process(target=_run_logged, args=(job, self.paths), daemon=False)
        self.process.start()

    @property
    def job_id(self) -> str:
        return str(self.process.pid)

    def done(self) -> bool:
        return not self.process.is_alive()

    def cancel(self) -> None:
        """SIGINT, as submitit's local jobs are cancelled: the run stops and keeps its last
        checkpoint, and the next sweep resumes it."""
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGINT)


def _run_logged(job: RunJob, paths: _LogPaths) -> None:
    """The child's body: stdout/stderr to the job's log files, then the run. SIGINT raises
    KeyboardInterrupt here even when the sweep was started with it ignored (``nohup ... &``,
    whose disposition the fork inherits), so that :meth:`LocalJob.cancel` always works."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd, path in ((1, paths.stdout), (2, paths.stderr)):
        with open(path, "ab", buffering=0) as f:
            os.dup2(f.fileno(), fd)
    job()


def _run_local(todo: Sequence[Planned], state: SweepState, parallel: int,
               **_: Any) -> dict[str, str]:
    """At most ``parallel`` runs at once, each in its own preloaded process, dependencies
    respected. Stopping the sweep (Ctrl-C) stops its running jobs."""
    if parallel < 1:
        raise ConfigError(f"--parallel={parallel} is invalid; expected >= 1")
    waiting, running, ended, ids = list(todo), {}, {}, {}
    try:
        while waiting or running:
            for rid, job in list(running.items()):
                if job.done():
                    ended[rid] = "done" if RunDir.for_id(rid, state.root).is_done() else "failed"
                    del running[rid]
            for item in list(waiting):
                deps = [ended.get(d, "done" if RunDir.for_id(d, state.root).is_done() else "")
                        for d in item.deps]
                if "failed" in deps:
                    state.mark(item.run_id, state="failed", error="a dependency failed")
                    ended[item.run_id] = "failed"
                    waiting.remove(item)
                elif all(d == "done" for d in deps) and len(running) < parallel:
                    job = LocalJob(RunJob(item.spec, str(state.root), state.dir.name,
                                          local_threads(parallel)),
                                   state.logs / f"{item.run_id}.{time.time_ns()}")
                    state.add_jobs({item.run_id: _job_record("local", job, state)})
                    running[item.run_id], ids[item.run_id] = job, job.job_id
                    waiting.remove(item)
            time.sleep(0.2)
    finally:
        for job in running.values():
            job.cancel()
    return ids
