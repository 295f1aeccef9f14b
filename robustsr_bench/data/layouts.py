"""The standard SR datasets, in the folder layouts they are distributed in.

A :class:`Layout` says, per split, which folders under the data root hold the HR (reference) and
LR images and how an LR file name follows from its HR file name. :func:`discover` turns that into
:class:`~robustsr_bench.data.datasets.Pair` s; :func:`scan` does the same but collects every
problem (missing folder, empty folder, HR without LR, LR without HR) as one line each, which is
what ``data verify`` prints and what :func:`discover` raises the first of.

What follows the source: the folder and file names of each dataset as its authors (or, for the
benchmark sets, EDSR's ``benchmark.tar``, and for sub-images, BasicSR's scripts) publish them.
**Our choice**: the registry names; DF2K as the union of the DIV2K and Flickr2K folders as they
come (no merged copy); face crops as a flat ``faces/`` folder; DIV8K's folder name
``DIV8K/DIV8K_train_HR`` (the NTIRE 2020 archives unpack to a bare folder of PNGs); ``NAME_sub``
naming the output of ``data prepare NAME``, laid out like BAPD's training set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..errors import DataError

if TYPE_CHECKING:  # .datasets imports torch: `list datasets` and config checks stay instant
    from .datasets import Pair

DATA_ENV = "ROBUSTSR_DATA"
SUB_SUFFIX = "_sub"


@dataclass(frozen=True)
class Part:
    """One HR folder and its LR folder; folder names may hold ``{scale}``.

    ``hr_stem`` / ``lr_stem`` are file-stem templates sharing an ``{id}`` (RealSR v3:
    ``{id}_HR`` ~ ``{id}_LR{scale}``). An empty ``hr`` is a no-reference set (LR photos only);
    an empty ``lr`` means HR only, LR made on the fly by bicubic downscaling.
    """

    hr: str = ""
    lr: str = ""
    hr_stem: str = "{id}"
    lr_stem: str = "{id}"
    recursive: bool = False  # OST keeps its images in per-category subfolders
    edge: str = ""  # precomputed HR edge maps, matched by HR file stem (BAPD's train_EDGE_sub)


@dataclass(frozen=True)
class Layout:
    """A registered dataset: its splits (name -> parts) and the scales it has LR images for."""

    name: str
    description: str
    splits: Mapping[str, tuple[Part, ...]]
    scales: tuple[int, ...] = ()  # () = any scale: HR only, or LR-only photos
    meta_info: str = ""  # glob of BasicSR meta_info files, relative to the root
    tree: str = ""  # the expected folder tree, for README and `list datasets --verbose`

    @property
    def has_reference(self) -> bool:
        return all(p.hr for parts in self.splits.values() for p in parts)

    @property
    def default_split(self) -> str:
        return next(iter(self.splits))


def _bicubic(hr: str, lr_parent: str) -> Part:
    """An HR folder with ``<lr_parent>/X<s>/<id>x<s>.png``: the DIV2K and EDSR naming."""
    return Part(hr, f"{lr_parent}/X{{scale}}", lr_stem="{id}x{scale}")


def _benchmark(name: str, folder: str) -> Layout:
    return Layout(name, f"{name} benchmark (EDSR benchmark.tar layout); bicubic LR x2/x3/x4",
                  {"test": (_bicubic(f"{folder}/HR", f"{folder}/LR_bicubic"),)}, (2, 3, 4),
                  tree=f"{folder}/HR/<name>.png\n{folder}/LR_bicubic/X4/<name>x4.png")


def _realsr(cameras: tuple[str, ...]) -> dict[str, tuple[Part, ...]]:
    return {split.lower(): tuple(Part(f"RealSR(V3)/{c}/{split}/{{scale}}",
                                      f"RealSR(V3)/{c}/{split}/{{scale}}",
                                      hr_stem="{id}_HR", lr_stem="{id}_LR{scale}")
                                 for c in cameras) for split in ("Train", "Test")}


_DIV2K = {split: (_bicubic(f"DIV2K/DIV2K_{split}_HR", f"DIV2K/DIV2K_{split}_LR_bicubic"),)
          for split in ("train", "valid")}
_FLICKR = {"train": (_bicubic("Flickr2K/Flickr2K_HR", "Flickr2K/Flickr2K_LR_bicubic"),)}
_BAPD_FOLDER = "DF2K+DIV8K+Flickr2K+OutdoorSceneTraining"
_RWSR = "validation: corrupted LR with clean HR, x4"

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("DIV2K", "DIV2K 800 train / 100 valid HR with bicubic LR x2/x3/x4", _DIV2K, (2, 3, 4),
           tree="DIV2K/DIV2K_train_HR/0001.png\nDIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png\n"
                "DIV2K/DIV2K_valid_HR/0801.png\nDIV2K/DIV2K_valid_LR_bicubic/X4/0801x4.png"),
    Layout("Flickr2K", "Flickr2K 2650 HR with bicubic LR x2/x3/x4", _FLICKR, (2, 3, 4),
           tree="Flickr2K/Flickr2K_HR/000001.png\nFlickr2K/Flickr2K_LR_bicubic/X4/000001x4.png"),
    Layout("DF2K", "DIV2K train + Flickr2K, read from their own folders", {
        "train": _DIV2K["train"] + _FLICKR["train"]}, (2, 3, 4),
        tree="DIV2K/... and Flickr2K/... as for those datasets"),
    Layout("DIV8K", "DIV8K 1500 HR (up to 8K); LR made on the fly",
           {"train": (Part("DIV8K/DIV8K_train_HR"),)}, tree="DIV8K/DIV8K_train_HR/0001.png"),
    Layout("OST", "OutdoorSceneTraining v2 HR, per-category folders; LR made on the fly",
           {"train": (Part("OST/OutdoorSceneTrain_v2", recursive=True),)},
           tree="OST/OutdoorSceneTrain_v2/<category>/<name>.png  (animal, building, grass, ...)"),
    Layout("BAPD", "BAPD's training set: HR sub-images, their edge maps, BasicSR meta_info",
           {"train": (Part(f"{_BAPD_FOLDER}/train_HR_sub",
                           edge=f"{_BAPD_FOLDER}/train_EDGE_sub"),)},
           meta_info=f"{_BAPD_FOLDER}/meta_info_*.txt",
           tree=f"{_BAPD_FOLDER}/train_HR_sub/0001_s001.png\n"
                f"{_BAPD_FOLDER}/train_EDGE_sub/0001_s001.png\n"
                f"{_BAPD_FOLDER}/meta_info_DF2K+DIV8.txt   (lines: 0001_s001.png (480,480,3))"),
    Layout("NTIRE2020", f"NTIRE 2020 Real-World SR track 1 {_RWSR}",
           {"valid": (Part("NTIRE2020/track1-valid-gt", "NTIRE2020/Corrupted-va-x"),)}, (4,),
           tree="NTIRE2020/Corrupted-va-x/0801.png\nNTIRE2020/track1-valid-gt/0801.png"),
    Layout("AIM2019", f"AIM 2019 Real-World SR track 2 {_RWSR}",
           {"valid": (Part("AIM2019/valid-gt-clean", "AIM2019/valid-input-noisy"),)}, (4,),
           tree="AIM2019/valid-input-noisy/0801.png\nAIM2019/valid-gt-clean/0801.png"),
    Layout("RealSR", "RealSR v3, Canon + Nikon, real HR/LR pairs x2/x3/x4",
           _realsr(("Canon", "Nikon")), (2, 3, 4),
           tree="RealSR(V3)/Canon/Train/4/Canon_001_HR.png\n"
                "RealSR(V3)/Canon/Train/4/Canon_001_LR4.png\n"
                "RealSR(V3)/Nikon/Test/2/Nikon_050_HR.png  (Train|Test, 2|3|4)"),
    Layout("RealSR-Canon", "RealSR v3, Canon only", _realsr(("Canon",)), (2, 3, 4),
           tree="RealSR(V3)/Canon/Test/4/Canon_001_HR.png + Canon_001_LR4.png"),
    Layout("RealSR-Nikon", "RealSR v3, Nikon only", _realsr(("Nikon",)), (2, 3, 4),
           tree="RealSR(V3)/Nikon/Test/4/Nikon_001_HR.png + Nikon_001_LR4.png"),
    Layout("DRealSR", "DRealSR real HR/LR pairs x2/x3/x4 (5 DSLRs)", {
        split: (Part(f"DRealSR/{split.title()}_x{{scale}}/{split}_HR",
                     f"DRealSR/{split.title()}_x{{scale}}/{split}_LR",
                     hr_stem="{id}_x1", lr_stem="{id}_x{scale}"),)
        for split in ("train", "test")}, (2, 3, 4),
        tree="DRealSR/Test_x4/test_HR/<name>_x1.png\nDRealSR/Test_x4/test_LR/<name>_x4.png"),
    Layout("DPED", "DPED iPhone full-size photos; no reference (no-reference metrics only)",
           {"test": (Part(lr="DPED/iphone/test_data/full_size_test_images"),)},
           tree="DPED/iphone/test_data/full_size_test_images/<n>.jpg"),
    Layout("faces", "face crops; no reference (no-reference metrics only)",
           {"test": (Part(lr="faces"),)}, tree="faces/<name>.png"),
    _benchmark("Set5", "Set5"),
    _benchmark("Set14", "Set14"),
    _benchmark("BSD100", "B100"),
    _benchmark("Urban100", "Urban100"),
)}


def names() -> list[str]:
    return list(LAYOUTS)


def is_registered(name: str) -> bool:
    try:
        layout(name)
    except DataError:
        return False
    return True


def layout(name: str) -> Layout:
    """The registered layout, or ``NAME_sub``: what ``data prepare NAME`` wrote."""
    if name in LAYOUTS:
        return LAYOUTS[name]
    base = name.removesuffix(SUB_SUFFIX)
    if name.endswith(SUB_SUFFIX) and base in LAYOUTS:
        return sub_layout(LAYOUTS[base])
    raise DataError(f"unknown dataset '{name}'; valid: {', '.join(LAYOUTS)} "
                    f"(or NAME{SUB_SUFFIX} after `data prepare NAME`)")


def sub_layout(base: Layout) -> Layout:
    """The layout ``data prepare`` writes for ``base``: BAPD's, in ``<root>/<NAME>_sub``."""
    folder = base.name + SUB_SUFFIX
    paired = any(p.lr and p.hr for parts in base.splits.values() for p in parts)
    part = Part(f"{folder}/train_HR_sub", f"{folder}/train_LR_sub/X{{scale}}" if paired else "",
                edge=f"{folder}/train_EDGE_sub")
    return Layout(folder, f"sub-images of {base.name} (`data prepare {base.name}`)",
                  {"train": (part,)}, base.scales, meta_info=f"{folder}/meta_info_*.txt",
                  tree=f"{folder}/train_HR_sub/0001_s001.png\n"
                       + (f"{folder}/train_LR_sub/X4/0001_s001.png\n" if paired else "")
                       + f"{folder}/train_EDGE_sub/0001_s001.png\n"
                         f"{folder}/meta_info_{base.name}.txt")


def data_root(configured: str = "") -> Path:
    """``--data-root`` / ``data.root``, else ``$ROBUSTSR_DATA``; a missing one is one line."""
    text = configured or os.environ.get(DATA_ENV, "")
    if not text:
        raise DataError(f"no data root: pass --data-root DIR (data.root) or set {DATA_ENV}")
    root = Path(text).expanduser()
    if not root.is_dir():
        source = "--data-root (data.root)" if configured else DATA_ENV
        raise DataError(f"{root}: data root not found (from {source})")
    return root


def check_split_scale(spec: Layout, split: str, scale: int | None) -> None:
    """Refuse a split the dataset lacks, or a scale it has no LR images for (None: any)."""
    if split not in spec.splits:
        raise DataError(f"dataset {spec.name} has no split '{split}'; valid: "
                        f"{', '.join(spec.splits)}")
    if scale is not None and spec.scales and scale not in spec.scales:
        raise DataError(f"dataset {spec.name} has no x{scale} LR images; valid scales: "
                        f"{', '.join(map(str, spec.scales))}")


@dataclass
class Scan:
    """The pairs found and every problem met on the way, one line each."""

    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _images(folder: Path, recursive: bool, scan: Scan) -> list[Path] | None:
    """Image files of ``folder`` (sorted), or None after recording why there are none."""
    from .datasets import list_images

    try:
        return list_images(folder, recursive)
    except DataError as exc:
        scan.problems.append(str(exc))
        return None


def stem_pattern(template: str, scale: int) -> re.Pattern[str]:
    head, _, tail = template.format(id="\0", scale=scale).partition("\0")
    return re.compile(f"^{re.escape(head)}(?P<id>.+){re.escape(tail)}$")


def pair_id(spec: Layout, pair: Pair, scale: int) -> str:
    """The dataset's own image id (``Canon_001`` of ``Canon_001_HR.png``), for crop names."""
    stem = (pair.hr or pair.lr).stem
    for parts in spec.splits.values():
        for part in parts:
            match = stem_pattern(part.hr_stem, scale).match(stem)
            if match:
                return match.group("id")
    return stem


def _by_id(files: list[Path], template: str, scale: int) -> dict[str, Path]:
    pattern = stem_pattern(template, scale)
    matches = ((pattern.match(p.stem), p) for p in files)
    return {m.group("id"): p for m, p in matches if m}


def _scan_part(root: Path, part: Part, scale: int, scan: Scan) -> None:
    from .datasets import Pair

    hr_dir = root / part.hr.format(scale=scale) if part.hr else None
    lr_dir = root / part.lr.format(scale=scale) if part.lr else None
    hr_files = _images(hr_dir, part.recursive, scan) if hr_dir else None
    lr_files = _images(lr_dir, part.recursive, scan) if lr_dir else None
    if hr_dir is None:
        scan.pairs += [Pair(None, p) for p in lr_files or []]
        return
    if hr_files is None or (lr_dir and lr_files is None):
        return
    hrs = _by_id(hr_files, part.hr_stem, scale)
    lrs = _by_id(lr_files, part.lr_stem, scale) if lr_files else {}
    edges = _edges(root, part, scan) if part.edge else None
    for ident, hr in hrs.items():
        lr = lrs.get(ident)
        if lr_dir and lr is None:
            stem = part.lr_stem.format(id=ident, scale=scale)
            scan.problems.append(f"{hr}: no LR image '{stem}.*' in {lr_dir}")
            continue
        edge = edges.get(hr.stem) if edges else None
        if edges and edge is None:
            scan.problems.append(f"{hr}: no edge map '{hr.stem}.*' in {root / part.edge}")
            continue
        scan.pairs.append(Pair(hr, lr, edge))
    if lr_dir:
        scan.problems += [f"{lr}: no HR image '{part.hr_stem.format(id=i, scale=scale)}.*' "
                          f"in {hr_dir}" for i, lr in lrs.items() if i not in hrs]


def _edges(root: Path, part: Part, scan: Scan) -> dict[str, Path] | None:
    """Edge maps by stem; None when the folder is absent (methods then compute edges on the
    fly, as BAPD's loader must), {} after recording a problem when it is there but broken."""
    folder = root / part.edge
    if not folder.exists():
        return None
    files = _images(folder, False, scan)
    return {p.stem: p for p in files} if files else {}


def scan(name: str, root: Path, scale: int, split: str | None = None,
         hr_only: bool = False) -> Scan:
    """Every pair of ``name``'s ``split`` at ``scale`` under ``root``, and every problem;
    ``hr_only`` ignores the LR folders (HR images to degrade synthetically)."""
    spec = layout(name)
    split = split or spec.default_split
    check_split_scale(spec, split, None if hr_only else scale)
    result = Scan()
    for part in spec.splits[split]:
        _scan_part(root, replace(part, lr="") if hr_only and part.hr else part, scale, result)
    return result


def discover(name: str, root: Path, scale: int, split: str | None = None,
             hr_only: bool = False) -> list[Pair]:
    """The pairs of a registered dataset; the first problem is raised as one line."""
    result = scan(name, root, scale, split, hr_only)
    if result.problems:
        more = len(result.problems) - 1
        hint = f" (+{more} more; see `python -m robustsr_bench data verify {name}`)" if more else ""
        raise DataError(result.problems[0] + hint)
    return result.pairs


def image_folder_or_dataset(ref: str, configured_root: str, scale: int) -> list[Path]:
    """HR images for ``eval.images``: a folder, or ``NAME[:SPLIT]`` of a registered dataset."""
    from .datasets import list_images

    name, _, split = ref.partition(":")
    if not is_registered(name):
        return list_images(ref)
    if not layout(name).has_reference:
        raise DataError(f"eval.images={ref}: {name} has no HR images; evaluate on it through a "
                        f"suite with `dataset: {name}` (no-reference metrics)")
    pairs = discover(name, data_root(configured_root), scale, split or None, hr_only=True)
    return [p.hr for p in pairs if p.hr is not None]
