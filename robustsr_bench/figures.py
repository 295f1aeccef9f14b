"""Report figures: metric per suite, robustness curves, ablation bars and visual comparisons.

Plots are drawn with seaborn from the seed-level frame, so error bars are the sample std over
seeds (none with one seed). Each plot is saved as PNG (for the README) and PDF (for a paper).
Visual comparisons put the same crop of one image side by side: ground truth, bicubic upscaling
of the suite's LR input (computed here, so no bicubic run is needed) and every method's saved SR
output (``<run>/images/<suite>/<stem>.png``, see ``eval.save_images``). Crop size and position
are our choice (``GridCrop``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import yaml

from . import registry
from .data.image_ops import bicubic_resize
from .data.io import to_numpy, to_tensor
from .data.suites import load_suite
from .evaluate import eval_images
from .files import atomic_path
from .metric_specs import metric_label

_PDF_METADATA = {"CreationDate": None}  # reproducible PDFs: no timestamp


def save(fig: plt.Figure, stem: Path, legend_space: float = 0.0) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf``; returns both paths. ``legend_space``: the fraction of
    the height kept free at the bottom for a figure-wide legend."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, legend_space, 1, 1))
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    _atomic_savefig(fig, png, dpi=150, metadata={"Software": None})
    _atomic_savefig(fig, pdf, metadata=_PDF_METADATA)
    plt.close(fig)
    return [png, pdf]


def _atomic_savefig(fig: plt.Figure, path: Path, **kwargs: Any) -> None:
    """``savefig`` through a temp file, so a report killed mid-way leaves no torn figure."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)


def plot_per_suite(seeds: pd.DataFrame, metric: str, suites: Sequence[str],
                   order: Sequence[str], stem: Path) -> list[Path]:
    """Grouped bars: x = eval suite, hue = row label, error bars = std over seeds."""
    data = seeds[(seeds["metric"] == metric) & seeds["suite"].isin(suites)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(suites)), 3.6))
    sns.barplot(data=data, x="suite", y="value", hue="label", order=list(suites),
                hue_order=list(order), errorbar="sd", ax=ax)
    ax.set(xlabel="eval suite", ylabel=metric_label(metric))
    _bottom_legend(ax, len(order))
    _zoom(ax, data["value"])
    return save(fig, stem)


def plot_robustness(seeds: pd.DataFrame, metrics: Sequence[str], xlabel: str,
                    order: Sequence[str], stem: Path) -> list[Path]:
    """Metric vs degradation severity (``severity`` column), one panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for i, (ax, metric) in enumerate(zip(axes[0], metrics)):
        data = seeds[seeds["metric"] == metric]
        sns.lineplot(data=data, x="severity", y="value", hue="label", hue_order=list(order),
                     errorbar="sd", marker="o", ax=ax, legend=i == 0)
        ax.set(xlabel=xlabel, ylabel=metric_label(metric))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if not handles:
        return save(fig, stem)
    axes[0][0].get_legend().remove()  # one legend for all panels: the colours are the same
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    return save(fig, stem, legend_space=0.12)


def plot_ablation(averages: pd.DataFrame, metrics: Sequence[str], order: Sequence[str],
                  stem: Path) -> list[Path]:
    """Horizontal bars of each variant's average over suites; dashed line = the full method."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics),
                                                      0.45 * len(order) + 1.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data = averages[averages["metric"] == metric]
        sns.barplot(data=data, y="label", x="value", order=list(order), errorbar="sd", ax=ax,
                    color="tab:blue")
        full = data[data["label"] == order[0]]["value"]
        if len(full):
            ax.axvline(float(full.mean()), color="k", linestyle="--", linewidth=1)
        ax.set(ylabel="", xlabel=f"{metric_label(metric)} (average over suites)")
        _zoom(ax, data["value"], axis="x")
    return save(fig, stem)


def _bottom_legend(ax: plt.Axes, entries: int) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(entries, 4),
                        title=None, frameon=False)


def _zoom(ax: plt.Axes, values: pd.Series, axis: str = "y") -> None:
    """Bars of PSNR-like values all start far from 0: show the range that differs."""
    if not len(values):
        return
    low, high = float(values.min()), float(values.max())
    pad = max((high - low) * 0.3, abs(high) * 0.02, 1e-6)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(max(0.0, low - pad) if low >= 0 else low - pad,
                                                  high + pad * 0.5)


@dataclass(frozen=True)
class GridCrop:
    """Crop of the visual comparison in HR pixels: ``size`` square at fractional centre."""

    size: int = 96
    cx: float = 0.5
    cy: float = 0.4


def suite_pair(run_path: Path, suite: str, stem: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(HR, bicubic-upscaled LR) of one suite image, from the suite cache a run used."""
    cfg = yaml.safe_load((run_path / "config.yaml").read_text())
    scale = int(cfg["scale"])
    images = eval_images(SimpleNamespace(eval=SimpleNamespace(images=cfg["eval"]["images"])))
    item = next(i for i in load_suite(registry.suite_spec(suite), scale, images, root) if i.name == stem)
    up = bicubic_resize(to_tensor(item.lr), scale_factor=scale).clamp(0, 1)
    return item.hr, to_numpy(up)


GRID_COLUMNS = 6  # panels per row: a row stays within a screen's width at 100% zoom
_PANEL_IN, _GRID_DPI, _LABEL_PT = 2.4, 100, 11  # 240 px panels, labels ~15 px high


def visual_grid(panels: Sequence[tuple[str, np.ndarray]], crop: GridCrop, title: str,
                path: Path, columns: int = GRID_COLUMNS) -> Path:
    """The full ground truth with the crop marked, then the crop of every panel (in the given
    order: GT and bicubic first), labelled, wrapped into rows of ``columns`` panels."""
    hr = panels[0][1]
    h, w = hr.shape[:2]
    size = min(crop.size, h, w)
    x0 = int(min(max(crop.cx * w - size / 2, 0), w - size))
    y0 = int(min(max(crop.cy * h - size / 2, 0), h - size))
    count = len(panels) + 1
    cols = min(columns, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(_PANEL_IN * cols, (_PANEL_IN + 0.45) * rows + 0.5))
    flat = list(axes.flat)
    flat[0].imshow(np.clip(hr, 0, 1))
    flat[0].add_patch(plt.Rectangle((x0, y0), size, size, fill=False, color="red", linewidth=2))
    flat[0].set_title("GT (full, crop in red)", fontsize=_LABEL_PT)
    for ax, (label, img) in zip(flat[1:], panels):
        ax.imshow(np.clip(img[y0:y0 + size, x0:x0 + size], 0, 1), interpolation="nearest")
        ax.set_title(_wrap(label), fontsize=_LABEL_PT)
    for ax in flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=_LABEL_PT + 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    _atomic_savefig(fig, path, dpi=_GRID_DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _wrap(label: str, width: int = 24) -> str:
    """``bapd [one_way_distillation]`` -> two lines, so a label never runs into its neighbour."""
    if len(label) <= width or " [" not in label:
        return label
    method, _, ablation = label.partition(" [")
    return f"{method}\n[{ablation}"
