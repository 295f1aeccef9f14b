"""``evaluate``: score a published (or any saved) SR checkpoint exactly like a trained run.

The checkpoint is a file or a model-zoo name (``configs/zoo.yaml``, fetched beforehand with
``weights fetch NAME``; nothing is downloaded here). It is loaded by
:mod:`robustsr_bench.published`, its scale is checked against the benchmark's, and it is
evaluated by :func:`robustsr_bench.evaluate.evaluate` on the suites and metrics of the profile's
protocol (the ones every trained run of that profile uses; ``--suites`` / ``--set eval.*``
change them), tiled like the harness's own generators. The result is an ordinary run record,
``<workdir>/runs/<run_id>/`` with ``config.yaml``, ``metrics.csv`` and ``summary.json``
(``method: pretrained``, the label, architecture, checkpoint path and sha256, training data
``published``), so ``report`` puts it into the tables next to the trained methods.

Our choices: the run id is ``pretrained-<label>-<profile>-<hash8>``, the hash covering the
evaluation protocol and the checkpoint's sha256, and a finished record of the same file under
the same protocol is reused under any label (the same file is evaluated once; ``--force``
redoes it). The seed is 0: a checkpoint has no training seed, and the suites are seeded by
their own files.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from robustsr_bench.methods.base import Method
from . import __version__, registry, weights
from .config import RunConfig, config_hash, merge_layer, to_dict, to_object, typed_base
from .data.provenance import eval_data
from .errors import ConfigError, UserError
from .evaluate import evaluate
from .metrics import plan_metrics, weights_for
from .published import HARNESS_RRDBNET, LoadedModel, load_model
from .files import Workdir, atomic_write_text, safe_name
from .plan import reference_config
from .results import RunDir, summarize
from .runner import execute, run_logging
from .trainer import select_device
from .zoo import ZooEntry, load_zoo

log = logging.getLogger("robustsr_bench")
METHOD = "pretrained"
PUBLISHED = "published"
_HARNESS_CKPT = re.compile(r"^net_g_(\d+)\.pth$")


class _Published(Method):
    """The adapter :func:`evaluate` calls: the contract's plain feed-forward ``restore`` (so it
    is tiled like a trained generator), no kernel estimate; trained elsewhere, not here."""

    name = METHOD
    trains = False


@dataclass(frozen=True)
class Source:
    """Where the checkpoint comes from and what the record calls it."""

    path: Path
    label: str
    zoo: ZooEntry | None
    trained_on: str


def resolve_source(name: str, label: str | None) -> Source:
    """A file path or a zoo name -> the file (a zoo file must be in the cache, intact)."""
    path = Path(name)
    zoo = load_zoo()
    if path.is_file():
        entry = None
    elif name in zoo:
        entry = zoo[name]
        path = weights.require([name])[name]
    else:
        raise UserError(f"{name}: no such file and no model-zoo entry of that name; zoo names: "
                        f"{', '.join(zoo) or '(none)'} (see `list zoo`)")
    trained_on, default = PUBLISHED, entry.name if entry else path.stem
    match = _HARNESS_CKPT.match(path.name)
    if entry is None and match and path.parent.name == "models":
        run = RunDir(path.parent.parent)  # a harness run's own checkpoint
        default = f"{run.run_id}.g{match.group(1)}"
        trained_on = str(run.read_summary().get("trained_on") or PUBLISHED)
    what = "--name" if label else "row label (from the file name; choose one with --name)"
    return Source(path, safe_name(label or default, what), entry, trained_on)


def eval_config(profile: str, overrides: dict[str, Any]) -> Any:
    """The profile's evaluation protocol (``eval``, ``scale``) as a run config of method
    ``pretrained``; ``overrides`` are ``--set`` style (``eval.suites``, ``runtime.device``...)."""
    base = typed_base(RunConfig)
    prof = dict(registry.profile(profile))
    prof.pop("description", None)
    merge_layer(base, prof, str(registry.configs_dir() / "profiles" / f"{profile}.yaml"))
    merge_layer(base, overrides, "--set")
    merge_layer(base, {"method": METHOD, "ablation": "", "profile": profile, "seed": 0}, "run")
    return to_object(base)


def check_scale(model: LoadedModel, cfg: Any, path: Path) -> None:
    if model.scale != cfg.scale:
        raise ConfigError(f"{path}: a x{model.scale} {model.architecture} model, but the "
                          f"{cfg.profile} benchmark is x{cfg.scale}; evaluate a "
                          f"x{cfg.scale} checkpoint (or --set scale={model.scale})")


def _check_zoo_file(entry: ZooEntry, path: Path, digest: str) -> None:
    if entry.sha256 and digest != entry.sha256:
        raise UserError(f"{path}: sha256 {digest} is not the published {entry.sha256} of "
                        f"{entry.name}; re-fetch it (`weights fetch {entry.name} --force`)")


def pretrained_run_id(cfg: Any, label: str, digest: str) -> str:
    both = hashlib.sha256(f"{config_hash(cfg)}:{digest}".encode()).hexdigest()
    return safe_name(f"{METHOD}-{label}-{cfg.profile}-{both[:8]}")


def _existing(root: Path, run_id: str) -> RunDir | None:
    """A finished record of the same checkpoint and protocol, under any label."""
    suffix = run_id.rsplit("-", 1)[1]
    for path in sorted(Workdir(root).runs.glob(f"{METHOD}-*-{suffix}")):
        if RunDir(path).is_done():
            return RunDir(path)
    return None


def _tiling(cfg: Any, model: LoadedModel) -> Any:
    """Tiles no smaller than the model's minimum, overlaps on its multiple (aligned tiles), and
    no tiling for models that tile internally."""
    e = cfg.eval
    if model.tiling == "internal":
        e.tile_size = 0
    elif e.tile_size:
        m = model.multiple_of
        e.tile_size = max(e.tile_size, model.minimum)
        e.tile_overlap = -(-e.tile_overlap // m) * m
    return cfg


def evaluate_checkpoint(name: str, root: Path, profile: str = "smoke", label: str | None = None,
                        overrides: dict[str, Any] | None = None, force: bool = False) -> RunDir:
    """Load, check and evaluate one checkpoint; returns its finished run record."""
    cfg = eval_config(profile, overrides or {})
    for suite in cfg.eval.suites:  # a misspelt suite fails now, before loading anything
        registry.suite(suite)
    weights_for(cfg.eval.optional_metrics)
    weights.require(weights_for(cfg.eval.metrics))
    source = resolve_source(name, label)
    digest = weights.sha256(source.path)
    if source.zoo is not None:
        _check_zoo_file(source.zoo, source.path, digest)
    run = RunDir.for_id(pretrained_run_id(cfg, source.label, digest), root)
    found = None if force else _existing(root, run.run_id)
    if found is not None:
        log.info("%s: this checkpoint was already evaluated under this protocol (%s); reusing "
                 "it (--force to redo)", source.path, found.run_id)
        return found
    model = load_model(source.path)
    if source.zoo is not None and model.architecture != source.zoo.architecture:
        raise UserError(f"{source.path}: loads as {model.architecture}, but zoo entry "
                        f"{source.zoo.name} is {source.zoo.architecture}")
    check_scale(model, cfg, source.path)
    cfg = _tiling(cfg, model)
    device = select_device(cfg.runtime.device)
    if run.path.exists():
        shutil.rmtree(run.path)
    run.path.mkdir(parents=True)
    atomic_write_text(run.path / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    with run_logging(run):
        log.info("evaluating %s (%s x%d, %d parameters, sha256 %s) as %s", source.path,
                 model.architecture, model.scale, model.parameters, digest, run.run_id)
        start = time.perf_counter()
        plan = plan_metrics(cfg.eval.metrics, cfg.eval.optional_metrics, device)
        frame = evaluate(cfg, _Published(), model.net.to(device), run.run_id, root, device, plan)
        run.write_metrics(frame)
        run.write_summary(_summary(cfg, run, source, model, digest, frame, device,
                                   time.perf_counter() - start, plan.unavailable))
    return run


def _summary(cfg: Any, run: RunDir, source: Source, model: LoadedModel, digest: str,
             frame: Any, device: torch.device, seconds: float,
             unavailable: dict[str, str]) -> dict[str, Any]:
    import spandrel

    zoo = source.zoo
    return {"status": "done", "run_id": run.run_id, "method": METHOD, "ablation": "",
            "profile": cfg.profile, "seed": cfg.seed, "label": source.label,
            "architecture": model.architecture, "scale": model.scale,
            "parameters": model.parameters, "checkpoint": str(source.path.resolve()),
            "checkpoint_sha256": digest, "zoo": zoo.name if zoo else None,
            "licence": zoo.licence if zoo else None, "paper": zoo.paper if zoo else None,
            "loader": "robustsr_bench RRDBNet" if model.architecture == HARNESS_RRDBNET
                      else f"spandrel {spandrel.__version__}",
            "size_requirements": {"minimum": model.minimum, "multiple_of": model.multiple_of,
                                  "square": model.square},
            "config_hash": config_hash(cfg), "version": __version__, "init": str(source.path),
            "trained_on": source.trained_on, "train_data": {"dataset": source.trained_on},
            "suites": list(cfg.eval.suites),
            "eval_data": eval_data(cfg, frame, registry.suite_specs(cfg.eval.suites)),
            "train_seconds": 0.0, "eval_seconds": round(seconds, 3), "device": str(device),
            "torch": torch.__version__, "means": summarize(frame),
            "unavailable_metrics": unavailable, "world_size": 1}


def evaluate_command(name: str, root: Path, profile: str, label: str | None,
                     overrides: dict[str, Any], force: bool) -> tuple[Any, RunDir, RunDir]:
    """``evaluate``'s work: the record, and the bicubic reference on the same suites (the CLI
    prints both as ``run`` does). Returns the evaluation config, the reference and the run."""
    run = evaluate_checkpoint(name, root, profile, label, overrides, force)
    cfg = eval_config(profile, overrides)
    return cfg, execute(reference_config(cfg), root), run
