"""One run, end to end: weights check -> initial weights -> train -> evaluate -> record.

``execute`` is what ``run`` calls in-process and what every launcher (local, Slurm) calls inside a
job. A finished run (``summary.json`` with ``status: done``) is returned as it is unless
``force``; an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
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
from .data.suites import check_suite, suite_crop
from .errors import ConfigError
from .evaluate import evaluate
from .metrics import plan_metrics, weights_for
from .nets.rrdbnet import load_generator_file
from .files import Workdir, atomic_path
from .plan import run_id
# moved to plan.py (re-exported here for callers of the old location)
from .plan import BASELINE_METHOD, baseline_config, init_method, reference_config  # noqa: F401
from .results import RunDir, summarize
from .trainer import Checkpoints, Trainer, atomic_torch_save, select_device, torch_load

log = logging.getLogger("robustsr_bench")
def needed_weights(cfg: Any, method: Method) -> list[str]:
    """Every pretrained file the run must have: VGG19 for a perceptual loss, and the files of
    each metric in ``eval.metrics`` (``eval.optional_metrics`` are skipped when absent)."""
    weights_for(cfg.eval.optional_metrics)  # unknown names fail here, before training
    vgg = ["vgg19"] if method.needs_vgg(cfg) else []
    return vgg + weights_for(cfg.eval.metrics)


def initial_generator(cfg: Any, method: Method, root: Path) -> tuple[dict | None, str]:
    """G's starting weights per ``train.init`` and where they came from.

    ``scratch``; ``baseline`` (the clean ESRGAN run, which :func:`execute` finishes first);
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


def execute(cfg: Any, root: Path, force: bool = False) -> RunDir:
    """Run ``cfg`` after the runs it starts from (:func:`plan.dependencies`), each finished one
    reused; ``force`` redoes ``cfg`` only. Every unfinished run's inputs are checked first, so a
    missing file fails before the baseline trains for hours."""
    chain = plan.dependencies(cfg)
    if RunDir.for_config(cfg, root).is_done() and not force:
        chain = []  # finished: the runs it started from are not needed again
    for c in [*chain, cfg]:
        if (force and c is cfg) or not RunDir.for_config(c, root).is_done():
            preflight(c)
    for base in chain:
        execute_one(base, root)
    return execute_one(cfg, root, force)


def preflight(cfg: Any) -> tuple[Method, dict[str, Path]]:
    """The run's adapter and pretrained files; unknown suites and missing files fail here."""
    method = registry.method_spec(cfg.method).load_adapter()
    for suite in cfg.eval.suites:  # a misspelt suite, a bad op or crop fails now, not after
        check_suite(suite)         # hours of training
        suite_crop(suite, cfg.scale)
    return method, weights.require(needed_weights(cfg, method))


def execute_one(cfg: Any, root: Path, force: bool = False) -> RunDir:
    """Train (unless test-time) and evaluate one run whose start run (if any) is finished;
    returns its finished directory."""
    run = RunDir.for_config(cfg, root)
    if run.is_done() and not force:
        log.info("%s: finished run found, reusing it (--force to redo)", run.run_id)
        return run
    method, paths = preflight(cfg)
    init_g, init_from = initial_generator(cfg, method, root)
    group = distributed.current()  # several ranks train; rank 0 alone writes and evaluates
    if force and run.path.exists() and group.is_main:
        shutil.rmtree(run.path)
    group.barrier()
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
            return run
        t1 = time.perf_counter()
        plan = plan_metrics(cfg.eval.metrics, cfg.eval.optional_metrics, device)
        frame = evaluate(cfg, method, net, run.run_id, root, device, plan)
        run.write_metrics(frame)
        summary = _summary(cfg, method, run, init_from, t1 - t0, time.perf_counter() - t1, frame)
        run.write_summary({**summary, "unavailable_metrics": plan.unavailable,
                           "world_size": group.world_size})
    return run


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
        if donor == run.path or not RunDir(donor).is_done():
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
            "train_data": train_data(cfg, method.trains), "eval_data": eval_data(cfg, frame),
            "train_seconds": round(train_s, 3), "eval_seconds": round(eval_s, 3),
            "device": str(select_device(cfg.runtime.device)), "torch": torch.__version__,
            "means": summarize(frame)}
