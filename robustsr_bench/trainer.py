"""The one training loop every method shares.

Per step: seed -> batch -> ``method.make_inputs`` (the robust part) -> ``method.forward`` -> shared
ESRGAN losses + ``method.extra_losses`` -> G step -> D step (GAN profile) -> LR schedule -> EMA ->
log -> checkpoint. The trainer owns optimisers, EMA, checkpoints and resume; adapters own nothing
of that.

Resume is bit-identical on CPU: every step reseeds torch from ``(seed, step)`` and the data
stream is a pure function of the sample index (see ``data.datasets``), so a run killed after step
``k`` and resumed from its checkpoint computes the same steps ``k+1..`` as one never killed.

Data-parallel (``runtime.world_size`` > 1, torchrun, multi-task Slurm jobs; see
``distributed``): each rank trains on its slice of the global batch, every optimiser steps
through :meth:`Trainer._step` (gradients averaged over ranks first), BatchNorm statistics are
averaged after each step, and rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustsr_bench.methods.base import Batch, Method, Modules, TrainContext
from . import __version__, distributed, optim, speed
from .config import config_hash, flatten, to_dict, training_hash
from .data.datasets import make_train_loader
from .errors import UserError
from .losses import PerceptualLoss, ragan_discriminator_loss, ragan_generator_loss
from .nets.discriminator import VGGStyleDiscriminator
from .nets.vgg import VGGFeatureExtractor
from .files import atomic_path, file_sha256
from .results import RunDir

log = logging.getLogger("robustsr_bench")


class NonFiniteLossError(UserError):
    """A loss became NaN/inf; the run stops and keeps its last good checkpoint."""


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> None:
    """``runtime.device`` names a device this machine has (the syntax is checked in config)."""
    import warnings

    if name in ("auto", "cpu"):
        return
    with warnings.catch_warnings():  # torch warns when CUDA has no driver; our line says it
        warnings.simplefilter("ignore")
        if name.startswith("cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(name.partition(":")[2] or 0)
            if count == 0:
                raise UserError(f"--device {name}: no CUDA GPU is available on this machine; "
                                f"use --device cpu (or auto)")
            if index >= count:
                raise UserError(f"--device {name}: this machine has {count} GPU(s), "
                                f"cuda:0..cuda:{count - 1}")
        elif name == "mps" and not torch.backends.mps.is_available():
            raise UserError("--device mps: Apple MPS is not available here; use --device cpu")


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def set_requires_grad(net: nn.Module | None, flag: bool) -> None:
    if net is not None:
        for p in net.parameters():
            p.requires_grad_(flag)


def atomic_torch_save(obj: Any, path: Path) -> str:
    """Write ``obj`` durably and atomically; returns the file's sha256.

    Serialising to memory first means a full disk surfaces as ``OSError(ENOSPC)`` from the
    file write (which ``atomic_path`` reports as "disk full"), not as torch's opaque
    RuntimeError; the fsync makes the rename publish complete bytes even across a power loss.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getbuffer()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


def torch_load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


class Checkpoints:
    """BasicSR-style files: ``models/net_g_<step>.pth`` (``params`` + ``params_ema``),
    ``models/net_d_<step>.pth`` and ``training_states/<step>.state``, the state written last.

    The state records the sha256 of the model files of its step (``files``), so a checkpoint is
    loaded only when every file is exactly what was written: a file torn by a crash outside
    ``atomic_path`` (or corrupted on disk) makes ``load_latest`` fall back to the previous step.
    """

    def __init__(self, run: RunDir, keep: int):
        self.models, self.states, self.keep = run.path / "models", run.path / "training_states", keep

    def steps(self) -> list[int]:
        found = [int(p.stem) for p in self.states.glob("*.state") if p.stem.isdigit()]
        return sorted(found, reverse=True)

    def save(self, step: int, files: dict[str, Any]) -> None:
        digests = {"net_g": atomic_torch_save(files["net_g"], self.models / f"net_g_{step}.pth")}
        if files.get("net_d") is not None:
            digests["net_d"] = atomic_torch_save(files["net_d"], self.models / f"net_d_{step}.pth")
        atomic_torch_save({**files["state"], "files": digests}, self.states / f"{step}.state")
        for old in self.steps()[self.keep:]:
            for path in (self.states / f"{old}.state", self.models / f"net_g_{old}.pth",
                         self.models / f"net_d_{old}.pth"):
                path.unlink(missing_ok=True)

    def load_latest(self, with_d: bool) -> tuple[int, dict[str, Any]] | None:
        """The newest complete, readable checkpoint; a torn or corrupt one is skipped."""
        for step in self.steps():
            try:
                files = {"state": torch_load(self.states / f"{step}.state")}
                names = ["net_g", "net_d"] if with_d else ["net_g"]
                for name in names:
                    path = self.models / f"{name}_{step}.pth"
                    self._verify(path, files["state"].get("files", {}).get(name))
                    files[name] = torch_load(path)
                return step, files
            except Exception as exc:  # noqa: BLE001 - any unreadable file means "try older"
                log.warning("checkpoint at step %d unreadable (%s); trying an older one", step, exc)
        return None

    @staticmethod
    def _verify(path: Path, expected: str | None) -> None:
        """Refuse a file whose sha256 differs from the one its state recorded (older
        checkpoints recorded none and are trusted as before)."""
        if expected is not None and file_sha256(path) != expected:
            raise ValueError(f"{path.name} does not match the sha256 its state recorded")

    def final_generator(self) -> Path:
        return self.models / f"net_g_{self.steps()[0]}.pth"


def config_differences(saved: dict[str, Any] | None, cfg: Any, limit: int = 3) -> str:
    """`` (model.num_feat: 8 in the checkpoint, 4 now; ...)`` for a refused resume, so the user
    sees what changed; empty for checkpoints that predate storing their config."""
    if not isinstance(saved, dict):
        return ""
    old, new = flatten(saved), flatten(to_dict(cfg))
    skip = ("runtime.", "eval.")  # neither changes how a model is trained
    keys = [k for k in sorted(set(old) | set(new))
            if not k.startswith(skip) and old.get(k, "<absent>") != new.get(k, "<absent>")]
    shown = "; ".join(f"{k}: {old.get(k, '<absent>')!r} in the checkpoint, "
                      f"{new.get(k, '<absent>')!r} now" for k in keys[:limit])
    more = f"; +{len(keys) - limit} more" if len(keys) > limit else ""
    return f" ({shown}{more})" if keys else ""


def trained_alike(state: dict[str, Any], cfg: Any) -> bool:
    """Whether a checkpoint state was trained under ``cfg``'s training config: by its training
    hash, derived from its stored config for states that predate the field, and for states
    older still (no config either) by the full run-id hash they carry."""
    if state.get("training_hash"):
        return state["training_hash"] == training_hash(to_dict(cfg))
    if isinstance(state.get("config"), dict):
        return training_hash(state["config"]) == training_hash(to_dict(cfg))
    return state.get("config_hash") == config_hash(cfg)


class Trainer:
    """Trains ``method``'s generator under ``cfg`` inside ``run``; see the module docstring."""

    def __init__(self, cfg: Any, method: Method, run: RunDir, init_g: dict[str, Tensor] | None,
                 vgg_path: Path | None):
        self.cfg, self.method, self.run = cfg, method, run
        self.group = distributed.current()
        distributed.local_batch(cfg.train.batch_size, self.group.world_size)
        self.device = distributed.device_for(select_device(cfg.runtime.device), self.group)
        torch.manual_seed(cfg.seed)
        g = method.build_generator(cfg)
        if init_g is not None:
            g.load_state_dict(init_g)
        gan = cfg.loss.mode == "gan"
        d = VGGStyleDiscriminator(3, cfg.disc.num_feat, cfg.train.patch_size) if gan else None
        self.modules = Modules(g.to(self.device), d.to(self.device) if d else None,
                               method.build_aux(cfg, self.device))
        self.group.broadcast([self.modules.g, self.modules.d, *self.modules.aux.values()])
        self.g_ema = copy.deepcopy(self.modules.g).eval()
        set_requires_grad(self.g_ema, False)
        self.perceptual = self._perceptual(vgg_path)
        speed.prepare(self.modules, cfg.runtime, self.g_ema, self.perceptual)
        self.opt_g = self._adam(self.modules.g)
        self.opt_d = self._adam(d) if d is not None else None
        self.sched_g = self._sched(self.opt_g)
        self.sched_d = self._sched(self.opt_d) if self.opt_d else None
        self.ckpt = Checkpoints(run, cfg.train.keep_ckpts)
        self.hash = config_hash(cfg)
        self.training_hash = training_hash(to_dict(cfg))
        if self.group.active:
            log.info("data-parallel: %d processes x %d samples (global batch %d) on %s",
                     self.group.world_size, cfg.train.batch_size // self.group.world_size,
                     cfg.train.batch_size, self.device.type)

    def _perceptual(self, vgg_path: Path | None) -> PerceptualLoss | None:
        if vgg_path is None:
            return None
        extractor = VGGFeatureExtractor(self.cfg.loss.perceptual_layer, weights_path=vgg_path)
        return PerceptualLoss(extractor.to(self.device), weight=1.0)

    def _adam(self, net: nn.Module) -> torch.optim.Adam:
        t = self.cfg.train
        return optim.adam(net.parameters(), t.lr, tuple(t.betas), self.cfg.runtime.fused_adam)

    def _sched(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
        return torch.optim.lr_scheduler.MultiStepLR(opt, self.cfg.train.milestones,
                                                    self.cfg.train.gamma)

    # -- losses ------------------------------------------------------------------------------

    def content_loss(self, sr: Tensor, gt: Tensor, pixel_weight: float,
                     perceptual_weight: float) -> Tensor:
        """L1 x pixel_weight + VGG perceptual x perceptual_weight (when VGG is loaded)."""
        loss = pixel_weight * F.l1_loss(sr, gt)
        if perceptual_weight and self.perceptual is not None:
            loss = loss + perceptual_weight * self.perceptual(sr, gt)
        return loss

    def shared_losses(self, sr: Tensor, gt: Tensor) -> dict[str, Tensor]:
        lc = self.cfg.loss
        if lc.mode == "psnr":
            return {"l_pix": F.l1_loss(sr, gt)}
        losses = {"l_pix": lc.pixel_weight * F.l1_loss(sr, gt),
                  "l_percep": lc.perceptual_weight * self.perceptual(sr, gt)}
        d = self.modules.d
        real_pred = d(gt).detach()
        losses["l_gan"] = lc.gan_weight * ragan_generator_loss(real_pred, d(sr))
        return losses

    # -- one step ----------------------------------------------------------------------------

    def _context(self, step: int) -> TrainContext:
        return TrainContext(self.cfg, step, self.content_loss, self.perceptual is not None)

    def _autocast(self) -> Any:
        return speed.autocast(self.cfg.runtime, self.device)

    def _step(self, optimizer: torch.optim.Optimizer, clip: nn.Module | None = None) -> None:
        """Every optimiser steps here: gradients averaged over ranks (a no-op in one process),
        then clipped (``train.grad_clip``, on ``clip``'s parameters), then the step."""
        self.group.average_gradients(optimizer)
        if clip is not None and self.cfg.train.grad_clip:
            nn.utils.clip_grad_norm_(clip.parameters(), self.cfg.train.grad_clip)
        optimizer.step()

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        torch.manual_seed(distributed.rank_seed(step_seed(self.cfg.seed, step), self.group.rank))
        ctx, m = self._context(step), self.modules
        set_requires_grad(m.d, False)
        with self._autocast():
            batch = self.method.make_inputs(batch, m, ctx)
            out = self.method.forward(batch, m, ctx)
            losses = self.shared_losses(out.sr, batch.gt)
            losses.update(self.method.extra_losses(batch, out, m, ctx))
        total = sum(losses.values())
        reported = self.group.mean(losses)
        self._check_finite(reported, step)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._step(self.opt_g, clip=m.g)
        if m.d is not None:
            reported.update(self.group.mean({"l_d": self._d_step(batch.gt, out.sr.detach())}))
        self.group.average_buffers([m.g, m.d])
        self.sched_g.step()
        if self.sched_d:
            self.sched_d.step()
        self._update_ema()
        return {k: float(v.detach()) for k, v in reported.items()}

    def _d_step(self, gt: Tensor, fake: Tensor) -> Tensor:
        d = self.modules.d
        set_requires_grad(d, True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            loss = ragan_discriminator_loss(d(gt), d(fake))
        loss.backward()
        self._step(self.opt_d)
        return loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """One ``lerp_`` over every parameter (``_foreach``: the same kernel per tensor, so the
        same bits as a loop, without a Python call per tensor)."""
        decay = self.cfg.train.ema_decay
        torch._foreach_lerp_(list(self.g_ema.parameters()),
                             [p.detach() for p in self.modules.g.parameters()], 1 - decay)
        for b_ema, b in zip(self.g_ema.buffers(), self.modules.g.buffers()):
            b_ema.copy_(b)

    def _check_finite(self, losses: dict[str, Tensor], step: int) -> None:
        for name, value in losses.items():
            if not math.isfinite(float(value.detach())):
                steps = self.ckpt.steps()
                kept = f"last good checkpoint: step {steps[0]}" if steps else "no checkpoint yet"
                raise NonFiniteLossError(
                    f"{self.run.path}: loss {name} became {float(value.detach())} at step {step + 1}; "
                    f"run stopped ({kept}); try a lower train.lr or set train.grad_clip")

    # -- checkpoints -------------------------------------------------------------------------

    def save(self, step: int) -> None:
        """Rank 0 writes the checkpoint; every rank first checks its weights equal rank 0's."""
        self.group.check_in_sync({"net_g": self.modules.g, "net_g_ema": self.g_ema,
                                  "net_d": self.modules.d})
        if not self.group.is_main:
            return
        meta = {"config_hash": self.hash, "training_hash": self.training_hash,
                "version": __version__, "step": step}
        state = {"step": step, "opt_g": self.opt_g.state_dict(),
                 "sched_g": self.sched_g.state_dict(), "config": to_dict(self.cfg), **meta}
        if self.opt_d:
            state.update(opt_d=self.opt_d.state_dict(), sched_d=self.sched_d.state_dict())
        self.ckpt.save(step, {
            "net_g": {"params": self.modules.g.state_dict(),
                      "params_ema": self.g_ema.state_dict(), "meta": meta},
            "net_d": {"params": self.modules.d.state_dict()} if self.modules.d else None,
            "state": state})

    def resume(self) -> int:
        """Load the newest checkpoint of this run; returns the step to continue from."""
        found = self.ckpt.load_latest(with_d=self.modules.d is not None)
        if found is None:
            return 0
        step, files = found
        if not trained_alike(files["state"], self.cfg):
            raise UserError(f"{self.run.path}: checkpoint at step {step} was made with a different "
                            f"config{config_differences(files['state'].get('config'), self.cfg)}; "
                            f"use --force to start this run again")
        self.modules.g.load_state_dict(files["net_g"]["params"])
        self.g_ema.load_state_dict(files["net_g"]["params_ema"])
        self.opt_g.load_state_dict(files["state"]["opt_g"])
        self.sched_g.load_state_dict(files["state"]["sched_g"])
        if self.modules.d is not None:
            self.modules.d.load_state_dict(files["net_d"]["params"])
            self.opt_d.load_state_dict(files["state"]["opt_d"])
            self.sched_d.load_state_dict(files["state"]["sched_d"])
        log.info("resumed %s from step %d", self.run.run_id, step)
        return step

    # -- the loop ----------------------------------------------------------------------------

    def fit(self, on_step: Callable[[int], None] | None = None) -> nn.Module:
        """Train to ``train.iters`` (resuming if possible) and return the EMA generator."""
        start = self.resume()
        iters = self.cfg.train.iters
        if start < iters:
            self._loop(start, iters, on_step)
        elif not self.ckpt.steps():
            self.save(start)
        self.group.barrier()  # the final checkpoint exists for every rank (a fine-tune loads it)
        return self.g_ema

    def _loop(self, start: int, iters: int, on_step: Callable[[int], None] | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        main = self.group.is_main  # only rank 0 logs
        writer = SummaryWriter(str(self.run.path / "tb"), purge_step=start) if main else None
        # A bar on a terminal only; a file or pipe (Slurm log, CI) gets one log line every
        # runtime.log_every steps instead of thousands of carriage returns.
        self._tty_bar = bool(self.cfg.runtime.progress and main and sys.stderr.isatty())
        bar = tqdm(total=iters, initial=start, desc=self.run.run_id, unit="it",
                   disable=not self._tty_bar, dynamic_ncols=True)
        self.modules.g.train()
        t0 = time.perf_counter()
        # on a terminal, log lines go above the bar, never into it
        with logging_redirect_tqdm() if self._tty_bar else contextlib.nullcontext():
            try:
                loader = make_train_loader(self.cfg, start, self.group.rank,
                                           self.group.world_size)
                for step, raw in enumerate(loader, start=start):
                    batch = Batch(raw["lq"], raw["gt"], {k: v for k, v in raw.items()
                                                         if k not in ("lq", "gt")}).to(self.device)
                    losses = self.train_step(batch, step)
                    done = step + 1
                    self._log(done, losses, writer, bar, t0, start)
                    if done % self.cfg.train.ckpt_every == 0 or done == iters:
                        self.save(done)
                    if on_step:
                        on_step(done)
            finally:
                bar.close()
                if writer is not None:
                    writer.close()

    def _log(self, done: int, losses: dict[str, float], writer: Any, bar: Any, t0: float,
             start: int) -> None:
        bar.update(1)
        if writer is None or (done % self.cfg.runtime.log_every and done != self.cfg.train.iters):
            return
        for name, value in losses.items():
            writer.add_scalar(f"train/{name}", value, done)
        writer.add_scalar("train/lr", self.opt_g.param_groups[0]["lr"], done)
        rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
        text = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        bar.set_postfix_str(text)
        level = logging.INFO if self.cfg.runtime.progress and not self._tty_bar else logging.DEBUG
        log.log(level, "%s step %d/%d %s (%.2f it/s)", self.run.run_id, done,
                self.cfg.train.iters, text, rate)
