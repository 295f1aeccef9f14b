"""AND calibration: PSNR-vs-radius is monotone, suites are measured, the CLI writes its table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from robustsr_bench import registry
from robustsr_bench.calibrate import attacked_psnr, lr_psnr, suite_psnr, training_crops
from robustsr_bench.cli import main
from robustsr_bench.data import embedded


def _cfg():
    return registry.resolve_config("and", "smoke", overrides={"degradation.channels": 8})


def test_attacked_psnr_falls_monotonically_with_the_radius() -> None:
    """On a fixed crop a larger ball gives a stronger degradation, adversarial and random."""
    hr = training_crops(1, 32, 4, seed=1)
    radii = (0.001, 0.01, 0.1, 1.0)
    for mode in ("adversarial", "random"):
        psnrs = [attacked_psnr(hr, _cfg(), r, mode)[0] for r in radii]
        assert all(a > b for a, b in zip(psnrs, psnrs[1:])), (mode, psnrs)
    # PGD finds a far more damaging deviation than a random one of the same norm
    assert attacked_psnr(hr, _cfg(), 0.01, "adversarial")[0] + 10 < \
        attacked_psnr(hr, _cfg(), 0.01, "random")[0]


def test_zero_radius_is_the_identity_lr_and_psnr_helper() -> None:
    hr = training_crops(2, 32, 4, seed=0)
    assert all(math.isinf(p) or p > 100 for p in attacked_psnr(hr, _cfg(), 1e-12, "random"))
    a = torch.zeros(1, 3, 4, 4)
    assert lr_psnr(a, a + 0.1)[0] == pytest.approx(20.0)


def test_suite_psnr_is_finite_and_noise_suite_is_near_its_sigma() -> None:
    """gaussian_noise (sigma 15/255 on the bicubic LR, 8-bit) sits near 20log10(255/15)."""
    values = suite_psnr("gaussian_noise", 4, embedded.held_out_paths()[:1])
    assert len(values) == 1 and 23.0 < values[0] < 26.0


def test_calibrate_cli_rejects_bad_radii_in_one_line(capsys) -> None:
    assert main(["calibrate", "and", "--radii", "0.1,abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--radii" in err[0] and "abc" in err[0]


@pytest.mark.slow
def test_calibrate_cli_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "cal.md"
    assert main(["calibrate", "and", "--profiles", "smoke", "--radii", "0.01", "--crops", "1",
                 "--patch", "32", "--no-units", "--out", str(out)]) == 0
    text = out.read_text()
    for needle in ("suite `jpeg`", "all 5 suites pooled", "Profile `smoke`", "| 0.01 | ",
                   "| 0.017 (PGD default) | ", "| 1.8 (random default) | ", "| DC |"):
        assert needle in text


def test_dc_share_separates_colour_shifts_from_noise() -> None:
    from robustsr_bench.calibrate import dc_share

    shift = torch.zeros(1, 3, 8, 8) + torch.tensor([0.1, -0.05, 0.02]).view(1, 3, 1, 1)
    assert dc_share(shift) == pytest.approx(1.0)
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert dc_share(noise - noise.mean((2, 3), keepdim=True)) < 1e-12
