"""``data prepare``: sub-images, edge maps and meta_info files; ``data verify``: every problem.

Follows BasicSR's ``scripts/data_preparation/extract_subimages.py`` and ``generate_meta_info.py``:
crops of ``crop`` px every ``step`` px (480 / 240 by default), plus a last crop flush with the
bottom / right edge when more than ``thresh`` px would be left over; LR crops of a paired
dataset at ``crop / scale`` and ``step / scale`` from the same positions; names
``<id>_s001.png`` counted row by row from 1; meta_info lines ``<name> (h,w,c)``.

**Our choice**: the output is BAPD's training layout, in ``<root>/<NAME>_sub/``
(``train_HR_sub``, ``train_LR_sub/X<s>`` for paired data, ``train_EDGE_sub`` with
:func:`~robustsr_bench.data.edges.edge_image` of each HR crop as 8-bit grayscale,
``meta_info_<NAME>.txt``), registered as dataset ``NAME_sub``. Resumable: each crop is written
atomically and a source image counts as finished only when its marker
``.prepare/<id>.json`` (its crops' names and shapes) is written after its last crop, so a rerun
skips finished images and redoes at most the ones in flight. The settings are kept in
``.prepare/settings.json``; a rerun with other settings is refused rather than mixing crops.
Worker processes are spawned, not forked, because the edge maps use torch, whose thread pools
do not survive a fork.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..config import check
from ..errors import DataError
from ..files import atomic_path, atomic_write_text
from .datasets import Pair, edge_size_problem, size_problem
from .edges import EdgeConfig, edge_image
from .io import load_image, save_image
from .layouts import SUB_SUFFIX, check_split_scale, data_root, layout, pair_id, scan

MARKERS = ".prepare"


@dataclass
class PrepareConfig:
    """Sub-image extraction settings (BasicSR's defaults: 480 / 240 / 0)."""

    crop: int = 480
    step: int = 240
    thresh: int = 0
    scale: int = 4
    split: str = ""
    edges: bool = True
    edge: EdgeConfig = field(default_factory=EdgeConfig)

    def __post_init__(self) -> None:
        check(self.crop >= 8, "--crop", self.crop, "an integer >= 8")
        check(self.step >= 1, "--step", self.step, "an integer >= 1")
        check(0 <= self.thresh < self.crop, "--thresh", self.thresh, "an integer in [0, crop)")


@dataclass(frozen=True)
class Task:
    """One source image to cut; everything a worker process needs, picklable."""

    ident: str
    pair: Pair
    out: Path
    lr_out: Path | None
    cfg: PrepareConfig


def positions(size: int, crop: int, step: int, thresh: int) -> list[int]:
    """Top (or left) coordinates of the crops along one side, as BasicSR places them."""
    if size < crop:
        return []
    starts = list(range(0, size - crop + 1, step))
    if size - (starts[-1] + crop) > thresh:
        starts.append(size - crop)
    return starts


def _save_gray(path: Path, gray: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", (np.clip(gray, 0, 1) * 255).round().astype(np.uint8))
    if not ok:
        raise DataError(f"{path}: could not encode the edge map as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def prepare_image(task: Task) -> list[tuple[str, tuple[int, ...]]]:
    """Cut one source image (and its LR) into sub-images; returns (name, shape) per crop."""
    cfg, s = task.cfg, task.cfg.scale
    hr = load_image(task.pair.hr)
    lr = load_image(task.pair.lr) if task.lr_out else None
    if lr is not None:
        problem = size_problem(task.pair, hr.shape, lr.shape, s)
        if problem:
            raise DataError(problem)
    ys = positions(hr.shape[0], cfg.crop, cfg.step, cfg.thresh)
    xs = positions(hr.shape[1], cfg.crop, cfg.step, cfg.thresh)
    if not ys or not xs:
        raise DataError(f"{task.pair.hr}: image is {hr.shape[1]}x{hr.shape[0]}, smaller than "
                        f"--crop {cfg.crop}")
    crops = []
    for index, (y, x) in enumerate(((y, x) for y in ys for x in xs), start=1):
        name = f"{task.ident}_s{index:03d}.png"
        patch = hr[y:y + cfg.crop, x:x + cfg.crop]
        save_image(task.out / "train_HR_sub" / name, patch)
        if lr is not None and task.lr_out is not None:
            q = cfg.crop // s
            save_image(task.lr_out / name, lr[y // s:y // s + q, x // s:x // s + q])
        if cfg.edges:
            _save_gray(task.out / "train_EDGE_sub" / name, edge_image(patch, cfg.edge))
        crops.append((name, patch.shape))
    return crops


def _marker(out: Path, ident: str) -> Path:
    return out / MARKERS / f"{ident}.json"


def _run_task(task: Task) -> str:
    """Worker entry point: cut the image, then mark it finished (the marker is written last)."""
    crops = prepare_image(task)
    atomic_write_text(_marker(task.out, task.ident), json.dumps([[n, list(sh)] for n, sh in crops]))
    return task.ident


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _settings_guard(out: Path, cfg: PrepareConfig) -> None:
    """Refuse to resume into a folder prepared with other settings (crops would mix)."""
    path = out / MARKERS / "settings.json"
    wanted = json.dumps(asdict(cfg), sort_keys=True)
    if path.is_file() and path.read_text() != wanted:
        raise DataError(f"{out}: prepared earlier with other settings ({path.read_text()}); "
                        f"delete the folder or prepare with the same settings")
    if not path.is_file():
        atomic_write_text(path, wanted)


def plan(name: str, root: Path, cfg: PrepareConfig) -> tuple[Path, list[Task], list[Task]]:
    """Output folder, tasks still to do, tasks already finished."""
    spec = layout(name)
    if name.endswith(SUB_SUFFIX) or not spec.has_reference:
        raise DataError(f"dataset {name} cannot be prepared: it has no full-size HR images")
    split = cfg.split or spec.default_split
    check_split_scale(spec, split, cfg.scale)
    found = scan(name, root, cfg.scale, split)
    if found.problems:
        raise DataError(f"{found.problems[0]} ({len(found.problems)} problem(s); see "
                        f"`python -m robustsr_bench data verify {name}`)")
    paired = any(p.lr for p in found.pairs)
    if paired and (cfg.crop % cfg.scale or cfg.step % cfg.scale):
        raise DataError(f"--crop {cfg.crop} and --step {cfg.step} must be multiples of scale "
                        f"{cfg.scale} for paired dataset {name}")
    out = root / f"{name}{SUB_SUFFIX}"
    lr_out = out / "train_LR_sub" / f"X{cfg.scale}" if paired else None
    tasks, seen = [], {}
    for pair in found.pairs:
        ident = pair_id(spec, pair, cfg.scale)
        if ident in seen:
            raise DataError(f"{pair.hr}: same image id '{ident}' as {seen[ident]}; sub-image "
                            f"names would collide")
        seen[ident] = pair.hr
        tasks.append(Task(ident, Pair(pair.hr, pair.lr if paired else None), out, lr_out, cfg))
    done = [t for t in tasks if _marker(out, t.ident).is_file()]
    return out, [t for t in tasks if not _marker(out, t.ident).is_file()], done


def _map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
         tick: Callable[[], None]) -> list[Any]:
    """``[fn(item) for item in items]``, over ``workers`` spawned processes when there is more
    than one of each; ``tick`` after every item that finished (the progress bar). On an error
    the pending items are cancelled: what finished stays finished (prepare's markers)."""
    workers = min(workers or os.cpu_count() or 1, len(items))
    if workers <= 1:
        results = []
        for item in items:
            results.append(fn(item))
            tick()
        return results
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_worker_init) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for future in as_completed(futures):
                future.result()
                tick()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return [future.result() for future in futures]


def write_meta_info(out: Path, name: str, idents: Iterable[str]) -> Path:
    """``meta_info_<NAME>.txt``: one ``name (h,w,c)`` line per HR sub-image, sorted."""
    lines = []
    for ident in idents:
        for crop, shape in json.loads(_marker(out, ident).read_text()):
            lines.append(f"{crop} ({','.join(map(str, shape))})")
    path = out / f"meta_info_{name}.txt"
    atomic_write_text(path, "".join(f"{line}\n" for line in sorted(lines)))
    return path


@dataclass
class Prepared:
    out: Path
    images: int
    skipped: int
    sub_images: int
    meta_info: Path


def prepare(name: str, root: Path, cfg: PrepareConfig, workers: int = 0,
            progress: bool = False) -> Prepared:
    """Cut ``name``'s split into sub-images under ``<root>/<NAME>_sub`` (resumable)."""
    out, todo, done = plan(name, root, cfg)
    _settings_guard(out, cfg)
    with tqdm(total=len(todo) + len(done), initial=len(done), disable=not progress,
              unit="img", desc=f"prepare {name}") as bar:
        _map(_run_task, todo, workers, bar.update)
    idents = [t.ident for t in (*done, *todo)]
    meta = write_meta_info(out, name, idents)
    count = sum(1 for _ in meta.read_text().splitlines())
    return Prepared(out, len(todo), len(done), count, meta)


# ---------------------------------------------------------------------------------------------
# verify


@dataclass
class Verified:
    """Per split and scale: pairs found; and every problem, one line each."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_pair(args: tuple[Pair, int]) -> tuple[list[str], tuple[int, ...] | None]:
    """Every problem of one pair (unreadable files, LR x scale != HR, edge map size) and the
    HR shape, for the meta_info check. One argument, so that it maps over a process pool."""
    pair, scale = args
    problems, shapes = [], {}
    for role, path in (("hr", pair.hr), ("lr", pair.lr), ("edge", pair.edge)):
        if path is None:
            continue
        try:
            shapes[role] = load_image(path).shape
        except DataError as exc:
            problems.append(str(exc))
    hr, lr, edge = shapes.get("hr"), shapes.get("lr"), shapes.get("edge")
    if hr and lr:
        problem = size_problem(pair, hr, lr, scale)
        problems += [problem] if problem else []
    if hr and edge:
        problem = edge_size_problem(pair, hr, edge)
        problems += [problem] if problem else []
    return problems, hr


def meta_info_problems(path: Path, shapes: dict[str, Any]) -> list[str]:
    """Lines of a meta_info file that are malformed, name a missing HR image or a wrong shape."""
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        name, _, shape = line.strip().partition(" ")
        if not line.strip():
            continue
        if name not in shapes:
            problems.append(f"{path}:{number}: '{name}' is not in the HR folder")
            continue
        actual = shapes[name]
        if actual is not None and shape and shape != f"({','.join(map(str, actual))})":
            problems.append(f"{path}:{number}: '{name}' is listed as {shape} but is "
                            f"({','.join(map(str, actual))})")
    return problems


def verify(name: str, root: Path, scale: int | None = None, split: str | None = None,
           workers: int = 0, progress: bool = False) -> Verified:
    """Check a dataset's splits (all, or ``split``) at ``scale`` (default: 4 where it has it)."""
    spec = layout(name)
    scale = scale or (4 if not spec.scales or 4 in spec.scales else spec.scales[0])
    result = Verified()
    for each in [split] if split else list(spec.splits):
        check_split_scale(spec, each, scale)
        found = scan(name, root, scale, each)
        result.counts[f"{each} x{scale}"] = len(found.pairs)
        result.problems += found.problems
        with tqdm(total=len(found.pairs), disable=not progress, desc=f"verify {name}") as bar:
            checked = _map(check_pair, [(p, scale) for p in found.pairs], workers, bar.update)
        shapes = {}
        for pair, (problems, shape) in zip(found.pairs, checked, strict=True):
            result.problems += problems
            if pair.hr is not None:
                shapes[pair.hr.name] = shape
        for meta in sorted(root.glob(spec.meta_info)) if spec.meta_info else []:
            result.problems += meta_info_problems(meta, shapes)
    return result


def data_command(action: str, name: str, configured_root: str, scale: int | None,
                 split: str | None, workers: int, settings: dict[str, Any]) -> int:
    """``data prepare|verify NAME``: print the outcome; verify lists every problem, exit 1."""
    import sys

    root = data_root(configured_root)
    progress = sys.stderr.isatty()
    if action == "prepare":
        edge = EdgeConfig(method=settings.pop("edge_method", "sobel"))
        cfg = PrepareConfig(scale=scale or 4, split=split or "", edge=edge, **settings)
        done = prepare(name, root, cfg, workers, progress)
        print(f"{name}: {done.images} image(s) cut, {done.skipped} already done; "
              f"{done.sub_images} sub-images in {done.out}; {done.meta_info.name}")
        return 0
    result = verify(name, root, scale, split, workers, progress)
    for problem in result.problems:
        print(problem)
    counts = ", ".join(f"{k}: {v} pairs" for k, v in result.counts.items())
    print(f"{name}: {counts}; {len(result.problems) or 'no'} problem(s)")
    return 1 if result.problems else 0
