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
    if path.is_file():
        raise DataError(f"{path}: is a file; expected a folder of images")
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    try:
        found = [p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file()]
    except PermissionError:
        raise DataError(f"{path}: folder is not readable (permission denied)") from None
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files and found:
        raise DataError(f"{path}: no images among its {len(found)} files (e.g. "
                        f"{min(found).name}); expected {', '.join(IMAGE_SUFFIXES)} files")
    if not files:
        raise DataError(f"{path}: empty folder (no {', '.join(IMAGE_SUFFIXES)} images)")
    return files


@dataclass(frozen=True)
class Pair:
    hr: Path | None  # None: a no-reference photo (DPED, face crops), evaluation only
    lr: Path | None = None
    edge: Path | None = None  # precomputed HR edge map (BAPD's train_EDGE_sub)
