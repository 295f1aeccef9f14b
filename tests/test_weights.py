"""The offline weight cache: exact cache paths, check statuses, fetch/--from, early refusal.

Fake files have the real layout (torchvision state dicts, pyiqa's .mat/.pth) with random values,
so the real loading code runs; their hashes cannot match the published files, and the tests say
so (``hash mismatch`` for torchvision files, ``unverified`` where nobody publishes a hash).
"""

from __future__ import annotations

import io
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from robustsr_bench import weights
from robustsr_bench.cli import main
from robustsr_bench.errors import MissingWeightsError, UserError
from robustsr_bench.metrics import create_metric

from tests.conftest import as_set_args


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fake weight files, made once per module (AlexNet is 244 MB like the real one)."""
    import torchvision.models as tvm

    out = tmp_path_factory.mktemp("fakes")
    torch.manual_seed(0)
    files = {"alexnet": out / weights.MANIFEST["alexnet"].filename,
             "vgg19": out / weights.MANIFEST["vgg19"].filename,
             "niqe": out / weights.MANIFEST["niqe"].filename,
             "brisque": out / weights.MANIFEST["brisque"].filename}
    torch.save(tvm.alexnet(weights=None).state_dict(), files["alexnet"])
    # The perceptual loss reads only ``features.*``: the 80 MB of VGG19's 548 MB that matter.
    features = tvm.vgg19(weights=None, init_weights=False).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, files["vgg19"])
    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    scipy.io.savemat(files["niqe"], {"mu_prisparam": rng.normal(size=(1, 36)),
                                     "cov_prisparam": a @ a.T + 36 * np.eye(36)})
    torch.save((torch.randn(50, dtype=torch.float64), torch.rand(50, 36, dtype=torch.float64)),
               files["brisque"])
    return files


def install(fakes: dict[str, Path], *names: str) -> None:
    """Put fake files where the cache expects them (symlinks: no 244 MB copy per test)."""
    for name in names:
        path = weights.MANIFEST[name].path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(fakes[name], path)


def statuses(names: list[str]) -> dict[str, str]:
    return {s.file.name: s.status for s in weights.check(names)}


def test_cache_paths_are_the_ones_the_libraries_read():
    import pyiqa.archs.brisque_arch as brisque_arch
    import pyiqa.archs.niqe_arch as niqe_arch
    import torchvision.models as tvm

    hub = Path(torch.hub.get_dir())
    for name, url in (("alexnet", tvm.AlexNet_Weights.IMAGENET1K_V1.url),
                      ("vgg19", tvm.VGG19_Weights.IMAGENET1K_V1.url)):
        assert weights.MANIFEST[name].path == hub / "checkpoints" / Path(url).name
        assert Path(url).name.split("-")[-1].startswith(weights.MANIFEST[name].sha256_prefix)
    # pyiqa caches under <hub>/pyiqa/<basename of its url>
    for name, url in (("niqe", niqe_arch.default_model_urls["url"]),
                      ("brisque", brisque_arch.default_model_urls["url"])):
        assert weights.MANIFEST[name].path == hub / "pyiqa" / Path(url).name
        assert weights.MANIFEST[name].url == url


def test_lpips_builds_from_the_cache_and_check_reports_it(fakes, capsys):
    install(fakes, "alexnet")
    assert statuses(["lpips_alex"]) == {"alexnet": weights.MISMATCH, "lpips_alex_lin": weights.OK}
    assert main(["weights", "check", "lpips_alex"]) == 0
    assert "hash mismatch" in capsys.readouterr().out
    lpips = create_metric("lpips_alex")
    img = np.random.default_rng(1).random((40, 48, 3)).astype(np.float32)
    noisy = np.clip(img + np.random.default_rng(2).normal(0, 0.1, img.shape), 0, 1)
    assert lpips(img, img, crop_border=4) == 0.0
    assert lpips(noisy.astype(np.float32), img, crop_border=4) > 0.0


def test_perceptual_loss_builds_from_the_cache(fakes):
    from robustsr_bench.nets.vgg import VGGFeatureExtractor

    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth.*weights fetch vgg19"):
        weights.require(["vgg19"])
    install(fakes, "vgg19")
    path = weights.require(["vgg19"])["vgg19"]
    net = VGGFeatureExtractor("conv2_2", weights_path=path)
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 128, 8, 8)
    assert statuses(["vgg19"]) == {"vgg19": weights.MISMATCH}


def test_truncated_files_are_corrupt(fakes, capsys):
    for name in ("alexnet", "niqe"):
        path = weights.MANIFEST[name].path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fakes[name].read_bytes()[: 4096])
    assert statuses(["alexnet", "niqe"]) == {"alexnet": weights.CORRUPT, "niqe": weights.CORRUPT}
    assert main(["weights", "check", "alexnet"]) == 1
    assert "corrupt" in capsys.readouterr().out
    with pytest.raises(UserError, match="corrupt; re-run `python -m robustsr_bench weights fetch"):
        create_metric("lpips_alex").scorer()


def test_pyiqa_metrics_load_our_files(fakes):
    install(fakes, "niqe", "brisque")
    assert statuses(["niqe", "brisque"]) == {"niqe": weights.UNVERIFIED,
                                             "brisque": weights.UNVERIFIED}
    img = np.random.default_rng(3).random((200, 200, 3)).astype(np.float32)
    for name in ("niqe", "brisque"):
        assert np.isfinite(create_metric(name)(img, None, crop_border=4))


def test_missing_file_stops_the_run_before_training(tiny, capsys, isolated):
    tiny["eval.metrics"] = ["psnr_y", "lpips_alex"]
    tiny["train.init"] = "scratch"
    assert main(["run", *as_set_args(tiny)]) == 2
    err = capsys.readouterr().err
    assert str(weights.MANIFEST["alexnet"].path) in err
    assert "python -m robustsr_bench weights fetch alexnet" in err
    assert not list(isolated.glob("runs/*/models/*"))  # nothing was trained


def test_fetch_from_a_folder(fakes, tmp_path, capsys):
    usb = tmp_path / "usb"
    (usb / "hub" / "pyiqa").mkdir(parents=True)
    shutil.copy(fakes["niqe"], usb)  # flat
    shutil.copy(fakes["brisque"], usb / "hub" / "pyiqa")  # laid out like $TORCH_HOME
    assert main(["weights", "fetch", "niqe", "brisque", "--from", str(usb)]) == 0
    assert statuses(["niqe", "brisque"]) == {"niqe": weights.UNVERIFIED,
                                             "brisque": weights.UNVERIFIED}
    # A file that is not the published one (wrong hash) is refused and nothing is installed.
    shutil.copy(fakes["alexnet"], usb)
    with pytest.raises(weights.WeightsFetchError, match="not the published file"):
        weights.fetch(["alexnet"], usb)
    assert not any(weights.MANIFEST["alexnet"].path.parent.iterdir())
    capsys.readouterr()
    assert main(["weights", "fetch", "vgg19", "--from", str(usb)]) == 2
    assert "vgg19-dcbb9e9d.pth not found in" in capsys.readouterr().err


def test_fetch_offline_fails_with_one_line(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    assert main(["weights", "fetch", "niqe"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: cannot download https://")
    assert "--from DIR" in err
    assert not list(weights.MANIFEST["niqe"].path.parent.iterdir())  # no partial file


class _Response(io.BytesIO):
    headers: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_verifies_then_renames(fakes, monkeypatch):
    data = fakes["brisque"].read_bytes()
    monkeypatch.setattr(weights.urllib.request, "urlopen",
                        lambda url, timeout: _Response(data))
    [status] = weights.fetch(["brisque"], progress=False)
    assert status.status == weights.UNVERIFIED
    assert weights.MANIFEST["brisque"].path.read_bytes() == data
    assert [p.name for p in weights.MANIFEST["brisque"].path.parent.iterdir()] == [
        "brisque_svm_weights.pth"]
    # A download that arrives broken is refused; the intact file already there is kept.
    monkeypatch.setattr(weights.urllib.request, "urlopen",
                        lambda url, timeout: _Response(data[:100]))
    with pytest.raises(weights.WeightsFetchError, match="corrupt"):
        weights.fetch(["brisque"], progress=False, force=True)
    assert weights.MANIFEST["brisque"].path.read_bytes() == data


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UserError, match="unknown weight file or metric 'alexnet2'.*vgg19"):
        weights.resolve(["alexnet2"])
    assert [w.name for w in weights.resolve(["lpips_alex", "alexnet"])] == [
        "alexnet", "lpips_alex_lin"]


@pytest.mark.slow
def test_run_table_shows_unavailable_metrics_with_the_reason(tiny, capsys):
    tiny["eval.optional_metrics"] = ["lpips_alex", "piqe"]
    assert main(["run", "--method", "bicubic", *as_set_args(tiny)]) == 0
    out = capsys.readouterr().out
    headers = [line.split()[0] for line in out.splitlines() if line.startswith(("PIQE", "LPIPS"))]
    assert headers == ["PIQE↓"]  # LPIPS never recorded: a note instead of a block
    assert f"n/a LPIPS: unavailable, missing {weights.MANIFEST['alexnet'].path}" in out


@pytest.mark.parametrize("env", [{}, {"TORCH_HOME": "/tmp/th"}, {"XDG_CACHE_HOME": "/tmp/xdg"},
                                 {"TORCH_HOME": "~/th", "XDG_CACHE_HOME": "/tmp/xdg"}])
def test_the_cache_folder_read_without_torch_is_torch_hubs(env, monkeypatch):
    import torch.hub

    for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert weights._hub_dir_from_env() == Path(torch.hub.get_dir())
