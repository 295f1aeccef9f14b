"""Data-parallel training of one run over several processes (one per GPU, or gloo on CPU).

Where the processes come from (all join the same ``torch.distributed`` group):

* ``run --gpus N`` (``runtime.world_size=N``): this module spawns N local processes;
* ``torchrun --nproc_per_node N -m robustsr_bench run ...``: torchrun's ``RANK``/``WORLD_SIZE``/
  ``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``;
* a Slurm job with several tasks (``sweep --launcher slurm --gpus-per-node N``): submitit's
  ``TorchDistributedEnvironment`` exports the same variables from the job environment.

Backend nccl on CUDA (rank ``r`` on ``cuda:LOCAL_RANK``), gloo on CPU.

Comparability (our choice): ``train.batch_size`` is the *global* batch. Rank ``r`` of step ``s``
takes the samples ``r*b .. (r+1)*b - 1`` (``b = batch_size / world_size``) of the global batch a
single process draws at step ``s`` (``data.datasets.StepSampler``), so the union of the data is
that of the one-process run. Gradients of every parameter an optimiser steps are averaged over
the ranks just before the step (an explicit all-reduce rather than ``DistributedDataParallel``
wrappers, because attacks backpropagate through frozen copies of the same networks), so the
update equals the one-process update for per-sample-mean losses; gradient clipping sees the
averaged gradient. Rank 0 draws the one-process random numbers of each step and rank ``r`` an
independent stream (``rank_seed``), so attack starts and noise are i.i.d. per sample as in one
process, but not bitwise the same numbers: an N-process run equals the one-process run in data
and schedule, and in its weights only up to the attack noise (exactly, up to float rounding,
for methods without per-step randomness, e.g. clean ESRGAN in the psnr profile). Batch
statistics stay per rank, as in BasicSR's DDP training: the discriminator's BatchNorm and the
relativistic GAN averages see the local batch. The world size is therefore left out of the run id
(``runtime.*``) and recorded in ``summary.json``; a run may resume under another world size,
because every rank holds the same optimiser state.

Only rank 0 writes checkpoints, logs, tensorboard, evaluation and the record; the others load the
same checkpoint on resume and check at every checkpoint that their weights equal rank 0's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import ConfigError

log = logging.getLogger("robustsr_bench")
# An odd 63-bit constant (the golden ratio's): rank r's seed stream is far from rank 0's.
_RANK_STRIDE = 0x1E3779B97F4A7C15


class DivergedError(RuntimeError):
    """Ranks hold different weights: a bug in gradient averaging, never a user mistake."""


@dataclass(frozen=True)
class Group:
    """This process's place in the run's process group (``world_size`` 1: no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Replace the gradient of every parameter ``optimizer`` steps by its mean over ranks.

        Every rank runs the same code on the same config, so the set of parameters with a
        gradient is the same on every rank.
        """
        if self.active:
            self._average([p.grad for group in optimizer.param_groups for p in group["params"]
                           if p.grad is not None])

    def average_buffers(self, nets: Iterable[nn.Module | None]) -> None:
        """Average floating-point buffers (BatchNorm running statistics, updated from the local
        batch in every forward) so every rank keeps, and rank 0 saves, the same network; the
        mean of the ranks' running means is the running mean of the global batch."""
        if self.active:
            self._average([b for net in nets if net is not None for b in net.buffers()
                           if b.is_floating_point()])

    def _average(self, tensors: list[Tensor]) -> None:
        """In place, the mean over ranks of each tensor: one flat all-reduce for all of them."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def mean(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each (scalar) value averaged over ranks: what the logs show and the NaN check sees,
        so all ranks stop together on a non-finite loss."""
        if not self.active or not values:
            return values
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        dist.all_reduce(stacked)
        stacked /= self.world_size
        return dict(zip(values, stacked.unbind()))

    def broadcast(self, nets: Iterable[nn.Module | None]) -> None:
        """Rank 0's parameters and buffers on every rank (they are seeded alike anyway; a
        checkpoint file read by each rank is covered too)."""
        if not self.active:
            return
        for net in nets:
            if net is None:
                continue
            for tensor in [*net.parameters(), *net.buffers()]:
                with torch.no_grad():
                    dist.broadcast(tensor.data, src=0)

    def check_in_sync(self, nets: dict[str, nn.Module | None]) -> None:
        """Raise :class:`DivergedError` when a rank's weights differ from rank 0's."""
        if not self.active:
            return
        mine = {name: weights_digest(net) for name, net in nets.items() if net is not None}
        every: list[Any] = [None] * self.world_size
        dist.all_gather_object(every, mine)
        differing = sorted(name for other in every for name in mine if other[name] != mine[name])
        if differing:
            raise DivergedError(f"rank {self.rank}: {', '.join(sorted(set(differing)))} differ "
                                f"between ranks")


def weights_digest(net: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def current() -> Group:
    """The group this process trains in (world size 1 outside one)."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return Group()


def rank_seed(step_seed: int, rank: int) -> int:
    """Rank 0 keeps the one-process seed of the step; rank r gets an independent stream."""
    return (step_seed + rank * _RANK_STRIDE) % (2**63)


def local_batch(batch_size: int, world_size: int) -> int:
    """Per-rank batch; the global batch must split evenly so the data union is exact."""
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size} is invalid with {world_size} processes; "
                          f"expected a multiple of {world_size} (it is the global batch)")
    return batch_size // world_size


def device_for(device: torch.device, group: Group) -> torch.device:
    """Rank r trains on ``cuda:LOCAL_RANK``; CPU ranks share the CPU."""
    if group.active and device.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


# ---------------------------------------------------------------------------------------------
# joining and spawning


def env_world_size() -> int:
    """The world size a launcher (torchrun, a Slurm job's tasks) put in the environment."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    try:
        import submitit

        return submitit.JobEnvironment().num_tasks
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return 1


def env_rank() -> int:
    """This process's global rank as its launcher set it (a Slurm job's task, torchrun's
    ``RANK``); 0 outside a multi-process launch."""
    try:
        import submitit

        return submitit.JobEnvironment().global_rank
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return int(os.environ.get("RANK", "0"))


def wanted_world_size(cfg: Any) -> int:
    """The launcher's world size, else ``runtime.world_size``; a conflict is one clear line."""
    env, asked = env_world_size(), cfg.runtime.world_size
    if env > 1 and asked not in (1, env):
        raise ConfigError(f"runtime.world_size={asked} is invalid inside a launcher that started "
                          f"{env} processes; expected 1 or {env}")
    return max(env, asked)


@contextmanager
def process_group(backend_device: str, timeout_min: float) -> Iterator[Group]:
    """Join the group the environment describes (exporting submitit's job environment first)
    and leave it at the end; a no-op group for one process. Inside an outer ``process_group``
    the group already joined is used and left by the outer one: joining a torchrun group a
    second time in one process waits minutes on the launcher's store."""
    if env_world_size() <= 1:
        yield Group()
        return
    if dist.is_initialized():  # joined once for several runs (torchrun ... run): stay in it
        yield current()
        return
    if "RANK" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = backend_device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_min))
    try:
        group = current()
        if not group.is_main:
            logging.getLogger("robustsr_bench").setLevel(logging.WARNING)
        yield group
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
