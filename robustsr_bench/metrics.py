"""Image-quality metrics behind one small API: ``create_metric(name)(sr, hr, crop_border=4)``.

PSNR and SSIM are computed as BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (the numbers SR
papers report): HxWx3 inputs in [0, 1] are scaled to [0, 255] in float64, a border of
``crop_border`` pixels (= the scale, by convention) is removed, and by default only the BT.601 Y
channel of MATLAB's ``rgb2ycbcr`` is compared. SSIM uses an 11x11 Gaussian window (sigma 1.5),
``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2`` and 'valid' filtering; on RGB it is the mean over
channels. Y is *not* rounded to integers (BasicSR does not; MATLAB and pyiqa's SSIM do).

Each :class:`Metric` carries its direction, whether it needs a reference and which pretrained files
(:mod:`robustsr_bench.weights`) it loads, so reports pick "best" by direction, no-reference suites
get only no-reference metrics, and runs refuse before training when a file is missing. LPIPS
(``lpips`` package, AlexNet, v0.1) and NIQE/BRISQUE/PIQE (pyiqa defaults) follow their sources;
see the "deep metrics" section for what is our choice. :func:`plan_metrics` splits a config's
``eval.metrics`` (must run) from ``eval.optional_metrics`` (run where their files are present,
otherwise reported as unavailable with the reason).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from . import weights
from .errors import ConfigError, UserError
from .metric_specs import SPECS

log = logging.getLogger("robustsr_bench")

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


# --------------------------------------------------------------------------------- deep metrics
#
# LPIPS (AlexNet trunk, linear layers v0.1) comes from the ``lpips`` package with ``normalize=True``
# on [0, 1] inputs, as its authors evaluate; NIQE, BRISQUE and PIQE come from pyiqa with its
# default settings (``niqe``: Y of YIQ with pyiqa's pristine model; ``brisque``: the LIVE SVR on
# Y). Our choice: every metric sees the same image, with the same ``crop_border`` removed (the
# scale), so LPIPS and the NR metrics ignore the border pixels PSNR/SSIM ignore.

_Scorer = Callable[[Tensor, "Tensor | None"], Tensor]
_Builder = Callable[[dict[str, Path], torch.device], _Scorer]


def _build_lpips_alex(paths: dict[str, Path], device: torch.device) -> _Scorer:
    import lpips

    # lpips asks torchvision for ``alexnet(pretrained=True)``, which reads the cached file that
    # weights.require has just confirmed; the warning is torchvision's ``pretrained=`` deprecation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", version="0.1", model_path=str(paths["lpips_alex_lin"]),
                          verbose=False)
    net = net.to(device).eval()
    return lambda sr, hr: net(sr, hr, normalize=True).flatten()


def _pyiqa_builder(name: str, weight: str | None = None) -> _Builder:
    """pyiqa metric ``name``; its file is passed explicitly so pyiqa never downloads."""

    def build(paths: dict[str, Path], device: torch.device) -> _Scorer:
        import pyiqa

        logging.getLogger("pyiqa").setLevel(logging.WARNING)  # its "Metric [...] is created."
        extra = {"pretrained_model_path": str(paths[weight])} if weight else {}
        net = pyiqa.create_metric(name, device=device, **extra)
        return lambda sr, hr: net(sr).flatten()

    return build


# --------------------------------------------------------------------------------- registry

_MetricFn = Callable[[np.ndarray, "np.ndarray | None", int], float]


@dataclass(frozen=True)
class Metric:
    """A named metric with what reports and ``weights check`` need to know about it.

    Cheap to create: listing, reports and planning only read ``higher_is_better``,
    ``needs_reference`` and ``weights``. A model-based metric (``build``) loads on its first score,
    and only after :func:`weights.require` has confirmed its files, so it never downloads.
    ``fn`` metrics score one HxWx3 numpy image; ``build`` metrics score NCHW tensor batches.
    """

    name: str
    higher_is_better: bool
    needs_reference: bool
    fn: _MetricFn | None = field(default=None, repr=False)
    weights: tuple[str, ...] = ()
    description: str = ""
    build: _Builder | None = field(default=None, repr=False)
    backend: str = ""
    device: str = "cpu"
    _loaded: dict[str, _Scorer] = field(default_factory=dict, init=False, repr=False,
                                        compare=False)

    def __call__(self, sr: np.ndarray, hr: np.ndarray | None = None,
                 crop_border: int = 0) -> float:
        """Score one HxWx3 image in [0, 1] (against ``hr`` for reference metrics)."""
        self._check_reference(hr)
        if self.fn is not None:
            return self.fn(sr, hr, crop_border)
        ref = None if hr is None else _to_batch(hr)
        return self.score_batch(_to_batch(sr), ref, crop_border)[0]

    def score_batch(self, sr: Tensor, hr: Tensor | None = None,
                    crop_border: int = 0) -> list[float]:
        """Scores of an Nx3xHxW batch in [0, 1], one per image; deep metrics run on the batch."""
        self._check_reference(hr)
        if hr is not None and sr.shape != hr.shape:
            raise ValueError(f"metrics need SR and HR of the same shape, got SR "
                             f"{tuple(sr.shape)} and HR {tuple(hr.shape)}")
        if self.fn is not None:
            srs = [_to_numpy(x) for x in sr]
            hrs = [_to_numpy(x) for x in hr] if hr is not None else [None] * len(srs)
            return [self.fn(s, h, crop_border) for s, h in zip(srs, hrs)]
        sr, hr = _crop(sr, crop_border), None if hr is None else _crop(hr, crop_border)
        device = torch.device(self.device)
        with torch.no_grad():
            scores = self.scorer()(sr.float().to(device),
                                   None if hr is None else hr.float().to(device))
        return [float(v) for v in scores.detach().cpu().double()]

    def scorer(self) -> _Scorer:
        """The loaded model (built once per Metric object)."""
        if "scorer" not in self._loaded:
            reason = _backend_missing(self.backend)
            if reason:
                raise UserError(f"metric {self.name} needs {reason}")
            paths = weights.require(self.weights)
            for name, path in paths.items():
                _validate(name, path)
            self._loaded["scorer"] = self.build(paths, torch.device(self.device))
        return self._loaded["scorer"]

    def unavailable_reason(self) -> str | None:
        """Why this metric cannot run here (package or files missing), else ``None``."""
        reason = _backend_missing(self.backend)
        if reason:
            return reason
        missing = [weights.weight_file(n) for n in self.weights
                   if not weights.weight_file(n).path.is_file()]
        if not missing:
            return None
        return (f"missing {', '.join(str(w.path) for w in missing)} "
                f"(`{weights.fetch_command(w.name for w in missing)}`)")

    def _check_reference(self, hr: object) -> None:
        if self.needs_reference and hr is None:
            raise ValueError(f"metric {self.name} needs a reference (HR) image")


def _backend_missing(package: str) -> str | None:
    if package and importlib.util.find_spec(package) is None:
        return f"the {package} package, which is not installed (pip install {package})"
    return None


def _validate(name: str, path: Path) -> None:
    """Structure check before loading, so a broken file is one clear line, not a traceback."""
    status = weights.inspect(weights.weight_file(name), path, verify_hash=False)
    if not status.usable:
        raise UserError(f"pretrained file {status.detail} is {status.status}; re-run "
                        f"`{weights.fetch_command([name])} --force`")


def _to_batch(img: np.ndarray) -> Tensor:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"metrics need HxWx3 images, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32))[None]


def _to_numpy(img: Tensor) -> np.ndarray:
    return img.detach().cpu().double().numpy().transpose(1, 2, 0)


def _crop(x: Tensor, border: int) -> Tensor:
    if border < 0 or 2 * border >= min(x.shape[-2:]):
        raise ValueError(f"crop_border={border} leaves nothing of a {x.shape[-1]}x{x.shape[-2]} "
                         f"image")
    return x[..., border:-border, border:-border] if border else x


def _from_spec(name: str, **compute: object) -> Metric:
    """A metric whose label, direction, reference need and files come from ``SPECS``."""
    s = SPECS[name]
    return Metric(name, higher_is_better=s.higher_is_better, needs_reference=s.needs_reference,
                  weights=s.weights, description=s.description, backend=s.backend, **compute)


def _fidelity(name: str, fn: Callable[..., float], y_channel: bool) -> Metric:
    return _from_spec(name, fn=lambda sr, hr, crop: fn(sr, hr, crop, y_channel))


_METRICS: dict[str, Callable[[], Metric]] = {
    "psnr_y": lambda: _fidelity("psnr_y", psnr, True),
    "ssim_y": lambda: _fidelity("ssim_y", ssim, True),
    "psnr_rgb": lambda: _fidelity("psnr_rgb", psnr, False),
    "ssim_rgb": lambda: _fidelity("ssim_rgb", ssim, False),
    "lpips_alex": lambda: _from_spec("lpips_alex", build=_build_lpips_alex),
    "niqe": lambda: _from_spec("niqe", build=_pyiqa_builder("niqe", "niqe")),
    "brisque": lambda: _from_spec("brisque", build=_pyiqa_builder("brisque", "brisque")),
    "piqe": lambda: _from_spec("piqe", build=_pyiqa_builder("piqe")),
}


def list_metrics() -> list[str]:
    """Every metric name ``create_metric`` accepts."""
    return list(_METRICS)


def create_metric(name: str, device: str | torch.device = "cpu") -> Metric:
    """The metric called ``name``; nothing is loaded until it scores its first image."""
    if name not in _METRICS:
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(_METRICS)}")
    return replace(_METRICS[name](), device=str(device))


@dataclass
class MetricPlan:
    """The metrics an evaluation computes, and the optional ones it cannot, with the reason."""

    metrics: list[Metric]
    unavailable: dict[str, str] = field(default_factory=dict)


def plan_metrics(required: Sequence[str], optional: Sequence[str] = (),
                 device: str | torch.device = "cpu") -> MetricPlan:
    """``required`` always (their files were checked before the run started); each ``optional``
    metric only where its package and files are present, otherwise logged as unavailable."""
    plan = MetricPlan([create_metric(n, device) for n in dict.fromkeys(required)])
    for name in dict.fromkeys(optional):
        if name in required:
            continue
        metric = create_metric(name, device)
        reason = metric.unavailable_reason()
        if reason:
            log.warning("metric %s unavailable, not computed: %s", name, reason)
            plan.unavailable[name] = reason
        else:
            plan.metrics.append(metric)
    return plan


def weights_for(names: Iterable[str]) -> list[str]:
    """Pretrained files the named metrics load (validates the names)."""
    return list(dict.fromkeys(w for n in names for w in create_metric(n).weights))
