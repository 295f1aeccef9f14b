"""What a run was trained and evaluated on, for its record (``summary.json``).

Tables show "trained on / evaluated on" from these fields, so they name datasets the way a
reader knows them (``DIV2K``, ``RealSR-Canon:test``) with image counts, never a machine's
paths where a registered name exists. All of it is **our choice** of record format; it is
additive: older records without these keys still read (the report falls back to
``trained_on``).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from .datasets import train_pairs
from .suite_spec import SuiteSpec


def trained_on(cfg: Any, trains: bool) -> str:
    """``none`` (test-time method), ``embedded``, a registered dataset name, or the HR folder."""
    if not trains:
        return "none"
    if cfg.data.train == "folder":
        return cfg.data.hr_dir
    return cfg.data.train


def train_data(cfg: Any, trains: bool) -> dict[str, Any]:
    """Dataset, split, scale and number of training images (pairs) of a training run."""
    if not trains:
        return {}
    return {"dataset": trained_on(cfg, trains), "split": cfg.data.split or "default",
            "scale": cfg.scale, "images": len(train_pairs(cfg))}


def eval_data(cfg: Any, frame: pd.DataFrame,
              specs: Mapping[str, SuiteSpec]) -> dict[str, dict[str, Any]]:
    """Per suite of ``cfg.eval.suites`` (described by ``specs``): the dataset its images come
    from and how many images were scored."""
    out = {}
    for suite in cfg.eval.suites:
        spec = specs[suite]
        if spec.dataset:
            source = f"{spec.dataset}:{spec.split or 'default'}"
        else:
            source = spec.lr_dir or str(cfg.eval.images)
        crop = spec.fields.get("crop")
        if crop:
            source += f" (central {crop}x{crop} LR crops)"
        images = frame.loc[frame["suite"] == suite, "image"].nunique()
        out[suite] = {"dataset": source, "images": int(images)}
    return out
