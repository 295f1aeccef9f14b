"""The statistics behind every verdict: CI coverage, false positives, power, pairing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustsr_bench import stats


def _experiment(rng: np.random.Generator, true: float, seeds: int = 3, images: int = 9,
                image_sd: float = 0.3, seed_sd: float = 0.05, noise_sd: float = 0.05) -> np.ndarray:
    """A - B per (seed, image) as SR comparisons look: per-image differences vary most (an image
    a method suits stays so under every seed), seeds shift all images a little."""
    return (true + rng.normal(0, image_sd, (1, images)) + rng.normal(0, seed_sd, (seeds, 1))
            + rng.normal(0, noise_sd, (seeds, images)))


def test_ci_covers_a_known_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = []
    for k in range(200):
        low, high = stats.bootstrap_ci(_experiment(rng, 0.5), seed=k)
        covered.append(low <= 0.5 <= high)
    # Observed: 0.95 (190 of 200) with 3 seeds x 9 images; a plain percentile interval gives
    # ~0.88 here and per-seed image resampling ~0.66 (see the stats module docstring).
    assert 0.90 <= np.mean(covered) <= 0.99


def test_zero_difference_is_not_significant_above_the_nominal_rate():
    rng = np.random.default_rng(1)
    hits = [stats.compare({"s": _experiment(rng, 0.0)}, "psnr_y", seed=k)[0].significant
            for k in range(200)]
    # Observed: 0.04 (8 of 200); nominal 0.05, binomial sd over 200 trials ~0.015.
    assert np.mean(hits) <= 0.08


def test_large_difference_is_significant_even_after_holm_over_six_suites():
    rng = np.random.default_rng(2)
    for k in range(20):
        diffs = {f"suite{i}": _experiment(rng, 1.0) for i in range(6)}
        result = stats.compare(diffs, "psnr_y", seed=k)
        assert all(c.significant and c.better and c.low > 0 for c in result)
        assert all(c.prob_improvement > 0.9 for c in result)


def test_holm_matches_the_step_down_definition():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert np.allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9])[1] == 1.0


def test_probability_of_improvement_respects_direction_and_ties():
    diff = np.array([[1.0, -1.0, 0.0, 2.0]])
    assert stats.prob_improvement(diff, higher_is_better=True) == pytest.approx(0.625)
    assert stats.prob_improvement(diff, higher_is_better=False) == pytest.approx(0.375)
    lower = stats.compare({"s": -np.ones((2, 5)) - np.arange(5) * 0.1}, "lpips_alex",
                          higher_is_better=False)[0]
    assert lower.better and lower.significant and lower.prob_improvement == 1.0


def _tidy(values: np.ndarray, suite: str = "clean") -> pd.DataFrame:
    return pd.DataFrame([{"suite": suite, "metric": "psnr_y", "seed": s, "image": f"im{i}",
                          "value": float(values[s, i])} for s in range(values.shape[0])
                         for i in range(values.shape[1])])


def test_a_deterministic_row_is_broadcast_over_the_other_rows_seeds():
    a = np.array([[30.0, 31.0, 29.0], [30.5, 31.5, 29.5]])
    fixed = np.array([[29.0, 30.0, 28.0]] * 2)  # bicubic run twice: identical
    fa, fb = _tidy(a), _tidy(fixed)
    assert stats.is_fixed(fb) and not stats.is_fixed(fa)
    assert np.allclose(stats.paired_matrix(fa, fb.query("seed == 0"), b_fixed=True),
                       [[1, 1, 1], [1.5, 1.5, 1.5]])
    (result,) = stats.compare_frames(fa, fb, "psnr_y")
    assert result.n_seeds == 2 and result.n_images == 3 and result.diff == pytest.approx(1.25)


def test_pairs_only_common_seeds_and_images():
    a = _tidy(np.arange(6.0).reshape(2, 3))
    b = _tidy(np.zeros((1, 2)))
    assert stats.paired_matrix(a, b).tolist() == [[0.0, 1.0]]
