"""Degradations: shapes, kernels, seeded reproducibility and one-line config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustsr_bench.data.degradations import apply_ops, realesrgan_ops, validate_ops
from robustsr_bench.data.image_ops import (
    add_gaussian_noise,
    add_poisson_noise,
    bicubic_resize,
    blur,
    gaussian_kernel,
    jpeg,
    mod_crop,
    parse_number,
)
from robustsr_bench.errors import ConfigError

SCALES = (2, 3, 4)
SUITE_OPS = [
    [{"op": "downscale"}],
    [{"op": "blur", "sigma": 2.0}, {"op": "downscale"}, {"op": "noise", "sigma": "10/255"}],
    [{"op": "blur", "sigma": 1.2}, {"op": "downscale"}, {"op": "poisson", "scale": 2.0},
     {"op": "jpeg", "quality": 75}],
    [{"op": "resize", "factor": [0.5, 1.5], "mode": "area"}, {"op": "resize_to_target"}],
]


def _hr(h: int = 48, w: int = 60, seed: int = 0) -> torch.Tensor:
    """A smooth-plus-texture image: degradations visibly change it."""
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2])[None]
    return (0.7 * base + 0.3 * torch.rand(1, 3, h, w, generator=gen)).clamp(0, 1)


def test_bicubic_downscale_shape_and_range():
    hr = _hr(48, 60)
    for s in SCALES:
        lr = bicubic_resize(hr, scale_factor=1 / s)
        assert lr.shape == (1, 3, 48 // s, 60 // s)
        assert 0.0 <= lr.min() and lr.max() <= 1.0
    assert bicubic_resize(torch.rand(1, 3, 99, 99), scale_factor=1 / 3).shape[-2:] == (33, 33)
    assert bicubic_resize(hr, size=(10, 7)).shape[-2:] == (10, 7)
    assert bicubic_resize(hr[..., :12, :12], scale_factor=4).shape[-2:] == (48, 48)


def test_bicubic_keeps_constant_image():
    flat = torch.full((1, 3, 24, 24), 0.25)
    torch.testing.assert_close(bicubic_resize(flat, scale_factor=0.25), flat[..., :6, :6])


@pytest.mark.parametrize("sx, sy, theta", [(1.0, 1.0, 0.0), (3.0, 0.7, 0.6), (0.3, 2.0, -2.0)])
def test_gaussian_kernel_sums_to_one_and_is_centred(sx: float, sy: float, theta: float):
    k = gaussian_kernel(21, sx, sy, theta).double()
    assert k.shape == (21, 21)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    idx = torch.arange(21, dtype=torch.float64)
    assert (k.sum(1) * idx).sum().item() == pytest.approx(10.0, abs=1e-6)
    assert (k.sum(0) * idx).sum().item() == pytest.approx(10.0, abs=1e-6)
    assert k.argmax().item() == 10 * 21 + 10
    torch.testing.assert_close(k, k.flip(0).flip(1))  # point-symmetric


def test_gaussian_kernel_orientation():
    """theta rotates the sigma_x axis: at theta=pi/2 the long axis is vertical."""
    wide = gaussian_kernel(15, 3.0, 0.5, 0.0)
    tall = gaussian_kernel(15, 3.0, 0.5, math.pi / 2)
    assert wide[7, 12] > wide[12, 7]
    torch.testing.assert_close(tall, wide.T, atol=1e-7, rtol=0)


def test_blur_keeps_size_and_constants():
    flat = torch.full((2, 3, 9, 9), 0.6)
    out = blur(flat, gaussian_kernel(21, 2.0, 2.0))  # kernel larger than image: replicate pad
    torch.testing.assert_close(out, flat)
    hr = _hr()
    assert blur(hr, gaussian_kernel(7, 1.0, 1.0)).shape == hr.shape


def test_noise_and_jpeg_primitives():
    hr = _hr()
    noisy = add_gaussian_noise(hr, 10 / 255, np.random.default_rng(0))
    assert 0.02 < (noisy - hr).std().item() < 0.05
    gray = add_gaussian_noise(hr, 10 / 255, np.random.default_rng(0), gray_prob=1.0)
    d = gray - hr
    mid = (slice(None), slice(None), slice(10, 20), slice(10, 20))  # away from clamping
    torch.testing.assert_close(d[mid][:, 0], d[mid][:, 1])
    shot = add_poisson_noise(hr, 1.0, np.random.default_rng(0))
    assert shot.shape == hr.shape and not torch.equal(shot, hr)
    compressed = jpeg(hr, 10)
    assert compressed.shape == hr.shape and 0 < (compressed - hr).abs().mean().item() < 0.1
    assert jpeg(hr, 100).sub(hr).abs().mean().item() < (compressed - hr).abs().mean().item()


def test_mod_crop():
    assert mod_crop(torch.zeros(1, 3, 50, 47), 4).shape[-2:] == (48, 44)
    assert mod_crop(torch.zeros(3, 51, 51), 3).shape[-2:] == (51, 51)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ops", SUITE_OPS + [realesrgan_ops()], ids=lambda o: str(len(o)))
def test_output_size_exact(scale: int, ops: list):
    hr = mod_crop(_hr(50, 62), scale)
    for seed in range(4):
        lr = apply_ops(hr, ops, scale, np.random.default_rng(seed))
        assert lr.shape == (1, 3, hr.shape[2] // scale, hr.shape[3] // scale)
        assert 0.0 <= lr.min() and lr.max() <= 1.0
        torch.testing.assert_close(lr, (lr * 255).round() / 255)  # 8-bit levels


def test_realesrgan_size_exact_over_many_draws():
    """Random resizes hit every rounding case; the target size must still be exact."""
    hr = _hr(36, 60)
    for seed in range(40):
        assert apply_ops(hr, realesrgan_ops(), 4, np.random.default_rng(seed)).shape[-2:] == (9, 15)


@pytest.mark.parametrize("ops", [realesrgan_ops(), SUITE_OPS[2]], ids=["realesrgan", "camera"])
def test_reproducible_for_seed_and_different_across_seeds(ops: list):
    hr = _hr()
    a = apply_ops(hr, ops, 4, np.random.default_rng(123))
    b = apply_ops(hr, ops, 4, np.random.default_rng(123))
    c = apply_ops(hr, ops, 4, np.random.default_rng(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_rng_is_not_used():
    hr = _hr()
    torch.manual_seed(0)
    np.random.seed(0)
    a = apply_ops(hr, realesrgan_ops(), 2, np.random.default_rng(7))
    torch.manual_seed(99)
    np.random.seed(99)
    b = apply_ops(hr, realesrgan_ops(), 2, np.random.default_rng(7))
    assert torch.equal(a, b)


def test_ranges_are_drawn_from_rng():
    hr = _hr()
    ops = [{"op": "downscale"}, {"op": "jpeg", "quality": [5, 95]}]
    outs = {apply_ops(hr, ops, 2, np.random.default_rng(s)).sum().item() for s in range(6)}
    assert len(outs) > 1


def test_prob_zero_skips_op():
    hr = _hr()
    plain = apply_ops(hr, [{"op": "downscale"}], 2, np.random.default_rng(0))
    skipped = apply_ops(hr, [{"op": "noise", "sigma": 0.5, "prob": 0}, {"op": "downscale"}], 2,
                        np.random.default_rng(0))
    assert torch.equal(plain, skipped)


@pytest.mark.parametrize("ops, match", [
    ([{"op": "sharpen"}], r"unknown op 'sharpen'; expected one of blur, downscale"),
    ([{"op": "blur", "sigma": 1, "sigmax": 2}], r"ops\[0\] \(blur\): unknown field 'sigmax'"),
    ([{"op": "blur"}], r"missing field 'sigma'"),
    ([{"op": "jpeg", "quality": 101}], r"quality: 101 is out of range"),
    ([{"op": "jpeg", "quality": [90, 30]}], r"reversed"),
    ([{"op": "noise", "sigma": [1, 2, 3]}], r"not a range"),
    ([{"op": "resize", "factor": 0.5, "mode": "nearest"}], r"'nearest' is not a resize mode"),
    ([{"op": "blur", "sigma": 1, "size": 4}], r"odd integer"),
    ([{"sigma": 1}], r"expected a mapping with an 'op' field"),
    ([{"op": "noise", "sigma": "ten"}], r"'ten' is not a number"),
    ([{"op": "one_of", "choices": [[{"op": "downscale"}], [{"op": "blurr"}]]}],
     r"choices\[1\]\[0\]: unknown op 'blurr'"),
    ([], r"non-empty list"),
])
def test_bad_ops_are_one_line_config_errors(ops: list, match: str):
    with pytest.raises(ConfigError, match=match) as info:
        apply_ops(_hr(), ops, 2, np.random.default_rng(0))
    assert "\n" not in str(info.value)


def test_pipeline_that_misses_the_target_size_is_a_config_error():
    with pytest.raises(ConfigError, match="expected 30x24.*resize_to_target"):
        apply_ops(_hr(), [{"op": "blur", "sigma": 1.0}], 2, np.random.default_rng(0))


def test_hr_not_multiple_of_scale_is_refused():
    with pytest.raises(ValueError, match="mod_crop"):
        apply_ops(_hr(49, 60), [{"op": "downscale"}], 2, np.random.default_rng(0))


def test_parse_number():
    assert parse_number("14/255") == pytest.approx(14 / 255)
    assert parse_number(" 1 / 4 ") == 0.25
    assert parse_number("0.5") == 0.5
    assert parse_number(3) == 3.0
    assert parse_number("1e-3") == 0.001
    for bad in ("1/0", "abc", True, None, "nan", [1]):
        with pytest.raises(ConfigError, match="not a number"):
            parse_number(bad, "suite.sigma")


def test_realesrgan_ops_validate_and_use_paper_ranges():
    ops = realesrgan_ops()
    validate_ops(ops)
    assert [op["op"] for op in ops] == ["blur", "resize", "one_of", "jpeg", "blur", "resize",
                                        "one_of", "one_of"]
    assert ops[0]["sigma"] == [0.2, 3.0] and ops[4]["sigma"] == [0.2, 1.5]
    assert ops[1]["factor"] == [0.15, 1.5] and ops[5]["factor"] == [0.3, 1.2]
    assert ops[2]["choices"][0][0]["sigma"] == [1 / 255, 30 / 255]
    assert ops[6]["choices"][1][0]["scale"] == [0.05, 2.5]
    assert ops is not realesrgan_ops(), "callers may mutate their copy"


def _matlab_cubic(x: float) -> float:
    a = abs(x)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _matlab_imresize_axis(img: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """MATLAB imresize along axis 0, one output pixel at a time (independent of the code)."""
    n = img.shape[0]
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros((out_len,) + img.shape[1:])
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        ws = [scale * _matlab_cubic(scale * (u - j)) if scale < 1 else _matlab_cubic(u - j)
              for j in taps]
        total = sum(ws)
        for j, wt in zip(taps, ws):
            k = (j - 1) % (2 * n)  # MATLAB's aux = [1:n, n:-1:1]
            src = k if k < n else 2 * n - 1 - k
            out[i - 1] += wt / total * img[src]
    return out


@pytest.mark.parametrize("h, w, factor", [(32, 24, 1 / 4), (27, 33, 1 / 3), (20, 14, 1 / 2),
                                          (6, 5, 4)])
def test_bicubic_matches_matlab_imresize_including_borders(h, w, factor):
    """Standard LR sets are MATLAB imresize output: equal to it everywhere, borders included."""
    hr = _hr(h, w, seed=3).double()
    ref = np.stack([_matlab_imresize_axis(_matlab_imresize_axis(c, round(h * factor), factor).T,
                                          round(w * factor), factor).T
                    for c in hr[0].numpy()])
    ours = bicubic_resize(hr, scale_factor=factor)[0].numpy()
    ref = np.clip(ref, 0, 1)
    assert np.abs(ours - ref).max() < 1e-5
    assert np.abs(ours[:, :2] - ref[:, :2]).max() < 1e-5  # the outer LR rows, where it differed
    mse = np.mean((ours - ref) ** 2)
    assert mse == 0 or 10 * math.log10(1 / mse) > 100
    fl = bicubic_resize(hr.float(), scale_factor=factor)[0].numpy()
    assert np.abs(fl - ref).max() < 1e-5
