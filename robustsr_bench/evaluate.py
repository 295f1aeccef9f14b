"""Evaluation: every suite's LR through ``method.restore``, metrics per image, one tidy frame.

SR outputs are quantised to 8 bits before measuring, because the literature measures saved PNGs.
Images larger than ``eval.tile_budget_mp`` are restored tile by tile (:func:`restore_image`).
Each image also records ``seconds`` (restore wall time), which matters for test-time methods, and
``kernel_psnr`` where the suite knows the true blur kernel and the method's restore returned an
estimate of the same size (:class:`Restored`). The SR outputs of the images named in
``eval.save_images`` are kept as ``<run>/images/<suite>/<stem>.png`` for visual comparisons.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from robustsr_bench.methods.base import Method, Restored

from . import registry
from .data import embedded
from .data.blur_kernels import kernel_psnr
from .data.io import quantize, save_image, to_numpy, to_tensor
from .data.layouts import image_folder_or_dataset
from .data.suites import load_suite
from .files import Workdir
from .metrics import MetricPlan, plan_metrics
from .results import METRIC_COLUMNS
from .tiling import needs_tiling, tiled_restore

log = logging.getLogger("robustsr_bench")


def eval_images(cfg: Any) -> list[Path]:
    """Held-out images of the config: the embedded split, or a folder of HR images."""
    if cfg.eval.images == "embedded":
        return embedded.held_out_paths()
    return image_folder_or_dataset(cfg.eval.images, cfg.data.root, cfg.scale)


def restore_image(method: Method, lr: Tensor, net: nn.Module | None, cfg: Any) -> Restored:
    """``method.restore(lr)``, tiled (:mod:`robustsr_bench.tiling`) when the LR image exceeds
    ``eval.tile_budget_mp`` and the method declares it may be (``method.tiles``)."""
    e = cfg.eval
    h, w = lr.shape[-2:]
    if not (method.tiles and needs_tiling(h, w, e.tile_size, e.tile_budget_mp)):
        return _restore(method, lr, net, cfg)
    sr = tiled_restore(lambda tile: _restore(method, tile, net, cfg).sr, lr, cfg.scale,
                       e.tile_size, e.tile_overlap, e.tile_blend,
                       multiple=getattr(net, "unshuffle", 1))
    return Restored(sr)


def _restore(method: Method, lr: Tensor, net: nn.Module | None, cfg: Any) -> Restored:
    out = method.restore(lr, net, cfg)
    if isinstance(out, Tensor):  # an adapter written before restore returned Restored
        warnings.warn(f"{type(out).__name__} from {type(method).__name__}.restore: return "
                      f"robustsr_bench.methods.base.Restored(sr) instead of the bare tensor",
                      FutureWarning, stacklevel=2)
        return Restored(out)
    return out


def evaluate(cfg: Any, method: Method, net: nn.Module | None, run_id: str, root: Path,
             device: torch.device, plan: MetricPlan | None = None,
             images_dir: Path | None = None) -> pd.DataFrame:
    """Metrics of ``net`` (through ``method.restore``) on every suite of ``cfg.eval``.

    Saved SR images go to ``images_dir`` (default ``<root>/runs/<run_id>/images``; a ``--force``
    redo builds its run beside the old one). One log line per suite says where it stands.

    Each SR output is computed once and scored by every metric of ``plan`` (default: planned
    from ``cfg.eval``); images without HR (no-reference suites) get no-reference metrics only.
    """
    plan = plan or plan_metrics(cfg.eval.metrics, cfg.eval.optional_metrics, device)
    metrics = plan.metrics
    images = eval_images(cfg)
    ident = {"run_id": run_id, "method": cfg.method, "ablation": cfg.ablation,
             "profile": cfg.profile, "seed": cfg.seed}
    if net is not None:
        net.eval()
    images_dir = images_dir or Workdir(root).run(run_id) / "images"
    rows = []
    for number, suite in enumerate(cfg.eval.suites, start=1):
        log.info("%s: evaluating suite %d/%d %s", run_id, number, len(cfg.eval.suites), suite)
        for item in load_suite(registry.suite_spec(suite), cfg.scale, images, root,
                               cfg.data.root):
            start = time.perf_counter()
            restored = restore_image(method, to_tensor(item.lr).to(device), net, cfg)
            seconds = time.perf_counter() - start
            sr_img = to_numpy(quantize(restored.sr.detach().float().cpu()))
            if item.name in cfg.eval.save_images:
                save_image(images_dir / suite / f"{item.name}.png", sr_img)
            values = {m.name: m(sr_img, item.hr, crop_border=cfg.scale) for m in metrics
                      if item.hr is not None or not m.needs_reference}
            values["seconds"] = seconds
            estimate = restored.kernel
            if estimate is not None and item.kernel is not None \
                    and tuple(estimate.shape) == item.kernel.shape:
                values["kernel_psnr"] = kernel_psnr(estimate.detach().cpu(), item.kernel)
            rows += [{**ident, "suite": suite, "image": item.name, "metric": k, "value": float(v)}
                     for k, v in values.items()]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
