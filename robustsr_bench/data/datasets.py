"""Training datasets: HR-only folders (LR made on the fly) and paired folders.

Every sample is a pure function of ``(seed, index)``: the image, crop and flips come from a
generator seeded with both. Together with :class:`StepSampler` this makes the data stream of a
resumed run identical to that of an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from . import embedded
from .degradations import bicubic_resize
from .io import load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files of a folder; a missing or empty folder is one clear error."""
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    try:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except PermissionError:
        raise DataError(f"{path}: folder is not readable (permission denied)") from None
    if not files:
        raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


@dataclass(frozen=True)
class Pair:
    hr: Path
    lr: Path | None = None
    edge: Path | None = None  # precomputed HR edge map (BAPD's train_EDGE_sub)


def paired(hr_dir: str | Path, lr_dir: str | Path) -> list[Pair]:
    """Match LR files to HR files by file stem (``0001.png`` ~ ``0001x4.png`` is not guessed)."""
    lr_by_stem = {p.stem: p for p in list_images(lr_dir)}
    pairs = []
    for hr in list_images(hr_dir):
        if hr.stem not in lr_by_stem:
            raise DataError(f"{hr}: no LR image with stem '{hr.stem}' in {lr_dir}")
        pairs.append(Pair(hr, lr_by_stem[hr.stem]))
    return pairs


def with_edges(pairs: Sequence[Pair], edge_dir: str | Path) -> list[Pair]:
    """Attach each HR image's edge map from ``edge_dir``, matched by file stem."""
    edge_by_stem = {p.stem: p for p in list_images(edge_dir)}
    out = []
    for pair in pairs:
        if pair.hr.stem not in edge_by_stem:
            raise DataError(f"{pair.hr}: no edge map with stem '{pair.hr.stem}' in {edge_dir}")
        out.append(Pair(pair.hr, pair.lr, edge_by_stem[pair.hr.stem]))
    return out


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    hflip, vflip, rot = rng.random(3) < 0.5
    out = []
    for a in arrays:
        a = a[:, ::-1] if hflip else a
        a = a[::-1] if vflip else a
        out.append(a.transpose(1, 0, 2) if rot else a)
    return out


class PatchDataset(Dataset):
    """Random aligned (lq, gt[, edge]) patches; index -> sample is deterministic given the seed.

    A pair with an ``edge`` map adds the HR-aligned crop of its first channel, flipped like
    ``gt``, as ``edge`` (1xHxW); drawing it takes no random numbers, so the other samples of the
    stream are the same with or without edges.
    """

    def __init__(self, pairs: Sequence[Pair], patch_size: int, scale: int, seed: int,
                 augment: bool = True, preload: bool = False):
        if patch_size % scale:
            raise DataError(f"train.patch_size={patch_size} must be a multiple of scale={scale}")
        self.pairs, self.patch, self.scale = list(pairs), patch_size, scale
        self.seed, self.augment = seed, augment
        self._cache: dict[Path, np.ndarray] | None = {} if preload else None

    def __len__(self) -> int:
        return 2**62

    def _load(self, path: Path) -> np.ndarray:
        """Read an image; small embedded sets are kept in memory, real data sets are not."""
        if self._cache is None:
            return load_image(path)
        if path not in self._cache:
            self._cache[path] = load_image(path)
        return self._cache[path]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        hr = self._load(pair.hr)
        lr = self._load(pair.lr) if pair.lr else None
        gt, lq, (y, x) = self._crop(pair, hr, lr, rng)
        edge = self._edge_crop(pair, hr.shape[:2], y, x)
        if self.augment:
            present = [a for a in (gt, lq, edge) if a is not None]
            flipped = iter(_augment(present, rng))
            gt, lq, edge = (next(flipped) if a is not None else None for a in (gt, lq, edge))
        gt_t = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))
        if lq is None:
            lq_t = bicubic_resize(gt_t[None], scale_factor=1 / self.scale)[0]
        else:
            lq_t = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))
        sample = {"lq": lq_t, "gt": gt_t}
        if edge is not None:
            sample["edge"] = torch.from_numpy(np.ascontiguousarray(edge.transpose(2, 0, 1)))
        return sample

    def _edge_crop(self, pair: Pair, hr_size: tuple[int, ...], y: int,
                   x: int) -> np.ndarray | None:
        """The ``patch`` x ``patch`` crop at (y, x) of the pair's edge map (channel 0), if any."""
        if pair.edge is None:
            return None
        edge = self._load(pair.edge)
        if edge.shape[:2] != hr_size:
            raise DataError(f"{pair.edge}: edge map is {edge.shape[1]}x{edge.shape[0]} but HR "
                            f"{pair.hr} is {hr_size[1]}x{hr_size[0]}; expected the same size")
        return edge[y:y + self.patch, x:x + self.patch, :1]

    def _crop(self, pair: Pair, hr: np.ndarray, lr: np.ndarray | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
        """HR crop, LR crop (paired data) and the HR crop's top-left corner."""
        s, p = self.scale, self.patch
        h, w = hr.shape[:2]
        if min(h, w) < p:
            raise DataError(f"{pair.hr}: image is {w}x{h}, smaller than train.patch_size={p}")
        if lr is None:
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            return hr[y:y + p, x:x + p], None, (y, x)
        if lr.shape[0] * s != h or lr.shape[1] * s != w:
            raise DataError(f"{pair.lr}: LR is {lr.shape[1]}x{lr.shape[0]} but HR {pair.hr} is "
                            f"{w}x{h}; expected LR x {s} == HR")
        q = p // s
        y, x = int(rng.integers(lr.shape[0] - q + 1)), int(rng.integers(lr.shape[1] - q + 1))
        return hr[y * s:(y + q) * s, x * s:(x + q) * s], lr[y:y + q, x:x + q], (y * s, x * s)


class StepSampler(Sampler[int]):
    """Sample indices ``start*batch .. iters*batch``: step ``t`` always sees the same samples."""

    def __init__(self, start_step: int, iters: int, batch_size: int):
        self.start, self.stop = start_step * batch_size, iters * batch_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def train_pairs(cfg: Any) -> list[Pair]:
    """The training images a config names."""
    if cfg.data.train == "embedded":
        pairs = [Pair(p) for p in embedded.train_paths()]
    elif cfg.data.lr_dir:
        pairs = paired(cfg.data.hr_dir, cfg.data.lr_dir)
    else:
        pairs = [Pair(p) for p in list_images(cfg.data.hr_dir)]
    return with_edges(pairs, cfg.data.edge_dir) if cfg.data.edge_dir else pairs


def make_train_loader(cfg: Any, start_step: int) -> DataLoader:
    pairs = train_pairs(cfg)
    dataset = PatchDataset(pairs, cfg.train.patch_size, cfg.scale, cfg.seed,
                           augment=cfg.train.augment, preload=cfg.data.train == "embedded")
    sampler = StepSampler(start_step, cfg.train.iters, cfg.train.batch_size)
    workers = cfg.runtime.num_workers
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler,
                      num_workers=workers, persistent_workers=False, drop_last=True,
                      pin_memory=torch.cuda.is_available())
