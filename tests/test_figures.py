"""Visual comparison grids: rows of at most six panels, GT and bicubic first, the methods' full
variants in one grid and the ablations in another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustsr_bench import figures, report
from robustsr_bench.data.io import save_image
from tests.test_report import make_run

VARIANTS = [("esrgan", ""), ("rsr", ""), ("rsr", "no_attack"), ("bapd", ""),
            ("bapd", "no_pixel_attack"), ("bapd", "no_hf_attack"), ("bapd", "no_attack"),
            ("bapd", "no_distillation"), ("bapd", "one_way_distillation"), ("and", ""),
            ("ddsr", "")]


@pytest.fixture
def grid_records(isolated: Path) -> Path:
    means = {"clean": {"psnr_y": 25.0, "ssim_y": 0.7}}
    make_run(isolated, "bicubic", means, trained_on="none")
    first = make_run(isolated, *VARIANTS[0][:1], means, ablation=VARIANTS[0][1])
    hr, _ = figures.suite_pair(first, "clean", "astronaut", isolated)
    rng = np.random.default_rng(0)
    for i, (method, ablation) in enumerate(VARIANTS):
        path = first if i == 0 else make_run(isolated, method, means, ablation=ablation)
        noisy = np.clip(hr + rng.normal(0, 0.01 * (i + 1), hr.shape), 0, 1)
        save_image(path / "images" / "clean" / "astronaut.png", noisy)
    return isolated


def test_grids_wrap_at_six_panels_and_split_full_variants_from_ablations(
        grid_records: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report.write_report(grid_records, out, report.ReportOptions())
    full = out / "grids" / "clean_astronaut.png"
    ablations = out / "grids" / "clean_astronaut_ablations.png"
    assert full.is_file() and ablations.is_file()
    # full variants: overview + GT + bicubic + and, bapd, ddsr, esrgan, rsr = 8 -> 2 rows of 6
    width, height = Image.open(full).size
    panel = figures._PANEL_IN * figures._GRID_DPI
    assert 5 * panel < width <= 6 * panel + 10
    assert 2 * panel < height < 3 * panel
    # ablations: overview + GT + bicubic + bapd (full + 5) + rsr (full + 1) = 11 -> 2 rows
    width, height = Image.open(ablations).size
    assert width <= 6 * panel + 10 and 2 * panel < height < 3 * panel
    text = (out / "README.md").read_text()
    assert "grids/clean_astronaut.png" in text and "grids/clean_astronaut_ablations.png" in text


def test_grid_panel_order_is_gt_then_bicubic_then_methods(grid_records: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    drawn: list[list[str]] = []
    monkeypatch.setattr(figures, "visual_grid",
                        lambda panels, crop, title, path: drawn.append([p[0] for p in panels]))
    report.write_report(grid_records, tmp_path / "out", report.ReportOptions())
    full, ablations = drawn
    assert full == ["GT", "bicubic", "esrgan", "and", "bapd", "ddsr", "rsr"]
    assert ablations[:4] == ["GT", "bicubic", "bapd", "bapd [no_pixel_attack]"]
    assert ablations[-2:] == ["rsr", "rsr [no_attack]"]


def test_metric_specs_are_the_one_table_of_labels_and_directions() -> None:
    from robustsr_bench.metric_specs import RECORDED, SPECS, direction, metric_label
    from robustsr_bench.metrics import create_metric, list_metrics

    assert list_metrics() == list(SPECS)
    for name, spec in SPECS.items():
        metric = create_metric(name)
        assert (metric.higher_is_better, metric.needs_reference, metric.weights) == (
            spec.higher_is_better, spec.needs_reference, spec.weights)
    assert [metric_label(n) for n in RECORDED] == ["Kernel PSNR", "Seconds"]
    assert direction("seconds") is False and direction("kernel_psnr") is True
    assert direction("unknown_quantity") is None and metric_label("x") == "x"
