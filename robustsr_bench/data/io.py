"""Image files in and out, validated: every failure is one line naming the file and what is valid.

In memory an image is float32 RGB in [0, 1]: HxWx3 in numpy, 1x3xHxW in torch. Loading makes every
file a data set may contain look the same:

* grayscale is replicated to three channels (metrics and networks are RGB);
* alpha (RGBA, LA, palette transparency) is **dropped, not composited**: SR test sets are opaque
  photos, an alpha channel in one is an export artefact, and compositing over a background would
  change the very pixels the metrics compare;
* palette images are expanded to their RGB colours;
* 16-bit files (gray ``I;16`` and 16-bit RGB/RGBA) are scaled by 65535, so no precision is lost to
  an 8-bit conversion (Pillow reads 16-bit colour as 8 bits, so those go through OpenCV);
* EXIF orientation is ignored (pixels as stored, like MATLAB's ``imread``), so HR/LR pairs made by
  other tools stay aligned.

Truncated files are errors, never silently padded: ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..files import atomic_path

EXPECTED = "expected a readable PNG/JPEG/BMP/TIFF/WebP image"
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _read_bytes(path: Path) -> bytes:
    """The whole file, with OS failures turned into one-line DataErrors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; {EXPECTED}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; {EXPECTED}") from None
    except PermissionError:
        raise DataError(f"{path}: not readable (permission denied); {EXPECTED}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); {EXPECTED}") from None
    if not data:
        raise DataError(f"{path}: empty file (0 bytes); {EXPECTED}")
    return data


def _is_16bit_colour(img: Image.Image) -> bool:
    """Whether Pillow would silently reduce this RGB(A) file to 8 bits (its raw mode says ';16')."""
    if img.mode not in ("RGB", "RGBA") or not img.tile:
        return False
    args = img.tile[0].args
    raw = args[0] if isinstance(args, tuple) and args else args
    return isinstance(raw, str) and ";16" in raw


def _decode_16bit_colour(path: Path, data: bytes) -> np.ndarray:
    """16-bit RGB(A) through OpenCV, which keeps all 16 bits; alpha dropped, BGR -> RGB."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise DataError(f"{path}: 16-bit colour image could not be decoded; {EXPECTED}")
    rgb = cv2.cvtColor(np.ascontiguousarray(arr[..., :3]), cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) / 65535.0


def _pil_to_float(path: Path, img: Image.Image) -> np.ndarray:
    """A loaded Pillow image as float32 in [0, 1], HxW (gray) or HxWx3."""
    if img.mode in _UINT16_MODES:
        # Pillow opens 16-bit grayscale as I;16 (or "I" in older versions): full scale is 65535.
        return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
    if img.mode == "F":
        raise DataError(f"{path}: floating-point image (mode F) has no defined range; "
                        f"{EXPECTED} with 8- or 16-bit integer pixels")
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0
    # convert("RGB") expands palettes, drops alpha (no compositing) and handles CMYK/YCbCr/1-bit.
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _decode(path: Path, data: bytes) -> np.ndarray:
    """Decode with Pillow; ``load()`` inside the try is what detects truncated/corrupt data."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            sixteen = _is_16bit_colour(img)
            img.load()
            return _decode_16bit_colour(path, data) if sixteen else _pil_to_float(path, img)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a recognised image format; {EXPECTED}") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too many pixels to load safely ({exc}); {EXPECTED} "
                        f"of a sane size") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt or truncated image ({detail}); {EXPECTED}") from None


def load_image(path: str | os.PathLike, min_size: int = 1) -> np.ndarray:
    """Read an image file as float32 HxWx3 RGB in [0, 1]; refuse anything broken with one line.

    ``min_size`` rejects images whose shorter side is smaller, so a data set with a thumbnail in it
    fails at load time with the file's name rather than deep inside a crop or a convolution.
    """
    path = Path(path)
    arr = _decode(path, _read_bytes(path))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise DataError(f"{path}: image is {w}x{h} (WxH); expected at least "
                        f"{min_size} pixels on each side")
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 numpy -> 1x3xHxW float32 tensor (the convention of every network and degradation)."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"to_tensor expects an HxWx3 array, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """1x3xHxW or 3xHxW tensor -> HxWx3 float32 numpy (what the metrics and file writers take)."""
    t = t.detach().float().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_numpy expects one image, got a batch of shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"to_numpy expects 1x3xHxW or 3xHxW, got shape {tuple(t.shape)}")
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy(), dtype=np.float32)


def quantize(t: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels: the literature measures saved 8-bit images, not raw float outputs."""
    return ((t * 255.0).round() / 255.0).clamp(0.0, 1.0)


def _to_uint8(img: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = to_numpy(img) if isinstance(img, torch.Tensor) else np.asarray(img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"save_image expects an HxWx3 image, got shape {arr.shape}")
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def save_image(path: str | os.PathLike, img: np.ndarray | torch.Tensor) -> None:
    """Write an 8-bit RGB PNG atomically (temp file beside it + ``os.replace``).

    Atomic because suites and results are read by later (or concurrent) runs: a crash mid-write
    must leave either the old file or none, never a truncated PNG that fails the next load.
    """
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(_to_uint8(img), cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: could not encode the image as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
