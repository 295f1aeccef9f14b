"""Shared fixtures: an isolated work dir and a tiny, fast configuration."""

from __future__ import annotations

import os
from pathlib import Path

# Tests use tiny tensors, where one thread is as fast as two and immune to a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "model.num_feat": 8, "model.num_block": 1, "model.num_grow_ch": 4, "disc.num_feat": 4,
    "train.iters": 4, "train.batch_size": 2, "train.patch_size": 32, "train.ckpt_every": 2,
    "train.milestones": [3], "eval.suites": ["clean"], "runtime.progress": False,
    "runtime.device": "cpu", "eval.optional_metrics": [],
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


TINY_SMOKE = {
    "description": "tiny smoke for tests", "scale": 4,
    "model": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, "disc": {"num_feat": 4},
    "loss": {"mode": "psnr"},
    "train": {"iters": 4, "batch_size": 2, "patch_size": 32, "lr": 2.0e-4, "milestones": [3],
              "ema_decay": 0.99, "ckpt_every": 2},
    "eval": {"suites": ["clean"], "metrics": ["psnr_y", "ssim_y"]},
    "runtime": {"num_workers": 0, "log_every": 50, "progress": False, "device": "cpu"},
}


@pytest.fixture
def tiny_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's configs with a tiny smoke profile, so that the clean baseline a run
    fine-tunes from (resolved from the profile, not from --set) takes seconds, not minutes.

    The baseline's own smoke schedule (``configs/methods/esrgan.yaml`` ``profiles.smoke``) is
    dropped too, so ``esrgan --set train.init=baseline`` is clean fine-tuning on the same tiny
    schedule as the robust methods.
    """
    import shutil

    import yaml

    root = tmp_path / "configs"
    shutil.copytree(REPO / "configs", root)
    (root / "profiles" / "smoke.yaml").write_text(yaml.safe_dump(TINY_SMOKE))
    esrgan = root / "methods" / "esrgan.yaml"
    spec = yaml.safe_load(esrgan.read_text())
    spec.pop("profiles", None)
    esrgan.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(root))
    return root


def as_set_args(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        args += ["--set", f"{key}={text}"]
    return args


