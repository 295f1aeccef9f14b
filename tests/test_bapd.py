"""BAPD adapter: config and ablations, the two attack levels, distillation, detail recovery, edge
maps (function and dataset), checkpoint compatibility with RRDBNet, and end-to-end runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from robustsr_bench.methods.bapd import (
    BAPD,
    BRANCH_PREFIX,
    BAPDGenerator,
    DefenseConfig,
    HFAttackConfig,
    apply_hf_perturbation,
    distillation_loss,
    distillation_terms,
    hf_attack,
    hf_box,
    perturb_high,
    rrdbnet_state,
    split_frequencies,
)
from robustsr_bench.methods.base import Batch
from robustsr_bench import registry
from robustsr_bench.cli import main
from robustsr_bench.config import RunConfig, flatten, read_yaml, schema_for, to_object, typed_base
from robustsr_bench.data.datasets import Pair, PatchDataset, with_edges
from robustsr_bench.data.edges import EdgeConfig, edge_image, edge_map
from robustsr_bench.data.io import load_image, save_image
from robustsr_bench.errors import ConfigError, DataError, UserError
from robustsr_bench.nets.rrdbnet import RRDBNet, load_generator_state
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Trainer
from tests.conftest import REPO

ABLATIONS = {
    "no_pixel_attack": {"attack.pixel.enabled": False},
    "no_hf_attack": {"attack.hf.enabled": False},
    "no_attack": {"attack.pixel.enabled": False, "attack.hf.enabled": False},
    "no_distillation": {"defense.distillation": "none"},
    "one_way_distillation": {"defense.distillation": "one_way"},
    "no_detail_recovery": {"defense.detail_recovery": False},
}
SECTIONS = ("attack", "defense", "edges")


def flat_options(ablation: str = "", profile: str = "paper") -> dict:
    cfg = registry.resolve_config("bapd", profile, ablation)
    return flatten({k: dataclasses.asdict(getattr(cfg, k)) for k in SECTIONS})


# -- configuration -----------------------------------------------------------------------------


def test_defaults_are_methods_md():
    cfg = registry.resolve_config("bapd", "paper")
    a, d = cfg.attack, cfg.defense
    assert (a.pixel.eps, a.pixel.iters) == (8 / 255, 1)
    assert (a.hf.mu_box, a.hf.sigma_box, a.hf.steps) == (0.1, 0.2, 1)
    assert (d.distillation, d.lambda_back, d.distill_weight, d.edge_weight) == (
        "bidirectional", 0.5, 1.0, 0.1)
    assert d.detail_recovery and cfg.edges.method == "sobel" and cfg.train.init == "baseline"
    assert a.loss_weights() == (0.01, 1.0)
    assert registry.resolve_config("bapd", "smoke").attack.loss == "l1", "no VGG19 offline"
    # the YAML repeats the dataclass defaults: one place to read them, and they agree
    bare = to_object(typed_base(schema_for(BAPD.options)))
    assert isinstance(bare, RunConfig)
    for section in SECTIONS:
        assert getattr(bare, section) == getattr(cfg, section)


@pytest.mark.parametrize("ablation, changes", ABLATIONS.items())
def test_each_ablation_changes_exactly_its_fields(ablation, changes):
    default, varied = flat_options(), flat_options(ablation)
    assert {k: v for k, v in varied.items() if v != default[k]} == changes


@pytest.mark.parametrize("combo", ["no_pixel_attack+no_hf_attack", "no_attack+no_distillation",
                                   "no_hf_attack+one_way_distillation+no_detail_recovery",
                                   "no_pixel_attack+no_distillation+no_detail_recovery"])
def test_compatible_ablations_combine(combo):
    cfg = registry.resolve_config("bapd", "smoke", combo)
    expected = {}
    for part in combo.split("+"):
        expected.update(ABLATIONS[part])
    default = flat_options(profile="smoke")
    varied = flat_options(combo, profile="smoke")
    assert {k: v for k, v in varied.items() if v != default[k]} == expected
    assert cfg.ablation == combo


@pytest.mark.parametrize("combo, key", [
    ("no_attack+no_pixel_attack", "attack.pixel.enabled"),
    ("no_hf_attack+no_attack", "attack.hf.enabled"),
    ("no_distillation+one_way_distillation", "defense.distillation")])
def test_incompatible_ablations_are_refused(combo, key, capsys):
    first, second = combo.split("+")
    with pytest.raises(ConfigError, match=f"'{first}' and '{second}' cannot be combined: both "
                                          f"set {key}"):
        registry.resolve_config("bapd", "smoke", combo)
    assert main(["run", "--method", "bapd", "--ablation", combo]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_range_errors_are_one_line():
    for key, value, expected in [("attack.hf.sigma_box", 1.0, "a number in [0, 1)"),
                                 ("attack.hf.blur_size", 4, "an odd integer >= 3"),
                                 ("defense.distillation", "both", "one of: bidirectional"),
                                 ("edges.method", "laplace", "one of: sobel, canny"),
                                 ("attack.pixel.eps", 2, "a number in [0, 1]")]:
        with pytest.raises(ConfigError, match=r"is invalid; expected") as info:
            registry.resolve_config("bapd", "smoke", overrides={key: value})
        assert f"{key}={value!r}" in str(info.value) and expected in str(info.value)


def test_needs_perceptual_only_when_an_attack_uses_it():
    bapd = BAPD()

    def needs(ablation: str = "", profile: str = "paper") -> bool:
        return bapd.needs_perceptual(registry.resolve_config("bapd", profile, ablation))

    assert needs() and needs("no_pixel_attack") and needs("no_hf_attack")
    assert not needs("no_attack") and not needs(profile="smoke")


def test_sweep_file_lists_every_ablation_next_to_esrgan():
    sweep = read_yaml(REPO / "configs" / "sweeps" / "bapd_ablation.yaml")
    assert set(sweep) == {"name", "description", "profile", "seeds", "runs"}
    assert sweep["seeds"] == [0]
    runs = [(r["method"], r["ablation"]) for r in sweep["runs"]]
    assert len(runs) == len(set(runs)) and ("esrgan", "") in runs
    assert {a for m, a in runs if m == "bapd"} == {"", *ABLATIONS}
    for method, ablation in runs:
        registry.resolve_config(method, sweep["profile"], ablation)


# -- generator and checkpoints -----------------------------------------------------------------

SIZE = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def rrdbnet(scale: int = 4) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(3, 3, scale, **SIZE)


def bapd_g(scale: int = 4, detail: int = 8) -> BAPDGenerator:
    torch.manual_seed(1)
    return BAPDGenerator(scale, **SIZE, detail_channels=detail)


def test_state_dict_is_rrdbnet_keys_plus_branch_prefix():
    plain, full, bare = rrdbnet(), bapd_g(), bapd_g(detail=0)
    keys = set(full.state_dict())
    branch = {k for k in keys if k.startswith(BRANCH_PREFIX)}
    assert branch and keys - branch == set(plain.state_dict())
    assert set(bare.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize("scale", [4, 2])
def test_clean_checkpoint_initialises_bapd_exactly(scale):
    plain, g = rrdbnet(scale), bapd_g(scale)
    branch_before = {k: v.clone() for k, v in g.state_dict().items() if k.startswith(BRANCH_PREFIX)}
    g.load_state_dict(plain.state_dict())  # the trainer's train.init=baseline path
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(g(x), plain(x)), "zero-initialised branch: BAPD starts as its RRDBNet"
    assert all(torch.equal(g.state_dict()[k], v) for k, v in branch_before.items())
    other = bapd_g(scale)
    load_generator_state(other, {"params_ema": plain.state_dict()}, "clean.pth")  # --init path
    assert torch.equal(other(x), plain(x))


def test_partial_or_foreign_states_are_refused():
    g = bapd_g()
    state = g.state_dict()
    partial = {k: v for k, v in state.items() if k != f"{BRANCH_PREFIX}conv2.bias"}
    with pytest.raises(RuntimeError, match="Missing key"):
        g.load_state_dict(partial)
    with pytest.raises(UserError, match="unexpected detail_recovery"):
        load_generator_state(rrdbnet(), state, "bapd.pth")


def test_rrdbnet_state_loads_into_rrdbnet_and_matches_the_branchless_path():
    g = bapd_g()
    with torch.no_grad():
        for p in g.detail_recovery.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a trained, non-zero branch
    files = {"params": g.state_dict(), "params_ema": g.state_dict(), "meta": {"step": 3}}
    stripped = rrdbnet_state(files)
    assert stripped["meta"] == {"step": 3}
    net = rrdbnet()
    load_generator_state(net, stripped, "bapd.pth")
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(net(x), g.tail(g.features(x)))
        assert not torch.equal(net(x), g(x)), "the branch contributes at inference"


def test_inference_uses_the_lr_edge_map_at_every_scale():
    for scale in (4, 3, 2):
        g = bapd_g(scale)
        with torch.no_grad():
            out = g(torch.rand(1, 3, 8, 8))
        assert out.shape == (1, 3, 8 * scale, 8 * scale)


# -- the high-frequency attack -----------------------------------------------------------------


def test_hf_perturbation_moves_high_frequency_statistics_within_the_box_only():
    torch.manual_seed(0)
    cfg = HFAttackConfig()
    feat = torch.randn(4, 6, 16, 16)
    weight = torch.randn(1, 6, 16, 16)
    d_mu, d_sigma = hf_attack(feat, lambda f: (f * weight).sum(), cfg)
    low, high = split_frequencies(feat, cfg)
    box_mu, box_sigma = hf_box(high, cfg)
    assert (d_mu.abs() <= box_mu + 1e-7).all() and (d_sigma.abs() <= box_sigma + 1e-7).all()
    assert (d_sigma.abs() > 0.19).all() and (d_mu != 0).any(), "one step reaches the box corner"
    attacked = apply_hf_perturbation(feat, d_mu, d_sigma, cfg)
    new_high = perturb_high(high, d_mu, d_sigma)
    assert torch.equal(attacked, low + new_high), "the low-frequency component passes unchanged"
    mu, sigma = high.mean((2, 3), keepdim=True), high.std((2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(new_high.mean((2, 3), keepdim=True), mu + d_mu, atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(new_high.std((2, 3), unbiased=False, keepdim=True),
                               sigma * (1 + d_sigma), atol=1e-5, rtol=1e-5)
    # signed-gradient ascent: the (linear) attacked objective went up
    assert (attacked * weight).sum() > (feat * weight).sum()


def test_hf_mean_box_is_a_tenth_of_the_batch_std_of_the_channel_means():
    cfg = HFAttackConfig()
    high = torch.randn(3, 2, 8, 8) + torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1, 1)
    box_mu, box_sigma = hf_box(high, cfg)
    expected = 0.1 * high.mean((2, 3)).std(0, unbiased=False)
    torch.testing.assert_close(box_mu[:, :, 0, 0], expected.expand(3, 2))
    assert torch.equal(box_sigma, torch.full_like(box_sigma, 0.2))


# -- distillation ------------------------------------------------------------------------------


def leaves() -> tuple[Tensor, Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(2, 4, 5, 5,
                                                                   requires_grad=True)


def test_distillation_gradients_reach_only_the_student_of_each_direction():
    p, c = leaves()
    forward, backward = distillation_terms(p, c)
    g_p, g_c = torch.autograd.grad(forward, (p, c), allow_unused=True)
    assert g_c is None and g_p.abs().sum() > 0, "|p - sg(c)| trains only the attacked side"
    g_p, g_c = torch.autograd.grad(backward, (p, c), allow_unused=True)
    assert g_p is None and g_c.abs().sum() > 0, "|c - sg(p)| trains only the clean side"
    both = distillation_loss(p, c, DefenseConfig())
    g_p, g_c = torch.autograd.grad(both, (p, c))
    torch.testing.assert_close(g_c, 0.5 * torch.sign(c - p).detach() / p.numel())
    torch.testing.assert_close(g_p, torch.sign(p - c).detach() / p.numel())
    one_way = distillation_loss(p, c, DefenseConfig(distillation="one_way"))
    assert torch.autograd.grad(one_way, (p, c), allow_unused=True)[1] is None


# -- inside a training step --------------------------------------------------------------------


class Recorder:
    """What reaches the head (``conv_first`` input at x4), what it returns, and what reaches the
    body, for every pass of a step (attacks included)."""

    def __init__(self, g: BAPDGenerator):
        self.head_in: list[Tensor] = []
        self.head_out: list[Tensor] = []
        self.body_in: list[Tensor] = []
        g.conv_first.register_forward_pre_hook(lambda m, a: self.head_in.append(a[0].detach()))
        g.conv_first.register_forward_hook(lambda m, a, o: self.head_out.append(o.detach()))
        g.body.register_forward_pre_hook(lambda m, a: self.body_in.append(a[0].detach()))


def trainer(tiny: dict, tmp_path: Path, ablation: str = "", **overrides) -> Trainer:
    cfg = registry.resolve_config("bapd", "smoke", ablation,
                                  overrides={**tiny, "train.init": "scratch", **overrides})
    return Trainer(cfg, BAPD(), RunDir(tmp_path / "run"), None, None)


def one_step(tiny: dict, tmp_path: Path, ablation: str = "", batch: Batch | None = None,
             **overrides) -> tuple[dict[str, float], Recorder, Batch, Trainer]:
    tr = trainer(tiny, tmp_path, ablation, **overrides)
    rec = Recorder(tr.modules.g)
    torch.manual_seed(123)
    batch = batch or Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    return tr.train_step(batch, 0), rec, batch, tr


def test_full_model_attacks_both_levels_and_logs_both_defense_losses(tiny, tmp_path):
    losses, rec, batch, _ = one_step(tiny, tmp_path)
    assert set(losses) == {"l_pix", "l_distill", "l_edge"}
    assert losses["l_distill"] > 0 and losses["l_edge"] > 0
    attacked = [x for x in rec.head_in if not torch.equal(x, batch.lq)]
    assert attacked and all(0 < (x - batch.lq).abs().max() <= 8 / 255 + 1e-6 for x in attacked)
    assert any(not torch.equal(b, h) for b, h in zip(rec.body_in, rec.head_out))


def test_no_pixel_attack_feeds_the_head_the_clean_lr_bit_for_bit(tiny, tmp_path):
    _, rec, batch, _ = one_step(tiny, tmp_path, "no_pixel_attack")
    assert rec.head_in and all(torch.equal(x, batch.lq) for x in rec.head_in)
    assert any(not torch.equal(b, h) for b, h in zip(rec.body_in, rec.head_out)), "HF still on"


def test_no_hf_attack_leaves_head_features_untouched(tiny, tmp_path):
    _, rec, batch, _ = one_step(tiny, tmp_path, "no_hf_attack")
    # the pixel attack's pass, then one trunk pass over the attacked and clean head features
    assert len(rec.head_out) == 3 and len(rec.body_in) == 2
    assert torch.equal(rec.body_in[0], rec.head_out[0])
    assert torch.equal(rec.body_in[1], torch.cat(rec.head_out[1:]))
    assert any(not torch.equal(x, batch.lq) for x in rec.head_in), "pixel attack still on"


def test_no_attack_is_one_clean_pass_with_zero_distillation(tiny, tmp_path):
    state = torch.get_rng_state()
    losses, rec, batch, _ = one_step(tiny, tmp_path, "no_attack")
    assert len(rec.head_in) == 1 and torch.equal(rec.head_in[0], batch.lq)
    assert torch.equal(rec.body_in[0], rec.head_out[0])
    assert losses["l_distill"] == 0.0 and set(losses) == {"l_pix", "l_distill", "l_edge"}
    torch.set_rng_state(state)


def test_no_distillation_drops_the_loss_and_the_clean_pass(tiny, tmp_path):
    full, rec_full, _, _ = one_step(tiny, tmp_path / "a")
    losses, rec, _, _ = one_step(tiny, tmp_path / "b", "no_distillation")
    assert "l_distill" not in losses and set(losses) == {"l_pix", "l_edge"}
    assert len(rec.head_in) == len(rec_full.head_in) - 1
    assert losses["l_pix"] == full["l_pix"], "same attacked pass"


def test_one_way_distillation_trains_only_the_attacked_side(tiny, tmp_path):
    full, _, _, _ = one_step(tiny, tmp_path / "a")
    one_way, _, _, _ = one_step(tiny, tmp_path / "b", "one_way_distillation")
    assert 0 < one_way["l_distill"] < full["l_distill"]


def test_no_detail_recovery_has_no_branch_and_no_edge_loss(tiny, tmp_path):
    losses, _, _, tr = one_step(tiny, tmp_path, "no_detail_recovery")
    assert "l_edge" not in losses and tr.modules.g.detail_recovery is None
    assert not any(k.startswith(BRANCH_PREFIX) for k in tr.modules.g.state_dict())


def test_edge_loss_uses_the_batch_edge_map_when_present(tiny, tmp_path):
    tr = trainer(tiny, tmp_path, "no_attack")
    g, bapd, ctx = tr.modules.g, BAPD(), tr._context(0)
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    out = bapd.forward(bapd.make_inputs(batch, tr.modules, ctx), tr.modules, ctx)
    zeros = Batch(batch.lq, batch.gt, {**batch.extras, "edge": torch.zeros(2, 1, 32, 32)})
    loss = bapd.extra_losses(zeros, out, tr.modules, ctx)["l_edge"]
    torch.testing.assert_close(loss, 0.1 * edge_map(out.sr).mean())
    computed = bapd.extra_losses(batch, out, tr.modules, ctx)["l_edge"]
    torch.testing.assert_close(computed, 0.1 * F.l1_loss(edge_map(out.sr), edge_map(batch.gt)))
    assert g.detail_recovery is not None


def test_attacks_leave_weights_and_grad_flags_untouched(tiny, tmp_path):
    tr = trainer(tiny, tmp_path)
    g, bapd, ctx = tr.modules.g, BAPD(), tr._context(0)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    torch.manual_seed(5)
    adv = bapd.make_inputs(batch, tr.modules, ctx)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in g.parameters())
    assert {"lq_clean", "lr_edge", "hf_d_mu", "hf_d_sigma"} <= set(adv.extras)
    torch.manual_seed(5)
    again = bapd.make_inputs(batch, tr.modules, ctx)
    assert torch.equal(adv.lq, again.lq) and torch.equal(adv.extras["hf_d_sigma"],
                                                          again.extras["hf_d_sigma"])


@pytest.mark.parametrize("ablation", ["", "no_hf_attack", "no_pixel_attack"])
def test_attacked_pass_carries_the_attacks_that_are_on(tiny, tmp_path, ablation):
    tr = trainer(tiny, tmp_path, ablation)
    g, bapd, ctx, hf = tr.modules.g, BAPD(), tr._context(0), tr.cfg.attack.hf
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    torch.manual_seed(5)
    adv = bapd.make_inputs(batch, tr.modules, ctx)
    out = bapd.forward(adv, tr.modules, ctx)
    with torch.no_grad():
        clean = g.features(batch.lq)
        torch.testing.assert_close(out.extras["c"], clean, rtol=0, atol=0)
        if hf.enabled:
            d_mu, d_sigma = adv.extras["hf_d_mu"], adv.extras["hf_d_sigma"]
            expected = g.features(adv.lq, lambda f: apply_hf_perturbation(f, d_mu, d_sigma, hf))
            assert not torch.equal(expected, g.features(adv.lq))
        else:
            assert "hf_d_mu" not in adv.extras
            expected = g.features(adv.lq)
    assert torch.equal(out.extras["p"], expected)
    assert torch.equal(adv.lq, batch.lq) == (not tr.cfg.attack.pixel.enabled)


def test_perceptual_attack_without_vgg_is_refused(tiny, tmp_path):
    tr = trainer(tiny, tmp_path, **{"attack.loss": "l1+percep"})
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    with pytest.raises(ConfigError, match="needs the VGG19 perceptual loss"):
        BAPD().make_inputs(batch, tr.modules, tr._context(0))


# -- edge maps ---------------------------------------------------------------------------------


def test_sobel_edges_of_a_step_are_one_on_the_edge_and_zero_on_flat_parts():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 1.0
    e = edge_map(img)
    assert e.shape == (1, 1, 8, 8) and e.min() >= 0 and e.max() <= 1
    torch.testing.assert_close(e[0, 0, :, 3:5], torch.ones(8, 2), atol=1e-5, rtol=0)
    assert e[0, 0, :, :2].max() < 1e-5 and e[0, 0, :, 6:].max() < 1e-5
    flipped = edge_map(img.flip(-1).transpose(-1, -2))
    torch.testing.assert_close(flipped, e.flip(-1).transpose(-1, -2))


def test_canny_edges_are_thin_and_differentiable():
    img = torch.zeros(1, 3, 16, 16)
    img[..., 8:] = 1.0
    img.requires_grad_(True)
    e = edge_map(img, EdgeConfig(method="canny"))
    support = (e[0, 0] > 0).sum(1)
    assert (support[3:-3] >= 1).all() and (support <= 2).all(), "one-to-two-pixel-wide line"
    (grad,) = torch.autograd.grad(e.sum(), img)
    assert grad.abs().sum() > 0
    sobel = edge_map(img.detach())
    assert (e > 0).sum() < (sobel > 1e-3).sum()


def test_dataset_loads_aligned_edge_crops_that_agree_with_on_the_fly_edges(tmp_path):
    rng = np.random.default_rng(0)
    hr_dir, edge_dir = tmp_path / "train_HR_sub", tmp_path / "train_EDGE_sub"
    hr_dir.mkdir(), edge_dir.mkdir()
    for name in ("a", "b"):
        img = rng.random((48, 56, 3)).astype(np.float32)
        img = F.avg_pool2d(torch.from_numpy(img).permute(2, 0, 1)[None], 3, 1, 1)[0]
        hr = img.permute(1, 2, 0).numpy()
        save_image(hr_dir / f"{name}.png", hr)
        edges = edge_image(load_image(hr_dir / f"{name}.png"))
        save_image(edge_dir / f"{name}.png", np.repeat(edges[..., None], 3, axis=2))
    plain = [Pair(p) for p in sorted(hr_dir.iterdir())]
    with_e = with_edges(plain, edge_dir)
    ds_plain = PatchDataset(plain, 32, 4, seed=3)
    ds_edge = PatchDataset(with_e, 32, 4, seed=3)
    for index in range(6):
        a, b = ds_plain[index], ds_edge[index]
        assert set(a) == {"lq", "gt"} and set(b) == {"lq", "gt", "edge"}
        assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
        assert b["edge"].shape == (1, 32, 32)
        fly = edge_map(b["gt"][None])[0]
        inner = (slice(None), slice(1, -1), slice(1, -1))  # a crop's border sees other pixels
        torch.testing.assert_close(b["edge"][inner], fly[inner], atol=1 / 255, rtol=0)
    (edge_dir / "b.png").unlink()
    with pytest.raises(DataError, match="no edge map with stem 'b'"):
        with_edges(plain, edge_dir)


# -- end to end --------------------------------------------------------------------------------





def trained(ablation: str) -> tuple[BAPDGenerator, dict, dict]:
    from robustsr_bench.results import workdir
    from robustsr_bench.trainer import Checkpoints, torch_load

    cfg = registry.resolve_config("bapd", "smoke", ablation)
    run = RunDir.for_config(cfg, workdir())
    assert run.is_done()
    files = torch_load(Checkpoints(run, 1).final_generator())
    g = BAPD().build_generator(cfg)
    g.load_state_dict(files["params_ema"])
    return g.eval(), files, run.read_summary()


@pytest.mark.slow
def test_trained_bapd_equals_rrdbnet_with_its_generator_weights(tiny_configs):
    assert main(["run", "--method", "bapd", "--ablation", "no_detail_recovery"]) == 0
    assert main(["run", "--method", "bapd"]) == 0
    x = torch.rand(1, 3, 12, 12)

    g, files, summary = trained("no_detail_recovery")
    assert summary["init"].startswith("esrgan-smoke"), "fine-tuned from the clean baseline"
    net = RRDBNet(3, 3, 4, **SIZE)
    load_generator_state(net, files, "bapd no_detail_recovery")  # no conversion needed
    with torch.no_grad():
        assert torch.equal(BAPD().restore(x, g, None).sr, net(x).clamp(0, 1))

    g, files, summary = trained("")
    assert {"psnr_y", "ssim_y"} <= set(summary["means"]["clean"])
    net = RRDBNet(3, 3, 4, **SIZE)
    load_generator_state(net, rrdbnet_state(files), "bapd")
    with torch.no_grad():
        assert torch.equal(g.tail(g.features(x)), net(x)), "branch disabled == RRDBNet"
        assert not torch.equal(g(x), net(x)), "the trained branch is used at inference"
