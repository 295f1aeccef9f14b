"""Registered dataset layouts: discovery of pairs, and one clear line per broken file or folder.

Every test writes a tiny dataset (a few 40x40 HR, 10x10 LR images) in the exact published
layout, file names included, so the registry is checked against the layouts, not against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustsr_bench import registry, runner
from robustsr_bench.cli import main
from robustsr_bench.bench import dataset_loader
from robustsr_bench.data.layouts import LAYOUTS, data_root, discover, scan
from robustsr_bench.data.prepare import verify
from robustsr_bench.errors import ConfigError, DataError
from tests.conftest import TINY

RNG = np.random.default_rng(0)
HR, SCALE = 40, 4


def png(path: Path, size: int | tuple[int, int] = HR) -> Path:
    h, w = (size, size) if isinstance(size, int) else size
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write(root: Path, hr: list[str], lr: list[str], hr_size: int = HR) -> None:
    for name in hr:
        png(root / name, hr_size)
    for name in lr:
        png(root / name, hr_size // SCALE)


# (dataset, split, HR files, LR files), as the datasets are distributed; pairs line up by index
LAYOUT_CASES = [
    ("DIV2K", "train", ["DIV2K/DIV2K_train_HR/0001.png", "DIV2K/DIV2K_train_HR/0002.png"],
     ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png", "DIV2K/DIV2K_train_LR_bicubic/X4/0002x4.png"]),
    ("DIV2K", "valid", ["DIV2K/DIV2K_valid_HR/0801.png"],
     ["DIV2K/DIV2K_valid_LR_bicubic/X4/0801x4.png"]),
    ("Flickr2K", "train", ["Flickr2K/Flickr2K_HR/000001.png"],
     ["Flickr2K/Flickr2K_LR_bicubic/X4/000001x4.png"]),
    ("DF2K", "train", ["DIV2K/DIV2K_train_HR/0001.png", "Flickr2K/Flickr2K_HR/000001.png"],
     ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png",
      "Flickr2K/Flickr2K_LR_bicubic/X4/000001x4.png"]),
    ("DIV8K", "train", ["DIV8K/DIV8K_train_HR/0001.png", "DIV8K/DIV8K_train_HR/0002.png"], []),
    ("OST", "train", ["OST/OutdoorSceneTrain_v2/animal/animal_0001.png",
                      "OST/OutdoorSceneTrain_v2/sky/sky_0001.png"], []),
    ("NTIRE2020", "valid", ["NTIRE2020/track1-valid-gt/0801.png"],
     ["NTIRE2020/Corrupted-va-x/0801.png"]),
    ("AIM2019", "valid", ["AIM2019/valid-gt-clean/0801.png"],
     ["AIM2019/valid-input-noisy/0801.png"]),
    ("RealSR", "train", ["RealSR(V3)/Canon/Train/4/Canon_001_HR.png",
                         "RealSR(V3)/Nikon/Train/4/Nikon_001_HR.png"],
     ["RealSR(V3)/Canon/Train/4/Canon_001_LR4.png", "RealSR(V3)/Nikon/Train/4/Nikon_001_LR4.png"]),
    ("RealSR-Canon", "test", ["RealSR(V3)/Canon/Test/4/Canon_003_HR.png"],
     ["RealSR(V3)/Canon/Test/4/Canon_003_LR4.png"]),
    ("RealSR-Nikon", "test", ["RealSR(V3)/Nikon/Test/4/Nikon_003_HR.png"],
     ["RealSR(V3)/Nikon/Test/4/Nikon_003_LR4.png"]),
    ("DRealSR", "test", ["DRealSR/Test_x4/test_HR/DSC_1454_x1.png"],
     ["DRealSR/Test_x4/test_LR/DSC_1454_x4.png"]),
    ("Set5", "test", ["Set5/HR/baby.png", "Set5/HR/bird.png"],
     ["Set5/LR_bicubic/X4/babyx4.png", "Set5/LR_bicubic/X4/birdx4.png"]),
    ("Set14", "test", ["Set14/HR/comic.png"], ["Set14/LR_bicubic/X4/comicx4.png"]),
    ("BSD100", "test", ["B100/HR/3096.png"], ["B100/LR_bicubic/X4/3096x4.png"]),
    ("Urban100", "test", ["Urban100/HR/img_001.png"], ["Urban100/LR_bicubic/X4/img_001x4.png"]),
]


@pytest.mark.parametrize("name, split, hr, lr", LAYOUT_CASES, ids=lambda v: str(v)[:20])
def test_each_layout_gives_the_right_pairs(name, split, hr, lr, tmp_path):
    write(tmp_path, hr, lr)
    png(tmp_path / "unrelated" / "noise.png")  # other folders under the root are ignored
    pairs = discover(name, tmp_path, SCALE, split)
    expected = dict(zip(hr, lr)) if lr else {h: None for h in hr}
    assert {p.hr: p.lr for p in pairs} == {
        tmp_path / h: (tmp_path / low if low else None) for h, low in expected.items()}
    assert verify(name, tmp_path, SCALE, split, workers=1).problems == []


def test_every_registered_dataset_is_covered():
    covered = {case[0] for case in LAYOUT_CASES} | {"BAPD", "DPED", "faces"}
    assert covered == set(LAYOUTS)


def test_bapd_layout_with_edges_and_meta_info(tmp_path):
    folder = tmp_path / "DF2K+DIV8K+Flickr2K+OutdoorSceneTraining"
    for name in ("0001_s001.png", "0001_s002.png"):
        png(folder / "train_HR_sub" / name, 48)
        png(folder / "train_EDGE_sub" / name, 48)
    (folder / "meta_info_DF2K+DIV8.txt").write_text(
        "0001_s001.png (48,48,3)\n0001_s002.png (48,48,3)\n")
    pairs = discover("BAPD", tmp_path, SCALE)
    assert [(p.hr.name, p.lr, p.edge.name) for p in pairs] == [
        ("0001_s001.png", None, "0001_s001.png"), ("0001_s002.png", None, "0001_s002.png")]
    assert verify("BAPD", tmp_path, SCALE, workers=1).problems == []
    (folder / "meta_info_DF2K+DIV8.txt").write_text("0001_s001.png (50,48,3)\n0009_s001.png\n")
    problems = verify("BAPD", tmp_path, SCALE, workers=1).problems
    assert problems == [
        f"{folder / 'meta_info_DF2K+DIV8.txt'}:1: '0001_s001.png' is listed as (50,48,3) but is "
        f"(48,48,3)",
        f"{folder / 'meta_info_DF2K+DIV8.txt'}:2: '0009_s001.png' is not in the HR folder"]


def test_bapd_without_edge_folder_computes_edges_on_the_fly(tmp_path):
    png(tmp_path / "DF2K+DIV8K+Flickr2K+OutdoorSceneTraining" / "train_HR_sub" / "a_s001.png")
    assert [p.edge for p in discover("BAPD", tmp_path, SCALE)] == [None]


@pytest.mark.parametrize("name, files", [
    ("DPED", ["DPED/iphone/test_data/full_size_test_images/1.jpg",
              "DPED/iphone/test_data/full_size_test_images/2.jpg"]),
    ("faces", ["faces/face_000.png"]),
])
def test_no_reference_sets_have_lr_only(name, files, tmp_path):
    write(tmp_path, files, [])
    pairs = discover(name, tmp_path, SCALE)
    assert [(p.hr, p.lr) for p in pairs] == [(None, tmp_path / f) for f in files]


def test_missing_lr_is_one_line_naming_the_file(tmp_path):
    write(tmp_path, ["DIV2K/DIV2K_train_HR/0001.png", "DIV2K/DIV2K_train_HR/0002.png"],
          ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png"])
    with pytest.raises(DataError) as err:
        discover("DIV2K", tmp_path, SCALE, "train")
    assert str(err.value) == (f"{tmp_path}/DIV2K/DIV2K_train_HR/0002.png: no LR image '0002x4.*' "
                              f"in {tmp_path}/DIV2K/DIV2K_train_LR_bicubic/X4")


def test_lr_without_hr_is_reported(tmp_path):
    write(tmp_path, ["RealSR(V3)/Canon/Test/4/Canon_001_HR.png"],
          ["RealSR(V3)/Canon/Test/4/Canon_001_LR4.png", "RealSR(V3)/Canon/Test/4/Canon_002_LR4.png"])
    assert scan("RealSR-Canon", tmp_path, SCALE, "test").problems == [
        f"{tmp_path}/RealSR(V3)/Canon/Test/4/Canon_002_LR4.png: no HR image 'Canon_002_HR.*' in "
        f"{tmp_path}/RealSR(V3)/Canon/Test/4"]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "Set5" / "HR").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Set5/HR: empty folder \(no .png"):
        discover("Set5", tmp_path, SCALE)
    with pytest.raises(DataError, match=r"Set14/HR: folder not found"):
        discover("Set14", tmp_path, SCALE)


def test_size_mismatch_and_unreadable_image_are_named(tmp_path):
    write(tmp_path, ["Set5/HR/baby.png"], [])
    png(tmp_path / "Set5/LR_bicubic/X4/babyx4.png", 11)
    problems = verify("Set5", tmp_path, SCALE, workers=1).problems
    assert problems == [f"{tmp_path}/Set5/LR_bicubic/X4/babyx4.png: LR is 11x11 but HR "
                        f"{tmp_path}/Set5/HR/baby.png is 40x40; expected LR x 4 == HR"]
    (tmp_path / "Set5/HR/baby.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    problems = verify("Set5", tmp_path, SCALE, workers=1).problems
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path}/Set5/HR/baby.png: ")
    assert "corrupt or truncated" in problems[0] or "not a recognised" in problems[0]


def test_verify_lists_every_problem_at_once(tmp_path, monkeypatch, capsys):
    write(tmp_path, ["DIV2K/DIV2K_train_HR/0001.png", "DIV2K/DIV2K_train_HR/0002.png",
                     "DIV2K/DIV2K_train_HR/0003.png"],
          ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png"])
    png(tmp_path / "DIV2K/DIV2K_train_LR_bicubic/X4/0002x4.png", 12)
    (tmp_path / "DIV2K/DIV2K_valid_HR").mkdir(parents=True)
    monkeypatch.setenv("ROBUSTSR_DATA", str(tmp_path))
    assert main(["data", "verify", "DIV2K", "--workers", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [
        f"{tmp_path}/DIV2K/DIV2K_train_HR/0003.png: no LR image '0003x4.*' in "
        f"{tmp_path}/DIV2K/DIV2K_train_LR_bicubic/X4",
        f"{tmp_path}/DIV2K/DIV2K_train_LR_bicubic/X4/0002x4.png: LR is 12x12 but HR "
        f"{tmp_path}/DIV2K/DIV2K_train_HR/0002.png is 40x40; expected LR x 4 == HR",
        f"{tmp_path}/DIV2K/DIV2K_valid_HR: empty folder (no .png, .jpg, .jpeg, .bmp, .tif, "
        f".tiff, .webp images)",
        f"{tmp_path}/DIV2K/DIV2K_valid_LR_bicubic/X4: folder not found"]
    assert out[-1] == "DIV2K: train x4: 2 pairs, valid x4: 0 pairs; 4 problem(s)"


def test_verify_in_parallel_finds_the_same(tmp_path):
    write(tmp_path, ["Set14/HR/a.png", "Set14/HR/b.png"], ["Set14/LR_bicubic/X4/ax4.png"])
    png(tmp_path / "Set14/LR_bicubic/X4/bx4.png", 9)
    serial = verify("Set14", tmp_path, SCALE, workers=1)
    assert verify("Set14", tmp_path, SCALE, workers=2) == serial
    assert len(serial.problems) == 1


@pytest.mark.parametrize("argv, env, fragment", [
    (["data", "verify", "Set5"], None, "no data root: pass --data-root DIR (data.root) or set "
                                       "ROBUSTSR_DATA"),
    (["data", "verify", "Set5", "--data-root", "{tmp}/nowhere"], None,
     "{tmp}/nowhere: data root not found (from --data-root (data.root))"),
    (["data", "verify", "Set5"], "{tmp}/gone", "{tmp}/gone: data root not found (from "
                                               "ROBUSTSR_DATA)"),
    (["data", "verify", "Set6", "--data-root", "{tmp}"], None, "unknown dataset 'Set6'; valid: "),
    (["data", "verify", "NTIRE2020", "--data-root", "{tmp}", "--scale", "2"], None,
     "dataset NTIRE2020 has no x2 LR images; valid scales: 4"),
    (["data", "prepare", "DPED", "--data-root", "{tmp}"], None,
     "dataset DPED cannot be prepared: it has no full-size HR images"),
])
def test_data_command_errors_are_one_line(argv, env, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ROBUSTSR_DATA", raising=False)
    if env:
        monkeypatch.setenv("ROBUSTSR_DATA", env.format(tmp=tmp_path))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment.format(tmp=tmp_path) in err[0], err


def test_list_datasets_plain_and_verbose(capsys):
    assert main(["list", "datasets"]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert len(plain) == len(LAYOUTS) + 1 and plain[1].startswith("DIV2K ")
    assert main(["list", "datasets", "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert "<root>/RealSR(V3)/Canon/Train/4/Canon_001_LR4.png" in verbose
    assert "<root>/DF2K+DIV8K+Flickr2K+OutdoorSceneTraining/train_EDGE_sub/0001_s001.png" in verbose


def test_unknown_train_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="data.train='DIV3K' is invalid; expected one of: "
                                          "embedded, folder, DIV2K"):
        registry.resolve_config("esrgan", overrides={"data.train": "DIV3K"})


def test_data_root_is_not_part_of_the_run_id(tmp_path):
    from robustsr_bench.results import run_id

    a = registry.resolve_config("esrgan", overrides={"data.train": "DIV2K", "data.root": "/a"})
    b = registry.resolve_config("esrgan", overrides={"data.train": "DIV2K", "data.root": "/b"})
    c = registry.resolve_config("esrgan", overrides={"data.train": "DIV2K",
                                                     "data.split": "valid"})
    assert run_id(a) == run_id(b) != run_id(c)


def test_training_loader_of_a_registered_dataset(tmp_path):
    write(tmp_path, ["DIV2K/DIV2K_train_HR/0001.png"], ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png"])
    loader = dataset_loader("DIV2K", str(tmp_path), overrides={
        "train.batch_size": 2, "train.patch_size": 16, "train.iters": 3})
    batches = list(loader)
    assert len(batches) == 3
    assert batches[0]["gt"].shape == (2, 3, 16, 16) and batches[0]["lq"].shape == (2, 3, 4, 4)


def test_no_reference_set_cannot_be_trained_on(tmp_path):
    write(tmp_path, ["faces/a.png"], [])
    with pytest.raises(DataError, match="data.train=faces has no HR images"):
        dataset_loader("faces", str(tmp_path))


def test_data_root_env_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTSR_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root(str(tmp_path / ".")) == tmp_path / "."


@pytest.mark.slow
def test_run_trains_and_evaluates_on_registered_datasets(tmp_path, isolated, capsys):
    """Train on DIV2K, evaluate the synthetic suites on DIV2K valid HR and a real-pair suite on
    RealSR Canon test; the record says what it was trained and evaluated on, with counts."""
    data = tmp_path / "data"
    write(data, ["DIV2K/DIV2K_train_HR/0001.png", "DIV2K/DIV2K_train_HR/0002.png"],
          ["DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png",
           "DIV2K/DIV2K_train_LR_bicubic/X4/0002x4.png"], hr_size=48)
    write(data, ["DIV2K/DIV2K_valid_HR/0801.png"], [], hr_size=48)
    canon = "RealSR(V3)/Canon/Test/4/Canon_00"
    write(data, [f"{canon}1_HR.png", f"{canon}2_HR.png"], [f"{canon}1_LR4.png", f"{canon}2_LR4.png"],
          hr_size=48)
    overrides = {**TINY, "train.iters": 2, "data.train": "DIV2K", "eval.images": "DIV2K:valid",
                 "eval.suites": ["clean", "realsr_canon"], "eval.save_images": []}
    argv = ["run", "--data-root", str(data)]
    for key, value in overrides.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        argv += ["--set", f"{key}={text}"]
    assert main(argv) == 0, capsys.readouterr().err
    cfg = registry.resolve_config("esrgan", overrides={**overrides, "data.root": str(data)})
    summary = json.loads(runner.RunDir.for_config(cfg, isolated).summary_path.read_text())
    assert summary["trained_on"] == "DIV2K"
    assert summary["train_data"] == {"dataset": "DIV2K", "split": "default", "scale": 4,
                                     "images": 2}
    assert summary["eval_data"] == {"clean": {"dataset": "DIV2K:valid", "images": 1},
                                    "realsr_canon": {"dataset": "RealSR-Canon:test",
                                                     "images": 2}}
    assert "realsr_canon" in capsys.readouterr().out


def test_run_without_data_root_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ROBUSTSR_DATA", raising=False)
    argv = ["run", "--data", "DIV2K", "--set", "train.iters=1", "--set", "runtime.device=cpu",
            "--set", "runtime.progress=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no data root: pass --data-root DIR (data.root) or set ROBUSTSR_DATA"]
    assert main([*argv, "--data-root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'nope'}: data root not found (from --data-root "
                   f"(data.root))"]


def test_sweep_and_run_take_data_root():
    from robustsr_bench.cli import _overrides, build_parser

    args = build_parser().parse_args(["run", "--data", "DF2K", "--data-root", "/d"])
    assert {k: v for k, v in _overrides(args).items() if k.startswith("data.")} == {
        "data.train": "DF2K", "data.root": "/d"}
    assert build_parser().parse_args(["sweep", "x", "--data-root", "/d"]).data_root == "/d"


def test_embedded_split_has_nine_held_out_photos_never_trained_on():
    from robustsr_bench.data import embedded
    from robustsr_bench.data.io import load_image

    held, train = embedded.held_out_paths(), embedded.train_paths()
    assert len(held) >= 8 and all(p.is_file() for p in held + train)
    assert not {p.resolve() for p in held} & {p.resolve() for p in train}
    assert not {p.stem for p in held} & {p.stem for p in train}
    assert all(load_image(p).shape[2] == 3 and min(load_image(p).shape[:2]) >= 300 for p in held)


def test_embedded_split_is_part_of_the_run_id(monkeypatch):
    from robustsr_bench.config import to_dict, training_hash
    from robustsr_bench.data import embedded
    from robustsr_bench.results import run_id

    cfg = registry.resolve_config("esrgan", "smoke")
    before, trained = run_id(cfg), training_hash(to_dict(cfg))
    monkeypatch.setattr(embedded, "HELD_OUT", embedded.HELD_OUT[:4])
    assert run_id(cfg) != before and training_hash(to_dict(cfg)) == trained
