"""AND: identity degradation network, parameter-space PGD, ablations and ANDNet/ANDGAN wiring."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torchvision.models import vgg19

import numpy as np

from robustsr_bench.methods.and_degradation import (
    AND,
    DegradationNet,
    antialias_downsample,
    binomial_kernel,
    identity_downsample,
)
from robustsr_bench.methods.base import Batch, Modules, TrainContext
from robustsr_bench import plan, registry, runner
from robustsr_bench.attacks import group_l2_norm, group_l2_pgd, random_group_l2
from robustsr_bench.cli import main
from robustsr_bench.data.degradations import apply_ops
from robustsr_bench.data.image_ops import bicubic_resize, imresize
from robustsr_bench.errors import ConfigError, MissingWeightsError
from robustsr_bench.nets.rrdbnet import RRDBNet
from robustsr_bench.results import RunDir
from tests.conftest import REPO, as_set_args

WEIGHTS = {"conv": 1.0, "noise": 10.0, "slope": 50.0}


def _weights(net: DegradationNet) -> dict[str, float]:
    return net.group_weights(**WEIGHTS)


def _smooth_images(n: int, size: int = 32) -> torch.Tensor:
    """Natural-ish images: bicubic-upsampled noise, so SR has something learnable."""
    coarse = torch.rand(n, 3, size // 8, size // 8)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


PAPER_BALL = {"attack.radius": 20.0, "attack.step": 6.0}


def _cfg(ablation: str = "", **overrides):
    """Smoke-sized config with the paper's PGD ball (smoke calibrates a smaller one)."""
    return registry.resolve_config("and", "smoke", ablation,
                                   overrides={**PAPER_BALL, **overrides})


def _ctx(cfg, step: int = 0) -> TrainContext:
    def content(sr, gt, pixel_weight, perceptual_weight):
        return pixel_weight * F.l1_loss(sr, gt)
    return TrainContext(cfg, step, content, False)


def _modules(cfg, g: RRDBNet | None = None) -> Modules:
    torch.manual_seed(0)
    g = g or RRDBNet(scale=cfg.scale, num_feat=8, num_block=1, num_grow_ch=4)
    return Modules(g, None, AND().build_aux(cfg, torch.device("cpu")))


@pytest.fixture(scope="module")
def trained() -> tuple[RRDBNet, DegradationNet]:
    """A tiny G trained for a few dozen steps on identity-F pairs (so it is a real SR model)."""
    torch.manual_seed(0)
    g = RRDBNet(scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    net = DegradationNet(4, channels=8)
    opt = torch.optim.Adam(g.parameters(), 2e-3)
    for _ in range(40):
        hr = _smooth_images(4)
        lq = net.apply(net.initial_parameters(), hr, net.sample_noise(hr))
        loss = F.l1_loss(g(lq), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return g, net


# -- the degradation network -------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("pool", ["bicubic", "blurpool"])
def test_identity_f_is_its_pooling_layer(scale: int, pool: str) -> None:
    """F at theta_id is exactly its downsampler; with ``bicubic`` that is the suites' bicubic."""
    torch.manual_seed(scale)
    net = DegradationNet(scale, pool=pool)
    for _ in range(5):
        x = torch.rand(1, 3, 24, 24)
        y = net.apply(net.initial_parameters(), x, net.sample_noise(x))
        assert y.shape == (1, 3, 24 // scale, 24 // scale)
        ref = identity_downsample(x, scale, pool).clamp(0, 1)
        torch.testing.assert_close(y, ref, atol=2e-6, rtol=0)
        if pool == "bicubic":
            torch.testing.assert_close(y, bicubic_resize(x, scale_factor=1 / scale), atol=2e-6,
                                       rtol=0)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    for head in (None, 2):  # the smoke profile's shorter head is an identity too
        net64 = DegradationNet(scale, pool=pool, clamp_output=False, head_blocks=head).double()
        assert len(net64.head) == (head or 5) and len(net64.tail) == 5
        y = net64.apply(net64.initial_parameters(), x, net64.sample_noise(x))
        torch.testing.assert_close(y, identity_downsample(x, scale, pool), atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("pool", ["bicubic", "blurpool"])
def test_identity_f_samples_the_suites_bicubic_grid(scale: int, pool: str) -> None:
    """An HR impulse lands on the same LR pixel under F's identity and the suites' downscale,
    and every interior LR pixel's weights over the HR are centred where bicubic's are."""
    net = DegradationNet(scale, channels=8, pool=pool, clamp_output=False).double()
    side = 8 * scale
    col = side // 2 // scale
    f_rows, b_rows = [], []
    for pos in range(side):
        hr = torch.zeros(1, 3, side, side, dtype=torch.float64)
        hr[..., pos, side // 2] = 1.0
        f = net.apply(net.initial_parameters(), hr, net.sample_noise(hr))[0, 0, :, col]
        bic = imresize(hr, scale_factor=1 / scale)[0, 0, :, col]
        suite = apply_ops(hr, [{"op": "downscale"}], scale, np.random.default_rng(0))
        if scale <= pos < side - scale:
            assert int(f.argmax()) == int(bic.argmax()) == int(suite[0, 0, :, col].argmax())
        f_rows.append(f)
        b_rows.append(bic)
    f_w, b_w = torch.stack(f_rows, 1), torch.stack(b_rows, 1)  # LR x HR weights
    coords = torch.arange(side, dtype=torch.float64)
    for i in range(2, side // scale - 2):
        centre = scale * i + (scale - 1) / 2
        assert abs(float((f_w[i] * coords).sum() / f_w[i].sum()) - centre) < 1e-9
        assert abs(float((b_w[i] * coords).sum() / b_w[i].sum()) - centre) < 1e-9


def test_blurpool_is_avgpool_then_binomial_blur() -> None:
    assert torch.allclose(binomial_kernel(5)[0] * 256,
                          torch.tensor([1., 4, 6, 4, 1], dtype=torch.float64))
    x = torch.rand(1, 2, 16, 16)
    flat = antialias_downsample(torch.full_like(x, 0.3), 4)
    torch.testing.assert_close(flat, torch.full((1, 2, 4, 4), 0.3))
    # interior pixel i=1 by hand: avg-pool over HR rows j..j+3, binomial over j = 4i-2 .. 4i+2,
    # i.e. centred on HR coordinate 4i + 1.5 (bicubic's)
    k = binomial_kernel(5).float()
    pooled = torch.stack([torch.stack([x[0, :, r:r + 4, c:c + 4].mean((-1, -2))
                                       for c in range(2, 7)]) for r in range(2, 7)])
    assert torch.allclose(antialias_downsample(x, 4)[0, :, 1, 1],
                          (pooled * k[..., None]).sum((0, 1)), atol=1e-6)
    with pytest.raises(ConfigError, match="degradation.blur_size"):
        _cfg(**{"degradation.blur_size": 4})


def test_identity_init_structure_fresh_and_fast() -> None:
    net = DegradationNet(4)
    a, b = net.initial_parameters(), net.initial_parameters()
    assert not torch.equal(a["head.0.conv.weight"], b["head.0.conv.weight"]), "fresh every call"
    for name, t in a.items():
        if name.endswith(".slope"):
            assert torch.equal(t, torch.ones_like(t))
        elif name.endswith(".weight"):
            off_centre = t.clone()
            off_centre[:, :, 1, 1] = 0
            assert not off_centre.any() and t[:, :, 1, 1].abs().sum() > 0
        else:
            assert not t.any(), f"{name}: biases and noise strengths start at 0"
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        net.initial_parameters()
        times.append(time.perf_counter() - t0)
    assert sorted(times)[3] < 0.05, "identity init is a few matrix products, not training"


def test_xavier_init_is_far_from_identity() -> None:
    torch.manual_seed(0)
    net = DegradationNet(4, channels=16)
    x = _smooth_images(2)
    y = net.apply(net.initial_parameters("xavier"), x, net.sample_noise(x))
    assert (y - identity_downsample(x, 4)).abs().mean() > 0.05


# -- the parameter-space attack ----------------------------------------------------------------


def test_group_l2_pgd_takes_normalised_steps_and_projects() -> None:
    theta0 = {"a": torch.zeros(3), "b": torch.zeros(2)}
    weights = {"a": 1.0, "b": 10.0}
    c = {"a": torch.tensor([1.0, -2.0, 0.5]), "b": torch.tensor([30.0, 5.0])}

    def linear(theta):
        return sum((c[k] * theta[k]).sum() for k in theta)

    one = group_l2_pgd(theta0, weights, linear, radius=20.0, step=6.0, iters=1)
    assert float(group_l2_norm(one, weights)) == pytest.approx(6.0, rel=1e-5)
    many = group_l2_pgd(theta0, weights, linear, radius=20.0, step=6.0, iters=5)
    assert float(group_l2_norm(many, weights)) == pytest.approx(20.0, rel=1e-5)
    # the maximiser of a linear loss on the weighted ball: r * (c / w^2) / ||c / w||
    scale = 20.0 / float(group_l2_norm({k: c[k] / weights[k] for k in c}, {"a": 1.0, "b": 1.0}))
    for k, ck in c.items():
        torch.testing.assert_close(many[k], scale * ck / weights[k] ** 2)
    rand = random_group_l2(theta0, weights, 20.0)
    assert float(group_l2_norm(rand, weights)) == pytest.approx(20.0, rel=1e-5)


def test_pgd_stays_in_ball_keeps_slopes_valid_and_raises_loss(trained) -> None:
    g, _ = trained
    cfg = _cfg(**{"degradation.channels": 8})
    method, modules = AND(), _modules(cfg, g)
    net = modules.aux["degradation"]
    hr = _smooth_images(2)
    torch.manual_seed(3)
    deg = method.degrade(hr, modules, _ctx(cfg))
    w = net.norm_weights(cfg.attack)
    assert float(group_l2_norm({k: deg.theta0[k] - deg.theta0[k] for k in w}, w)) == 0
    assert float(group_l2_norm({k: deg.theta[k] - deg.theta0[k] for k in w}, w)) <= 20 + 1e-4
    slopes = torch.cat([v for k, v in deg.theta.items() if k.endswith(".slope")])
    assert slopes.min() >= 0 and slopes.max() <= 1
    torch.manual_seed(3)
    net.initial_parameters()
    noises = net.sample_noise(hr)
    with torch.no_grad():
        identity_lq = net.apply(deg.theta0, hr, noises)
        assert F.l1_loss(g(deg.lq), hr) > F.l1_loss(g(identity_lq), hr) + 0.01


def test_adversarial_beats_a_random_deviation_of_the_same_size(trained) -> None:
    g, _ = trained
    small = {"degradation.channels": 8, "attack.radius": 0.01, "attack.step": 0.003,
             "attack.random_radius": 0.01}
    hr, losses = _smooth_images(2), {}
    for ablation in ("", "no_adversarial"):
        cfg = _cfg(ablation, **small)
        torch.manual_seed(5)
        lq = AND().make_inputs(Batch(torch.zeros(2, 3, 8, 8), hr), _modules(cfg, g), _ctx(cfg)).lq
        with torch.no_grad():
            losses[ablation] = float(F.l1_loss(g(lq), hr))
    assert losses[""] > losses["no_adversarial"] + 0.01


def test_attack_leaves_g_untouched_and_rebuilds_f_every_step() -> None:
    cfg = _cfg(**{"degradation.channels": 8, "attack.iters": 2})
    modules = _modules(cfg)
    g, net = modules.g, modules.aux["degradation"]
    for p in g.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    f_before = {k: v.clone() for k, v in net.state_dict().items()}
    batch_a = Batch(torch.zeros(2, 3, 8, 8), _smooth_images(2))
    batch_b = Batch(torch.zeros(2, 3, 8, 8), _smooth_images(2))
    torch.manual_seed(11)
    first = AND().make_inputs(batch_a, modules, _ctx(cfg)).lq
    torch.manual_seed(12)
    AND().make_inputs(batch_b, modules, _ctx(cfg, 1))
    torch.manual_seed(11)
    again = AND().make_inputs(batch_a, modules, _ctx(cfg, 2)).lq
    assert torch.equal(first, again), "a step's degradation depends on nothing but its seed"
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) and p.requires_grad
               for p in g.parameters())
    assert all(torch.equal(f_before[k], v) for k, v in net.state_dict().items())
    assert first.shape == (2, 3, 8, 8) and not first.requires_grad


def test_norm_units_per_layer_xavier_and_8bit() -> None:
    """The ball's units: conv kernels in Xavier std of their layer, biases and noise strengths
    in 8-bit levels, slopes as they are; ``raw`` / ``image_range: 1`` give the plain weights."""
    cfg = _cfg(**{"degradation.channels": 8})
    net = _modules(cfg).aux["degradation"]
    w = net.norm_weights(cfg.attack)
    assert w["head.0.conv.weight"] == pytest.approx(1 / (2 / (3 + 8)) ** 0.5)
    assert w["tail.1.conv.weight"] == pytest.approx(1 / (2 / 16) ** 0.5)
    assert w["last.weight"] == pytest.approx(1 / (2 / (8 + 3)) ** 0.5)
    assert w["head.0.conv.bias"] == pytest.approx(255.0)
    assert w["head.0.noise.strength"] == pytest.approx(2550.0)
    assert w["head.0.act.slope"] == pytest.approx(50.0)
    raw = _cfg(**{"degradation.channels": 8, "attack.conv_norm": "raw", "attack.image_range": 1})
    assert net.norm_weights(raw.attack) == _weights(net)
    with pytest.raises(ConfigError, match="attack.conv_norm"):
        _cfg(**{"attack.conv_norm": "layer"})


def test_no_adversarial_uses_its_matched_random_radius() -> None:
    cfg = _cfg("no_adversarial", **{"degradation.channels": 8, "attack.radius": 0.01,
                                    "attack.random_radius": 0.5})
    modules = _modules(cfg)
    net = modules.aux["degradation"]
    torch.manual_seed(0)
    deg = AND().degrade(_smooth_images(1), modules, _ctx(cfg))
    w = net.norm_weights(cfg.attack)
    norm = float(group_l2_norm({k: deg.theta[k] - deg.theta0[k] for k in w}, w))
    assert 0.45 < norm <= 0.5 + 1e-6  # slopes clamped into [0, 1] can only shorten it
    smoke = registry.resolve_config("and", "smoke", "no_adversarial").attack
    assert (smoke.mode, smoke.random_radius) == ("random", 1.8)


def test_no_colour_shift_keeps_the_identity_means_and_the_attacks_structure(trained) -> None:
    """The diagnostic ablation: the same PGD, then each LR channel's mean moved back to F's
    identity LR, so what is left differs from the full attack by one constant per channel."""
    g, _ = trained
    small = {"degradation.channels": 8, "attack.radius": 0.05, "attack.step": 0.015}
    hr = 0.25 + 0.5 * _smooth_images(2)  # away from 0 and 1: no clamping hides the shift
    lq = {}
    for ablation in ("", "no_colour_shift"):
        cfg = _cfg(ablation, **small)
        torch.manual_seed(7)
        lq[ablation] = AND().degrade(hr, _modules(cfg, g), _ctx(cfg)).lq
    net = _modules(_cfg(**small), g).aux["degradation"]
    torch.manual_seed(7)  # degrade's draws, in its order: F's fresh parameters, then the noise
    theta0 = net.initial_parameters()
    noises = net.sample_noise(hr)
    with torch.no_grad():
        identity = net.apply(theta0, hr, noises)
    means = lambda x: x.mean(dim=(-2, -1))  # noqa: E731
    shift = means(lq[""]) - means(identity)
    assert shift.abs().max() > 1e-3, "the attack does shift the colours"
    torch.testing.assert_close(means(lq["no_colour_shift"]), means(identity), atol=1e-5, rtol=0)
    structure = lq[""] - lq["no_colour_shift"]
    torch.testing.assert_close(structure, shift[..., None, None].expand_as(structure),
                               atol=1e-5, rtol=0)
    assert (lq["no_colour_shift"] - identity).abs().max() > 1e-3, "the attack's structure stays"
    with pytest.raises(ConfigError, match="attack.remove_colour_shift"):
        _cfg(**{"attack.remove_colour_shift": "maybe"})


def test_added_field_at_its_default_keeps_every_committed_run_id() -> None:
    """``attack.remove_colour_shift`` came after records were committed: at ``false`` it is left
    out of the run-id hash (the records keep their ids), at ``true`` it makes a new run."""
    ids = {run_id.rsplit("-", 1)[1] for run_id in (p.name for p in (REPO / "results/records")
                                                   .iterdir()) if run_id.startswith("and-")}
    for ablation in ("", "classical", "no_adversarial"):
        own = plan.run_id(registry.resolve_config("and", "smoke", ablation, seed=0))
        assert own.rsplit("-", 1)[1] in ids, own
    plain = plan.run_id(registry.resolve_config("and", "smoke", seed=0))
    diagnostic = plan.run_id(registry.resolve_config("and", "smoke", "no_colour_shift", seed=0))
    assert plain.rsplit("-", 1)[1] != diagnostic.rsplit("-", 1)[1]


# -- ablations and config ----------------------------------------------------------------------


def test_bicubic_ablations() -> None:
    """``classical`` trains on F's identity LR (the suites' bicubic), not on the loader's LR."""
    hr = _smooth_images(2)
    batch = Batch(torch.rand(2, 3, 8, 8), hr)
    cfg = _cfg("classical")
    assert AND().build_aux(cfg, torch.device("cpu")) == {}
    lq = AND().make_inputs(batch, _modules(cfg), _ctx(cfg)).lq
    torch.testing.assert_close(lq, bicubic_resize(hr, scale_factor=1 / 4), atol=1e-6, rtol=0)
    net = _modules(_cfg()).aux["degradation"]
    torch.testing.assert_close(lq, net.apply(net.initial_parameters(), hr, net.sample_noise(hr)),
                               atol=2e-6, rtol=0)
    cfg = _cfg("no_neural_degradation")
    torch.manual_seed(0)
    lq_noise = AND().make_inputs(batch, _modules(cfg), _ctx(cfg)).lq
    delta = (lq_noise - lq).abs()
    assert 0 < delta.max() <= cfg.attack.noise_eps + 1e-6


def test_ablation_and_variant_settings() -> None:
    assert _cfg("no_adversarial").attack.mode == "random"
    assert _cfg("no_identity_init").degradation.init == "xavier"
    gan = _cfg("gan")
    assert (gan.loss.mode, gan.loss.gan_weight, gan.train.init) == ("gan", 0.1, "method:and")
    assert AND().needs_perceptual(gan) and not AND().needs_perceptual(_cfg())
    assert _cfg().train.init == "baseline" and _cfg().loss.mode == "psnr"
    paper, smoke = (registry.resolve_config("and", p).attack for p in ("paper", "smoke"))
    for a in (paper, smoke):  # calibrated radii keep the paper's step / radius ratio 6 / 20
        assert a.step == pytest.approx(a.radius * 6 / 20)
    assert paper.random_radius == 20.0, "no_adversarial at 64 channels: the published radius"
    assert (paper.conv_norm, paper.image_range) == ("per_layer", 255.0)
    with pytest.raises(ConfigError, match="both set degradation.kind"):
        _cfg("classical+no_neural_degradation")
    with pytest.raises(ConfigError, match="degradation.slope_range"):
        _cfg(**{"degradation.slope_range": [0.0, 0.5]})
    with pytest.raises(ConfigError, match="attack.noise_weight"):
        _cfg(**{"attack.noise_weight": 0})


def test_table2_sweep_resolves() -> None:
    sweep = yaml.safe_load((REPO / "configs/sweeps/and_table2.yaml").read_text())
    assert set(sweep) >= {"name", "description", "profile", "seeds", "runs"}
    for run in sweep["runs"]:
        registry.resolve_config(run["method"], sweep["profile"], run["ablation"])
    assert {r["ablation"] for r in sweep["runs"]} == {
        "", "classical", "no_adversarial", "no_neural_degradation", "no_identity_init"}


def test_andgan_without_vgg_refuses_with_the_fetch_command(tiny, isolated) -> None:
    cfg = registry.resolve_config("and", "smoke", "gan", overrides=tiny)
    with pytest.raises(MissingWeightsError, match="weights fetch vgg19"):
        runner.execute(cfg, isolated)
    assert main(["run", "--method", "and", "--ablation", "gan", *as_set_args(tiny)]) == 2
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture
def tiny_init_runs(tiny, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Runs that a run starts from (``train.init: baseline`` / ``method:and``) get the tiny
    overrides too, instead of the full smoke profile; the wiring under test is unchanged."""
    overrides = {**tiny, "train.iters": 2, "train.milestones": [1]}

    def quick(cfg, method: str = plan.BASELINE_METHOD):
        return registry.resolve_config(method, cfg.profile, "", cfg.seed, overrides)

    monkeypatch.setattr(plan, "baseline_config", quick)
    return overrides


@pytest.mark.slow
def test_and_runs_end_to_end_from_the_baseline(tiny_init_runs, isolated, capsys) -> None:
    assert main(["run", "--method", "and", *as_set_args(tiny_init_runs)]) == 0
    assert "\nand: 1 seed (0)" in capsys.readouterr().out
    cfg = registry.resolve_config("and", "smoke", overrides=tiny_init_runs)
    summary = RunDir.for_config(cfg, isolated).read_summary()
    assert summary["status"] == "done"
    assert summary["init"] == RunDir.for_config(plan.baseline_config(cfg), isolated).run_id


@pytest.mark.slow
def test_andgan_fine_tunes_from_andnet(tiny_init_runs, isolated, tmp_path) -> None:
    torch.manual_seed(0)
    state = vgg19(weights=None).state_dict()
    state = {k: v if k.startswith("features.") else v.new_zeros(1) for k, v in state.items()}
    path = Path(tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    cfg = registry.resolve_config("and", "smoke", "gan", overrides=tiny_init_runs)
    assert main(["run", "--method", "and", "--ablation", "gan", *as_set_args(tiny_init_runs)]) == 0
    run = RunDir.for_config(cfg, isolated)
    andnet = plan.baseline_config(cfg, "and")
    assert andnet.ablation == "" and andnet.loss.mode == "psnr"
    assert run.read_summary()["init"] == RunDir.for_config(andnet, isolated).run_id
    assert (run.path / "models" / "net_d_2.pth").is_file()
