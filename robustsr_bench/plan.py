"""What a run is, before anything runs: its run id and the run it starts from.

The one home of the init rule (``train.init: baseline | method:NAME`` names a run this one
fine-tunes from, unless the method does not train), the baseline and reference configs, and the
run id that covers them. ``run``, ``sweep`` (and its ``--dry-run``), the results store and
``report`` all call these functions, so they agree on which directory a run lives in.
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import registry
from .config import config_hash, flatten, to_dict
from .errors import ConfigError
from .files import safe_name

BASELINE_METHOD = "esrgan"
# ``eval`` too: the baseline is evaluated on the fine-tune's suites (where it is compared with
# it), so a fine-tune on custom suites does not also create and evaluate a second baseline run
# on the profile's default suites; the weights are trained once (runner.adopt_trained_weights).
# ``runtime`` (never in a run id): the baseline trains the way the user asked the run to, e.g.
# in the ``--nproc`` processes and on the ``--device`` of the command that plans it.
_SHARED_SECTIONS = ("scale", "model", "disc", "data", "eval", "runtime")


def baseline_config(cfg: Any, method: str = BASELINE_METHOD) -> Any:
    """The run ``cfg`` fine-tunes from: by default the clean ESRGAN run (the papers' protocol),
    or the default variant of ``method`` (``train.init: method:and``, e.g. ANDGAN from ANDNet).
    Same profile, seed, architecture and training data; the rest from that method's YAML."""
    shared = {k: v for k, v in to_dict(cfg).items() if k in _SHARED_SECTIONS}
    return registry.resolve_config(method, cfg.profile, "", cfg.seed, flatten(shared))


def init_method(init: str) -> str | None:
    """The method whose run ``train.init`` starts from (``baseline`` -> esrgan), else None."""
    if init == "baseline":
        return BASELINE_METHOD
    return init.removeprefix("method:") if init.startswith("method:") else None


def reference_config(cfg: Any) -> Any:
    """The bicubic row evaluated on exactly the same suites (and device) as ``cfg``; in one
    process, whatever ``cfg``'s world size (it trains nothing)."""
    shared = {"scale": cfg.scale, "eval": to_dict(cfg)["eval"], "data.root": cfg.data.root,
              "runtime.device": cfg.runtime.device}
    return registry.resolve_config("bicubic", cfg.profile, "", cfg.seed, flatten(shared))


def start_method(cfg: Any) -> str | None:
    """The method whose run ``cfg`` starts from, or None: scratch, a checkpoint file, or a
    method that does not train (a test-time method needs no ``init:`` line in its YAML)."""
    source = init_method(cfg.train.init)
    if source is None or not trains(cfg.method):
        return None
    return source


def trains(method: str) -> bool:
    """Whether ``method``'s runs train weights (its adapter's ``trains``), or only evaluate."""
    return bool(registry.method_spec(method).load_adapter().trains)


def dependencies(cfg: Any) -> list[Any]:
    """The configs of the runs ``cfg`` starts from, the first to run first: ``[esrgan]`` for a
    fine-tune of the baseline, ``[esrgan, and]`` for ANDGAN (from ANDNet, from the baseline)."""
    chain: list[Any] = []
    seen = [run_id(cfg)]
    current, source = cfg, start_method(cfg)
    while source:
        base = baseline_config(current, source)
        rid = run_id(base)
        if rid in seen:
            what = "this run" if rid == seen[0] else f"run {rid}"
            raise ConfigError(f"train.init={current.train.init} would start {what} from itself; "
                              f"use scratch or a checkpoint path")
        seen.append(rid)
        chain.insert(0, base)
        current, source = base, start_method(base)
    return chain


def run_id(cfg: Any) -> str:
    """``<method>[-<ablation>]-<profile>-s<seed>-<hash8>``: readable, and unique per config.

    A fine-tune's hash also covers the run it starts from (``train.init: baseline`` or
    ``method:NAME``), so changing the baseline's schedule never reuses fine-tunes of the old one.
    """
    digest = config_hash(cfg)
    start = _start_run_id(cfg)
    if start:
        digest = hashlib.sha256(f"{digest}:{start}".encode()).hexdigest()
    parts = [cfg.method] + ([cfg.ablation] if cfg.ablation else [])
    parts += [cfg.profile, f"s{cfg.seed}", digest[:8]]
    return safe_name("-".join(parts))


def _start_run_id(cfg: Any) -> str | None:
    source = start_method(cfg)
    return run_id(baseline_config(cfg, source)) if source else None
