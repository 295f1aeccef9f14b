"""BAPD's parts measured where they act (issue 17): each component's effect, as numbers.

* the high-frequency attack moves the mean and the standard deviation of the head features'
  high-frequency component by the configured amounts, and what it changes besides that mean
  shift is high-frequency content only;
* bidirectional distillation pulls the attacked and the clean body features towards each other
  from both sides; one-way distillation moves only the attacked side;
* the detail-recovery branch reads the clean LR's edge map, and that map changes the SR output
  around edges and nowhere far from them.

The networks are tiny RRDBNets on a real photo (skimage's astronaut, a held-out image) so that
the features have natural-image statistics; the step that exercises them is the trainer's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from robustsr_bench.methods.bapd import BAPD, BAPDGenerator, distillation_loss, split_frequencies
from robustsr_bench.methods.base import Batch
from robustsr_bench import registry
from robustsr_bench.data.edges import edge_map
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Trainer


def photo_batch(n: int = 4, lr_side: int = 12, scale: int = 4) -> Batch:
    """``n`` HR patches of the astronaut photo and their bicubic LR."""
    from skimage import data

    hr_side = lr_side * scale
    img = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)
    corners = [(100, 150), (180, 220), (260, 60), (330, 300), (40, 380), (400, 200)][:n]
    gt = torch.stack([img[:, y:y + hr_side, x:x + hr_side] for y, x in corners])
    lq = F.interpolate(gt, scale_factor=1 / scale, mode="bicubic", antialias=True,
                       align_corners=False).clamp(0, 1)
    return Batch(lq, gt)


def bapd_trainer(tiny: dict, tmp_path: Path, ablation: str = "", **overrides) -> Trainer:
    cfg = registry.resolve_config("bapd", "smoke", ablation,
                                  overrides={**tiny, "train.init": "scratch", **overrides})
    torch.manual_seed(0)
    return Trainer(cfg, BAPD(), RunDir(tmp_path / "run"), None, None)


# -- the high-frequency attack -----------------------------------------------------------------


def low_band_fraction(x: Tensor, cutoff: float = 0.125) -> float:
    """Share of the (per-channel mean removed) energy of ``x`` at spatial frequencies below
    ``cutoff`` cycles per pixel."""
    x = x - x.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2)
    fy = torch.fft.fftfreq(x.shape[-2]).abs().view(-1, 1)
    fx = torch.fft.fftfreq(x.shape[-1]).abs().view(1, -1)
    low = (fy ** 2 + fx ** 2).sqrt() < cutoff
    return float(power[..., low].sum() / power.sum())


@pytest.mark.parametrize("mu_box, sigma_box", [(0.1, 0.2), (0.05, 0.1)])
def test_hf_attack_moves_the_hf_mean_and_std_of_head_features_by_the_configured_amount(
        tiny, tmp_path, mu_box, sigma_box):
    tr = bapd_trainer(tiny, tmp_path, "no_pixel_attack", **{"attack.hf.mu_box": mu_box,
                                                           "attack.hf.sigma_box": sigma_box})
    g, bapd, ctx, hf = tr.modules.g, BAPD(), tr._context(0), tr.cfg.attack.hf
    batch = photo_batch()
    attacked = bapd.make_inputs(batch, tr.modules, ctx)
    reached: list[Tensor] = []
    g.body.register_forward_pre_hook(lambda m, a: reached.append(a[0].detach()))
    bapd.forward(attacked, tr.modules, ctx)
    with torch.no_grad():
        head = g.head(batch.lq)
    # the attacked pass is the first half of the one trunk batch (attacked, clean)
    p_in, c_in = reached[0].split(len(head))
    assert torch.equal(c_in, head), "the clean pass sees the head features untouched"
    low, high = split_frequencies(head, hf)
    new_high = p_in - low  # what the attack made of the high-frequency component
    mu, new_mu = high.mean((2, 3)), new_high.mean((2, 3))
    sigma = high.std((2, 3), unbiased=False)
    new_sigma = new_high.std((2, 3), unbiased=False)
    # every channel's HF standard deviation is scaled by exactly 1 +- sigma_box (one ascent step
    # of the full box width reaches a corner of the box)
    ratio = new_sigma / sigma
    torch.testing.assert_close((ratio - 1).abs(), torch.full_like(ratio, sigma_box), atol=1e-4,
                               rtol=1e-4)
    assert ((ratio - 1) > 0).any() and ((ratio - 1) < 0).any(), "the sign follows the gradient"
    # the HF mean moves by mu_box x the batch std of the channel means, per sample and channel
    box = mu_box * mu.std(0, unbiased=False, keepdim=True).expand_as(mu)
    torch.testing.assert_close((new_mu - mu).abs(), box, atol=1e-5, rtol=1e-4)
    assert (box > 0).all(), "every channel's HF mean moves"
    # (on real features the HF means are all near 0, so this box is ~1% of the HF std)
    # besides that per-channel mean shift, the change is HF content: its share of energy below
    # 1/8 cycle per pixel is far below that of the head features themselves
    change = p_in - head
    assert low_band_fraction(change) < 0.5 * low_band_fraction(head)
    assert low_band_fraction(head) > 0.2


# -- distillation ------------------------------------------------------------------------------


def feature_step(tr: Trainer, batch: Batch, lr: float = 0.05) -> dict[str, float]:
    """One SGD step of the generator on the distillation loss alone, the attacked input held
    fixed; returns how far each side moved towards the other side's *old* features."""
    bapd, ctx, g = BAPD(), tr._context(0), tr.modules.g
    torch.manual_seed(3)
    attacked = bapd.make_inputs(batch, tr.modules, ctx)
    out = bapd.forward(attacked, tr.modules, ctx)
    p, c = out.extras["p"], out.extras["c"]
    g_p, g_c = torch.autograd.grad(distillation_loss(p, c, tr.cfg.defense), (p, c),
                                   allow_unused=True)
    p0, c0 = p.detach(), c.detach()
    opt = torch.optim.SGD(g.parameters(), lr=lr)
    opt.zero_grad()
    distillation_loss(p, c, tr.cfg.defense).backward()
    opt.step()
    with torch.no_grad():
        after = bapd.forward(attacked, tr.modules, ctx)
    p1, c1 = after.extras["p"], after.extras["c"]
    return {"grad_p": float(g_p.abs().sum()),
            "grad_c": 0.0 if g_c is None else float(g_c.abs().sum()),
            "gap_before": float((p0 - c0).abs().mean()), "gap_after": float((p1 - c1).abs().mean()),
            # first order: how each side's own gradient moves it towards the other side
            "p_towards_c": float((-g_p * (c0 - p0)).sum()),
            "c_towards_p": 0.0 if g_c is None else float((-g_c * (p0 - c0)).sum())}


def test_bidirectional_distillation_pulls_both_sides_one_way_only_the_attacked(tiny, tmp_path):
    batch = photo_batch()
    both = feature_step(bapd_trainer(tiny, tmp_path / "a"), batch)
    one = feature_step(bapd_trainer(tiny, tmp_path / "b", "one_way_distillation"), batch)
    for moved in (both, one):
        assert moved["gap_before"] > 1e-3, "the attack separated the two passes"
        assert moved["gap_after"] < moved["gap_before"], "one step brings them closer"
        assert moved["grad_p"] > 0 and moved["p_towards_c"] > 0, "attacked side pulled to clean"
    assert both["grad_c"] > 0 and both["c_towards_p"] > 0, "clean side pulled to attacked"
    assert one["grad_c"] == 0.0 and one["c_towards_p"] == 0.0, "one-way: clean side untouched"
    # lambda_back = 0.5: the backward pull is half the forward one (L1: |grad| is a constant)
    assert both["grad_c"] == pytest.approx(0.5 * both["grad_p"], rel=1e-5)
    # same attacked input and weights: the one-way step is the forward half of the two-way step
    assert one["grad_p"] == pytest.approx(both["grad_p"], rel=1e-6)


# -- detail recovery ---------------------------------------------------------------------------


def square_image(lr_side: int = 24, scale: int = 4) -> Tensor:
    """A flat grey LR image with one bright square: edges on its outline only."""
    img = torch.full((1, 3, lr_side, lr_side), 0.3)
    img[..., 8:16, 8:16] = 0.8
    return img


def test_detail_recovery_reads_the_clean_lr_edge_map_in_training_and_inference(tiny, tmp_path):
    tr = bapd_trainer(tiny, tmp_path)
    g, bapd, ctx = tr.modules.g, BAPD(), tr._context(0)
    seen: list[Tensor] = []
    g.detail_recovery.register_forward_pre_hook(lambda m, a: seen.append(a[1].detach()))
    batch = photo_batch()
    torch.manual_seed(3)
    attacked = bapd.make_inputs(batch, tr.modules, ctx)
    assert not torch.equal(attacked.lq, batch.lq), "the pixel attack changed the LR"
    seen.clear()
    bapd.forward(attacked, tr.modules, ctx)
    assert len(seen) == 1 and torch.equal(seen[0], edge_map(batch.lq)), "clean LR's edges"
    lr = square_image()
    with torch.no_grad():
        g(lr)
    assert torch.equal(seen[-1], edge_map(lr))


def test_the_edge_map_changes_sr_around_edges_and_nowhere_far_from_them():
    scale = 4
    torch.manual_seed(0)
    g = BAPDGenerator(scale, num_feat=8, num_block=1, num_grow_ch=4, detail_channels=8).eval()
    with torch.no_grad():  # a trained branch is not zero (its last conv starts at zero)
        for p in g.detail_recovery.parameters():
            p.add_(0.1 * torch.randn_like(p))
    lr = square_image()
    edges = edge_map(lr)
    flat = edge_map(torch.full_like(lr, 0.3))  # what a flat image's map is everywhere
    with torch.no_grad():
        feat = g.features(lr)
        effect = (g.reconstruct(feat, edges) - g.reconstruct(feat, flat)).abs().amax(1)[0]
    # distance (in LR pixels, Chebyshev) of every SR pixel from the nearest LR edge pixel
    on_edge = (edges[0, 0] > 0.05).float()
    near = [on_edge]
    for _ in range(8):
        near.append(F.max_pool2d(near[-1][None, None], 3, 1, 1)[0, 0])
    distance = 9 - torch.stack(near).sum(0)  # 0 on an edge, 9 = farther than 8
    distance = distance.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    assert float(effect[distance == 0].mean()) > 1e-3, "SR changes where the edges are"
    # the branch (two 3x3 convs) and the x4 tail see about 3-4 LR pixels around a pixel
    assert float(effect[distance >= 5].max()) < 1e-6, "and nowhere far from them"
    assert float(effect[distance == 0].mean()) > 3 * float(effect[(distance >= 2)
                                                                  & (distance < 5)].mean())
