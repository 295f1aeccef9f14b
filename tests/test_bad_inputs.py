"""Bad input through the command line: one error line, exit 2, and nothing written before lost.

Every case runs ``robustsr_bench run`` in-process against a work dir that already holds a
finished run; after each refusal that run's files must be byte-identical. Property-based tests
fuzz the override parser (and the typed merge behind it) and the image loader: whatever the
input, the only failures allowed are the one-line user errors.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from robustsr_bench import registry, runner
from robustsr_bench.cli import main
from robustsr_bench.config import ConfigError, flatten, parse_overrides, parse_value, to_dict
from robustsr_bench.data.io import load_image
from robustsr_bench.errors import DataError
from tests.conftest import TINY, as_set_args

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict[Path, bytes]]:
    """A work dir with one finished run, and that run's files (the bytes that must survive)."""
    root = tmp_path_factory.mktemp("finished")
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**TINY, "train.iters": 2})
    run = runner.execute(cfg, root)
    return root, {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
            for p in root.rglob("*")}


def _refused(argv: list[str], finished, capsys, fragment: str, workdir: Path | None = None) -> str:
    """One ``error:`` line containing ``fragment``, exit 2, and nothing written: the work dir
    holds exactly what it held before (the finished run's files, no new run folder, no lock)."""
    root, files = finished
    before = _tree(root)
    assert main([*argv, "--workdir", str(workdir or root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0], err[0]
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} changed"
    assert _tree(root) == before, "the work dir changed"
    return err[0]


def _png(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, **kwargs).save(path)
    return path


def _rgb(size: int) -> np.ndarray:
    return RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _truncated(path: Path, suffix: str) -> Path:
    buf = io.BytesIO()
    Image.fromarray(_rgb(64)).save(buf, format="PNG" if suffix == ".png" else "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_FILES = {
    "zero_byte.png": (lambda p: _text(p, ""), "empty file (0 bytes)"),
    "truncated.png": (lambda p: _truncated(p, ".png"), "corrupt or truncated"),
    "truncated.jpg": (lambda p: _truncated(p, ".jpg"), "corrupt or truncated"),
    "text.png": (lambda p: _text(p, "not an image\n"), "not a recognised image format"),
    "one_pixel.png": (lambda p: _png(p, _rgb(1)), "1x1"),
    "smaller_than_crop.png": (lambda p: _png(p, _rgb(16)), "smaller than train.patch_size=32"),
}


def _train_on(folder: Path) -> list[str]:
    return ["run", *as_set_args({**TINY, "train.iters": 2, "data.train": "folder",
                                 "data.hr_dir": str(folder)})]


def _evaluate_on(folder: Path) -> list[str]:
    return ["run", *as_set_args({**TINY, "train.iters": 1, "train.ckpt_every": 1,
                                 "eval.images": str(folder)})]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("use", ["train", "eval"])
def test_bad_image_is_refused(name, use, tmp_path, finished, capsys):
    make, fragment = BAD_FILES[name]
    if use == "eval" and name == "smaller_than_crop.png":
        fragment = "expected at least 20 pixels"  # evaluation: the metrics' minimum (x4)
    folder = tmp_path / "images"
    folder.mkdir()
    path = make(folder / name)
    line = _refused((_train_on if use == "train" else _evaluate_on)(folder), finished, capsys,
                    fragment)
    assert str(path) in line


def test_sixteen_bit_and_palette_images_work(tmp_path, finished, capsys):
    folder = tmp_path / "images"
    wide = (RNG.integers(0, 65536, (48, 48), dtype=np.uint16))
    _png(folder / "gray16.png", wide)
    assert Image.open(folder / "gray16.png").mode.startswith("I")
    import cv2

    cv2.imwrite(str(folder / "rgb16.png"), RNG.integers(0, 65536, (48, 48, 3), dtype=np.uint16))
    Image.fromarray(_rgb(48)).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    assert Image.open(folder / "palette.png").mode == "P"
    root, _ = finished
    argv = ["run", *as_set_args({**TINY, "train.iters": 2, "data.train": "folder",
                                 "data.hr_dir": str(folder), "eval.images": str(folder),
                                 "eval.save_images": []})]
    assert main([*argv, "--workdir", str(root)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("PSNR↑") for line in out)
    assert any(line.startswith("clean") for line in out) and "x 3 images" in "".join(out)


def test_hr_lr_size_mismatch(tmp_path, finished, capsys):
    _png(tmp_path / "hr" / "a.png", _rgb(64))
    _png(tmp_path / "lr" / "a.png", _rgb(20))
    argv = ["run", *as_set_args({**TINY, "train.iters": 2, "data.train": "folder",
                                 "data.hr_dir": str(tmp_path / "hr"),
                                 "data.lr_dir": str(tmp_path / "lr")})]
    _refused(argv, finished, capsys, "LR is 20x20 but HR")


@pytest.mark.parametrize("key", ["data.hr_dir", "eval.images", "data.lr_dir"])
def test_missing_data_root(key, tmp_path, finished, capsys):
    _png(tmp_path / "hr" / "a.png", _rgb(64))
    overrides = {**TINY, "train.iters": 1, "train.ckpt_every": 1}
    if key.startswith("data."):
        overrides.update({"data.train": "folder", "data.hr_dir": str(tmp_path / "hr")})
    overrides[key] = str(tmp_path / "nowhere")
    _refused(["run", *as_set_args(overrides)], finished, capsys,
             f"{tmp_path / 'nowhere'}: folder not found")


def test_unreadable_directory(tmp_path, finished, capsys, monkeypatch):
    """Permission denied on listing (simulated, because root reads every folder)."""
    folder = tmp_path / "locked"
    _png(folder / "a.png", _rgb(64))
    real = Path.iterdir

    def iterdir(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    _refused(_train_on(folder), finished, capsys, f"{folder}: folder is not readable")


@pytest.mark.parametrize("text, fragment", [
    ("adapter: robustsr_bench.methods.esrgan:ESRGAN\nconfig: {train: {iters: abc}}\n",
     "train.iters='abc' has the wrong type"),
    ("adapter: robustsr_bench.methods.esrgan:ESRGAN\nconfig: {train: {itres: 3}}\n", "unknown key 'train.itres'"),
    ("adapter: robustsr_bench.methods.esrgan:ESRGAN\nsettings: {}\n", "unknown key 'settings'"),
    ("- adapter\n- config\n", "expected a mapping of keys to values, got list"),
    ("adapter: robustsr_bench.methods.esrgan:ESRGAN\nablations:\n  ../x: {help: escape, set: {train.iters: 1}}\n",
     "ablation name '../x' is not allowed"),
    ("adapter: robustsr_bench.methods.esrgan:ESRGAN\nablations:\n  a+b: {help: joined, set: {train.iters: 1}}\n",
     "ablation name 'a+b' is not allowed"),
])
def test_bad_method_yaml(text, fragment, tiny_configs, finished, capsys):
    (tiny_configs / "methods" / "broken.yaml").write_text(text)
    registry._all_specs.cache_clear()
    try:
        _refused(["run", "--method", "broken"], finished, capsys, fragment)
    finally:
        registry._all_specs.cache_clear()


def test_profile_yaml_not_a_mapping(tiny_configs, finished, capsys):
    (tiny_configs / "profiles" / "smoke.yaml").write_text("just a string\n")
    _refused(["run"], finished, capsys, "smoke.yaml: expected a mapping of keys to values")


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "train.nosuch=1"], "--set: unknown key 'train.nosuch'; valid keys here: iters"),
    (["--set", "nosuch=1"], "--set: unknown key 'nosuch'"),
    (["--set", "train.iters=-3"], "train.iters=-3 is invalid; expected an integer >= 0"),
    (["--set", "train.iters=many"], "train.iters='many' has the wrong type"),
    (["--method", "rsr", "--set", "attack.eps=0"], "attack.eps=0.0 is invalid; expected a "
                                                   "number in (0, 1]"),
    (["--method", "rsr", "--set", "attack.eps=300/255"], "attack.eps=1.17"),
    (["--method", "rsr", "--set", "attack.eps=-1/255"], "attack.eps=-0.0039"),
    (["--method", "rsr", "--set", "attack.iters=-1"], "attack.iters=-1 is invalid"),
    (["--seed", "-1"], "seed=-1 is invalid"),
    (["--profile", "../profiles/smoke"], "profile name '../profiles/smoke' is not allowed"),
    (["--ablation", "../x"], "unknown ablation for method 'esrgan' '../x'"),
    (["--set", "eval.suites=[../suites/clean]"], "suite name '../suites/clean' is not allowed"),
    (["--set", "eval.suites=[clena]"], "unknown suite 'clena'"),
])
def test_bad_arguments(argv, fragment, finished, capsys):
    _refused(["run", *as_set_args({**TINY, "train.iters": 1}), *argv], finished, capsys,
             fragment)


def test_unknown_suite_is_refused_before_training(finished, capsys):
    from robustsr_bench.results import RunDir

    overrides = {**TINY, "train.iters": 3, "train.ckpt_every": 1, "eval.suites": ["clena"]}
    _refused(["run", *as_set_args(overrides)], finished, capsys, "unknown suite")
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    assert not RunDir.for_config(cfg, finished[0]).path.exists(), "nothing was trained"


# --------------------------------------------------------------------------- properties

KEYS = st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,3}", fullmatch=True)


@given(KEYS, st.text(max_size=40))
def test_override_parser_keeps_key_and_whole_value(key, value):
    """``key=value`` splits at the first ``=``; the value is parsed, and only a fraction over
    zero (``1/0``) is refused, in one line naming the key."""
    try:
        expected = parse_value(value)
    except ConfigError:
        with pytest.raises(ConfigError, match=f"--set {key}: .* divides by zero"):
            parse_overrides([f"{key}={value}"])
    else:
        assert parse_overrides([f"{key}={value}"]) == {key: expected}


@given(st.text(max_size=40).filter(lambda t: "=" not in t or not t.partition("=")[0].strip()))
def test_override_without_key_is_one_line_error(item):
    with pytest.raises(ConfigError, match="expected key.path=value") as info:
        parse_overrides([item])
    assert "\n" not in str(info.value)


_VALID_KEYS = sorted(flatten(to_dict(registry.resolve_config("esrgan", "smoke"))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(_VALID_KEYS), KEYS), st.text(max_size=20))
def test_any_override_resolves_or_is_a_one_line_config_error(key, value):
    try:
        cfg = registry.resolve_config("esrgan", "smoke", overrides=parse_overrides(
            [f"{key}={value}"]))
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert flatten(to_dict(cfg))  # a complete, typed config


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["PNG", "JPEG", "BMP"]), st.integers(1, 24), st.integers(1, 24),
       st.data())
def test_damaged_image_loads_or_is_a_one_line_data_error(fmt, h, w, data):
    """Cut or corrupted at any byte, a file loads as a valid image or is refused in one line
    naming it; nothing else (no other exception, no out-of-range pixels)."""
    pixels = np.random.default_rng([h, w]).integers(0, 256, (h, w, 3), dtype=np.uint8)
    raw = bytearray(_encoded(pixels, fmt))
    cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut]
    if raw and data.draw(st.booleans()):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    path = Path(f"fuzz.{fmt.lower()}")
    path.write_bytes(bytes(raw))
    try:
        img = load_image(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert img.min() >= 0 and img.max() <= 1


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["L", "RGB", "RGBA", "P", "I;16"]), st.integers(1, 24),
       st.integers(1, 24))
def test_every_image_mode_loads_as_rgb_in_range(mode, h, w):
    rng = np.random.default_rng([h, w])
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    img.save("mode.png")
    arr = load_image("mode.png")
    assert arr.shape == (h, w, 3) and arr.dtype == np.float32
    assert 0 <= arr.min() and arr.max() <= 1



# --------------------------------------------------------------------------- caught before training


def test_workdir_that_is_a_file(tmp_path, finished, capsys):
    target = _text(tmp_path / "afile", "x")
    _refused(["run"], finished, capsys, f"work dir {target} is a file, not a folder",
             workdir=target)
    _refused(["run"], finished, capsys, f"work dir {target / 'sub'} cannot be created",
             workdir=target / "sub")
    assert target.read_text() == "x"


def test_workdir_that_cannot_be_created(finished, capsys):
    _refused(["run"], finished, capsys, "work dir /proc/robustsr_x cannot be created",
             workdir=Path("/proc/robustsr_x"))


def test_read_only_workdir(tmp_path, finished, capsys, monkeypatch):
    import os

    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: simulate what a user would meet
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked
                            and real(p, mode, **kw))
    try:
        _refused(["run"], finished, capsys, f"work dir {locked} is not writable", workdir=locked)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_checking_a_missing_workdir_never_creates_it(tmp_path, monkeypatch):
    """The ranks of one torchrun job check a missing --workdir at once; if one created it to try
    and removed it, another saw a folder appear and vanish ('is a file', 'not writable': CI hit
    both). The check must only ever create a trial folder of its own, beside the work dir."""
    import os

    from robustsr_bench.files import check_workdir

    work = tmp_path / "a" / "work"
    made = []
    real_mkdir = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **kw: (made.append(Path(p)),
                                                         real_mkdir(p, *a, **kw)))
    check_workdir(work)
    assert made and all(p.parent == tmp_path and p.name.startswith(".robustsr-try-")
                        for p in made)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def _tiny_run(**more) -> list[str]:
    return ["run", *as_set_args({**TINY, "train.iters": 1, "train.ckpt_every": 1, **more})]


@pytest.mark.parametrize("device, fragment", [
    ("banana", "runtime.device='banana' is invalid; expected auto, cpu, cuda, cuda:N or mps"),
    ("cuda:99", "--device cuda:99: "),
])
def test_bad_device(device, fragment, finished, capsys):
    _refused([*_tiny_run(), "--device", device], finished, capsys, fragment)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_the_cpu(finished, capsys):
    _refused([*_tiny_run(), "--device", "cuda"], finished, capsys,
             "--device cuda: no CUDA GPU is available on this machine; use --device cpu")


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "runtime.log_every=0"], "runtime.log_every=0 is invalid; expected an integer >= 1"),
    (["--set", "train.ckpt_every=0"], "train.ckpt_every=0 is invalid; expected an integer >= 1"),
    (["--set", "runtime.num_workers=-1"], "runtime.num_workers=-1 is invalid"),
    (["--method", "rsr", "--set", "attack.eps=1/0"],
     "--set attack.eps: '1/0' divides by zero; expected a number such as 8/255"),
    (["--set", "train.iters=1e12", "--set", "train.lr=0"], "train.lr=0.0 is invalid"),
    (["--set", "eval.metrics=[psnr_y,nosuch]"], "unknown metric 'nosuch'"),
    (["--set", "loss.mode=gan"], "missing pretrained file(s): "),
    (["--set", "eval.metrics=[lpips_alex]"], "weights fetch alexnet"),
])
def test_bad_values_before_training(argv, fragment, finished, capsys):
    _refused([*_tiny_run(), *argv], finished, capsys, fragment)


def test_exponent_is_a_number():
    """YAML 1.1 reads 1e12 as a string; ``--set`` and config files take it as a number."""
    assert parse_value("1e12") == 10**12 and parse_value("1e-4") == pytest.approx(1e-4)
    cfg = registry.resolve_config("esrgan", "smoke", overrides=parse_overrides(
        ["train.iters=1e3", "train.lr=2e-4"]))
    assert cfg.train.iters == 1000 and cfg.train.lr == pytest.approx(2e-4)


def test_suite_with_an_unknown_op_is_refused_before_training(tiny_configs, finished, capsys):
    (tiny_configs / "suites" / "pepper.yaml").write_text(
        "description: salt and pepper\nops:\n  - {op: downscale}\n  - {op: salt_pepper}\n")
    _refused(_tiny_run(**{"eval.suites": ["clean", "pepper"]}), finished, capsys,
             "suites/pepper.yaml: ops[1]: unknown op 'salt_pepper'")


def test_folder_of_non_images_is_not_called_empty(tmp_path, finished, capsys):
    (tmp_path / "notes").mkdir()
    _text(tmp_path / "notes" / "readme.txt", "hello")
    line = _refused(_tiny_run(**{"eval.images": str(tmp_path / "notes")}), finished, capsys,
                    "no images among its 1 files (e.g. readme.txt)")
    assert "empty" not in line


def test_image_path_that_is_a_file_is_not_folder_not_found(tmp_path, finished, capsys):
    image = _png(tmp_path / "one.png", _rgb(64))
    line = _refused(_tiny_run(**{"eval.images": str(image)}), finished, capsys,
                    f"{image}: is a file; expected a folder of images")
    assert "not found" not in line


class _Custom:  # pickled by torch.save: not a plain state dict
    pass


def _bad_checkpoint(kind: str, path: Path) -> Path:
    import pickle

    import torch

    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "object":
        torch.save({"params_ema": _Custom()}, path)
    elif kind == "truncated":
        torch.save({"params": {"w": torch.zeros(64, 64)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "raw_pickle":
        path.write_bytes(pickle.dumps([1, 2], protocol=2))
    return path


@pytest.mark.parametrize("kind, fragment", [
    ("text", "not a PyTorch checkpoint (expected a file written by torch.save"),
    ("empty", "empty file (0 bytes), not a PyTorch checkpoint"),
    ("object", ("a pickle that is not a plain state dict (it holds code or custom objects): "
                "refused for safety")),
    ("truncated", "a damaged PyTorch checkpoint (truncated or corrupt zip archive)"),
    ("raw_pickle", "a damaged or unsupported PyTorch checkpoint"),
])
def test_bad_init_checkpoint_says_what_it_is_not(kind, fragment, tmp_path, finished, capsys,
                                                  recwarn):
    path = _bad_checkpoint(kind, tmp_path / f"{kind}.pth")
    line = _refused([*_tiny_run(), "--init", str(path)], finished, capsys, f"{path}: {fragment}")
    assert "weights_only" not in line and "Re-running" not in line
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)], "a warning leaked"
