"""Data-parallel training of one run: 2 CPU processes (gloo) against one process.

Spawned processes start fresh interpreters (a few seconds each on a 2-core machine), so the
end-to-end tests are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import as_set_args
from torch import nn

from robustsr_bench import cli, distributed, registry
from robustsr_bench.data.datasets import StepSampler
from robustsr_bench.distributed import DivergedError, process_group
from robustsr_bench.losses import PerceptualLoss
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Trainer, torch_load


def reported(out: str) -> int:
    """How many esrgan run tables a command printed."""
    return len(re.findall(r"^run esrgan-\S+ -> ", out, re.MULTILINE))


def final_weights(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    (run,) = (root / "runs").glob("esrgan-*")
    return torch_load(max((run / "models").glob("net_g_*.pth"), key=lambda p: p.stat().st_mtime))


def test_rank_slices_of_each_step_are_the_one_process_batch():
    one = list(StepSampler(2, 5, 6))
    ranks = [list(StepSampler(2, 5, 6, rank, 3)) for rank in range(3)]
    for step in range(3):
        union = [i for r in ranks for i in r[step * 2:(step + 1) * 2]]
        assert union == one[step * 6:(step + 1) * 6]
    assert [len(r) for r in ranks] == [6, 6, 6]


def test_batch_not_divisible_by_world_size_is_one_line_exit_2(tiny, capsys):
    args = as_set_args({**tiny, "train.batch_size": 3})
    assert cli.main(["run", *args, "--nproc", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: train.batch_size=3 is invalid with 2 processes; expected a multiple "
                   "of 2 (it is the global batch)")


def test_rank_zero_draws_the_one_process_numbers_and_other_ranks_their_own():
    seeds = [distributed.rank_seed(12345, rank) for rank in range(4)]
    assert seeds[0] == 12345 and len(set(seeds)) == 4


@pytest.mark.slow
def test_a_user_error_inside_the_ranks_is_one_line_exit_2(tiny, capsys):
    args = as_set_args({**tiny, "data.train": "folder", "data.hr_dir": "/nonexistent"})
    assert cli.main(["run", *args, "--nproc", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "error: /nonexistent: folder not found"


def test_world_size_leaves_the_run_id_alone(tiny):
    one = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    two = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "runtime.world_size": 2})
    assert RunDir.for_config(one, Path("w")).run_id == RunDir.for_config(two, Path("w")).run_id


@pytest.mark.slow
def test_two_processes_train_the_one_process_run_and_write_one_record(tiny, tmp_path, capsys):
    """Global batch 4: two ranks x 2 samples give the weights of one process x 4 samples."""
    tiny = {**tiny, "train.batch_size": 4, "runtime.log_every": 1}
    for world, root in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        assert cli.main(["run", *as_set_args(tiny), "--nproc", str(world),
                         "--workdir", str(root)]) == 0
    assert reported(capsys.readouterr().out) == 2  # one table per command, not per rank
    one, two = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for key in ("params", "params_ema"):
        for name, value in one[key].items():
            torch.testing.assert_close(two[key][name], value, atol=1e-5, rtol=0)
    (run,) = (tmp_path / "two" / "runs").glob("esrgan-*")
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (run / "models").iterdir()) == ["net_g_2.pth", "net_g_4.pth"]
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["2.state", "4.state"]
    assert len(list((run / "tb").iterdir())) == 1
    log = (run / "train.log").read_text()
    assert log.count("run esrgan-") == 1 and log.count("step 4/4") == 1
    assert not list(run.rglob("*.tmp"))
    # Resume under another world size: every rank held the same optimiser state.
    for path in (run / "summary.json", run / "models" / "net_g_4.pth",
                 run / "training_states" / "4.state"):
        path.unlink()
    assert cli.main(["run", *as_set_args(tiny), "--workdir", str(tmp_path / "two")]) == 0
    assert "resumed esrgan-" in (run / "train.log").read_text()
    resumed = final_weights(tmp_path / "two")
    for name, value in two["params"].items():
        torch.testing.assert_close(resumed["params"][name], value, atol=1e-5, rtol=0)


def _train_rank(rank: int, world: int, port: int, overrides: dict, root: str) -> None:
    """One rank of a GAN-profile AND run built directly (a tiny conv stands in for VGG19, whose
    weights are absent offline); saves every network this rank ends with."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = registry.resolve_config("and", "smoke", overrides=overrides)
    method = registry.method_spec("and").load_adapter()
    with process_group("cpu", 1.0) as group:
        trainer = Trainer(cfg, method, RunDir.for_config(cfg, Path(root)), None, None)
        torch.manual_seed(0)
        trainer.perceptual = PerceptualLoss(nn.Conv2d(3, 4, 3).requires_grad_(False))
        trainer.fit()
        nets = {"g": trainer.modules.g, "g_ema": trainer.g_ema, "d": trainer.modules.d}
        torch.save({k: v.state_dict() for k, v in nets.items()}, Path(root) / f"rank{rank}.pt")
        if rank == 1:  # a rank that drifted must be caught at the next checkpoint
            with torch.no_grad():
                next(trainer.modules.g.parameters()).add_(1e-3)
        try:
            group.check_in_sync({"net_g": trainer.modules.g})
        except DivergedError as exc:
            (Path(root) / f"diverged{rank}.txt").write_text(str(exc))


@pytest.mark.slow
def test_and_gan_ranks_end_with_identical_networks(tiny, tmp_path):
    overrides = {**tiny, "train.batch_size": 4, "train.init": "scratch", "loss.mode": "gan",
                 "degradation.channels": 4, "degradation.blocks": 1, "attack.iters": 1}
    mp.spawn(_train_rank, args=(2, distributed.free_port(), overrides, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for net in ("g", "g_ema", "d"):
        for name, value in ranks[0][net].items():
            assert torch.equal(ranks[1][net][name], value), (net, name)
    cfg = registry.resolve_config("and", "smoke", overrides=overrides)
    torch.manual_seed(cfg.seed)  # the trainer's initial G: training moved it
    initial = registry.method_spec("and").load_adapter().build_generator(cfg).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in ranks[0]["g"].items())
    assert "net_g differ between ranks" in (tmp_path / "diverged0.txt").read_text()
    assert (tmp_path / "diverged1.txt").exists()
    (run,) = (tmp_path / "runs").glob("and-*")
    assert sorted(p.name for p in (run / "models").iterdir()) == [
        "net_d_2.pth", "net_d_4.pth", "net_g_2.pth", "net_g_4.pth"]


def test_inside_a_launcher_world_size_must_match_it(tiny, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "runtime.world_size": 4})
    with pytest.raises(distributed.ConfigError, match="runtime.world_size=4 is invalid"):
        distributed.wanted_world_size(cfg)
    cfg = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    assert distributed.wanted_world_size(cfg) == 2


@pytest.mark.slow
def test_torchrun_ranks_join_one_group_and_only_rank_zero_reports(tiny, tmp_path, isolated):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "robustsr_bench", "run", *as_set_args({**tiny, "train.batch_size": 4})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert reported(proc.stdout) == 1
    (run,) = (isolated / "runs").glob("esrgan-*")
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_fine_tune_of_a_two_process_baseline_starts_from_its_final_weights(tiny_configs,
                                                                          isolated, capsys):
    """The ranks train the clean baseline together, then each loads its final checkpoint (which
    rank 0 alone wrote) as the fine-tune's initial G while rank 0 evaluates the baseline."""
    args = ["--set", "train.batch_size=4", "--set", "degradation.channels=4",
            "--set", "degradation.blocks=1", "--set", "attack.iters=1"]
    assert cli.main(["run", "--method", "and", "--nproc", "2", *args]) == 0
    (tune,) = (isolated / "runs").glob("and-*")
    (base,) = (isolated / "runs").glob("esrgan-*")
    summary = json.loads((tune / "summary.json").read_text())
    assert summary["init"] == base.name and summary["world_size"] == 2
    assert json.loads((base / "summary.json").read_text())["world_size"] == 2
