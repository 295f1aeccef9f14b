"""The speed-ups compute what the plain implementation computes.

* the perceptual loss reuses the HR features within a step: same values, fewer VGG passes;
* attacks run with frozen networks, ``no_grad`` head features and the cached HR features: for the
  same seed each method's attack gives the perturbation an unoptimised reference gives;
* ``runtime.channels_last`` / ``compile`` reproduce fp32 steps to rounding, ``bf16`` to bf16
  precision, and bf16 is honoured on CPU only when ``bf16_cpu`` asks for it.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from robustsr_bench.methods.base import Batch
from robustsr_bench import registry, speed
from robustsr_bench.bench import build_trainer
from robustsr_bench.losses import PerceptualLoss
from robustsr_bench.nets.rrdbnet import RRDBNet


class CountingExtractor(nn.Module):
    """A small frozen conv stack standing in for VGG19 (the caching does not depend on it)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(4, 4, 3, stride=2, padding=1)).requires_grad_(False)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.net(x)


def test_perceptual_hr_features_are_computed_once_per_unchanged_hr():
    loss = PerceptualLoss(CountingExtractor())
    sr, hr = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    first = loss(sr, hr)
    second = loss(sr, hr)
    assert loss.extractor.calls == 3  # hr once, sr twice
    fresh = torch.nn.functional.l1_loss(loss.extractor.net(sr), loss.extractor.net(hr))
    assert torch.equal(first, second) and torch.equal(first, fresh)
    hr.mul_(0.5)  # an in-place change must not be served from the cache
    assert torch.equal(loss(sr, hr), torch.nn.functional.l1_loss(loss.extractor.net(sr),
                                                                  loss.extractor.net(hr)))
    assert loss.extractor.calls == 5
    loss(sr, hr.clone())  # a different tensor with equal values is recomputed too
    assert loss.extractor.calls == 7


# -- attacks: optimised == reference -----------------------------------------------------------

ATTACKS = {  # method -> overrides that make its attack use the perceptual term
    "rsr": {"attack.loss": "l1+percep"},
    "bapd": {"attack.loss": "l1+percep"},
    "and": {"attack.perceptual_weight": 1.0, "attack.radius": 0.05, "attack.step": 0.02},
}


def tiny_trainer(method: str, tiny: dict, tmp_path: Path, **overrides):
    cfg = registry.resolve_config(method, "smoke", overrides={
        **tiny, "train.init": "scratch", **ATTACKS.get(method, {}), **overrides})
    tr = build_trainer(cfg, tmp_path)
    tr.perceptual = PerceptualLoss(CountingExtractor())
    return tr


def attacked(tr, batch: Batch, seed: int = 3) -> Batch:
    torch.manual_seed(seed)
    return tr.method.make_inputs(batch, tr.modules, tr._context(0))


def unoptimised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference: networks not frozen, head features with gradient, no HR-feature cache."""
    from robustsr_bench.methods import and_degradation, bapd, rsr

    for module in (rsr, bapd, and_degradation):
        monkeypatch.setattr(module, "frozen", lambda *nets: nullcontext())
    monkeypatch.setattr(bapd.torch, "no_grad", nullcontext)

    def fresh_target(self: PerceptualLoss, hr: Tensor) -> Tensor:
        return self.extractor(hr).detach()

    monkeypatch.setattr(PerceptualLoss, "target", fresh_target)


@pytest.mark.parametrize("method", ["rsr", "bapd", "and"])
def test_attack_gives_the_reference_perturbation_for_the_same_seed(method, tiny, tmp_path,
                                                                   monkeypatch):
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    tr = tiny_trainer(method, tiny, tmp_path)
    fast = attacked(tr, batch)
    fast_calls = tr.perceptual.extractor.calls
    unoptimised(monkeypatch)
    tr.perceptual.extractor.calls = 0
    slow = attacked(tr, batch)
    assert fast.lq.shape == slow.lq.shape
    assert (fast.lq - slow.lq).abs().max() <= 1e-6
    assert not torch.equal(fast.lq, batch.lq)  # the attack did move the input
    for key in ("hf_d_mu", "hf_d_sigma"):
        if key in fast.extras:
            assert (fast.extras[key] - slow.extras[key]).abs().max() <= 1e-6
    assert fast_calls < tr.perceptual.extractor.calls  # the cache saved VGG passes


# -- runtime speed knobs -------------------------------------------------------------------------


def steps(tr, n: int = 2) -> list[dict[str, float]]:
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 32, 32, generator=gen))
    return [tr.train_step(batch, step) for step in range(n)]


def close(a: list[dict[str, float]], b: list[dict[str, float]], rtol: float) -> bool:
    return all(abs(x[k] - y[k]) <= rtol * max(abs(y[k]), 1e-3) for x, y in zip(a, b) for k in y)


@pytest.mark.parametrize("method", ["esrgan", "rsr", "bapd", "and"])
def test_channels_last_steps_match_fp32(method, tiny, tmp_path):
    ref = tiny_trainer(method, tiny, tmp_path / "a", **{"runtime.channels_last": False})
    fast = tiny_trainer(method, tiny, tmp_path / "b", **{"runtime.channels_last": True})
    assert not ref.modules.g.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.modules.g.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert close(steps(fast), steps(ref), rtol=1e-3)
    for p, q in zip(fast.modules.g.parameters(), ref.modules.g.parameters()):
        assert (p - q).abs().max() < 1e-4


def test_bf16_is_cuda_only_unless_asked_for_on_cpu(tiny, tmp_path):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "runtime.bf16": True})
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not speed.autocast_enabled(cfg.runtime, cpu)
    assert speed.autocast_enabled(cfg.runtime, cuda)
    cfg.runtime.bf16_cpu = True
    assert speed.autocast_enabled(cfg.runtime, cpu)
    cfg.runtime.bf16 = False
    assert not speed.autocast_enabled(cfg.runtime, cpu)
    ref = tiny_trainer("rsr", tiny, tmp_path / "a")
    off = tiny_trainer("rsr", tiny, tmp_path / "b", **{"runtime.bf16": True})
    assert cfg.runtime.channels_last  # the smoke profile's NHWC is on in both
    assert steps(off) == steps(ref)  # bf16 alone is a no-op on CPU: bit for bit


def test_bf16_on_cpu_stays_within_bf16_precision_of_fp32(tiny, tmp_path):
    ref = tiny_trainer("bapd", tiny, tmp_path / "a")
    bf16 = tiny_trainer("bapd", tiny, tmp_path / "b",
                        **{"runtime.bf16": True, "runtime.bf16_cpu": True})
    assert close(steps(bf16, 1), steps(ref, 1), rtol=0.05)


def test_compiled_blocks_keep_names_and_outputs():
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    names = list(net.state_dict())
    ref = net(x)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    assert speed.compile_blocks(net, backend="aot_eager") == 2
    assert list(net.state_dict()) == names
    out = net(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert (out - ref).abs().max() < 1e-5 and (grad - ref_grad).abs().max() < 1e-4


def test_runtime_compile_compiles_g_and_not_its_ema(tiny, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(speed, "compile_blocks", lambda g, backend="inductor": compiled.append(g))
    tr = tiny_trainer("esrgan", tiny, tmp_path, **{"runtime.compile": True})
    assert compiled == [tr.modules.g]


def test_bapd_joint_trunk_pass_equals_two_separate_passes(tiny, tmp_path):
    """The attacked and clean passes share one trunk call; features and G's gradients are
    those of the two separate passes the method describes."""
    from robustsr_bench.methods.bapd import apply_hf_perturbation, distillation_loss

    tr = tiny_trainer("bapd", tiny, tmp_path)
    g, cfg = tr.modules.g, tr.cfg
    batch = attacked(tr, Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)))
    out = tr.method.forward(batch, tr.modules, tr._context(0))
    loss = out.sr.abs().mean() + distillation_loss(out.extras["p"], out.extras["c"], cfg.defense)
    fast = torch.autograd.grad(loss, list(g.parameters()))

    def perturb(feat: Tensor) -> Tensor:
        return apply_hf_perturbation(feat, batch.extras["hf_d_mu"], batch.extras["hf_d_sigma"],
                                     cfg.attack.hf)

    p = g.features(batch.lq, perturb)
    c = g.features(batch.extras["lq_clean"])
    sr = g.reconstruct(p, batch.extras["lr_edge"])
    ref_loss = sr.abs().mean() + distillation_loss(p, c, cfg.defense)
    ref = torch.autograd.grad(ref_loss, list(g.parameters()))
    assert (out.extras["p"] - p).abs().max() < 1e-6 and (out.extras["c"] - c).abs().max() < 1e-6
    assert (out.sr - sr).abs().max() < 1e-6
    assert all((a - b).abs().max() <= 1e-5 * (1 + b.abs().max()) for a, b in zip(fast, ref))


def test_smoke_profile_runs_channels_last_and_evaluates_to_rounding(tiny, tmp_path):
    """The smoke profile turns NHWC on (its speed-up is measured in results/bench.md); the
    EMA generator evaluated NHWC gives the NCHW output to float rounding, so 8-bit SR images
    (what evaluation scores) differ by at most one level on a few pixels."""
    fast = tiny_trainer("esrgan", tiny, tmp_path / "a")
    assert fast.cfg.runtime.channels_last
    assert fast.g_ema.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    lr = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        nhwc = fast.g_ema(lr)
        nchw = fast.g_ema.to(memory_format=torch.contiguous_format)(lr)
    assert (nhwc - nchw).abs().max() < 1e-5
    levels = ((nhwc.clamp(0, 1) * 255).round() - (nchw.clamp(0, 1) * 255).round()).abs()
    assert levels.max() <= 1 and (levels > 0).float().mean() < 0.01


@pytest.mark.parametrize("method", ["esrgan", "bapd"])
def test_fused_adam_matches_the_default_adam_to_rounding(method, tiny, tmp_path):
    """Fused Adam (the default) against torch's default Adam: losses of 10 steps within 1e-5
    relative, weights after them to 1e-5, and the optimiser really is the fused one."""
    ref = tiny_trainer(method, tiny, tmp_path / "a", **{"runtime.fused_adam": False})
    fast = tiny_trainer(method, tiny, tmp_path / "b")
    assert fast.opt_g.param_groups[0]["fused"] and not ref.opt_g.param_groups[0]["fused"]
    assert close(steps(fast, 10), steps(ref, 10), rtol=1e-5)
    for p, q in zip(fast.modules.g.parameters(), ref.modules.g.parameters()):
        assert (p - q).abs().max() <= 1e-5 * (1 + q.abs().max())
