"""``bench``: what robustness costs, measured in one process on this machine.

For each generator size (``paper``: the papers' 64-channel 23-block RRDBNet on small patches so
it fits a CPU; ``smoke``: the smoke profile as it trains) every method's trainer is built with its
default settings and one full training step (attack + G step + D step + EMA) is timed. Methods
are *interleaved* round-robin and repeated after a warm-up, so drifting machine load hits all of
them alike; the table gives the median and interquartile range, and each method's step relative
to the clean ESRGAN step of the same round (median and IQR over rounds). It also measures the
peak memory of a step, inference megapixels/s (untiled and tiled) and data-loader images/s, and
writes ``<out>/bench.md`` plus ``<out>/bench.json`` with the machine (CPU/GPU model, torch
version, threads, load average).

Our choices:

* inputs are random patches (``gt`` uniform, ``lq`` its box-filtered downsample): a step's cost
  does not depend on the pixel values;
* where a profile's objective needs VGG19 and its weights are not in the cache, the perceptual
  loss uses a randomly initialised VGG19 (same cost; numbers are never reported from it);
* the reference is the clean ESRGAN step of the same size with the profile's objective; a method
  whose default objective differs (ANDNet trains with L1 alone while the paper profile's ESRGAN
  is a GAN) is also compared with ESRGAN under its own objective (``esrgan[psnr]``), so the
  table shows both "versus the baseline you would train" and "versus the same objective";
* peak memory is measured in a separate pass after all timings, one step per method: on CPU the
  largest growth of the resident set, sampled every millisecond, over the step, with glibc made
  to return freed memory at once (a process-wide peak cannot separate methods, and memory that
  earlier steps freed would otherwise absorb the growth); on CUDA
  ``torch.cuda.max_memory_allocated`` over the step. Both leave out the weights, optimiser
  state and EMA, which exist before the step;
* the tiled inference rate uses ``--infer-tile`` tiles with evaluation's overlap and blend, so
  on a small image it mostly shows the cost of the overlap.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from robustsr_bench.methods.base import Batch

from . import registry, weights
from .config import schema_for
from .data.datasets import make_train_loader
from .errors import ConfigError, UserError
from .losses import PerceptualLoss
from .files import atomic_write_text
from .nets.vgg import VGGFeatureExtractor
from .results import RunDir
from .runner import needed_weights
from .speed import to_channels_last
from .tiling import tiled_restore
from .trainer import Trainer, select_device

log = logging.getLogger("robustsr_bench")
SIZES = ("paper", "paper-real", "smoke")
# The papers' own patch and batch (LR 32 px = HR 128, batch 16): minutes per step round on a CPU.
PAPER_REAL = {"patch": 32, "batch": 16}
DEFAULT_METHODS = ("esrgan", "rsr", "and", "bapd")


# moved from data/datasets.py: it resolves a whole run config, which the data layer must not
def dataset_loader(name: str, root: str = "", split: str = "train", overrides: Any = None,
                   start_step: int = 0) -> DataLoader:
    """The training loader a run on registered dataset ``name`` would use (for ``bench``).

    ``overrides`` is a ``{dotted.key: value}`` dict on top of the smoke ESRGAN config, e.g.
    ``{"scale": 4, "train.batch_size": 16, "train.patch_size": 128, "runtime.num_workers": 8}``.
    """
    cfg = registry.resolve_config("esrgan", "smoke", overrides={
        "data.train": name, "data.root": root, "data.split": split, **(overrides or {})})
    return make_train_loader(cfg, start_step)


@dataclass
class BenchOptions:
    """What ``bench`` measures (CLI flags of the same names).

    ``patch`` / ``batch``: LR patch side and batch of the ``paper`` size (default 16 px, 2: a
    paper-size step then takes about a second on a 2-core CPU); the ``smoke`` size keeps its
    profile's patch and batch. ``infer_lr``: LR side of the inference image; ``infer_tile``:
    tile side for the tiled measurement. ``loader_batches``: batches timed per loader.
    ``dataset`` / ``data_root``: also time the loader of a registered (prepared) dataset.
    ``overrides``: ``--set`` fields applied to every run config (e.g. runtime.channels_last).
    ``peer``: also time the clean ESRGAN step against BasicSR's (:mod:`robustsr_bench.peer`) at
    each size whose objective is the GAN one.
    """

    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    repeats: int = 5
    warmup: int = 1
    patch: int = 16
    batch: int = 2
    device: str = "auto"
    infer_lr: int = 96
    infer_tile: int = 48
    loader_batches: int = 20
    dataset: str = ""
    data_root: str = ""
    peer: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [s for s in self.sizes if s not in SIZES]
        if unknown:
            raise ConfigError(f"--sizes {','.join(unknown)} is invalid; expected some of: "
                              f"{', '.join(SIZES)}")
        for name in ("repeats", "patch", "batch", "infer_lr", "infer_tile", "loader_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}={getattr(self, name)} is invalid; "
                                  f"expected an integer >= 1")
        if self.warmup < 0:
            raise ConfigError(f"--warmup={self.warmup} is invalid; expected an integer >= 0")


@dataclass
class Variant:
    """One timed trainer: ``label`` in the table, the run config and its reference label."""

    label: str
    cfg: Any
    reference: str


# -- machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: CPU, GPU, torch, threads, and how busy the machine was."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": gpu,
            "device": str(device), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1m": round(os.getloadavg()[0], 2), "platform": platform.platform()}


# -- memory ----------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict whose ``mb`` is, after the block, the peak memory the block added (MB)."""
    result = {"mb": float("nan")}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    if not Path("/proc/self/statm").exists():
        yield result
        return
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result["mb"] = max(0, max(peak[0], _rss_bytes()) - base) / 2**20


# -- trainers --------------------------------------------------------------------------------


def size_overrides(size: str, options: BenchOptions) -> dict[str, Any]:
    """Config fields of a bench size on top of its profile (paper: small patches)."""
    base = {"runtime.progress": False, "runtime.device": options.device,
            "runtime.num_workers": 0, **options.overrides}
    if size.startswith("paper"):
        patch, batch = ((PAPER_REAL["patch"], PAPER_REAL["batch"]) if size == "paper-real"
                        else (options.patch, options.batch))
        base.update({"train.patch_size": patch * 4, "train.batch_size": batch, "scale": 4})
    return base


def profile_of(size: str) -> str:
    """The config profile a bench size starts from (``paper-real`` is the paper profile)."""
    return "paper" if size.startswith("paper") else size


def resolve(method: str, size: str, overrides: dict[str, Any]) -> Any:
    """``method``'s config at ``size``; ``overrides`` of sections the method does not have
    (``--set degradation.channels=16`` for ESRGAN) are left out for it."""
    sections = {f.name for f in dataclasses.fields(
        schema_for(registry.method_spec(method).load_options()))}
    own = {k: v for k, v in overrides.items() if k.split(".")[0] in sections}
    return registry.resolve_config(method, size, overrides=own)


def variants(size: str, options: BenchOptions) -> list[Variant]:
    """Every method's config at ``size``, the ESRGAN reference first, plus ESRGAN under each
    other objective a method uses (``esrgan[psnr]``)."""
    extra = size_overrides(size, options)
    methods = ["esrgan", *[m for m in options.methods if m != "esrgan"]]
    profile = profile_of(size)
    base = resolve("esrgan", profile, extra)
    out = [Variant("esrgan", base, "esrgan")]
    for name in methods[1:]:
        cfg = resolve(name, profile, extra)
        if not registry.method_spec(name).load_adapter().trains:
            continue
        ref = "esrgan"
        if cfg.loss.mode != base.loss.mode:
            ref = f"esrgan[{cfg.loss.mode}]"
            if all(v.label != ref for v in out):
                out.append(Variant(ref, resolve("esrgan", profile,
                                                {**extra, "loss.mode": cfg.loss.mode}), ref))
        out.append(Variant(name, cfg, ref))
    return out


_EXTRACTORS: dict[tuple[str, str], VGGFeatureExtractor] = {}


def _perceptual(cfg: Any, device: torch.device) -> PerceptualLoss:
    """VGG19 from the cache when present, else randomly initialised (same cost); one frozen
    extractor per layer and device, shared by the trainers (each loss keeps its own cache)."""
    key = (cfg.loss.perceptual_layer, str(device))
    if key not in _EXTRACTORS:
        path = weights.weight_file("vgg19").path
        extractor = VGGFeatureExtractor(key[0], weights_path=path if path.is_file() else None)
        if cfg.runtime.channels_last:
            to_channels_last(extractor)
        _EXTRACTORS[key] = extractor.to(device)
    return PerceptualLoss(_EXTRACTORS[key], weight=1.0)


def build_trainer(cfg: Any, workdir: Path) -> Trainer:
    """The run's trainer, fresh weights, writing nothing (its run dir is a temp folder)."""
    method = registry.method_spec(cfg.method).load_adapter()
    trainer = Trainer(cfg, method, RunDir.for_id(cfg.method, workdir), None, None)
    if "vgg19" in needed_weights(cfg, method):
        trainer.perceptual = _perceptual(cfg, trainer.device)
    return trainer


def random_batch(cfg: Any, device: torch.device, seed: int = 0) -> Batch:
    """Random HR patches and their box-filtered LR (what a step costs does not depend on them).
    Each timed step gets its own (``seed``), made before timing: a batch fed twice would let the
    perceptual loss serve the HR features from its cache and skip a VGG pass training makes."""
    gen = torch.Generator().manual_seed(seed)
    hr = cfg.train.patch_size
    gt = torch.rand(cfg.train.batch_size, 3, hr, hr, generator=gen)
    return Batch(F.avg_pool2d(gt, cfg.scale), gt).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainers: dict[str, Trainer], batches: dict[str, list[Batch]], repeats: int,
               warmup: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` steps per trainer, interleaved round-robin after ``warmup``; step
    ``i`` of a trainer trains on ``batches[label][i]`` (fresh every step, as in training)."""
    out: dict[str, list[float]] = {k: [] for k in trainers}
    for step in range(warmup + repeats):
        for label, trainer in trainers.items():
            _sync(trainer.device)
            start = time.perf_counter()
            trainer.train_step(batches[label][step], step)
            _sync(trainer.device)
            if step >= warmup:
                out[label].append(time.perf_counter() - start)
        log.info("bench: round %d/%d (%d warm-up) done", step + 1, warmup + repeats, warmup)
    return out


def step_flops(trainer: Trainer, batch: Batch) -> float:
    """FLOPs of one training step (forward, backward, attack, D step) by the formulas of
    ``torch.utils.flop_counter`` (convolutions and matmuls; elementwise ops are not counted).
    A bare dispatch mode rather than ``FlopCounterMode``: the latter's per-module tracking
    hooks fail inside the attacks' ``autograd.grad``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore
            out = func(*args, **(kwargs or {}))
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **(kwargs or {}), out_val=out)
            return out

    with Count() as counter:
        trainer.train_step(batch, 20_000)
    return float(counter.total)


def conv3x3_rate(channels: int, side: int, batch: int, device: torch.device,
                 repeats: int = 5) -> float:
    """GFLOP/s of a ``channels``->``channels`` 3x3 convolution (forward + backward, fp32) on the
    trunk's feature map (``batch`` x ``side``^2), best of ``repeats``: the rate this process can
    reach on the op that dominates the step, against which each step's achieved rate is read."""
    x = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device)
    flops = 3 * 2 * batch * channels * channels * 9 * side * side  # fwd + grad in + grad w
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        conv(x).sum().backward()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


class LoadMonitor:
    """The 1-minute load average at the start, the end and its maximum in between (sampled
    every ``every`` s): a load above the core count means other processes shared the CPU."""

    def __init__(self, every: float = 1.0):
        self.every, self.samples, self._done = every, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        return {"start": round(self.samples[0], 2), "end": round(self.samples[-1], 2),
                "max": round(max(self.samples), 2)}


BUSY_MARGIN = 0.5  # runnable processes beyond the bench's own threads, on average


def busy_reason(load: dict[str, float], cores: int) -> str | None:
    """Why the machine was too busy for a reference result: a load average above the core count
    by more than :data:`BUSY_MARGIN`. The bench's own threads keep one core each busy, so on an
    otherwise idle machine the load sits at about the core count (2.21 on 2 cores measured for a
    23-minute quiet bench); half a core more on average means other work ran."""
    if load["max"] > cores + BUSY_MARGIN:
        return (f"the 1-minute load average reached {load['max']} on {cores} cores during the "
                f"bench (start {load['start']}, end {load['end']})")
    return None


# -- statistics ------------------------------------------------------------------------------


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3); one value gives (v, v, v)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def summarise_steps(times: dict[str, list[float]], refs: dict[str, str]) -> list[dict[str, Any]]:
    """One row per variant: median/IQR step ms and its ratio to its reference, per round."""
    rows = []
    for label, seconds in times.items():
        q1, med, q3 = quartiles(seconds)
        r1, rmed, r3 = quartiles([a / b for a, b in zip(seconds, times[refs[label]])])
        rows.append({"variant": label, "reference": refs[label], "step_ms": 1e3 * med,
                     "step_iqr_ms": 1e3 * (q3 - q1), "ratio": rmed, "ratio_iqr": r3 - r1,
                     "ratio_to_esrgan": quartiles([a / b for a, b in
                                                   zip(seconds, times["esrgan"])])[1],
                     "samples": len(seconds)})
    return rows


# -- inference and data ----------------------------------------------------------------------


def inference_rates(net: torch.nn.Module, cfg: Any, lr_side: int, tile: int, repeats: int,
                    device: torch.device) -> dict[str, Any]:
    """Output megapixels/s of ``net`` on an ``lr_side``^2 image, untiled and tiled with
    ``tile`` px tiles and ``cfg.eval``'s overlap and blend (median of ``repeats``)."""
    lr = torch.rand(1, 3, lr_side, lr_side, device=device)
    scale, e = cfg.scale, cfg.eval
    out_mp = (lr_side * scale) ** 2 / 1e6
    modes: dict[str, Callable[[], Any]] = {
        "untiled": lambda: net(lr),
        "tiled": lambda: tiled_restore(net, lr, scale, tile, e.tile_overlap, e.tile_blend),
    }
    result: dict[str, Any] = {"lr_side": lr_side, "tile": tile}
    net.eval()
    with torch.no_grad():
        for mode, fn in modes.items():
            fn()  # warm-up
            seconds = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                seconds.append(time.perf_counter() - start)
            result[f"{mode}_mp_s"] = out_mp / statistics.median(seconds)
    return result


def loader_rate(loader: Any, batches: int) -> float:
    """Training images per second the loader delivers (first batch excluded: worker start-up)."""
    it = iter(loader)
    next(it)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(it)["gt"])
    return images / (time.perf_counter() - start)


def loader_rates(options: BenchOptions) -> dict[str, float]:
    """images/s of the smoke profile's loader on the embedded photos, and of ``--dataset``."""
    n = options.loader_batches
    iters = {"train.iters": n + 1, "runtime.num_workers": 0}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=iters)
    rates = {"embedded": loader_rate(make_train_loader(cfg, 0), n)}
    if options.dataset:
        loader = dataset_loader(options.dataset, options.data_root, overrides=iters)
        rates[options.dataset] = loader_rate(loader, n)
    return rates


def large_inference(lr_side: int, device: torch.device, tile: int | None = None,
                    size: str = "paper") -> dict[str, Any]:
    """Tiled x4 inference of one ``lr_side``^2 LR image by the ``size`` profile's generator
    with evaluation's tiling (``eval.tile_*``; ``tile`` replaces ``eval.tile_size``): seconds,
    output MP/s and peak memory (CPU: the process's ``ru_maxrss``, everything it ever held, so
    an upper bound; run it in a fresh process)."""
    import resource

    cfg = registry.resolve_config("esrgan", size, overrides={"runtime.device": str(device)})
    tile, overlap, blend = tile or cfg.eval.tile_size, cfg.eval.tile_overlap, cfg.eval.tile_blend
    net = registry.method_spec("esrgan").load_adapter().build_generator(cfg).to(device).eval()
    lr = torch.rand(1, 3, lr_side, lr_side, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.no_grad():
        sr = tiled_restore(net, lr, cfg.scale, tile, overlap, blend)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"lr_side": lr_side, "scale": cfg.scale, "out_shape": list(sr.shape),
            "tile": tile, "overlap": overlap, "blend": blend, "seconds": seconds,
            "out_mp_s": sr.shape[-1] * sr.shape[-2] / 1e6 / seconds, "peak_mb": peak,
            "model": f"{cfg.model.num_feat} ch x {cfg.model.num_block} blocks"}


def zoo_inference(lr_side: int, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    """Output MP/s of every model-zoo architecture (``configs/zoo.yaml`` ``build``), built with
    random weights and loaded the way ``evaluate`` loads a file (spandrel from the state dict,
    padding to the size requirement included), on one ``lr_side``^2 LR image, untiled (median
    of ``repeats`` after one warm-up). Entries with the same build are timed once; one that
    cannot be built (or runs out of memory) gets its error instead of a rate."""
    from .zoo import load_zoo

    builds: dict[str, list[Any]] = {}
    for e in load_zoo().values():
        if e.build:
            key = json.dumps(e.build, sort_keys=True)
            builds.setdefault(key, [e.build, e.architecture, []])[2].append(e.name)
    rows = []
    for build, arch, names in builds.values():
        row: dict[str, Any] = {"architecture": arch, "zoo": names, "lr_side": lr_side}
        try:
            row.update(_time_zoo_build(build, lr_side, repeats, device))
        except Exception as exc:  # noqa: BLE001 - report what could not be built, time the rest
            row["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
        rows.append(row)
        log.info("zoo %s: %s", arch, row.get("out_mp_s", row.get("error")))
    return rows


def _time_zoo_build(build: dict[str, Any], lr_side: int, repeats: int,
                    device: torch.device) -> dict[str, Any]:
    import importlib

    from spandrel import MAIN_REGISTRY

    from .published import from_descriptor

    cls = build["class"]
    torch.manual_seed(0)
    module = importlib.import_module(f"spandrel.architectures.{cls}")
    loaded = from_descriptor(MAIN_REGISTRY.load(getattr(module, cls)(**build.get("args", {}))
                                                .state_dict()))
    net = loaded.net.to(device)
    lr = torch.rand(1, 3, lr_side, lr_side, device=device)
    seconds = []
    with torch.no_grad():
        for i in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            net(lr)
            _sync(device)
            if i:  # the first call is the warm-up
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"parameters": loaded.parameters, "scale": loaded.scale, "seconds": median,
            "out_mp_s": (lr_side * loaded.scale) ** 2 / 1e6 / median}


def zoo_markdown(rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    side = rows[0]["lr_side"] if rows else "?"
    title = (f"Inference of each model-zoo architecture (random weights, untiled, {side} px LR "
             f"side; device {machine['device']}, {machine['cpu']}, {machine['threads']} threads, "
             f"load {machine['load_average_1m']})")
    lines = [title, "",
             "| architecture | zoo entries | parameters (M) | s / image | output MP/s |",
             "|---|---|---|---|---|"]
    for r in rows:
        names = ", ".join(r["zoo"])
        if "error" in r:
            lines.append(f"| {r['architecture']} | {names} | - | - | {r['error']} |")
        else:
            lines.append(f"| {r['architecture']} | {names} | {r['parameters'] / 1e6:.2f} | "
                         f"{r['seconds']:.3f} | {r['out_mp_s']:.4f} |")
    return "\n".join(lines)


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class SizeBench:
    """The trainers of one generator size and what was measured on them."""

    size: str
    specs: list[Variant]
    trainers: dict[str, Trainer]
    batches: dict[str, list[Batch]]
    result: dict[str, Any] = field(default_factory=dict)


def prepare_size(size: str, options: BenchOptions, workdir: Path) -> SizeBench:
    specs = variants(size, options)
    log.info("bench: %s size: building %s", size, ", ".join(v.label for v in specs))
    trainers = {v.label: build_trainer(v.cfg, workdir) for v in specs}
    rounds = options.warmup + options.repeats + 2  # + 2: the FLOP count's, the memory pass's
    batches = {v.label: [random_batch(v.cfg, trainers[v.label].device, seed)
                         for seed in range(rounds)] for v in specs}
    return SizeBench(size, specs, trainers, batches)


def time_size(bench: SizeBench, options: BenchOptions) -> None:
    """Step times (interleaved) and inference rates of one size, into ``bench.result``."""
    times = time_steps(bench.trainers, bench.batches, options.repeats, options.warmup)
    cfg, ref = bench.specs[0].cfg, bench.trainers["esrgan"]
    peak = conv3x3_rate(cfg.model.num_feat, cfg.train.patch_size // cfg.scale,
                        cfg.train.batch_size, ref.device)
    steps = summarise_steps(times, {v.label: v.reference for v in bench.specs})
    for row in steps:
        flops = step_flops(bench.trainers[row["variant"]], bench.batches[row["variant"]][-2])
        row["gflop"] = flops / 1e9
        row["gflop_s"] = flops / 1e9 / (row["step_ms"] / 1e3)
        row["of_conv_peak"] = row["gflop_s"] / peak
    bench.result = {
        "size": bench.size,
        "model": {"num_feat": cfg.model.num_feat, "num_block": cfg.model.num_block,
                  "lr_patch": cfg.train.patch_size // cfg.scale, "batch": cfg.train.batch_size},
        "conv3x3_gflop_s": peak,
        "steps": steps,
        "inference": inference_rates(ref.g_ema, cfg, options.infer_lr, options.infer_tile,
                                     max(1, options.repeats // 2), ref.device)}
    if options.peer and cfg.loss.mode == "gan":
        bench.result["peer"] = peer_ratio(ref, bench.batches["esrgan"], options.repeats,
                                          options.warmup)


def peer_ratio(trainer: Trainer, batches: list[Batch], repeats: int,
               warmup: int) -> dict[str, Any]:
    """Our ESRGAN step against BasicSR's on the same generator weights, interleaved round by
    round (each side on its own fresh batches of the same values); ratio = ours / BasicSR's."""
    from .peer import peer_for

    peer = peer_for(trainer)
    copies = [Batch(b.lq.clone(), b.gt.clone()) for b in batches]
    ours: list[float] = []
    theirs: list[float] = []
    for step in range(warmup + repeats):
        for times in (ours, theirs):
            _sync(trainer.device)
            start = time.perf_counter()
            if times is ours:
                trainer.train_step(batches[step], step)
            else:
                peer.step(copies[step].lq, copies[step].gt)
            _sync(trainer.device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
    r1, rmed, r3 = quartiles([a / b for a, b in zip(ours, theirs)])
    return {"ours_ms": 1e3 * statistics.median(ours), "basicsr_ms": 1e3 * statistics.median(theirs),
            "ratio": rmed, "ratio_iqr": r3 - r1, "samples": len(ours),
            "vgg19": "randomly initialised (weights absent offline; same cost)"}


def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def _return_freed_memory() -> None:
    """Make glibc hand blocks over 16 kB to the OS as soon as they are freed (a fixed mmap
    threshold), so that the resident set follows live memory during the memory pass. This
    slows allocation, which is why it runs only after all timings."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 16 * 1024)  # M_MMAP_THRESHOLD


def _trim() -> None:
    """Give the free parts of the heap back (``malloc_trim``), so that the next step's growth
    starts from live memory instead of being absorbed by what earlier steps freed."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def memory_size(bench: SizeBench) -> None:
    """Peak memory (MB) one step of each variant adds, into ``bench.result["steps"]``."""
    step = 10_000  # any step number: the seed differs from the timed ones, the cost does not
    for row in bench.result["steps"]:
        label = row["variant"]
        _trim()
        with peak_memory(bench.trainers[label].device) as mem:
            bench.trainers[label].train_step(bench.batches[label][-1], step)
        row["peak_mb"] = mem["mb"]


def run_bench(options: BenchOptions, out: Path, reference: bool = False,
              force: bool = False) -> dict[str, Any]:
    """Measure everything ``options`` asks for; write ``out/bench.md`` and ``out/bench.json``.

    All sizes are timed before any memory is measured (see :func:`_return_freed_memory`). A
    ``reference`` result (the committed results folder) measured on a busy machine (see
    :func:`busy_reason`) is refused, nothing written, unless ``force``."""
    device = select_device(options.device)
    report: dict[str, Any] = {"machine": machine_info(device), "options": asdict(options)}
    with LoadMonitor() as load:
        _measure(options, device, report)
    report["machine"]["load_average"] = load.summary()
    busy = busy_reason(load.summary(), os.cpu_count() or 1)
    report["machine"]["busy"] = busy
    if busy and reference and not force:
        kept = Path(tempfile.mkdtemp(prefix="bench-busy-"))
        write_outputs(report, kept)  # minutes of measurement are not thrown away
        raise UserError(f"bench: {busy}; a reference result needs a quiet machine, so nothing "
                        f"was written to {out} (this measurement: {kept}; run again when it is "
                        f"quiet, or --force)")
    write_outputs(report, out)
    return report


def _measure(options: BenchOptions, device: torch.device, report: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="robustsr-bench-") as tmp:
        benches = [prepare_size(size, options, Path(tmp)) for size in options.sizes]
        for bench in benches:
            time_size(bench, options)
        report["loader_images_s"] = loader_rates(options)
        if device.type == "cpu":
            _return_freed_memory()
        for bench in benches:
            memory_size(bench)
    report["sizes"] = [b.result for b in benches]


_STEP_HEADER = ("| method | step ms (median) | IQR ms | x reference (median) | IQR | reference "
                "| x esrgan | peak MB | GFLOP/step | GFLOP/s | of conv3x3 rate |\n"
                "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")


def _size_section(size: dict[str, Any]) -> list[str]:
    mod, inf = size["model"], size["inference"]
    title = (f"## {size['size']} size: RRDBNet {mod['num_feat']} ch x {mod['num_block']} blocks, "
             f"LR patch {mod['lr_patch']} px, batch {mod['batch']}")
    rows = [f"| {r['variant']} | {r['step_ms']:.1f} | {r['step_iqr_ms']:.1f} | {r['ratio']:.2f} "
            f"| {r['ratio_iqr']:.2f} | {r['reference']} | {r['ratio_to_esrgan']:.2f} "
            f"| {r['peak_mb']:.0f} | {r['gflop']:.2f} | {r['gflop_s']:.1f} "
            f"| {r['of_conv_peak']:.0%} |" for r in size["steps"]]
    inference = (f"Inference (EMA generator, {inf['lr_side']}x{inf['lr_side']} LR): "
                 f"{inf['untiled_mp_s']:.3f} output MP/s untiled, {inf['tiled_mp_s']:.3f} tiled "
                 f"({inf['tile']} px tiles).")
    peak = (f"conv3x3 {mod['num_feat']}->{mod['num_feat']} ch on the trunk's feature map "
            f"(fwd + bwd, fp32, same process): {size['conv3x3_gflop_s']:.1f} GFLOP/s; FLOPs "
            f"counted by torch.utils.flop_counter (convolutions and matmuls).")
    if size["size"] == "paper-real":
        title += " (the papers' training size: minutes per round on a CPU)"
    lines = [title, "", _STEP_HEADER, *rows, "", inference, "", peak, ""]
    if size.get("peer"):
        p = size["peer"]
        lines += [f"Peer: this harness's clean ESRGAN step {p['ours_ms']:.1f} ms vs BasicSR's "
                  f"published step (re-stated in robustsr_bench/peer.py) {p['basicsr_ms']:.1f} ms "
                  f"on the same G weights: ratio {p['ratio']:.2f} (IQR {p['ratio_iqr']:.2f}, "
                  f"{p['samples']} interleaved rounds); VGG19 {p['vgg19']}.", ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The tables of ``bench.md``."""
    m, opts = report["machine"], report["options"]
    machine = (f"Machine: {m['cpu']} ({m['cpu_count']} cores, {m['threads']} torch threads), "
               f"GPU: {m['gpu'] or 'none'}, device {m['device']}, torch {m['torch']}, "
               f"1-min load average at start {m['load_average_1m']}.")
    load = m.get("load_average")
    if load:
        machine += (f" Load during the run: start {load['start']}, end {load['end']}, max "
                    f"{load['max']}" + (" (BUSY: other processes shared the CPU)."
                                        if m.get("busy") else "."))
    rates = ", ".join(f"{k}: {v:.1f}" for k, v in report["loader_images_s"].items())
    method = (f"{opts['repeats']} interleaved repeats after {opts['warmup']} warm-up step(s); "
              f"ratios are per round (same machine load), then median and IQR over rounds.")
    lines = ["# bench: training-step cost of each method relative to clean ESRGAN", "", machine,
             ""]
    for size in report["sizes"]:
        lines += _size_section(size)
    lines += [f"Data loader (smoke patches, images/s): {rates}.", "", method, ""]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "bench.md", render_markdown(report))


def options_from_cli(args: dict[str, Any], overrides: dict[str, Any]) -> BenchOptions:
    """:class:`BenchOptions` from the parsed flags; a flag left out keeps the default."""
    given = {f.name: args[f.name] for f in dataclasses.fields(BenchOptions)
             if args.get(f.name) is not None}
    for name in ("methods", "sizes"):
        if name in given:
            given[name] = [item for item in given[name].split(",") if item]
    return BenchOptions(**{**given, "overrides": overrides})


def bench_command(args: dict[str, Any], overrides: dict[str, Any], out: Path) -> int:
    """``bench``'s CLI: the full benchmark, or ``--large`` tiled inference alone."""
    device = select_device(args.get("device") or "auto")
    if args.get("zoo"):
        rows = zoo_inference(args.get("infer_lr") or 64, args.get("repeats") or 3, device)
        report = {"machine": machine_info(device), "zoo_inference": rows}
        atomic_write_text(out / "bench_zoo.json", json.dumps(report, indent=2) + "\n")
        print(zoo_markdown(rows, report["machine"]))
        print(f"wrote {out / 'bench_zoo.json'}")
        return 0
    if args.get("large"):
        result = large_inference(args["large"], device, args.get("tile"))
        result["machine"] = machine_info(device)
        atomic_write_text(out / "bench_large.json", json.dumps(result, indent=2) + "\n")
        print(f"{result['lr_side']}^2 LR x{result['scale']} in {result['tile']} px tiles: "
              f"{result['seconds']:.1f} s, {result['out_mp_s']:.3f} MP/s, peak "
              f"{result['peak_mb']:.0f} MB -> {out / 'bench_large.json'}")
        return 0
    reference = out.resolve() == Path("results").resolve()
    report = run_bench(options_from_cli(args, overrides), out, reference=reference,
                       force=bool(args.get("force")))
    print(render_markdown(report))
    print(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0
