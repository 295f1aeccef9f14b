"""The one job every launcher runs: :class:`RunJob` executes a run as ``run`` does.

It calls ``world.execute`` -- what ``run`` calls -- so a run launched anywhere is the same run
with the same id and record, and it keeps the sweep's state markers (``sweep_state``).

Multi-GPU: a job has one Slurm task per GPU (``tasks_per_node`` defaults to ``gpus_per_node``)
and the tasks train the run data-parallel, joining one process group through submitit's job
environment (see ``robustsr_bench.distributed``); only task 0 writes the sweep's markers and the
run's record. ``runtime.world_size`` in a sweep's ``set`` spawns that many processes inside a
``debug``/``local`` job instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cv2
import submitit
import torch

from . import distributed, world
from .results import RunDir
from .sweep_state import SweepState
from .sweeps import RunSpec


def _job_log(default: Path) -> str:
    """The log a failure should point at: submitit's stderr inside a job, else ``default``."""
    try:
        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return str(default)


class RunJob(submitit.helpers.Checkpointable):
    """One run as a job. Requeued on preemption/time-out by submitit (``checkpoint`` is the
    inherited "resubmit me"); the requeued job resumes from the run's last checkpoint.

    ``sweep`` names the sweep whose state markers the job keeps; ``run`` executes its small plan
    with the same job and no sweep (``None``: no markers). ``force`` redoes a finished run."""

    def __init__(self, spec: RunSpec, root: str, sweep: str | None, threads: int = 0,
                 force: bool = False):
        self.spec, self.root, self.sweep, self.threads = spec, str(root), sweep, threads
        self.force = force

    def __call__(self) -> str:
        if getattr(self, "threads", 0):  # a job pickled before the field existed has none
            _limit_threads(self.threads)
        rid, root = self.spec.run_id, Path(self.root)
        state = SweepState(root, self.sweep) if self.sweep else None
        run_log = RunDir.for_id(rid, root).path / "train.log"
        main = distributed.env_rank() == 0  # a multi-task (multi-GPU) job: task 0 speaks for the job
        if main and state:
            state.mark(rid, state="running", log=_job_log(run_log), pid=os.getpid())
        try:
            world.execute(self.spec.config(), root, force=getattr(self, "force", False))
        except Exception as exc:  # SystemExit (preemption requeue) is not a failure
            if main and state:  # an input refused before training has no log: the error says it
                job_log = _job_log(run_log)
                state.mark(rid, state="failed", error=f"{type(exc).__name__}: {exc}",
                           log=job_log if Path(job_log).is_file() else "")
            raise
        if main and state:
            state.clear_marker(rid)
        return rid


def _limit_threads(threads: int) -> None:
    """torch's and OpenCV's thread pools both default to every core; a job given ``threads``
    cores keeps both to them (SSIM's filters and the corruptions run in OpenCV)."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _job_record(launcher: str, job: Any, state: SweepState) -> dict[str, Any]:
    return {"launcher": launcher, "job_id": str(job.job_id), "folder": str(state.logs),
            "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
            "submitted": time.time()}

