"""Executors on this machine: ``debug`` (in this process) and ``local`` (submitit processes).

Both start a run only when the runs it starts from are done; a failed dependency fails its
dependants without starting them. Registered in ``launchers.py``.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any, Sequence

import submitit

from .errors import ConfigError
from .run_job import RunJob, _job_record
from .sweep_plan import Planned
from .sweep_state import SweepState, _run_dir

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

