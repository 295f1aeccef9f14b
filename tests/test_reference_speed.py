"""The reference benchmark's speed-ups (issue 22) compute what they computed before.

* the EMA update is one ``_foreach_lerp_``: the same bits as a loop of ``lerp_``, so a seed gives
  the same weights after N steps;
* a fine-tune's baseline is evaluated on the fine-tune's suites, so a fine-tune on custom suites
  no longer creates (and evaluates) a second baseline run on the profile's default suites, while
  the default protocol's run ids stay what they were;
* the local launcher shares the cores out between its parallel jobs instead of oversubscribing.
"""

from __future__ import annotations

import copy

import torch

from robustsr_bench.methods.base import Batch
from robustsr_bench import launch, launch_local, plan, registry
from robustsr_bench.bench import build_trainer
from robustsr_bench.results import run_id


def _batch(seed: int) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 32, 32, generator=gen))


def test_foreach_ema_gives_the_same_weights_as_a_loop_after_n_steps(tiny, tmp_path):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "train.init": "scratch"})
    tr = build_trainer(cfg, tmp_path)
    ref_ema = copy.deepcopy(tr.g_ema)
    decay = cfg.train.ema_decay
    for step in range(4):
        tr.train_step(_batch(step), step)
        with torch.no_grad():  # the loop the foreach update replaced
            for p_ema, p in zip(ref_ema.parameters(), tr.modules.g.parameters()):
                p_ema.lerp_(p.detach(), 1 - decay)
    fast, ref = tr.g_ema.state_dict(), ref_ema.state_dict()
    assert fast.keys() == ref.keys()
    assert all(torch.equal(fast[k], ref[k]) for k in ref)
    trained = tr.modules.g.state_dict()["conv_first.weight"]
    assert not torch.equal(fast["conv_first.weight"], trained)  # EMA lags the trained weights


def test_training_twice_with_one_seed_gives_identical_weights_and_losses(tiny, tmp_path):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "train.init": "scratch"})
    runs = []
    for name in ("a", "b"):
        tr = build_trainer(cfg, tmp_path / name)
        losses = [tr.train_step(_batch(step), step) for step in range(3)]
        runs.append((losses, tr.g_ema.state_dict()))
    (la, wa), (lb, wb) = runs
    assert la == lb and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_baseline_is_evaluated_on_the_fine_tunes_suites():
    noise = {"eval.suites": ["noise_s5", "noise_s10"]}
    base = plan.baseline_config(registry.resolve_config("rsr", "smoke", overrides=noise))
    assert base.method == "esrgan" and list(base.eval.suites) == noise["eval.suites"]
    # the sweep's own ESRGAN row on those suites is that very run, not a second copy ...
    assert run_id(base) == run_id(registry.resolve_config("esrgan", "smoke", overrides=noise))
    # ... and the default protocol's baseline keeps its run id
    assert run_id(plan.baseline_config(registry.resolve_config("rsr", "smoke"))) == run_id(
        registry.resolve_config("esrgan", "smoke"))


def test_local_jobs_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch_local.os, "cpu_count", lambda: 2)
    assert launch.local_threads(2) == 1 and launch.local_threads(1) == 2
    assert launch.local_threads(4) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice wins
    assert launch.local_threads(2) == 0


def test_a_local_job_keeps_torch_and_opencv_to_its_cores():
    import cv2
    import torch

    from robustsr_bench import run_job

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        run_job._limit_threads(1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
