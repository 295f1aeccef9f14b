"""One run, end to end: weights check -> initial weights -> train -> evaluate -> record.

``execute`` is what the one job every launcher runs (``run_job.RunJob``, through ``world``) calls,
for ``run`` in this process as for a sweep's jobs; the runs a run starts from are earlier nodes
of the same plan (``sweep_plan``), never started from here. A finished run (``summary.json``
with ``status: done``) is returned as it is unless ``force``; an interrupted one resumes from
its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch

from robustsr_bench.methods.base import Method
from . import __version__, distributed, plan, registry, weights
from .config import config_hash, to_dict, training_hash
from .data.provenance import eval_data, train_data, trained_on
from .data.datasets import size_problem, train_pairs
from .data.io import load_image
from .data.suites import check_suite, min_eval_side, suite_crop
from .errors import ConfigError, DataError
from .evaluate import eval_images, evaluate
from .files import Workdir, atomic_path, atomic_write_text, check_workdir
from .metrics import plan_metrics, weights_for
from .nets.rrdbnet import load_generator_file
from .plan import run_id
from .results import RunDir, summarize
from .trainer import (Checkpoints, Trainer, atomic_torch_save, check_device, select_device,
                      torch_load)

log = logging.getLogger("robustsr_bench")
def needed_weights(cfg: Any, method: Method) -> list[str]:
    """Every pretrained file the run must have: VGG19 for a perceptual loss, and the files of
    each metric in ``eval.metrics`` (``eval.optional_metrics`` are skipped when absent)."""
    weights_for(cfg.eval.optional_metrics)  # unknown names fail here, before training
    vgg = ["vgg19"] if method.needs_vgg(cfg) else []
    return vgg + weights_for(cfg.eval.metrics)


def initial_generator(cfg: Any, method: Method, root: Path) -> tuple[dict | None, str]:
    """G's starting weights per ``train.init`` and where they came from.

    ``scratch``; ``baseline`` (the clean ESRGAN run, which the plan runs first);
    ``method:NAME`` (that method's default run, e.g. ANDGAN from ANDNet); or a checkpoint path.
    """
    init = cfg.train.init
    if init == "scratch" or not method.trains:
        return None, "scratch"
    source = plan.start_method(cfg)
    if source:
        base_run = RunDir.for_config(plan.baseline_config(cfg, source), root)
        if not base_run.is_done():
            raise ConfigError(f"run {run_id(cfg)} starts from run {base_run.run_id}, which is not "
                              f"finished; run both with `run` or a sweep")
        path = Checkpoints(base_run, 1).final_generator()
        return torch_load(path)["params_ema"], base_run.run_id
    net = method.build_generator(cfg)
    load_generator_file(net, Path(init))
    return net.state_dict(), str(init)


@contextmanager
def run_logging(run: RunDir) -> Iterator[None]:
    """Send the package's log to ``<run>/train.log`` for the duration of the run."""
    run.path.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.path / "train.log")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("robustsr_bench")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def preflight(cfg: Any, root: Path) -> tuple[Method, dict[str, Path]]:
    """Everything a user can get wrong, checked before anything is written or trained: the
    work dir, the device, the method, every suite (its ops and crop), the evaluation images,
    the metrics and the pretrained files. Returns the method adapter and the weight paths."""
    check_workdir(root)
    check_device(cfg.runtime.device)
    method = registry.method_spec(cfg.method).load_adapter()
    for suite in cfg.eval.suites:  # a misspelt suite, a bad op or crop fails now, not after
        spec = registry.suite_spec(suite)  # hours of training
        check_suite(spec)
        suite_crop(spec, cfg.scale)
    check_eval_images(cfg)
    if method.trains:
        check_train_images(cfg)
    return method, weights.require(needed_weights(cfg, method))


def check_train_images(cfg: Any) -> None:
    """The training set exists; a folder of the user's own images (``data.train: folder``) is
    decoded in full, so that a broken or too small file fails now, not when the sampler first
    draws it hours into training (registered datasets have ``data verify`` for that)."""
    pairs = train_pairs(cfg)
    if cfg.data.train != "folder":
        return
    for pair in pairs:
        hr = load_image(pair.hr)
        h, w = hr.shape[:2]
        if min(h, w) < cfg.train.patch_size:
            raise DataError(f"{pair.hr}: image is {w}x{h}, smaller than "
                            f"train.patch_size={cfg.train.patch_size}")
        problem = size_problem(pair, hr.shape, load_image(pair.lr).shape, cfg.scale) \
            if pair.lr else None
        if problem:
            raise DataError(problem)


def check_eval_images(cfg: Any) -> None:
    """Every held-out image decodes and is large enough for every metric (the shipped
    embedded photos are known to be)."""
    if cfg.eval.images == "embedded":
        return
    for path in eval_images(cfg):
        load_image(path, min_size=min_eval_side(cfg.scale))


def execute(cfg: Any, root: Path, force: bool = False) -> RunDir:
    """Train (unless test-time) and evaluate one run whose start run (if any) is finished;
    returns its finished directory. The runs it starts from are not this function's business:
    the plan (:func:`sweep_plan.plan`, which ``run`` and ``sweep`` both use) puts them first.

    One process at a time works on a run (:func:`run_lock`): a second identical ``run`` waits
    for the first and then reuses its record. ``force`` builds the new run in
    ``<root>/.redo/<run_id>`` and swaps it in only once it is complete, so a failed or killed
    redo leaves the previous record as it was. A run that fails is marked ``status: failed``
    with the reason in its ``summary.json`` (or its folder removed, when it holds nothing).
    """
    run = RunDir.for_config(cfg, root)
    if run.is_done() and not force:
        log.info("%s: finished run found, reusing it (--force to redo)", run.run_id)
        return run
    method, paths = preflight(cfg, root)
    init_g, init_from = initial_generator(cfg, method, root)
    group = distributed.current()  # several ranks train; rank 0 alone writes and evaluates
    seen = run.read_summary()
    with run_lock(run) if group.is_main else nullcontext():
        if group.is_main:
            _recover_swap(run.path, root / REDO_DIR / run.run_id)
        group.barrier()  # the other ranks wait while rank 0 waits for the lock
        if run.is_done() and (not force or run.read_summary() != seen):
            log.info("%s: finished by another process meanwhile; reusing it", run.run_id)
            return run
        work = RunDir(root / REDO_DIR / run.run_id) if force else run
        if group.is_main and work.path.exists() and force:
            shutil.rmtree(work.path)  # a killed earlier redo: --force starts afresh
        group.barrier()
        existed = work.path.exists()
        try:
            _train_and_evaluate(cfg, method, work, root, paths, init_g, init_from, group)
        except Exception as exc:
            if group.is_main:
                mark_failed(work, exc, remove_if_empty=not existed)
            raise
        if group.is_main and force:
            _swap_in(work.path, run.path)
    return run


REDO_DIR = ".redo"  # where --force builds a run before it replaces the old one


@contextmanager
def run_lock(run: RunDir) -> Iterator[None]:
    """An OS file lock on ``<runs>/.<run_id>.lock`` (``filelock``: ``flock``, released by the
    kernel when the holder dies, even by ``kill -9``). A second process waits, saying which pid
    holds the run. The holder's pid is kept beside the lock for that message."""
    from filelock import FileLock, Timeout

    run.path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run.path.parent / f".{run.run_id}.lock")
    owner = run.path.parent / f".{run.run_id}.pid"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "?"
        log.info("%s: another process (pid %s) is computing this run; waiting for it, then "
                 "reusing its record", run.run_id, holder)
        lock.acquire()
    try:
        atomic_write_text(owner, f"{os.getpid()}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _swap_in(new: Path, old: Path) -> None:
    """Replace ``old`` by the complete ``new`` folder: two renames, the old record kept until
    the new one is in place (:func:`_recover_swap` finishes a swap that a crash cut in two)."""
    trash = new.with_name(new.name + ".old")
    if trash.exists():
        shutil.rmtree(trash)
    if old.exists():
        old.rename(trash)
    new.rename(old)
    shutil.rmtree(trash, ignore_errors=True)


def _recover_swap(old: Path, new: Path) -> None:
    """After a crash between the two renames of :func:`_swap_in`: put the complete new run in
    place, else the old one back."""
    trash = new.with_name(new.name + ".old")
    if old.exists() or not trash.exists():
        return
    (new if RunDir(new).is_done() else trash).rename(old)


def mark_failed(run: RunDir, exc: BaseException, remove_if_empty: bool) -> None:
    """Record why a run failed in its ``summary.json``; a folder this attempt created that holds
    no checkpoint (nothing to resume from) is removed instead."""
    if not run.path.exists():
        return
    if remove_if_empty and not Checkpoints(run, 1).steps():
        shutil.rmtree(run.path, ignore_errors=True)
        return
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    try:
        run.write_summary({"status": "failed", "run_id": run.run_id, "reason": reason,
                           "version": __version__})
    except OSError:  # a full disk may be why it failed; the log still has the traceback
        pass


def _train_and_evaluate(cfg: Any, method: Method, run: RunDir, root: Path,
                        paths: dict[str, Path], init_g: dict | None, init_from: str,
                        group: Any) -> None:
    with run_logging(run) if group.is_main else nullcontext():
        if group.is_main:
            run.write_config(cfg)
            if method.trains:
                init_from = adopt_trained_weights(cfg, run, root) or init_from
        log.info("run %s: method=%s ablation=%s profile=%s seed=%d init=%s", run.run_id,
                 cfg.method, cfg.ablation or "-", cfg.profile, cfg.seed, init_from)
        device = select_device(cfg.runtime.device)
        t0 = time.perf_counter()
        net = None
        if method.trains:
            net = Trainer(cfg, method, run, init_g, paths.get("vgg19")).fit()
        if not group.is_main:
            return
        t1 = time.perf_counter()
        plan = plan_metrics(cfg.eval.metrics, cfg.eval.optional_metrics, device)
        frame = evaluate(cfg, method, net, run.run_id, root, device, plan,
                         images_dir=run.path / "images")
        run.write_metrics(frame)
        summary = _summary(cfg, method, run, init_from, t1 - t0, time.perf_counter() - t1, frame)
        run.write_summary({**summary, "unavailable_metrics": plan.unavailable,
                           "world_size": group.world_size})


def adopt_trained_weights(cfg: Any, run: RunDir, root: Path) -> str | None:
    """Copy the final checkpoint of a finished run trained exactly as ``cfg`` (same training
    hash; only ``eval`` differs) into ``run``, so that evaluating a model on other suites does
    not train it again. Returns the donor's id, or None when ``run`` has checkpoints of its own
    or no donor exists. The trainer then resumes at the final step and goes straight to
    evaluation; the sha256 of every copied file is checked when it is loaded."""
    if Checkpoints(run, 1).steps():
        return None
    wanted = training_hash(to_dict(cfg))
    prefix = run.run_id.rsplit("-", 1)[0] + "-"
    for donor in sorted(Workdir(root).runs.glob(f"{prefix}*")):
        if donor.name == run.run_id or not RunDir(donor).is_done():
            continue
        donor_cfg = RunDir(donor).read_config()
        steps = Checkpoints(RunDir(donor), 1).steps()
        if (donor_cfg is not None and training_hash(donor_cfg) == wanted and steps
                and steps[0] == cfg.train.iters):
            _copy_checkpoint(donor, run.path, steps[0], wanted)
            log.info("%s: trained exactly like finished run %s; evaluating its final weights "
                     "instead of training again", run.run_id, donor.name)
            return f"weights of {donor.name}"
    return None


def _copy_checkpoint(donor: Path, target: Path, step: int, wanted: str) -> None:
    """Copy the model files, then the state, stamped with the training hash that the donor's
    config.yaml was just checked to have (states written before the field existed lack it)."""
    for rel in (f"models/net_g_{step}.pth", f"models/net_d_{step}.pth"):
        if (donor / rel).is_file():
            with atomic_path(target / rel) as tmp:
                shutil.copyfile(donor / rel, tmp)
    state = torch_load(donor / "training_states" / f"{step}.state")
    atomic_torch_save({**state, "training_hash": wanted},
                      target / "training_states" / f"{step}.state")  # last: publishes the step


def _summary(cfg: Any, method: Method, run: RunDir, init_from: str, train_s: float,
             eval_s: float, frame: Any) -> dict[str, Any]:
    return {"status": "done", "run_id": run.run_id, "method": cfg.method,
            "ablation": cfg.ablation, "profile": cfg.profile, "seed": cfg.seed,
            "config_hash": config_hash(cfg), "version": __version__, "init": init_from,
            "trained_on": trained_on(cfg, method.trains), "suites": list(cfg.eval.suites),
            "train_data": train_data(cfg, method.trains),
            "eval_data": eval_data(cfg, frame, registry.suite_specs(cfg.eval.suites)),
            "train_seconds": round(train_s, 3), "eval_seconds": round(eval_s, 3),
            "device": str(select_device(cfg.runtime.device)), "torch": torch.__version__,
            "means": summarize(frame)}
