"""PSNR/SSIM agree with independent implementations (scikit-image, pyiqa); the registry is strict."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from robustsr_bench.errors import ConfigError
from robustsr_bench.metrics import create_metric, list_metrics, psnr, rgb_to_y, ssim

# MATLAB rgb2ycbcr luma row, written out independently of the module under test.
_Y_ROW = np.array([65.481, 128.553, 24.966])


def _y_reference(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ _Y_ROW + 16.0


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


def _pair(seed: int, noise: float, h: int = 40, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit natural-ish HR (blurred random) and a noisy 8-bit SR, both HxWx3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    hr = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 1.5)
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    sr = np.clip(hr + rng.normal(0.0, noise, hr.shape), 0, 1)
    to8 = lambda a: (np.round(a * 255) / 255).astype(np.float32)
    return to8(sr), to8(hr)


CASES = [(seed, noise, border) for seed, noise in [(0, 0.01), (1, 0.05), (2, 0.2)]
         for border in (0, 2, 4)]
# pyiqa's SSIM clamps negative contrast-structure terms to 0 (``F.relu(cs_map)``), which BasicSR
# and scikit-image do not; at heavy noise (0.2) that changes SSIM by ~1e-4, so pyiqa is compared
# on the milder cases only.
PYIQA_CASES = [case for case in CASES if case[1] < 0.2]


def test_rgb_to_y_matlab_values():
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235.0)
    img = np.random.default_rng(0).random((4, 5, 3))
    np.testing.assert_allclose(rgb_to_y(img), _y_reference(img), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, noise, border", CASES)
def test_y_metrics_match_skimage(seed: int, noise: float, border: int):
    sr, hr = _pair(seed, noise)
    ys, yh = _crop(_y_reference(sr), border), _crop(_y_reference(hr), border)
    ref_psnr = peak_signal_noise_ratio(yh, ys, data_range=255)
    ref_ssim = structural_similarity(ys, yh, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    assert psnr(sr, hr, crop_border=border) == pytest.approx(ref_psnr, abs=1e-6)
    assert ssim(sr, hr, crop_border=border) == pytest.approx(ref_ssim, abs=1e-6)


@pytest.mark.parametrize("seed, noise, border", CASES[::2])
def test_rgb_metrics_match_skimage(seed: int, noise: float, border: int):
    sr, hr = _pair(seed, noise)
    s255 = _crop(sr.astype(np.float64) * 255, border)
    h255 = _crop(hr.astype(np.float64) * 255, border)
    ref_psnr = peak_signal_noise_ratio(h255, s255, data_range=255)
    ref_ssim = structural_similarity(s255, h255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255, channel_axis=2)
    assert psnr(sr, hr, border, y_channel=False) == pytest.approx(ref_psnr, abs=1e-6)
    assert ssim(sr, hr, border, y_channel=False) == pytest.approx(ref_ssim, abs=1e-6)


def test_identical_images():
    _, hr = _pair(0, 0.0)
    assert psnr(hr, hr, 4) == math.inf
    assert ssim(hr, hr, 4) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_and_tiny_images_are_refused():
    sr, hr = _pair(0, 0.05)
    with pytest.raises(ValueError, match="same HxWx3 shape"):
        psnr(sr[:-1], hr, 0)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(sr[:16, :16], hr[:16, :16], crop_border=4)


# --------------------------------------------------------------------------- pyiqa


@pytest.fixture(scope="module")
def pyiqa():
    try:
        import pyiqa as module
    except Exception as exc:  # noqa: BLE001 - optional cross-check: any import failure skips
        pytest.skip(f"pyiqa unavailable: {exc}")
    return module


def _nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float64).transpose(2, 0, 1))[None]


@pytest.mark.parametrize("seed, noise, border", PYIQA_CASES)
def test_psnr_y_matches_pyiqa(pyiqa, seed: int, noise: float, border: int):
    sr, hr = _pair(seed, noise)
    # eps=0: pyiqa's default adds 1e-8 to the [0, 1]-scale MSE, a ~1e-4 dB bias at 35 dB.
    metric = pyiqa.create_metric("psnr", device="cpu", test_y_channel=True, color_space="ycbcr",
                                 crop_border=border, eps=0.0)
    assert psnr(sr, hr, border) == pytest.approx(metric(_nchw(sr), _nchw(hr)).item(), abs=1e-4)


@pytest.mark.parametrize("seed, noise, border", PYIQA_CASES)
def test_ssim_y_matches_pyiqa(pyiqa, seed: int, noise: float, border: int):
    """pyiqa's SSIM core on the same (unrounded) Y agrees to 1e-4.

    pyiqa's ``ssim`` *metric* first rounds Y to integers (MATLAB's uint8 ``rgb2ycbcr``), which
    BasicSR and we do not: that alone moves SSIM by ~1e-4-1e-3, so the full metric is only
    checked to 2e-3.
    """
    from pyiqa.archs.ssim_arch import ssim as pyiqa_ssim

    sr, hr = _pair(seed, noise)
    ys, yh = (_crop(_y_reference(img), border)[None, None] for img in (sr, hr))
    core = pyiqa_ssim(torch.from_numpy(ys), torch.from_numpy(yh), data_range=255).item()
    assert ssim(sr, hr, border) == pytest.approx(core, abs=1e-4)
    metric = pyiqa.create_metric("ssim", device="cpu", test_y_channel=True, color_space="ycbcr",
                                 crop_border=border)
    assert ssim(sr, hr, border) == pytest.approx(metric(_nchw(sr), _nchw(hr)).item(), abs=2e-3)


# --------------------------------------------------------------------------- registry


def test_registry():
    assert list_metrics() == ["psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "lpips_alex", "niqe",
                              "brisque", "piqe"]
    sr, hr = _pair(1, 0.05)
    for name, fn, y in [("psnr_y", psnr, True), ("ssim_y", ssim, True),
                        ("psnr_rgb", psnr, False), ("ssim_rgb", ssim, False)]:
        metric = create_metric(name)
        assert metric.name == name and metric.higher_is_better and metric.needs_reference
        assert metric.weights == ()
        assert metric(sr, hr, crop_border=4) == fn(sr, hr, 4, y_channel=y)
    with pytest.raises(ValueError, match="needs a reference"):
        create_metric("psnr_y")(sr, None, crop_border=4)


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown metric 'lpips_vgg'.*psnr_y, ssim_y") as info:
        create_metric("lpips_vgg")
    assert "\n" not in str(info.value)


def test_directions_references_and_files_are_recorded():
    expected = {"lpips_alex": (True, ("alexnet", "lpips_alex_lin")), "niqe": (False, ("niqe",)),
                "brisque": (False, ("brisque",)), "piqe": (False, ())}
    for name, (needs_ref, files) in expected.items():
        metric = create_metric(name)  # cheap: nothing is loaded
        assert not metric.higher_is_better
        assert (metric.needs_reference, metric.weights) == (needs_ref, files)


def test_report_marks_best_by_the_recorded_direction():
    import pandas as pd

    from robustsr_bench.report import build_table

    frame = pd.DataFrame([{"method": m, "ablation": "", "profile": "smoke", "trained_on": "x",
                           "seed": 0, "suite": "clean", "metric": metric, "value": v}
                          for m, vals in (("a", (0.1, 30.0)), ("b", (0.3, 31.0)), ("c", (0.2, 29.0)))
                          for metric, v in zip(("lpips_alex", "psnr_y"), vals)])
    rows = [{"method": m} for m in "abc"]
    table = build_table("t", "t", frame, rows, ["method"], [[m] for m in "abc"], ["clean"],
                        ["lpips_alex", "psnr_y"], with_average=False)
    assert [row[0].rank for row in table.cells] == [1, 0, 2]  # lowest LPIPS is best
    assert [row[1].rank for row in table.cells] == [2, 1, 0]  # highest PSNR is best


def test_batch_scores_equal_per_image_scores():
    pairs = [_pair(seed, 0.05, h=100, w=100) for seed in (4, 5)]
    sr = torch.stack([torch.from_numpy(s.transpose(2, 0, 1)) for s, _ in pairs])
    hr = torch.stack([torch.from_numpy(h.transpose(2, 0, 1)) for _, h in pairs])
    for name, ref in (("psnr_y", hr), ("piqe", None)):
        metric = create_metric(name)
        singles = [metric(s, h if ref is not None else None, crop_border=4) for s, h in pairs]
        assert metric.score_batch(sr, ref, crop_border=4) == pytest.approx(singles, abs=1e-5)


def test_optional_metrics_without_files_are_planned_out_with_the_reason():
    from robustsr_bench import weights
    from robustsr_bench.metrics import plan_metrics

    plan = plan_metrics(["psnr_y"], ["lpips_alex", "piqe", "psnr_y"])
    assert [m.name for m in plan.metrics] == ["psnr_y", "piqe"]
    assert list(plan.unavailable) == ["lpips_alex"]
    assert str(weights.MANIFEST["alexnet"].path) in plan.unavailable["lpips_alex"]
    assert "weights fetch alexnet" in plan.unavailable["lpips_alex"]


def test_no_reference_suite_gives_lr_only_images(tmp_path):
    from robustsr_bench.data.io import save_image
    from robustsr_bench.data.suite_spec import SuiteSpec
    from robustsr_bench.data.suites import load_suite

    save_image(tmp_path / "real" / "photo.png", np.full((24, 20, 3), 0.5, np.float32))
    [item] = load_suite(SuiteSpec("phone_photos", {"lr_dir": str(tmp_path / "real")}), 4, [],
                        tmp_path)
    assert item.name == "photo" and item.hr is None and item.lr.shape == (24, 20, 3)
