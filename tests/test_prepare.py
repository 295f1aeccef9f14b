"""``data prepare``: BasicSR-style sub-images, edge maps and meta_info; idempotent and resumable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from robustsr_bench.cli import main
from robustsr_bench.data import prepare as prep
from robustsr_bench.bench import dataset_loader
from robustsr_bench.data.edges import edge_image
from robustsr_bench.data.io import load_image
from robustsr_bench.data.layouts import discover
from robustsr_bench.errors import ConfigError, DataError
from tests.test_datasets import png, write

# 40x40 HR, crop 16 step 8 -> rows/cols at 0, 8, 16, 24: 16 sub-images per image
SMALL = prep.PrepareConfig(crop=16, step=8, scale=4)
HR_FILES = ["DIV2K/DIV2K_train_HR/0001.png", "DIV2K/DIV2K_train_HR/0002.png",
            "DIV2K/DIV2K_train_HR/0003.png"]
LR_FILES = [f"DIV2K/DIV2K_train_LR_bicubic/X4/000{i}x4.png" for i in (1, 2, 3)]


@pytest.fixture
def div2k(tmp_path: Path) -> Path:
    write(tmp_path, HR_FILES, LR_FILES)
    return tmp_path


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".prepare" not in p.parts}


@pytest.mark.parametrize("size, crop, step, thresh, expected", [
    (1000, 480, 240, 0, [0, 240, 480, 520]),  # BasicSR adds a last crop flush with the edge
    (960, 480, 240, 0, [0, 240, 480]),
    (1000, 480, 240, 40, [0, 240, 480]),  # 40 px left over: not more than thresh
    (400, 480, 240, 0, []),
])
def test_positions_follow_basicsr(size, crop, step, thresh, expected):
    assert prep.positions(size, crop, step, thresh) == expected


def test_prepare_writes_sub_images_edges_and_meta_info(div2k):
    done = prep.prepare("DIV2K", div2k, SMALL, workers=1)
    out = div2k / "DIV2K_sub"
    assert (done.out, done.images, done.skipped, done.sub_images) == (out, 3, 0, 48)
    names = [f"{i:04d}_s{k:03d}.png" for i in (1, 2, 3) for k in range(1, 17)]
    for folder in ("train_HR_sub", "train_LR_sub/X4", "train_EDGE_sub"):
        assert sorted(p.name for p in (out / folder).iterdir()) == names
    hr = load_image(div2k / HR_FILES[1])
    lr = load_image(div2k / LR_FILES[1])
    # s006 is row 2 (y=8), column 2 (x=8)
    assert np.array_equal(load_image(out / "train_HR_sub/0002_s006.png"), hr[8:24, 8:24])
    assert np.array_equal(load_image(out / "train_LR_sub/X4/0002_s006.png"), lr[2:6, 2:6])
    edge = load_image(out / "train_EDGE_sub/0002_s006.png")[..., 0]
    assert np.abs(edge - edge_image(hr[8:24, 8:24])).max() <= 0.5 / 255 + 1e-6
    assert done.meta_info == out / "meta_info_DIV2K.txt"
    assert done.meta_info.read_text().splitlines() == [f"{n} (16,16,3)" for n in names]
    pairs = discover("DIV2K_sub", div2k, 4)  # the output is a registered layout itself
    assert len(pairs) == 48 and all(p.lr and p.edge for p in pairs)
    batch = next(iter(dataset_loader("DIV2K_sub", str(div2k), overrides={
        "train.batch_size": 2, "train.patch_size": 8, "train.iters": 1})))
    assert batch["edge"].shape == (2, 1, 8, 8) and batch["lq"].shape == (2, 3, 2, 2)


def test_prepare_is_idempotent(div2k):
    prep.prepare("DIV2K", div2k, SMALL, workers=1)
    before = files(div2k / "DIV2K_sub")
    mtimes = {p: p.stat().st_mtime_ns for p in (div2k / "DIV2K_sub").rglob("*.png")}
    again = prep.prepare("DIV2K", div2k, SMALL, workers=1)
    assert (again.images, again.skipped, again.sub_images) == (0, 3, 48)
    assert files(div2k / "DIV2K_sub") == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_prepare_resumes_after_an_interruption(div2k, monkeypatch):
    real, cut = prep.prepare_image, []

    def interrupted(task):
        if len(cut) == 1:  # killed while cutting the second image, after some of its crops
            real(prep.Task(task.ident, task.pair, task.out, task.lr_out,
                           prep.PrepareConfig(crop=16, step=24, scale=4)))
            raise KeyboardInterrupt
        cut.append(task.ident)
        return real(task)

    monkeypatch.setattr(prep, "prepare_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare("DIV2K", div2k, SMALL, workers=1)
    assert cut == ["0001"]
    assert not (div2k / "DIV2K_sub" / "meta_info_DIV2K.txt").exists()

    resumed = []
    monkeypatch.setattr(prep, "prepare_image", lambda task: resumed.append(task.ident)
                        or real(task))
    done = prep.prepare("DIV2K", div2k, SMALL, workers=1)
    assert resumed == ["0002", "0003"] and (done.images, done.skipped) == (2, 1)
    fresh = div2k / "fresh"  # the same sources, prepared in one go
    shutil.copytree(div2k / "DIV2K", fresh / "DIV2K")
    monkeypatch.setattr(prep, "prepare_image", real)
    prep.prepare("DIV2K", fresh, SMALL, workers=1)
    assert files(div2k / "DIV2K_sub") == files(fresh / "DIV2K_sub")


@pytest.mark.slow  # spawns worker processes, each importing torch
def test_parallel_prepare_matches_serial(div2k, tmp_path):
    serial = tmp_path / "serial"
    shutil.copytree(div2k / "DIV2K", serial / "DIV2K")
    prep.prepare("DIV2K", serial, SMALL, workers=1)
    done = prep.prepare("DIV2K", div2k, SMALL, workers=2)
    assert done.images == 3
    assert files(div2k / "DIV2K_sub") == files(serial / "DIV2K_sub")


def test_other_settings_are_refused_on_resume(div2k):
    prep.prepare("DIV2K", div2k, SMALL, workers=1)
    with pytest.raises(DataError, match="DIV2K_sub: prepared earlier with other settings"):
        prep.prepare("DIV2K", div2k, prep.PrepareConfig(crop=16, step=16, scale=4), workers=1)


def test_hr_only_dataset_and_recursive_layout(tmp_path):
    write(tmp_path, ["OST/OutdoorSceneTrain_v2/animal/animal_0001.png",
                     "OST/OutdoorSceneTrain_v2/sky/sky_0001.png"], [])
    done = prep.prepare("OST", tmp_path, prep.PrepareConfig(crop=24, step=24, edges=False),
                        workers=1)
    out = tmp_path / "OST_sub"
    assert sorted(p.name for p in (out / "train_HR_sub").iterdir()) == [
        f"{stem}_s{k:03d}.png" for stem in ("animal_0001", "sky_0001") for k in range(1, 5)]
    assert not (out / "train_LR_sub").exists() and not (out / "train_EDGE_sub").exists()
    assert done.sub_images == 8


def test_realsr_ids_drop_the_hr_suffix(tmp_path):
    write(tmp_path, ["RealSR(V3)/Canon/Train/4/Canon_001_HR.png"],
          ["RealSR(V3)/Canon/Train/4/Canon_001_LR4.png"])
    prep.prepare("RealSR-Canon", tmp_path, SMALL, workers=1)
    assert (tmp_path / "RealSR-Canon_sub/train_LR_sub/X4/Canon_001_s016.png").is_file()


@pytest.mark.parametrize("cfg, fragment", [
    (dict(crop=18, step=8), "--crop 18 and --step 8 must be multiples of scale 4"),
    (dict(crop=48, step=8), "0001.png: image is 40x40, smaller than --crop 48"),
])
def test_bad_settings_are_one_line(cfg, fragment, div2k):
    with pytest.raises(DataError, match=fragment):
        prep.prepare("DIV2K", div2k, prep.PrepareConfig(**cfg), workers=1)


def test_broken_source_is_refused_before_cutting(div2k):
    (div2k / LR_FILES[2]).unlink()
    with pytest.raises(DataError, match=r"0003.png: no LR image '0003x4.\*'.*data verify DIV2K"):
        prep.prepare("DIV2K", div2k, SMALL, workers=1)
    assert not (div2k / "DIV2K_sub").exists()


def test_range_checks():
    with pytest.raises(ConfigError, match="--thresh=16 is invalid"):
        prep.PrepareConfig(crop=16, thresh=16)


def test_cli_prepare(div2k, capsys):
    argv = ["data", "prepare", "DIV2K", "--data-root", str(div2k), "--crop", "16", "--step", "8",
            "--workers", "1"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == (
        f"DIV2K: 3 image(s) cut, 0 already done; 48 sub-images in {div2k / 'DIV2K_sub'}; "
        f"meta_info_DIV2K.txt")
    assert main(argv) == 0
    assert "0 image(s) cut, 3 already done" in capsys.readouterr().out
    assert main(["data", "verify", "DIV2K_sub", "--data-root", str(div2k), "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip() == "DIV2K_sub: train x4: 48 pairs; no problem(s)"
    png(div2k / "DIV2K_sub/train_EDGE_sub/0001_s001.png", 8)
    assert main(["data", "verify", "DIV2K_sub", "--data-root", str(div2k), "--workers", "1"]) == 1
    assert "0001_s001.png: edge map is 8x8 but HR" in capsys.readouterr().out


def test_cli_canny_edge_maps(div2k, capsys):
    argv = ["data", "prepare", "DIV2K", "--root", str(div2k), "--crop", "16", "--step", "8",
            "--workers", "1", "--edge-method", "canny"]
    assert main(argv) == 0
    hr = load_image(div2k / "DIV2K_sub/train_HR_sub/0001_s001.png")
    edge = load_image(div2k / "DIV2K_sub/train_EDGE_sub/0001_s001.png")[..., 0]
    expected = edge_image(hr, prep.EdgeConfig(method="canny"))
    assert np.abs(edge - expected).max() <= 0.5 / 255 + 1e-6
    assert (expected == 0).any() and not np.allclose(expected, edge_image(hr))
