"""Training datasets: HR-only folders (LR made on the fly) and paired folders.

Every sample is a pure function of ``(seed, index)``: the image, crop and flips come from a
generator seeded with both. Together with :class:`StepSampler` this makes the data stream of a
resumed run identical to that of an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from . import embedded
from .image_ops import bicubic_resize
from .io import load_image
from .layouts import data_root, discover, layout
# moved to pairs.py (re-exported here for callers of the old location)
from .pairs import IMAGE_SUFFIXES, Pair, list_images  # noqa: F401


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


def size_problem(pair: Pair, hr_shape: Sequence[int], lr_shape: Sequence[int],
                 scale: int) -> str | None:
    """The one-line complaint when LR x ``scale`` is not the HR size (shapes are HxW...)."""
    (h, w), (lh, lw) = hr_shape[:2], lr_shape[:2]
    if lh * scale == h and lw * scale == w:
        return None
    return f"{pair.lr}: LR is {lw}x{lh} but HR {pair.hr} is {w}x{h}; expected LR x {scale} == HR"


def edge_size_problem(pair: Pair, hr_shape: Sequence[int], edge_shape: Sequence[int]) -> str | None:
    """The one-line complaint when the pair's edge map is not the HR size."""
    (h, w), (eh, ew) = hr_shape[:2], edge_shape[:2]
    if (eh, ew) == (h, w):
        return None
    return (f"{pair.edge}: edge map is {ew}x{eh} but HR {pair.hr} is {w}x{h}; expected the same "
            f"size")


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
        problem = edge_size_problem(pair, hr_size, edge.shape)
        if problem:
            raise DataError(problem)
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
        problem = size_problem(pair, hr.shape, lr.shape, s)
        if problem:
            raise DataError(problem)
        q = p // s
        y, x = int(rng.integers(lr.shape[0] - q + 1)), int(rng.integers(lr.shape[1] - q + 1))
        return hr[y * s:(y + q) * s, x * s:(x + q) * s], lr[y:y + q, x:x + q], (y * s, x * s)


class StepSampler(Sampler[int]):
    """Sample indices ``start*batch .. iters*batch``: step ``t`` always sees the same samples.

    With ``world_size`` ranks, rank ``r`` takes its slice ``t*batch + r*b .. t*batch + (r+1)*b``
    (``b = batch / world_size``) of step ``t``'s global batch, so the ranks together see exactly
    the samples of the one-process run.
    """

    def __init__(self, start_step: int, iters: int, batch_size: int, rank: int = 0,
                 world_size: int = 1):
        self.start, self.stop, self.batch = start_step, iters, batch_size
        self.local = batch_size // world_size
        self.offset = rank * self.local

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.stop):
            first = step * self.batch + self.offset
            yield from range(first, first + self.local)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.local


def train_pairs(cfg: Any) -> list[Pair]:
    """The training images a config names: embedded, a folder, or a registered dataset."""
    if cfg.data.train == "embedded":
        pairs = [Pair(p) for p in embedded.train_paths()]
    elif cfg.data.train != "folder":
        pairs = registered_train_pairs(cfg.data.train, cfg.data.root, cfg.scale, cfg.data.split)
    elif cfg.data.lr_dir:
        pairs = paired(cfg.data.hr_dir, cfg.data.lr_dir)
    else:
        pairs = [Pair(p) for p in list_images(cfg.data.hr_dir)]
    return with_edges(pairs, cfg.data.edge_dir) if cfg.data.edge_dir else pairs


def registered_train_pairs(name: str, root: str, scale: int, split: str) -> list[Pair]:
    """A registered dataset's pairs under ``root`` (or ``$ROBUSTSR_DATA``); one with no HR
    images cannot be trained on."""
    if not layout(name).has_reference:
        raise DataError(f"data.train={name} has no HR images (a no-reference set); train on a "
                        f"dataset with references, see `list datasets`")
    return discover(name, data_root(root), scale, split or None)


def make_train_loader(cfg: Any, start_step: int, rank: int = 0,
                      world_size: int = 1) -> DataLoader:
    """Batches of steps ``start_step..`` (this rank's share of each global batch)."""
    pairs = train_pairs(cfg)
    dataset = PatchDataset(pairs, cfg.train.patch_size, cfg.scale, cfg.seed,
                           augment=cfg.train.augment, preload=cfg.data.train == "embedded")
    sampler = StepSampler(start_step, cfg.train.iters, cfg.train.batch_size, rank, world_size)
    workers = cfg.runtime.num_workers
    return DataLoader(dataset, batch_size=sampler.local, sampler=sampler,
                      num_workers=workers, persistent_workers=False, drop_last=True,
                      pin_memory=torch.cuda.is_available())
