"""DDSR: forward model, random kernels, kernel generator, the per-image loop, and its plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustsr_bench.methods.ddsr import DDSR, DDSRSolver, focal_weights, observation_weight, ssim
from robustsr_bench import registry
from robustsr_bench.data.blur_kernels import (
    blur_downsample,
    centre_of_mass,
    kernel_centre,
    kernel_psnr,
    random_gaussian_kernels,
)
from robustsr_bench.data.kernel_options import kernel_size_for
from robustsr_bench.errors import ConfigError
from robustsr_bench.nets.dip_unet import SkipUNet
from robustsr_bench.nets.kernel_generator import KernelGenerator


def _delta(size: int) -> torch.Tensor:
    kernel = torch.zeros(1, 1, size, size)
    kernel[..., size // 2, size // 2] = 1
    return kernel


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_model_with_a_delta_kernel_is_plain_strided_subsampling(scale):
    x = torch.rand(1, 3, 12 * scale, 10 * scale)
    size = kernel_size_for(scale)
    out = blur_downsample(x, _delta(size), scale)
    assert out.shape == (1, 3, 12, 10)
    assert torch.equal(out, x[..., ::scale, ::scale])


@pytest.mark.parametrize("size", [(64, 64), (66, 63)])
def test_forward_model_equals_blurring_every_hr_pixel_then_subsampling(size):
    """The strided convolution computes only the LR pixels: the same values as blurring the
    whole HR image and keeping every ``scale``-th pixel, including sizes ``scale`` does not
    divide."""
    torch.manual_seed(0)
    scale, k = 4, kernel_size_for(4)
    x = torch.rand(1, 3, *size)
    kernels = random_gaussian_kernels(3, k, scale, 3.7, 20.0)
    full = F.conv2d(F.pad(x, (k // 2,) * 4, mode="circular").transpose(0, 1), kernels)
    expected = full.transpose(0, 1)[..., ::scale, ::scale]
    out = blur_downsample(x, kernels, scale)
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-6)


def test_forward_model_pads_circularly_and_applies_every_kernel():
    x = torch.rand(1, 3, 16, 16)
    shift = torch.zeros(1, 1, 3, 3)
    shift[..., 1, 2] = 1  # correlation: picks the right-hand neighbour, wrapping at the border
    kernels = torch.cat([_delta(3), shift])
    out = blur_downsample(x, kernels, 1)
    assert out.shape == (2, 3, 16, 16)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], torch.roll(x[0], -1, dims=-1))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("centre", ["aligned", "code"])
def test_random_kernels_are_normalised_and_centred(scale, centre):
    torch.manual_seed(0)
    size = kernel_size_for(scale)
    assert size == min(4 * scale + 3, 21)
    kernels = random_gaussian_kernels(64, size, scale, 0.175 * scale, min(2.5 * scale, 10) + 10,
                                      centre=centre)
    assert kernels.shape == (64, 1, size, size) and (kernels >= 0).all()
    assert torch.allclose(kernels.sum(dim=(-2, -1)), torch.ones(64, 1), atol=1e-5)
    com = centre_of_mass(kernels[:, 0].double())
    assert torch.allclose(com, torch.full_like(com, kernel_centre(size, scale, centre)), atol=1e-3)
    assert kernels.std(dim=0).max() > 1e-3, "kernels differ from draw to draw"


def test_aligned_kernels_put_lr_pixels_on_the_bicubic_grid():
    """On a ramp, blur + subsample with an aligned kernel equals average pooling (interior)."""
    torch.manual_seed(0)
    scale, size = 4, kernel_size_for(4)
    ramp = torch.arange(128.0).view(1, 1, 1, -1).expand(1, 3, 128, 128)
    kernel = random_gaussian_kernels(1, size, scale, 2.0, 6.0)
    out = blur_downsample(ramp, kernel, scale)[..., 4:-4]
    pooled = F.avg_pool2d(ramp, scale)[..., 4:-4]
    assert torch.allclose(out, pooled, atol=1e-3)


def test_kernel_generator_outputs_a_kernel_and_its_warm_up_lowers_the_regression_loss(one_thread):
    torch.manual_seed(0)
    # a larger step than the code's 1e-4 keeps the test short; the loop is the code's
    cfg = registry.resolve_config("ddsr", "smoke", overrides={"loop.warmup": 40, "kernel.lr": 1e-3})
    solver = DDSRSolver(cfg, torch.rand(1, 3, 8, 8))
    kernel = solver.gen()
    assert kernel.shape == (1, 1, 19, 19) and torch.allclose(kernel.sum(), torch.tensor(1.0))
    probe = solver.sample_kernels(256)

    def regression_loss() -> float:
        with torch.no_grad():
            return float(((solver.gen() - probe) ** 2).mean())

    before = regression_loss()
    losses = solver.warm_up()
    assert len(losses) == 40
    assert regression_loss() < 0.5 * before


def test_focal_weights_favour_the_kernels_that_explain_the_lr():
    weights = focal_weights(torch.tensor([0.3, 0.1, 0.2, 0.5]))
    assert int(weights.argmax()) == 1 and int(weights.argmin()) == 3
    assert (weights >= 0).all()


def test_observation_weight_finds_the_cover_and_applies_darkness():
    cfg = registry.resolve_config("ddsr", "smoke", ablation="cover",
                                  overrides={"forward.dark": 0.5})
    lr = torch.rand(1, 3, 8, 8) * 0.9 + 0.05
    lr[..., 2:5, 3:6] = 0
    weight = observation_weight(lr, cfg.forward)
    assert weight.shape == (1, 1, 8, 8)
    assert (weight[..., 2:5, 3:6] == 0).all() and int((weight == 0.5).sum()) == 64 - 9
    default = registry.resolve_config("ddsr", "smoke")
    assert default.forward.cover == "none" and (observation_weight(lr, default.forward) == 1).all()


def test_ssim_is_one_for_equal_images_and_lower_otherwise():
    x = torch.rand(1, 3, 16, 16)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(x, torch.rand(1, 3, 16, 16))) < 0.5


def test_dip_unet_keeps_odd_sizes_and_outputs_an_image():
    net = SkipUNet(3, 3, channels=8, skip_channels=2, levels=3)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 37, 50) * 0.1)
    assert out.shape == (1, 3, 37, 50) and 0 < float(out.min()) and float(out.max()) < 1
    assert KernelGenerator(5)().shape == (1, 1, 5, 5)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="forward.cover"):
        registry.resolve_config("ddsr", "smoke", overrides={"forward.cover": "maybe"})
    with pytest.raises(ConfigError, match="loop.image_steps"):
        registry.resolve_config("ddsr", "smoke", overrides={"loop.image_steps": 2})
    with pytest.raises(ConfigError, match="kernel.size"):
        registry.resolve_config("ddsr", "smoke", overrides={"kernel.size": 8})


def _test_image(scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 64x64 crop of a held-out photo, blurred by a known Gaussian kernel (variances 7-10, inside
    both DDSR's data and sampling ranges) and subsampled."""
    from skimage import data

    hr = torch.from_numpy(data.astronaut()[140:204, 180:244].astype(np.float32) / 255)
    hr = hr.permute(2, 0, 1).unsqueeze(0)
    generator = torch.Generator().manual_seed(3)
    kernel = random_gaussian_kernels(1, kernel_size_for(scale), scale, 7.0, 10.0, generator)
    return hr, blur_downsample(hr, kernel, scale), kernel[0, 0]


def _psnr(a: torch.Tensor, b: torch.Tensor, border: int) -> float:
    crop = (..., slice(border, -border), slice(border, -border))
    return float(-10 * torch.log10(((a[crop] - b[crop]) ** 2).mean()))


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core test machine, two threads contending with other
    processes made these small convolutions ~10x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_short_restore_beats_bicubic_and_estimates_a_better_kernel_than_a_delta(one_thread):
    scale = 4
    hr, lr, true_kernel = _test_image(scale)
    # the smoke profile as shipped (the code's 200-step kernel warm-up, learning rates and
    # SSIM -> MSE switch at ~40% of the outer steps), shortened to 150 image steps, with a 3-level
    # U-Net for this 16x16 LR image; ~5 s of one core (issue 17: <= 60 s)
    overrides = {"dip.levels": 3, "loop.image_steps": 150, "loop.ssim_until": 12,
                 "runtime.device": "cpu"}
    cfg = registry.resolve_config("ddsr", "smoke", overrides=overrides)
    method = DDSR()
    state = torch.random.get_rng_state()
    out = method.restore(lr, None, cfg)
    assert torch.equal(torch.random.get_rng_state(), state), "restore leaves the caller's RNG"
    assert vars(method) == {}, "everything restore produced is in what it returned"
    sr = out.sr
    assert sr.shape == hr.shape and not sr.requires_grad
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    assert _psnr(sr, hr, scale) > _psnr(bicubic, hr, scale) + 0.25  # measured: +0.47 dB (Adam fused; +0.44 unfused)
    estimate = out.kernel
    delta = _delta(true_kernel.shape[-1])[0, 0]
    assert kernel_psnr(estimate, true_kernel) > kernel_psnr(delta, true_kernel) + 20  # 55.7, 25.7


def test_evaluation_scores_the_kernel_that_restore_returned_with_the_image(isolated):
    """``kernel_psnr`` of each image is the kernel its own restore returned (no adapter state),
    scored against the suite's true kernel; an estimate of another size is not scored."""
    from robustsr_bench.data import embedded
    from robustsr_bench.data.image_ops import bicubic_resize
    from robustsr_bench.data.suites import load_suite
    from robustsr_bench.evaluate import evaluate
    from robustsr_bench.methods.base import Method, Restored

    class Blind(Method):
        trains = tiles = False

        def __init__(self, size: int):
            self.size = size

        def restore(self, lr, net, cfg) -> Restored:
            return Restored(bicubic_resize(lr, scale_factor=cfg.scale), _delta(self.size)[0, 0])

    suite = "ddsr_gaussian_crop32"
    cfg = registry.resolve_config("ddsr", "smoke", overrides={
        "eval.suites": [suite], "eval.metrics": ["psnr_y"], "eval.optional_metrics": [],
        "runtime.device": "cpu"})
    truth = {item.name: item.kernel for item in
             load_suite(registry.suite_spec(suite), 4, embedded.held_out_paths(), isolated)}
    size = next(iter(truth.values())).shape[-1]
    frame = evaluate(cfg, Blind(size), None, "blind", isolated, torch.device("cpu"))
    scored = frame[frame.metric == "kernel_psnr"].set_index("image")["value"]
    assert sorted(scored.index) == sorted(truth)
    for name, kernel in truth.items():
        assert scored[name] == pytest.approx(kernel_psnr(_delta(size)[0, 0], kernel))
    other = evaluate(cfg, Blind(size + 2), None, "blind", isolated, torch.device("cpu"))
    assert set(other["metric"]) == {"psnr_y", "seconds"}


def test_known_kernel_suites_record_the_kernel_and_apply_cover_and_darkness():
    from robustsr_bench.data.degradations import apply_ops
    from robustsr_bench.data.io import quantize

    hr = torch.rand(1, 3, 96, 96)
    record: dict = {}
    ops = [{"op": "kernel_downscale"}, {"op": "cover", "size": 8}, {"op": "dark", "factor": 0.5}]
    lr = apply_ops(hr, ops, 4, np.random.default_rng(0), record)
    kernel = torch.from_numpy(record["kernel"])
    assert kernel.shape == (19, 19) and float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    expected = quantize(blur_downsample(hr, kernel[None, None], 4) * 0.5)
    covered = (lr == 0).all(dim=1)[0]
    assert int(covered.sum()) == 64
    assert torch.allclose(lr[..., ~covered], expected[..., ~covered], atol=1 / 255 + 1e-6)


@pytest.mark.slow
def test_test_time_runs_record_no_training_data_and_kernel_psnr(isolated, one_thread):
    from robustsr_bench import runner
    from robustsr_bench.data import embedded

    overrides = {"dip.channels": 4, "dip.skip_channels": 2, "dip.levels": 2, "loop.warmup": 2,
                 "loop.image_steps": 2, "loop.inner": 1, "eval.suites": ["ddsr_gaussian_crop32"],
                 "eval.optional_metrics": [], "runtime.device": "cpu"}
    cfg = registry.resolve_config("ddsr", "smoke", overrides=overrides)
    run = runner.execute(cfg, isolated)
    summary = run.read_summary()
    assert summary["trained_on"] == "none" and summary["train_seconds"] < 1
    assert summary["eval_data"]["ddsr_gaussian_crop32"]["dataset"] == \
        "embedded (central 32x32 LR crops)"
    frame = run.read_metrics()
    assert set(frame["metric"]) == {"psnr_y", "ssim_y", "seconds", "kernel_psnr"}
    assert len(frame[frame.metric == "kernel_psnr"]) == len(embedded.held_out_paths())
    assert (frame[frame.metric == "seconds"]["value"] > 0).all()


def test_crop_suite_is_the_centre_of_the_whole_suite_with_its_kernel(isolated):
    """``ddsr_gaussian_crop32`` is ``ddsr_gaussian`` cropped after degradation: same kernels, its
    LR the central 32x32 of the whole LR and its HR the 128x128 pixels behind them; the record
    says what was scored."""
    import pandas as pd

    from robustsr_bench.data import embedded
    from robustsr_bench.data.provenance import eval_data
    from robustsr_bench.data.suites import load_suite

    images = embedded.held_out_paths()[:2]
    whole = load_suite(registry.suite_spec("ddsr_gaussian"), 4, images, isolated)
    cropped = load_suite(registry.suite_spec("ddsr_gaussian_crop32"), 4, images, isolated)
    for full, crop in zip(whole, cropped):
        assert crop.name == full.name and crop.lr.shape == (32, 32, 3)
        assert crop.hr.shape == (128, 128, 3)
        h, w = full.lr.shape[:2]
        top, left = (h - 32) // 2, (w - 32) // 2
        assert np.array_equal(crop.lr, full.lr[top:top + 32, left:left + 32])
        assert np.array_equal(crop.hr, full.hr[4 * top:4 * top + 128, 4 * left:4 * left + 128])
        assert np.array_equal(crop.kernel, full.kernel)
    cfg = registry.resolve_config("ddsr", "smoke", overrides={"eval.suites":
                                                              ["ddsr_gaussian_crop32"]})
    frame = pd.DataFrame({"suite": ["ddsr_gaussian_crop32"], "image": ["a"]})
    specs = registry.suite_specs(cfg.eval.suites)
    assert eval_data(cfg, frame, specs)["ddsr_gaussian_crop32"]["dataset"] == \
        "embedded (central 32x32 LR crops)"


@pytest.mark.parametrize("crop, spec, message", [
    (3, {}, "crop=3 must be 0 .* or an integer >= 5 LR pixels"),
    ("32", {}, "crop='32' must be"),
    (32, {"lr_dir": "photos"}, "crop applies to generated suites only"),
])
def test_bad_suite_crop_is_refused_naming_the_suite(crop, spec, message):
    from robustsr_bench.data.suite_spec import SuiteSpec
    from robustsr_bench.data.suites import load_suite

    tiny = SuiteSpec("tiny", {"ops": [{"op": "downscale"}], "crop": crop, **spec})
    with pytest.raises(ConfigError, match=f"suite 'tiny': {message}"):
        load_suite(tiny, 4, [], Path("."))


def test_report_and_run_show_kernel_psnr_where_recorded(isolated, tmp_path):
    from robustsr_bench import report
    from robustsr_bench.results import RunDir
    from robustsr_bench.runview import Column, render
    from tests.test_report import make_run

    crop = "ddsr_gaussian_crop32"
    bicubic = make_run(isolated, "bicubic", {crop: {"psnr_y": 26.43, "ssim_y": 0.73}},
                       trained_on="none")
    ddsr = make_run(isolated, "ddsr", {crop: {"psnr_y": 26.96, "ssim_y": 0.75,
                                              "kernel_psnr": 49.11}}, trained_on="none")
    report.write_report(isolated, tmp_path / "out", report.ReportOptions(), draw=False)
    readme = (tmp_path / "out" / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| Method"))
    assert f"{crop} Kernel PSNR↑" in header
    assert any(line.startswith("| ddsr") and "49.11" in line for line in readme.splitlines())
    printed = render([Column("bicubic", [RunDir(bicubic)]), Column("ddsr", [RunDir(ddsr)])],
                     ["psnr_y", "ssim_y", "kernel_psnr"], [crop])
    assert "49.11" in printed and "not recorded" not in printed


@pytest.mark.slow
@pytest.mark.parametrize("knob, tolerance", [("runtime.channels_last", 0.05),
                                             ("runtime.fused_adam", 0.25)])
def test_speed_knobs_restore_the_same_image_to_rounding(knob, tolerance, one_thread):
    """The smoke profile runs the image prior NHWC (``runtime.channels_last``) and both of the
    solver's optimisers fused (``runtime.fused_adam``): the per-step rounding differs, the
    optimisation's outcome does not. The image prior amplifies rounding (Adam's first steps are
    ~lr x sign(grad), and near-zero gradients flip sign), so the outcome moves a little: measured
    0.02 dB for NHWC, 0.07-0.16 dB either way for fused Adam over seeds 0-3 after 150 image
    steps, against ~3 dB between those seeds. tests/test_optim.py checks the fused update itself
    to rounding."""
    hr, lr, _ = _test_image(4)
    psnr = {}
    for on in (False, True):
        cfg = registry.resolve_config("ddsr", "smoke", overrides={
            "dip.levels": 3, "loop.image_steps": 150, "loop.ssim_until": 12,
            "runtime.device": "cpu", knob: on})
        if knob == "runtime.fused_adam":
            solver = DDSRSolver(cfg, lr)
            assert solver.opt_x.param_groups[0]["fused"] is (on or None)
            assert solver.opt_k.param_groups[0]["fused"] is (on or None)
        psnr[on] = _psnr(DDSR().restore(lr, None, cfg).sr, hr, 4)
    assert abs(psnr[True] - psnr[False]) < tolerance, psnr
