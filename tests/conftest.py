"""Shared fixtures: an isolated work dir and a tiny, fast configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY = {
    "model.num_feat": 8, "model.num_block": 1, "model.num_grow_ch": 4, "disc.num_feat": 4,
    "train.iters": 4, "train.batch_size": 2, "train.patch_size": 32, "train.ckpt_every": 2,
    "train.milestones": [3], "eval.suites": ["clean"], "runtime.progress": False,
    "runtime.device": "cpu",
}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own work dir and an empty torch hub cache (no real weights)."""
    work = tmp_path / "work"
    monkeypatch.setenv("ROBUSTSR_WORKDIR", str(work))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.chdir(tmp_path)
    return work


def as_set_args(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        args += ["--set", f"{key}={text}"]
    return args


REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ}
