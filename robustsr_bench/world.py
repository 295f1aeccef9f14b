"""One run over its world size: in this process, in a launcher's group, or spawned here.

Moved out of :mod:`distributed` (the training loop's process-group helpers) because it calls
:mod:`runner`, which sits above the loops.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from . import runner
from .distributed import env_world_size, free_port, local_batch, process_group, wanted_world_size
from .errors import ConfigError, UserError
from .results import RunDir
from .sweeps import RunSpec
from .trainer import check_device

log = logging.getLogger("robustsr_bench")


def execute(cfg: Any, root: Path, force: bool = False) -> Any:
    """``runner.execute`` over the run's world size: in this process, in the group a launcher
    started, or in ``runtime.world_size`` processes spawned here. Returns the run's directory
    on rank 0 and None on the other ranks (which must not report)."""
    check_device(cfg.runtime.device)  # before any process group or spawned rank needs it
    world = wanted_world_size(cfg)
    if world > 1:
        local_batch(cfg.train.batch_size, world)
    if world > 1 and env_world_size() <= 1:
        return spawn(cfg, root, force, world)
    with process_group(cfg.runtime.device, cfg.runtime.dist_timeout_min) as group:
        run = runner.execute(cfg, root, force)
    return run if group.is_main else None


def spawn(cfg: Any, root: Path, force: bool, world: int) -> Any:
    """Run the config in ``world`` fresh local processes; a user error in any is raised here."""
    device = cfg.runtime.device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.device_count() < world:
        raise ConfigError(f"runtime.world_size={world} is invalid; this machine has "
                          f"{torch.cuda.device_count()} GPUs")
    errors = mp.get_context("spawn").SimpleQueue()
    spec, port = RunSpec.from_config(cfg), free_port()
    log.info("%s: training in %d local processes (port %d)", spec.run_id, world, port)
    try:
        mp.spawn(_worker, args=(world, port, spec, str(root), force, errors), nprocs=world)
    except ProcessException:
        if not errors.empty():
            message, code = errors.get()
            error = UserError(message)
            error.exit_code = code
            raise error from None
        raise
    return RunDir.for_config(cfg, root)


def _worker(rank: int, world: int, port: int, spec: Any, root: str, force: bool,
            errors: Any) -> None:
    """One spawned rank: join the group on localhost and run; report a user error upwards."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(message)s")
    try:
        cfg = spec.config()
        with process_group(cfg.runtime.device, cfg.runtime.dist_timeout_min):
            runner.execute(cfg, Path(root), force)
    except UserError as exc:
        errors.put((str(exc), exc.exit_code))
        raise SystemExit(exc.exit_code) from None
