"""scripts/gpu_check.sh's Python entry, on a CPU with tiny networks (no GPU in CI): every mode's
rows, the peer ratio and the data-parallel path (gloo here, NCCL on a GPU) reach the files."""

from __future__ import annotations

import json

import pytest

from robustsr_bench import gpu_check

TINY_SETS = ["--set", "model.num_feat=8", "--set", "model.num_block=1",
             "--set", "model.num_grow_ch=32", "--set", "disc.num_feat=4"]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_tiny_nets(tmp_path):
    code = gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--size", "paper",
                           "--patch", "8", "--batch", "2", "--methods", "esrgan,rsr",
                           "--modes", "fp32,bf16", "--repeats", "1", "--warmup", "0",
                           "--peak-tflops", "1", *TINY_SETS])
    assert code == 0
    result = json.loads((tmp_path / "bench_gpu.json").read_text())
    rows = {(r["mode"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {(m, v) for m in ("fp32", "bf16") for v in ("esrgan", "rsr")}
    assert all(r["tflop_s"] > 0 and r["mfu"] == r["tflop_s"] / 1.0 for r in rows.values())
    assert result["peer"]["ratio"] > 0
    assert result["ddp"]["backend"] == "gloo" and result["ddp"]["ratio"] > 0
    text = (tmp_path / "bench_gpu.md").read_text()
    assert "| bf16 | rsr |" in text and "Data-parallel path" in text


def test_gpu_check_dry_run_and_bad_mode(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bf16+channels_last+compile" in out and "paper-real" in out
    assert not (tmp_path / "bench_gpu.md").exists()
    assert gpu_check.main(["--modes", "fp8", "--dry-run"]) == 2
    assert "--modes fp8 is invalid" in capsys.readouterr().out
