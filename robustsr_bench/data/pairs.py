"""Image files and HR/LR pairs: what the dataset catalogue (layouts) and the loaders share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of a folder (``recursive``: and of its subfolders); a missing,
    unreadable or empty folder is one clear error."""
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    try:
        found = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except PermissionError:
        raise DataError(f"{path}: folder is not readable (permission denied)") from None
    if not files:
        raise DataError(f"{path}: empty folder (no {', '.join(IMAGE_SUFFIXES)} images)")
    return files


@dataclass(frozen=True)
class Pair:
    hr: Path | None  # None: a no-reference photo (DPED, face crops), evaluation only
    lr: Path | None = None
    edge: Path | None = None  # precomputed HR edge map (BAPD's train_EDGE_sub)
