"""`evaluate`: published checkpoints of five architecture families, bad files, the model zoo.

Every checkpoint is a random-weight network built with spandrel's own architecture class (for
ESRGAN: our RRDBNet, which is BasicSR's layout key for key) and saved in its family's release
layout, so the real detection and loading code runs; only the numbers are not a real model's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from robustsr_bench import registry
from robustsr_bench.cli import main
from robustsr_bench.data.io import quantize, to_numpy, to_tensor
from robustsr_bench.data.suites import load_suite
from robustsr_bench.evaluate import restore_image
from robustsr_bench.pretrained import _Published, _tiling
from robustsr_bench.published import HARNESS_RRDBNET, load_model
from tests.conftest import REPO


def _esrgan() -> tuple[torch.nn.Module, str]:
    from robustsr_bench.nets.rrdbnet import RRDBNet
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=32, scale=4), "params_ema"


def _compact() -> tuple[torch.nn.Module, str]:
    from spandrel.architectures.Compact import Compact
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4,
                   act_type="prelu"), "params"


def _swinir() -> tuple[torch.nn.Module, str]:
    from spandrel.architectures.SwinIR import SwinIR
    return SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                  mlp_ratio=2.0, upscale=4, upsampler="pixelshuffle"), "params_ema"


def _span() -> tuple[torch.nn.Module, str]:
    from spandrel.architectures.SPAN import SPAN
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4), "params"


def _hat() -> tuple[torch.nn.Module, str]:
    from spandrel.architectures.HAT import HAT
    return HAT(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
               mlp_ratio=2.0, upscale=4, upsampler="pixelshuffle", squeeze_factor=4), "params_ema"


# family -> (builder, spandrel architecture id)
FAMILIES = {"ESRGAN": (_esrgan, "ESRGAN"), "Compact": (_compact, "Compact"),
            "SwinIR": (_swinir, "SwinIR"), "SPAN": (_span, "SPAN"), "HAT": (_hat, "HAT")}


def save_family(family: str, folder: Path) -> tuple[Path, torch.nn.Module]:
    """A random-weight checkpoint in the family's release layout; ``params`` (where the EMA
    layout has one) holds other weights, so loading the wrong entry would show."""
    torch.manual_seed(0)
    net, key = FAMILIES[family][0]()
    net.eval()
    state = {key: net.state_dict()}
    if key == "params_ema":
        torch.manual_seed(1)
        state["params"] = FAMILIES[family][0]()[0].state_dict()
    path = folder / f"tiny_{family.lower()}.pth"
    torch.save(state, path)
    return path, net


def tiny_images(folder: Path, sizes=((52, 68), (60, 44))) -> Path:
    """HR images whose x4 LR sides (17x13, 15x11) are below SwinIR/HAT's minimum of 16 and
    odd: evaluation must pad and crop back."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    return folder


def _cfg(tile: int = 0, overlap: int = 16, blend: int = 4) -> SimpleNamespace:
    e = SimpleNamespace(tile_size=tile, tile_overlap=overlap, tile_blend=blend, tile_budget_mp=0.0)
    return SimpleNamespace(eval=e, scale=4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_harness_sr_equals_spandrels_direct_call(family, tmp_path):
    from spandrel import ModelLoader

    path, net = save_family(family, tmp_path)
    model = load_model(path)
    assert model.architecture == FAMILIES[family][1] and model.scale == 4
    direct = ModelLoader().load_from_file(path)  # spandrel's own loading and call
    with torch.no_grad():
        exact = torch.rand(1, 3, 16, 16)  # meets every size requirement: no padding
        assert torch.equal(model.net(exact), net(exact).clamp(0, 1))  # params_ema was loaded
        for h, w in ((16, 16), (17, 13), (11, 15)):  # odd and below-minimum sizes pad
            lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
            ref = direct(lr)
            untiled = restore_image(_Published(), lr, model.net, _cfg(tile=0)).sr
            assert untiled.shape == (1, 3, 4 * h, 4 * w)
            assert torch.equal(untiled, ref)
        lr = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(7))
        cfg = _tiling(_cfg(tile=8, overlap=20), model)  # 8 px tiles grow to the minimum
        tiled = restore_image(_Published(), lr, model.net, cfg).sr
        gap = (tiled - direct(lr)).abs().max().item()
    # Receptive fields fit the overlap, so tiles equal the whole image to float rounding.
    # HAT's channel attention pools over its whole input, so with trained weights its tiles
    # can differ slightly; its random, 0.01-scaled branch here stays at rounding (1.5e-7).
    assert gap < 1e-5, gap


def _evaluate(path: Path, images: Path, *extra: str) -> int:
    return main(["evaluate", str(path), "--suites", "clean", "--device", "cpu",
                 "--set", f"eval.images={images}", "--set", "eval.optional_metrics=[]",
                 "--set", "eval.save_images=[im0]", *extra])


def _record(isolated: Path) -> tuple[Path, dict]:
    runs = sorted((isolated / "runs").glob("pretrained-*"))
    assert len(runs) == 1
    return runs[0], json.loads((runs[0] / "summary.json").read_text())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_evaluate_writes_a_standard_record(family, tmp_path, isolated, capsys):
    path, _ = save_family(family, tmp_path)
    images = tiny_images(tmp_path / "hr")
    assert _evaluate(path, images) == 0
    run, summary = _record(isolated)
    assert summary["method"] == "pretrained" and summary["architecture"] == family
    assert summary["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["trained_on"] == "published" and summary["label"] == path.stem
    assert summary["run_id"].startswith(f"pretrained-{path.stem}-smoke-")
    metrics = __import__("pandas").read_csv(run / "metrics.csv")
    assert set(metrics["metric"]) >= {"psnr_y", "ssim_y"} and metrics["image"].nunique() == 2
    # the saved SR image is spandrel's direct call on the suite's LR, quantised
    from spandrel import ModelLoader

    from robustsr_bench.data.layouts import list_images

    item = next(i for i in load_suite(registry.suite_spec("clean"), 4, list_images(str(images)), isolated, "")
                if i.name == "im0")
    ref = to_numpy(quantize(ModelLoader().load_from_file(path)(to_tensor(item.lr))))
    saved = np.asarray(Image.open(run / "images" / "clean" / "im0.png"))
    assert np.array_equal(saved, (ref * 255).round().astype(np.uint8))
    assert f"pretrained:{path.stem}" in capsys.readouterr().out


def test_same_file_is_evaluated_once_and_report_shows_its_row(tmp_path, isolated):
    from robustsr_bench.report import ReportOptions, write_report

    path, _ = save_family("Compact", tmp_path)
    images = tiny_images(tmp_path / "hr")
    assert _evaluate(path, images, "--name", "realesr_tiny") == 0
    first, _ = _record(isolated)
    mtime = (first / "summary.json").stat().st_mtime_ns
    assert _evaluate(path, images, "--name", "another_label") == 0  # same file: reused
    again, _ = _record(isolated)
    assert again == first and (first / "summary.json").stat().st_mtime_ns == mtime
    write_report(isolated, tmp_path / "out", ReportOptions(profile="smoke", metrics=("psnr_y",)),
                 draw=False)
    table = (tmp_path / "out" / "tables" / "cross_dataset.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert any("bicubic" in r for r in rows)
    assert any("pretrained:realesr_tiny" in r and "published" in r for r in rows)


def test_the_harness_smoke_checkpoint_loads_through_the_fallback(tmp_path, isolated):
    """Grow channels 8: spandrel assumes 32 and fails; our RRDBNet loader takes over."""
    from robustsr_bench.nets.rrdbnet import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(num_feat=16, num_block=2, num_grow_ch=8, scale=4).eval()
    run = isolated / "runs" / "esrgan-smoke-s0-12345678"
    (run / "models").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "done", "trained_on": "embedded"}))
    path = run / "models" / "net_g_4.pth"
    torch.save({"params": net.state_dict(), "params_ema": net.state_dict()}, path)
    model = load_model(path)
    assert model.architecture == HARNESS_RRDBNET
    lr = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(model.net(lr), net(lr).clamp(0, 1))
    assert _evaluate(path, tiny_images(tmp_path / "hr")) == 0
    summary = json.loads(next((isolated / "runs").glob("pretrained-*/summary.json")).read_text())
    assert summary["label"] == "esrgan-smoke-s0-12345678.g4"
    assert summary["trained_on"] == "embedded"  # the run's own training data, not "published"


class _RunsCode:
    """Unpickling this would create ``marker`` (a stand-in for any code a pickle can run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    good, _ = save_family("Compact", folder)
    files = {}
    path = folder / "classifier.pth"
    torch.save({"fc.weight": torch.randn(10, 5), "fc.bias": torch.randn(10)}, path)
    files["unknown"] = (path, "not a super-resolution checkpoint .* supported families: .*ESRGAN")
    path = folder / "notes.pth"
    path.write_text("these are not weights\n")
    files["text"] = (path, "not a PyTorch checkpoint")
    path = folder / "truncated.pth"
    path.write_bytes(good.read_bytes()[:300])
    files["truncated"] = (path, "not a PyTorch checkpoint, or truncated/corrupt")
    path = folder / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "x": _RunsCode(folder / "PWNED")}, path)
    files["pickle"] = (path, "refused: its pickle asks to import or call code")
    from spandrel.architectures.Compact import Compact

    path = folder / "x2.pth"
    torch.save({"params": Compact(num_feat=8, num_conv=2, upscale=2).state_dict()}, path)
    files["x2"] = (path, "a x2 Compact model, but the smoke benchmark is x4")
    return files


@pytest.mark.parametrize("kind", ["unknown", "text", "truncated", "pickle", "x2"])
def test_bad_checkpoints_are_refused_in_one_line(kind, tmp_path, isolated, capsys):
    import re

    path, pattern = _bad_files(tmp_path)[kind]
    capsys.readouterr()
    assert _evaluate(path, tiny_images(tmp_path / "hr")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and re.search(pattern, err[0]), err
    assert not (tmp_path / "PWNED").exists()  # nothing from the file ran
    assert not list((isolated / "runs").glob("pretrained-*"))  # nothing written


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A user config folder whose zoo.yaml holds one entry, a tiny Compact we saved; the
    built-in zoo is left out, so that only the tiny model is timed or fetched."""
    from robustsr_bench import zoo as zoo_module

    root = tmp_path / "configs"
    root.mkdir()
    source = tmp_path / "release"
    source.mkdir()
    path, _ = save_family("Compact", source)
    entry = {"architecture": "Compact", "scale": 4, "file": path.name,
             "url": "https://example.invalid/tiny_compact.pth",
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
             "licence": "CC0-1.0", "paper": "test", "size": path.stat().st_size,
             "build": {"class": "Compact", "args": {"num_feat": 8, "num_conv": 2, "upscale": 4}}}
    zoo = {"tiny_compact": entry}
    (root / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(root))
    monkeypatch.setattr(zoo_module, "zoo_paths", lambda: [root / "zoo.yaml"])
    return source, zoo


def test_a_user_zoo_is_layered_over_the_built_in_one(tmp_path, monkeypatch):
    from robustsr_bench.zoo import load_zoo

    builtin = load_zoo()
    user = tmp_path / "mine"
    user.mkdir()
    entry = {**{k: getattr(builtin["realesrgan_x4plus"], k) for k in (
        "architecture", "scale", "file", "url", "licence", "paper")}, "sha256": None}
    (user / "zoo.yaml").write_text(yaml.safe_dump({"my_model": entry,
                                                   "realesrgan_x4plus": entry}))
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(user))
    zoo = load_zoo()
    assert set(zoo) == set(builtin) | {"my_model"}
    assert zoo["realesrgan_x4plus"].sha256 is None  # the user's entry wins


def test_zoo_model_is_fetched_from_a_folder_and_evaluated(tiny_zoo, tmp_path, isolated, capsys,
                                                          monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("evaluate must not download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    source, _ = tiny_zoo
    images = tiny_images(tmp_path / "hr")
    assert _evaluate(Path("tiny_compact"), images) == 2  # not fetched yet: says how
    assert "weights fetch tiny_compact" in capsys.readouterr().err
    assert main(["list", "zoo"]) == 0
    assert "tiny_compact" in capsys.readouterr().out
    assert main(["weights", "fetch", "tiny_compact", "--from", str(source)]) == 0
    assert main(["weights", "check", "tiny_compact"]) == 0
    assert " ok " in capsys.readouterr().out
    assert _evaluate(Path("tiny_compact"), images) == 0
    _, summary = _record(isolated)
    assert summary["zoo"] == "tiny_compact" and summary["licence"] == "CC0-1.0"


def test_zoo_entry_with_a_wrong_sha256_is_refused_with_both_hashes(tiny_zoo, tmp_path, isolated,
                                                                   capsys):
    source, zoo = tiny_zoo
    real = zoo["tiny_compact"]["sha256"]
    wrong = "0" * 64
    zoo["tiny_compact"]["sha256"] = wrong
    (Path(tmp_path / "configs" / "zoo.yaml")).write_text(yaml.safe_dump(zoo))
    capsys.readouterr()
    assert main(["weights", "fetch", "tiny_compact", "--from", str(source)]) == 2
    err = capsys.readouterr().err
    assert real in err and wrong in err and "nothing was installed" in err
    from robustsr_bench import weights

    cached = weights.weight_file("tiny_compact").path  # copied by hand: evaluate refuses it
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "tiny_compact.pth", cached)
    assert _evaluate(Path("tiny_compact"), tiny_images(tmp_path / "hr")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and real in err[0] and wrong in err[0]


def test_bench_times_every_zoo_architecture(tiny_zoo):
    from robustsr_bench.bench import zoo_inference

    rows = zoo_inference(lr_side=16, repeats=1, device=torch.device("cpu"))
    assert [r["architecture"] for r in rows] == ["Compact"]
    assert rows[0]["zoo"] == ["tiny_compact"] and rows[0]["out_mp_s"] > 0


def test_repository_zoo_is_well_formed():
    from robustsr_bench.zoo import load_zoo

    zoo = load_zoo()
    assert {"realesrgan_x4plus", "realesr_general_x4v3", "swinir_m_real_x4", "hat_s_x4",
            "span_x4_ch48", "bsrgan_x4"} <= set(zoo)
    assert zoo["realesrgan_x4plus"].sha256 == ("4fa0d38905f75ac06eb49a7951b426670021be3018265fd1"
                                               "91d2125df9d682f1")
    assert all(e.build.get("class") == e.architecture or e.architecture == "ESRGAN"
               for e in zoo.values())


@pytest.mark.parametrize("grow", [4, 32])  # 4: our RRDBNet loader; 32: spandrel's ESRGAN
def test_evaluating_a_trained_runs_checkpoint_reproduces_its_metrics(grow, tiny, isolated):
    import pandas as pd

    from tests.conftest import as_set_args

    tiny.update({"model.num_grow_ch": grow, "train.init": "scratch"})
    assert main(["run", "--method", "esrgan", *as_set_args(tiny)]) == 0
    run = next((isolated / "runs").glob("esrgan-*"))
    ckpt = run / "models" / f"net_g_{tiny['train.iters']}.pth"
    assert main(["evaluate", str(ckpt), "--suites", "clean", "--device", "cpu",
                 "--set", "eval.optional_metrics=[]"]) == 0
    record, summary = _record(isolated)
    assert summary["architecture"] == ("ESRGAN" if grow == 32 else HARNESS_RRDBNET)
    keys = ["suite", "image", "metric"]
    own = pd.read_csv(run / "metrics.csv").query("metric != 'seconds'").set_index(keys)
    ours = pd.read_csv(record / "metrics.csv").query("metric != 'seconds'").set_index(keys)
    assert len(own) > 0 and own["value"].equals(ours.loc[own.index, "value"])


def test_safetensors_checkpoints_load_too(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net, _ = _compact()
    path = tmp_path / "tiny_compact.safetensors"
    save_file(net.eval().state_dict(), str(path))
    model = load_model(path)
    lr = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert model.architecture == "Compact" and torch.equal(model.net(lr), net(lr).clamp(0, 1))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(Exception, match="not a readable safetensors file"):
        load_model(path)


def test_google_drive_releases_say_how_to_fetch_them(capsys):
    assert main(["weights", "fetch", "hat_s_x4"]) == 2
    err = capsys.readouterr().err
    assert "Google Drive" in err and "weights fetch hat_s_x4 --from DIR" in err
