"""Image IO: every broken file is one DataError naming it; every valid kind loads the same way."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from robustsr_bench.data import io as image_io
from robustsr_bench.data.io import load_image, quantize, save_image, to_numpy, to_tensor
from robustsr_bench.errors import DataError

RNG = np.random.default_rng(0)


def _rgb_u8(h: int = 12, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write_png(path: Path, u8: np.ndarray) -> Path:
    Image.fromarray(u8).save(path)
    return path


def _expect_data_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


# --------------------------------------------------------------------------- broken files


def test_missing_file(tmp_path: Path):
    _expect_data_error(tmp_path / "nope.png", "file not found")


def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.touch()
    _expect_data_error(path, "empty file")


def test_folder_is_not_an_image(tmp_path: Path):
    path = tmp_path / "dir.png"
    path.mkdir()
    _expect_data_error(path, "is a folder")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image(tmp_path: Path, suffix: str):
    path = tmp_path / f"full{suffix}"
    Image.fromarray(_rgb_u8(64, 64)).save(path)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_data_error(cut, "corrupt or truncated")


def test_text_file_named_png(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    _expect_data_error(path, "not a recognised image format")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_permissions(tmp_path: Path):
    path = _write_png(tmp_path / "locked.png", _rgb_u8())
    path.chmod(0)
    try:
        _expect_data_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_unreadable_file_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Same as above but runs as root too: the OS refusal is mapped to a DataError."""
    path = _write_png(tmp_path / "locked.png", _rgb_u8())

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(image_io.Path, "read_bytes", deny)
    _expect_data_error(path, "permission denied")


def test_min_size(tmp_path: Path):
    path = _write_png(tmp_path / "thumb.png", _rgb_u8(6, 20))
    assert load_image(path, min_size=6).shape == (6, 20, 3)
    _expect_data_error(path, r"20x6 .*at least 8", min_size=8)


# --------------------------------------------------------------------------- valid kinds


def test_rgb_png_exact(tmp_path: Path):
    u8 = _rgb_u8()
    img = load_image(_write_png(tmp_path / "rgb.png", u8))
    assert img.dtype == np.float32 and img.shape == (12, 10, 3)
    np.testing.assert_array_equal(img, u8.astype(np.float32) / 255.0)


def test_grayscale_replicated(tmp_path: Path):
    gray = RNG.integers(0, 256, size=(9, 7), dtype=np.uint8)
    img = load_image(_write_png(tmp_path / "gray.png", gray))
    assert img.shape == (9, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray / np.float32(255.0))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_dropped(tmp_path: Path, mode: str):
    u8 = _rgb_u8()
    alpha = RNG.integers(0, 256, size=u8.shape[:2], dtype=np.uint8)
    colour = u8 if mode == "RGBA" else u8[..., :1]
    Image.fromarray(np.dstack([colour, alpha]), mode).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    expected = np.repeat(colour, 3 // colour.shape[2], axis=2) / np.float32(255.0)
    np.testing.assert_array_equal(img, expected.astype(np.float32))


def test_palette_expanded(tmp_path: Path):
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, size=(8, 11), dtype=np.uint8)
    pal = Image.fromarray(index, "L").convert("P")
    pal.putpalette(palette.flatten().tolist())
    pal.putdata(index.flatten().tolist())
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    img = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img, palette[index].astype(np.float32) / 255.0)


def test_16bit_gray_png(tmp_path: Path):
    gray = RNG.integers(0, 65536, size=(10, 13), dtype=np.uint16)
    gray[0, 0], gray[0, 1] = 0, 65535
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    img = load_image(tmp_path / "g16.png")
    assert img.shape == (10, 13, 3)
    np.testing.assert_allclose(img[..., 1], gray / 65535.0, atol=1e-7)
    assert img[0, 0, 0] == 0.0 and img[0, 1, 0] == 1.0


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png(tmp_path: Path, channels: int):
    rgb = RNG.integers(0, 65536, size=(7, 9, 3), dtype=np.uint16)
    rgb[0, 0] = (1, 2, 65535)  # values an 8-bit decode would lose
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if channels == 4:
        bgr = np.dstack([bgr, np.full(rgb.shape[:2], 123, np.uint16)])
    assert cv2.imwrite(str(tmp_path / "c16.png"), bgr)
    img = load_image(tmp_path / "c16.png")
    np.testing.assert_allclose(img, rgb / 65535.0, atol=1e-7)


# --------------------------------------------------------------------------- save / convert


@pytest.mark.parametrize("kind", ["numpy", "tensor4", "tensor3"])
def test_save_load_round_trip_exact(tmp_path: Path, kind: str):
    u8 = _rgb_u8(15, 17)
    img = u8.astype(np.float32) / 255.0
    data = {"numpy": img, "tensor4": to_tensor(img), "tensor3": to_tensor(img)[0]}[kind]
    path = tmp_path / "deep" / "er" / "out.png"
    save_image(path, data)
    np.testing.assert_array_equal(load_image(path), img)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"], "temp file left behind"


def test_save_rounds_and_clamps(tmp_path: Path):
    img = np.array([[[-0.2, 0.4 / 255, 1.7 / 255], [1.3, 0.999, 0.0]]], dtype=np.float32)
    save_image(tmp_path / "r.png", img)
    got = np.round(load_image(tmp_path / "r.png") * 255).astype(int)
    np.testing.assert_array_equal(got, [[[0, 0, 2], [255, 255, 0]]])


def test_tensor_numpy_quantize():
    img = RNG.random((5, 6, 3), dtype=np.float32)
    t = to_tensor(img)
    assert t.shape == (1, 3, 5, 6) and t.dtype == torch.float32
    np.testing.assert_array_equal(to_numpy(t), img)
    q = quantize(torch.tensor([-0.1, 0.5, 0.3 / 255, 1.2]))
    assert torch.equal(q, torch.tensor([0.0, 128 / 255, 0.0, 1.0]))


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 16), st.integers(1, 16), st.just(3))))
def test_png_round_trip_property(u8: np.ndarray):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        save_image(path, u8.astype(np.float32) / 255.0)
        back = load_image(path)
    np.testing.assert_array_equal(np.round(back * 255.0).astype(np.uint8), u8)
    np.testing.assert_array_equal(back, u8.astype(np.float32) / 255.0)
