"""What each recorded quantity is, without computing it: label, direction, reference, files.

The one table every layer reads: :mod:`metrics` builds its scorers from it, ``weights`` expands
a metric name into its pretrained files, and reports and figures take labels and "best" from it.
Recorded quantities that are not scoring metrics (``seconds``, ``kernel_psnr``) have a label and
a direction too, so a table marks their best cell.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    higher_is_better: bool
    needs_reference: bool = True
    weights: tuple[str, ...] = ()  # pretrained files (names in weights.MANIFEST)
    description: str = ""
    backend: str = ""  # the optional package that computes it


SPECS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("psnr_y", "PSNR", True, description="PSNR on the BT.601 Y channel, dB"),
    MetricSpec("ssim_y", "SSIM", True, description="SSIM on the BT.601 Y channel"),
    MetricSpec("psnr_rgb", "PSNR-RGB", True, description="PSNR on RGB, dB"),
    MetricSpec("ssim_rgb", "SSIM-RGB", True, description="SSIM on RGB, mean over channels"),
    MetricSpec("lpips_alex", "LPIPS", False, True, ("alexnet", "lpips_alex_lin"),
               "LPIPS v0.1, AlexNet", "lpips"),
    MetricSpec("niqe", "NIQE", False, False, ("niqe",), "NIQE (pyiqa), no reference", "pyiqa"),
    MetricSpec("brisque", "BRISQUE", False, False, ("brisque",),
               "BRISQUE (pyiqa), no reference", "pyiqa"),
    MetricSpec("piqe", "PIQE", False, False, (),
               "PIQE (pyiqa), no reference, no pretrained file", "pyiqa"),
)}

# Recorded per image by evaluation, but not scores of an SR image against its HR.
RECORDED: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("kernel_psnr", "Kernel PSNR", True,
               description="PSNR of a blind method's estimated kernel against the true one"),
    MetricSpec("seconds", "Seconds", False, needs_reference=False,
               description="restore time of one image"),
)}


def metric_label(metric: str) -> str:
    spec = SPECS.get(metric) or RECORDED.get(metric)
    return spec.label if spec else metric


def direction(metric: str) -> bool | None:
    """True: higher is better; None where the quantity is unknown."""
    spec = SPECS.get(metric) or RECORDED.get(metric)
    return spec.higher_is_better if spec else None
