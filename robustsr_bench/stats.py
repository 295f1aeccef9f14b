"""Paired comparisons of two variants on the same images and seeds: the one place that decides
whether a difference is more than noise. ``report`` (tables, verdicts) and ``run`` call it.

Data model. A comparison of variant A with variant B on one suite and metric is a matrix
``diff[s, i] = A[s, i] - B[s, i]`` over seeds s and held-out images i. Images are *crossed* with
seeds (every seed scores the same images), which shapes every choice below:

* **Point estimate**: the mean of ``diff`` (the difference of the table's two means).
* **95% CI**: hierarchical bootstrap. Each replicate resamples the seeds with replacement, then the
  images with replacement, one image draw shared by the drawn seeds (an image's difficulty is the
  same under every seed; drawing images independently per seed would count 3 seeds x 9 images as
  27 independent images and, in simulation, cover the true difference only ~66% of the time
  instead of 95%). A percentile interval of a mean over 9 images is too narrow (~88% coverage in
  the same simulation), so the percentiles are *expanded* for the number of images n (Hesterberg
  2015, "What teachers should know about the bootstrap", sec. 5): level
  ``Phi(-sqrt(n/(n-1)) t_{n-1, 1-alpha/2})`` instead of ``alpha/2``. Observed coverage with 3
  seeds x 9 images when images dominate the variance (as per-image PSNR differences do): 95%
  (tests/test_stats.py). With one seed the interval covers image sampling only: a seed-to-seed
  shift cannot be seen from one seed.
* **Paired test**: a one-sample t-test (``scipy.stats.ttest_1samp``) on the per-image
  differences averaged over seeds, i.e. images are the unit. Chosen over the Wilcoxon
  signed-rank test because it tests the quantity the CI and the table report (the mean, not a
  pseudo-median) and because Wilcoxon's exact p-value cannot go below 2/2^n (0.125 with the four
  photos of older records), so it could never pass a Holm correction across six suites.
* **Multiple comparisons**: Holm's step-down correction across the comparisons of one table
  (:func:`holm`; statsmodels is not a dependency and Holm is five lines).
* **Significant** = Holm-adjusted p < alpha *and* the CI excludes zero. The t-test on image means
  does not see a shift shared by all images of one seed; the bootstrap does, so requiring both
  keeps false positives at or below the nominal rate.
* **Probability of improvement** (as rliable reports for RL): the share of paired (seed, image)
  values where A is better than B in the metric's direction, ties counted half.

A *fixed* side (a deterministic row such as bicubic, whose seeds are identical) is broadcast over
the other side's seeds instead of paired seed by seed (:func:`paired_matrix`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVEL = 0.95
ALPHA = 0.05
N_BOOT = 4000


@dataclass(frozen=True)
class Comparison:
    """A minus B on one suite and metric. ``diff``/``low``/``high`` are in the metric's units
    (A - B, whatever the direction); ``better`` says whether the estimate favours A."""

    suite: str
    metric: str
    diff: float
    low: float
    high: float
    p: float
    p_holm: float
    significant: bool
    prob_improvement: float
    n_seeds: int
    n_images: int
    higher_is_better: bool = True

    @property
    def better(self) -> bool:
        return self.diff > 0 if self.higher_is_better else self.diff < 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def is_fixed(frame: pd.DataFrame) -> bool:
    """True when every seed of a row gives the same per-image values (a deterministic method
    such as bicubic run under several seeds): it then has no seed variance to show or pair."""
    if frame.empty or frame["seed"].nunique() < 2:
        return False
    keys = [c for c in ("suite", "metric") if c in frame.columns]
    for _, part in frame.groupby(keys, sort=False) if keys else [(None, frame)]:
        values = _wide(part)[2]
        if np.isnan(values).any() or not (values == values[0]).all():
            return False
    return True


def _wide(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted seeds, sorted images, seeds x images values; NaN where missing) of a tidy frame
    of one suite and metric (numpy, not ``pivot_table``: a report pairs hundreds of these)."""
    seeds, si = np.unique(frame["seed"].to_numpy(), return_inverse=True)
    images, ii = np.unique(frame["image"].astype(str).to_numpy(), return_inverse=True)
    values = np.full((len(seeds), len(images)), np.nan)
    values[si, ii] = frame["value"].to_numpy(dtype=float)
    return seeds, images, values


def paired_matrix(a: pd.DataFrame, b: pd.DataFrame, a_fixed: bool = False,
                  b_fixed: bool = False) -> np.ndarray:
    """``A - B`` as a (seeds x images) matrix from two tidy frames (columns seed, image, value) of
    one suite and metric. Pairs on the seeds and images both sides have; a fixed side (see
    :func:`is_fixed`) contributes its first seed to every seed of the other side."""
    if a.empty or b.empty:
        return np.empty((0, 0))
    sa, ia, wa = _wide(a)
    sb, ib, wb = _wide(b)
    if a_fixed and b_fixed:
        sa, wa, sb, wb = sa[:1], wa[:1], sa[:1], wb[:1]
    elif a_fixed:
        sa, wa = sb, np.repeat(wa[:1], len(sb), axis=0)
    elif b_fixed:
        sb, wb = sa, np.repeat(wb[:1], len(sa), axis=0)
    seeds, images = np.intersect1d(sa, sb), np.intersect1d(ia, ib)
    rows_a, rows_b = np.searchsorted(sa, seeds), np.searchsorted(sb, seeds)
    cols_a, cols_b = np.searchsorted(ia, images), np.searchsorted(ib, images)
    diff = wa[np.ix_(rows_a, cols_a)] - wb[np.ix_(rows_b, cols_b)]
    return diff[:, ~np.isnan(diff).any(axis=0)]


def bootstrap_means(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` hierarchical-bootstrap replicates of the mean of a (seeds x images) matrix:
    seeds resampled, then images, one image draw shared by the drawn seeds (module docstring)."""
    values = np.asarray(values, dtype=float)
    n_seeds, n_images = values.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds, 1))
    images = rng.integers(0, n_images, (n_boot, 1, n_images))
    return values[seeds, images].mean(axis=(1, 2))


def _tail(n_images: int, level: float) -> float:
    """The expanded-percentile tail probability for ``n_images`` (Hesterberg 2015)."""
    alpha = 1 - level
    if n_images < 2:
        return alpha / 2
    t = sps.t.ppf(1 - alpha / 2, n_images - 1)
    return float(sps.norm.cdf(-np.sqrt(n_images / (n_images - 1)) * t))


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float]:
    """Two-sided ``level`` CI of the mean of a (seeds x images) matrix (module docstring).
    A single value gives a zero-width interval at that value."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    tail = _tail(values.shape[1], level)
    low, high = np.quantile(bootstrap_means(values, n_boot, seed), [tail, 1 - tail])
    return float(low), float(high)


def paired_pvalue(diff: np.ndarray) -> float:
    """Two-sided p of a one-sample t-test on the per-image differences averaged over seeds; 1.0
    when there is nothing to test (fewer than two images, or every difference zero)."""
    per_image = np.asarray(diff, dtype=float).mean(axis=0)
    if per_image.size < 2 or np.allclose(per_image, 0, atol=1e-12):
        return 1.0
    if np.ptp(per_image) < 1e-12:  # constant non-zero difference: certain in sign
        return 0.0
    return float(sps.ttest_1samp(per_image, 0.0).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def prob_improvement(diff: np.ndarray, higher_is_better: bool = True) -> float:
    """Share of paired (seed, image) values where A beats B in the metric's direction, ties
    half."""
    d = np.asarray(diff, dtype=float) * (1 if higher_is_better else -1)
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size) if d.size else float("nan")


def compare(diffs: dict[str, np.ndarray], metric: str, higher_is_better: bool = True,
            level: float = LEVEL, alpha: float = ALPHA, n_boot: int = N_BOOT,
            seed: int = 0) -> list[Comparison]:
    """One :class:`Comparison` per suite of ``diffs`` (suite -> A-B matrix from
    :func:`paired_matrix`), Holm-corrected across all of them (one table = one family)."""
    suites = [s for s, d in diffs.items() if np.asarray(d).size]
    raw = [paired_pvalue(diffs[s]) for s in suites]
    adjusted = holm(raw) if raw else []
    out = []
    for suite, p, p_holm in zip(suites, raw, adjusted):
        d = np.asarray(diffs[suite], dtype=float)
        low, high = bootstrap_ci(d, level, n_boot, seed)
        significant = bool(p_holm < alpha and (low > 0 or high < 0))
        out.append(Comparison(suite, metric, float(d.mean()), low, high, p, float(p_holm),
                              significant, prob_improvement(d, higher_is_better), d.shape[0],
                              d.shape[1], higher_is_better))
    return out


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, metric: str, higher_is_better: bool = True,
                   suites: Sequence[str] | None = None, **kwargs) -> list[Comparison]:
    """:func:`compare` from two tidy per-image frames (columns suite, metric, seed, image,
    value), e.g. two runs' ``metrics.csv`` concatenated over seeds. Fixed (deterministic) sides
    are detected from the data (:func:`is_fixed`)."""
    a, b = a[a["metric"] == metric], b[b["metric"] == metric]
    a_fixed, b_fixed = is_fixed(a), is_fixed(b)
    suites = list(suites) if suites is not None else list(dict.fromkeys(a["suite"]))
    diffs = {s: paired_matrix(a[a["suite"] == s], b[b["suite"] == s], a_fixed, b_fixed)
             for s in suites if (a["suite"] == s).any() and (b["suite"] == s).any()}
    return compare(diffs, metric, higher_is_better, **kwargs)
