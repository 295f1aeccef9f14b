"""The BasicSR peer step (``bench --peer``) computes ESRGAN's losses as this harness does: on the
same G, D and VGG weights both steps give the same losses, step after step (float reassociation
aside), so the timing ratio compares like with like.

The weights are shared again before every step: ten Adam updates of reassociated float sums move
two free-running copies apart chaotically (2e-3 relative on l_gan by step 7 on one CI CPU), which
would test the CPU's rounding, not the loss terms."""

from __future__ import annotations

from robustsr_bench import bench, registry
from robustsr_bench.peer import peer_for, share_weights

# spandrel's ESRGAN assumes 32 grow channels; a narrow trunk keeps the step fast
SMALL_GAN = {"model.num_feat": 8, "model.num_block": 1, "model.num_grow_ch": 32,
             "disc.num_feat": 4, "train.patch_size": 32, "train.batch_size": 2,
             "runtime.device": "cpu", "runtime.progress": False, "train.init": "scratch"}


def test_basicsr_peer_step_gives_our_losses_on_the_same_weights(tmp_path):
    cfg = registry.resolve_config("esrgan", "paper", overrides=SMALL_GAN)
    ours = bench.build_trainer(cfg, tmp_path)
    peer = peer_for(ours)
    g_ours, g_peer = ours.modules.g.state_dict(), peer.g.state_dict()
    assert len(g_ours) == len(g_peer)
    for step in range(10):
        share_weights(peer, ours)
        batch = bench.random_batch(cfg, ours.device, seed=step)
        mine = ours.train_step(batch, step)
        theirs = peer.step(batch.lq.clone(), batch.gt.clone())
        assert set(mine) == set(theirs)
        for key in mine:
            assert abs(mine[key] - theirs[key]) <= 1e-5 * abs(theirs[key]) + 1e-9, (step, key)
    assert mine["l_gan"] != 0 and mine["l_percep"] > 0


def test_bench_reports_the_peer_ratio_at_a_gan_size(tmp_path):
    opts = bench.BenchOptions(methods=["esrgan"], sizes=["paper"], repeats=1, warmup=0,
                              device="cpu", infer_lr=16, infer_tile=8, loader_batches=1,
                              patch=8, batch=2, peer=True,
                              overrides={k: v for k, v in SMALL_GAN.items()
                                         if k.startswith(("model.", "disc."))})
    report = bench.run_bench(opts, tmp_path)
    peer = report["sizes"][0]["peer"]
    assert peer["ratio"] > 0 and peer["samples"] == 1 and "randomly initialised" in peer["vgg19"]
    assert "BasicSR" in (tmp_path / "bench.md").read_text()
