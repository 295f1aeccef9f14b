"""Shared attack code: structured noise, the L-inf PGD and its projection, frozen networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustsr_bench.attacks import frozen, linf_pgd, project_linf, structured_noise
from robustsr_bench.nets.rrdbnet import RRDBNet

EPS, ALPHA = 14 / 255, 1 / 255
# Float32 round-off of (x + delta) - x; the constraint itself is exact up to this.
TOL = 1e-6


def block_runs(noise: Tensor, dim: int) -> int:
    """How many runs of identical consecutive rows (dim=-2) or columns (dim=-1) ``noise`` has.

    Also asserts that neighbours are either identical everywhere or different everywhere, i.e.
    the noise is constant over each nearest-neighbour block and nothing else is shared.
    """
    a = noise.movedim(dim, -1)
    eq = a[..., 1:] == a[..., :-1]
    per_neighbour_pair = eq.flatten(0, -2).T  # (neighbour pairs, everything else)
    assert (per_neighbour_pair.all(1) | (~per_neighbour_pair).all(1)).all()
    return 1 + int((~per_neighbour_pair.all(1)).sum())


def smooth_images(n: int, size: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("size, structure", [(16, 2.0), (24, 1.5), (20, 1.5), (17, 3.0)])
def test_structured_noise_is_constant_over_nearest_blocks(size, structure):
    torch.manual_seed(0)
    noise = structured_noise(torch.zeros(2, 3, size, size + 3), EPS, structure)
    assert noise.shape == (2, 3, size, size + 3)
    assert noise.abs().max() <= EPS
    assert block_runs(noise, -2) == round(size / structure)
    assert block_runs(noise, -1) == round((size + 3) / structure)
    if structure == 2.0:
        blocks = noise[..., ::2, ::2].repeat_interleave(2, -2).repeat_interleave(2, -1)
        assert torch.equal(noise, blocks[..., :size, :size + 3])


def test_structure_one_is_iid_and_any_leading_dims_work():
    torch.manual_seed(0)
    noise = structured_noise(torch.zeros(3, 8, 8), EPS, 1.0)
    assert noise.shape == (3, 8, 8) and noise.unique().numel() == 3 * 8 * 8
    assert structured_noise(torch.zeros(2, 2, 3, 9, 9), EPS, 1.5).shape == (2, 2, 3, 9, 9)
    with pytest.raises(ValueError, match="structure=0.5 is invalid"):
        structured_noise(torch.zeros(1, 1, 4, 4), EPS, 0.5)


def test_project_linf_clips_to_ball_and_image_range():
    x = torch.tensor([0.0, 0.02, 0.5, 0.99, 1.0])
    out = project_linf(x, torch.tensor([-1.0, 0.3, 0.4, 2.0, 1.0]), 0.05)
    assert torch.allclose(out, torch.tensor([0.0, 0.07, 0.45, 1.0, 1.0]))


def _bounds_ok(x: Tensor, x_adv: Tensor, eps: float) -> bool:
    return bool((x_adv - x).abs().max() <= eps + TOL and x_adv.min() >= 0 and x_adv.max() <= 1)


@pytest.mark.parametrize("structure", [1.0, 1.5, 2.0])
def test_every_pgd_iterate_stays_in_the_eps_ball_and_image_range(structure):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 12, 12)
    x[:, :, :3] = 0.0  # pixels on the range boundary: the [0, 1] clip must bind
    x[:, :, -3:] = 1.0
    direction = torch.randn_like(x).sign()
    iterates: list[Tensor] = []

    def linear_loss(z: Tensor) -> Tensor:
        iterates.append(z.detach().clone())
        return (z * direction).sum()

    x_adv = linf_pgd(x, linear_loss, EPS, alpha=EPS / 3, iters=6, structure=structure)
    assert len(iterates) == 6
    for z in [*iterates, x_adv]:
        assert _bounds_ok(x, z, EPS)
    # A linear objective is maximised at the corner of the feasible box, which PGD reaches.
    corner = (x + EPS * direction).clamp(0, 1)
    assert torch.allclose(x_adv, corner, atol=TOL)
    assert not x_adv.requires_grad


def test_random_start_is_blocky_and_in_bounds():
    torch.manual_seed(2)
    x = torch.full((2, 3, 24, 24), 0.5)
    start = linf_pgd(x, lambda z: z.sum(), EPS, ALPHA, iters=0, structure=1.5)
    delta = start - x
    assert _bounds_ok(x, start, EPS) and delta.abs().max() > EPS / 2
    assert block_runs(delta, -2) == 16 and block_runs(delta, -1) == 16


def test_disabled_attack_returns_the_input_exactly():
    x = torch.rand(1, 3, 8, 8)
    state = torch.get_rng_state()
    out = linf_pgd(x, lambda z: z.sum(), EPS, ALPHA, iters=0, random_start=False)
    assert torch.equal(out, x) and torch.equal(torch.get_rng_state(), state)


def _trained_tiny_generator() -> tuple[nn.Module, Tensor, Tensor]:
    """A 4x RRDBNet fitted for a few dozen steps: the attack must beat a trained model."""
    torch.manual_seed(0)
    g = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    hr = smooth_images(4, 32, seed=3)
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", align_corners=False).clamp(0, 1)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.l1_loss(g(lr), hr)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], "the tiny generator did learn"
    return g, lr, hr


def test_attack_raises_the_loss_above_the_random_start_on_a_trained_model():
    g, lr, hr = _trained_tiny_generator()

    def loss_fn(z: Tensor) -> Tensor:
        return F.l1_loss(g(z), hr)

    with frozen(g):
        torch.manual_seed(5)
        start = linf_pgd(lr, loss_fn, EPS, ALPHA, iters=0, structure=1.5)
        torch.manual_seed(5)
        attacked = linf_pgd(lr, loss_fn, EPS, ALPHA, iters=2, structure=1.5)
    with torch.no_grad():
        start_loss, attacked_loss = float(loss_fn(start)), float(loss_fn(attacked))
    assert attacked_loss > start_loss
    assert (attacked - start).abs().max() <= 2 * ALPHA + TOL, "two steps of size alpha"


def test_frozen_leaves_weights_grads_and_flags_untouched():
    torch.manual_seed(0)
    g, d = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 1, 3, padding=1)
    g.weight.grad = torch.randn_like(g.weight)  # a stale gradient must survive; bias has none
    d.bias.requires_grad_(False)  # a flag that was already off must stay off
    before = {k: v.clone() for k, v in [*g.state_dict().items(), *d.state_dict().items()]}
    grad_before = g.weight.grad.clone()
    with frozen(g, d, None):
        assert not any(p.requires_grad for p in [*g.parameters(), *d.parameters()])
        linf_pgd(torch.rand(1, 3, 8, 8), lambda z: d(g(z)).sum(), EPS, ALPHA, iters=2)
    after = {k: v for k, v in [*g.state_dict().items(), *d.state_dict().items()]}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(g.weight.grad, grad_before) and g.bias.grad is None
    assert d.weight.grad is None and d.bias.grad is None
    assert g.weight.requires_grad and g.bias.requires_grad and d.weight.requires_grad
    assert not d.bias.requires_grad


def test_frozen_restores_flags_after_an_error():
    net = nn.Linear(2, 2)
    with pytest.raises(RuntimeError), frozen(net):
        raise RuntimeError("boom")
    assert all(p.requires_grad for p in net.parameters())
