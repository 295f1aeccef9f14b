"""Image-quality metrics behind one small API: ``create_metric(name)(sr, hr, crop_border=4)``.

PSNR and SSIM are computed as BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (the numbers SR
papers report): HxWx3 inputs in [0, 1] are scaled to [0, 255] in float64, a border of
``crop_border`` pixels (= the scale, by convention) is removed, and by default only the BT.601 Y
channel of MATLAB's ``rgb2ycbcr`` is compared. SSIM uses an 11x11 Gaussian window (sigma 1.5),
``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2`` and 'valid' filtering; on RGB it is the mean over
channels. Y is *not* rounded to integers (BasicSR does not; MATLAB and pyiqa's SSIM do).

Each :class:`Metric` carries its direction and whether it needs a reference, so reports can pick
"best" and no-reference metrics (NIQE, ...) can be added to the same registry later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import ConfigError

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an HxWx3 RGB image in [0, 1], on MATLAB's [16, 235] scale of 0-255.

    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``, MATLAB's ``rgb2ycbcr`` for double images,
    which is what the SR literature's "PSNR on Y" means.
    """
    img = np.asarray(img, dtype=np.float64)
    return 16.0 + img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int,
             y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as HxWxC float64 on the 0-255 scale, border cropped, Y only if asked."""
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"metrics need SR and HR of the same HxWx3 shape, got SR {sr.shape} and "
                         f"HR {hr.shape}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[:2]):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {sr.shape[1]}x"
                         f"{sr.shape[0]} image")
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(sr)[..., None], rgb_to_y(hr)[..., None]
    return np.asarray(sr, np.float64) * 255.0, np.asarray(hr, np.float64) * 255.0


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB on the 0-255 scale; identical images give ``inf`` (as in BasicSR)."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _valid_filter(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlation keeping only positions where the window fits ('valid'), like BasicSR."""
    pad = window.shape[0] // 2
    return cv2.filter2D(img, -1, window)[pad:-pad, pad:-pad]


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map of one 2-D float64 channel pair on the 0-255 scale."""
    kernel = cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA)
    window = kernel @ kernel.T
    mu_a, mu_b = _valid_filter(a, window), _valid_filter(b, window)
    var_a = _valid_filter(a * a, window) - mu_a**2
    var_b = _valid_filter(b * b, window) - mu_b**2
    cov = _valid_filter(a * b, window) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return float(np.mean(num / den))


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM (Wang et al. 2004) as BasicSR computes it; the mean over channels for RGB."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if min(a.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after "
                         f"cropping the border, got {a.shape[1]}x{a.shape[0]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


_MetricFn = Callable[[np.ndarray, "np.ndarray | None", int], float]


@dataclass(frozen=True)
class Metric:
    """A named metric with what reports and ``weights check`` need to know about it.

    ``weights`` names the pretrained files the metric loads (none for PSNR/SSIM), so a run can
    check for them before it starts rather than fail after training.
    """

    name: str
    higher_is_better: bool
    needs_reference: bool
    fn: _MetricFn = field(repr=False)
    weights: tuple[str, ...] = ()
    description: str = ""

    def __call__(self, sr: np.ndarray, hr: np.ndarray | None = None,
                 crop_border: int = 0) -> float:
        if self.needs_reference and hr is None:
            raise ValueError(f"metric {self.name} needs a reference (HR) image")
        return self.fn(sr, hr, crop_border)


def _fidelity(name: str, fn: Callable[..., float], y_channel: bool, what: str) -> Metric:
    return Metric(name, higher_is_better=True, needs_reference=True,
                  fn=lambda sr, hr, crop: fn(sr, hr, crop, y_channel), description=what)


_METRICS: dict[str, Callable[[], Metric]] = {
    "psnr_y": lambda: _fidelity("psnr_y", psnr, True, "PSNR on the BT.601 Y channel, dB"),
    "ssim_y": lambda: _fidelity("ssim_y", ssim, True, "SSIM on the BT.601 Y channel"),
    "psnr_rgb": lambda: _fidelity("psnr_rgb", psnr, False, "PSNR on RGB, dB"),
    "ssim_rgb": lambda: _fidelity("ssim_rgb", ssim, False, "SSIM on RGB, mean over channels"),
}


def list_metrics() -> list[str]:
    """Every metric name ``create_metric`` accepts."""
    return list(_METRICS)


def create_metric(name: str) -> Metric:
    """The metric called ``name``; factories so that model-based metrics load only when asked."""
    if name not in _METRICS:
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(_METRICS)}")
    return _METRICS[name]()
