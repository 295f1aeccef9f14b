"""Typed run configuration: dataclasses, filled from YAML layers and ``--set`` overrides.

A run's configuration is resolved in a fixed order, each layer overriding the one before:

1. the dataclass defaults below (the paper's values),
2. ``configs/profiles/<profile>.yaml``            (smoke / paper scale),
3. ``configs/methods/<method>.yaml`` ``config:``   (method defaults),
4. the same file's ``profiles.<profile>:`` block   (method x profile specifics),
5. each ablation's ``set:`` block, in the order given with ``+``,
6. the user's ``--set key.path=value`` overrides.

omegaconf does the merging and type checking; this module turns its exceptions into the one-line
errors users see. Method adapters add their own sections (for example RSR's ``attack``) by
declaring an ``options`` dataclass whose fields are appended to :class:`RunConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf import errors as oc_errors

from .data.embedded import identity  # a leaf module: file names only
from .errors import ConfigError

_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")
# YAML 1.1 (PyYAML) reads ``1e12`` and ``1e-4`` as strings: it wants a dot in the mantissa.
_EXPONENT = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+\s*$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check(ok: bool, key: str, value: Any, valid: str) -> None:
    """Raise the standard one-line error for a field whose value is out of range."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid; expected {valid}")


@dataclass
class ModelConfig:
    """RRDBNet generator size (ESRGAN defaults)."""

    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32

    def __post_init__(self) -> None:
        for name in ("num_feat", "num_block", "num_grow_ch"):
            value = getattr(self, name)
            check(value >= 1, f"model.{name}", value, "an integer >= 1")


@dataclass
class DiscConfig:
    """VGG-style discriminator; ``input_size`` must equal the HR training patch."""

    num_feat: int = 64


@dataclass
class LossConfig:
    """Training objective.

    ``mode: psnr`` trains with L1 alone (weight 1). ``mode: gan`` is ESRGAN's objective:
    L1 x ``pixel_weight`` + VGG19 perceptual x ``perceptual_weight`` + RaGAN x ``gan_weight``.
    """

    mode: str = "psnr"
    pixel_weight: float = 0.01
    perceptual_weight: float = 1.0
    perceptual_layer: str = "conv5_4"
    gan_weight: float = 0.005

    def __post_init__(self) -> None:
        check(self.mode in ("psnr", "gan"), "loss.mode", self.mode, "one of: psnr, gan")
        for name in ("pixel_weight", "perceptual_weight", "gan_weight"):
            value = getattr(self, name)
            check(value >= 0, f"loss.{name}", value, "a number >= 0")


@dataclass
class TrainConfig:
    """Optimisation schedule (ESRGAN's Adam + MultiStep halving + EMA).

    ``init`` says where G starts: ``scratch``, ``baseline`` (the clean ESRGAN run of the same
    profile, trained first if absent; the papers' fine-tuning protocol) or a checkpoint path.
    ``milestones`` are absolute iterations at which the learning rate is multiplied by ``gamma``.
    """

    iters: int = 18000
    init: str = "baseline"
    batch_size: int = 16
    patch_size: int = 128
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    milestones: list[int] = field(default_factory=lambda: [9000])
    gamma: float = 0.5
    ema_decay: float = 0.999
    grad_clip: float = 0.0
    ckpt_every: int = 1000
    keep_ckpts: int = 2
    augment: bool = True

    def __post_init__(self) -> None:
        check(self.iters >= 0, "train.iters", self.iters, "an integer >= 0")
        check(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        check(self.patch_size >= 4, "train.patch_size", self.patch_size, "an integer >= 4")
        check(self.lr > 0, "train.lr", self.lr, "a number > 0")
        check(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "a number in [0, 1)")
        check(self.ckpt_every >= 1, "train.ckpt_every", self.ckpt_every, "an integer >= 1")
        check(self.keep_ckpts >= 1, "train.keep_ckpts", self.keep_ckpts, "an integer >= 1")
        check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, "a number >= 0 (0 = off)")
        check(len(self.betas) == 2, "train.betas", self.betas, "two numbers, e.g. [0.9, 0.99]")


@dataclass
class DataConfig:
    """Training data.

    ``train: embedded`` uses the photos that ship with scikit-image/matplotlib (see
    ``robustsr_bench.data.embedded``); ``train: folder`` reads HR images from ``hr_dir`` and
    makes LR on the fly, or reads pairs when ``lr_dir`` is set too. ``edge_dir`` (optional, e.g.
    BAPD's ``train_EDGE_sub``) holds precomputed HR edge maps, matched to HR images by file stem;
    the aligned crop is added to each sample as ``edge``. Methods that need edges compute them on
    the fly when it is empty.

    ``train`` may also name a registered dataset (``list datasets``: DIV2K, DF2K, BAPD,
    ``DIV2K_sub`` after ``data prepare DIV2K``, ...), read in its published layout from
    ``root`` (``--data-root``; empty: ``$ROBUSTSR_DATA``), split ``split`` (empty: the
    dataset's first). ``root`` says where the data is, not what it is, so it is left out of the
    run id.
    """

    train: str = "embedded"
    hr_dir: str = ""
    lr_dir: str = ""
    edge_dir: str = ""
    root: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        check(self.train != "folder" or bool(self.hr_dir), "data.hr_dir", self.hr_dir,
              "a folder of HR images when data.train=folder")


@dataclass
class EvalConfig:
    """Evaluation protocol: which suites (columns of the table) and metrics.

    ``save_images`` names the held-out images (file stems) whose SR outputs are kept as
    ``<run>/images/<suite>/<stem>.png`` for the report's visual comparisons (our choice: one
    image by default, to keep run folders small). It never changes a number, so it is left out
    of the run id.

    ``metrics`` must all be computed: a run whose metric files are missing refuses to start.
    ``optional_metrics`` (our choice, default none) are computed where their package and
    pretrained files are present; otherwise the run records them as unavailable with the reason
    and the table shows them as n/a. Whether a file happens to be present is a fact of the
    machine, not of the experiment, so this list is left out of the run id too.

    Tiled inference (:mod:`robustsr_bench.tiling`) bounds memory on large images: an LR image of
    more than ``tile_budget_mp`` megapixels (default 0.25, e.g. 512x512) is restored in core
    tiles of ``tile_size`` LR pixels (default 256; 0 = never tile) with ``tile_overlap`` (16)
    pixels of context per side, neighbours cross-faded over ``tile_blend`` (8) pixels each side
    of their edge. Only methods that train a feed-forward generator are tiled (test-time methods
    such as DDSR optimise per image). Tiling changes outputs only by rounding when the network's
    receptive field fits the overlap, and otherwise only near seams, so like the other memory
    knobs these fields are left out of the run id (our choice).
    """

    suites: list[str] = field(default_factory=lambda: ["clean"])
    metrics: list[str] = field(default_factory=lambda: ["psnr_y", "ssim_y"])
    images: str = "embedded"
    save_images: list[str] = field(default_factory=lambda: ["astronaut"])
    optional_metrics: list[str] = field(default_factory=list)
    tile_size: int = 256
    tile_overlap: int = 16
    tile_blend: int = 8
    tile_budget_mp: float = 0.25

    def __post_init__(self) -> None:
        check(self.tile_size >= 0, "eval.tile_size", self.tile_size, "an integer >= 0 (0 = off)")
        check(self.tile_overlap >= 0, "eval.tile_overlap", self.tile_overlap, "an integer >= 0")
        check(0 <= self.tile_blend <= self.tile_overlap, "eval.tile_blend", self.tile_blend,
              "an integer in [0, eval.tile_overlap]")
        check(self.tile_budget_mp >= 0, "eval.tile_budget_mp", self.tile_budget_mp,
              "a number >= 0 (LR megapixels; 0 = tile every image larger than one tile)")


@dataclass
class RuntimeConfig:
    """How a run executes; never changes its numbers, so it is left out of the run id.

    ``world_size``: processes (one per GPU, gloo on CPU) training the run data-parallel; the
    global batch stays ``train.batch_size``. Same data and schedule as one process; only the
    attack noise is drawn per rank, i.e. the run differs from the one-process run as another
    noise draw would (``robustsr_bench.distributed``), so it is in ``runtime`` and recorded in
    ``summary.json`` (our choice). ``dist_timeout_min``: how long a rank waits for the others
    (rank 0 alone evaluates a baseline before its fine-tune starts on every rank).

    Speed knobs, all off by default: ``bf16`` runs the training step under bfloat16 autocast on
    CUDA (``bf16_cpu``: on CPU too, where only CPUs with native bf16 gain); ``channels_last``
    keeps G, D and their inputs in NHWC, which cuDNN / oneDNN convolutions prefer; ``compile``
    wraps every RRDB block of G in ``torch.compile`` (parameter names unchanged). fp32 results
    are reproduced to rounding by ``channels_last`` and ``compile``, and to bf16 precision by
    ``bf16`` (tests/test_attack_speed.py checks the tolerances).

    ``fused_adam`` (on by default) updates all of a network's parameters with Adam's fused kernel
    (one vectorised pass; torch's default is ~10 elementwise passes per tensor) where torch has
    one for the device: the same update to float rounding, and a paper-size ESRGAN step on CPU
    took 0.94x the time of torch's default Adam (median of 6 interleaved rounds; README). DDSR's
    per-image solver builds its two optimisers the same way (:mod:`robustsr_bench.optim`).
    """

    device: str = "auto"
    num_workers: int = 0
    log_every: int = 50
    progress: bool = True
    bf16: bool = False
    bf16_cpu: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_adam: bool = True
    world_size: int = 1
    dist_timeout_min: float = 120.0

    def __post_init__(self) -> None:
        check_device_name(self.device)
        check(self.log_every >= 1, "runtime.log_every", self.log_every, "an integer >= 1")
        check(self.num_workers >= 0, "runtime.num_workers", self.num_workers, "an integer >= 0")
        check(self.world_size >= 1, "runtime.world_size", self.world_size, "an integer >= 1")
        check(self.dist_timeout_min > 0, "runtime.dist_timeout_min", self.dist_timeout_min,
              "a number > 0")


def check_device_name(name: str) -> None:
    """The spelling of ``runtime.device`` (whether this machine has it: ``trainer``)."""
    check(bool(_DEVICE.match(name)), "runtime.device", name,
          "auto, cpu, cuda, cuda:N or mps (--device)")


@dataclass
class RunConfig:
    """Everything that defines one run. Method adapters append their own sections."""

    method: str = "esrgan"
    ablation: str = ""
    profile: str = "smoke"
    seed: int = 0
    scale: int = 4
    model: ModelConfig = field(default_factory=ModelConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        check(self.scale in (2, 3, 4), "scale", self.scale, "one of: 2, 3, 4")
        check(self.seed >= 0, "seed", self.seed, "an integer >= 0")


# ---------------------------------------------------------------------------------------------
# values


def parse_value(text: str) -> Any:
    """Parse an override value: YAML scalars/lists plus ``a/b`` fractions (``14/255``) and
    exponent numbers (``1e12``); a fraction over zero is a :class:`ConfigError`."""
    if _FRACTION.match(text):
        return _number(text)
    try:
        return _convert_fractions(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def _number(text: str) -> Any:
    """``a/b`` -> float; ``1e12`` -> int when whole (an iteration count), else float."""
    match = _FRACTION.match(text)
    if match:
        if float(match.group(2)) == 0:
            raise ConfigError(f"{text.strip()!r} divides by zero; expected a number such as 8/255")
        return float(match.group(1)) / float(match.group(2))
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def _convert_fractions(obj: Any) -> Any:
    """Turn every ``a/b`` or ``1e12`` string inside a YAML document into a number."""
    if isinstance(obj, str):
        return _number(obj) if _FRACTION.match(obj) or _EXPONENT.match(obj) else obj
    if isinstance(obj, Mapping):
        return {k: _convert_fractions(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert_fractions(v) for v in obj]
    return obj


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping safely; an empty file is an empty mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return _convert_fractions(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.iters=10", "attack.eps=14/255"]`` -> ``{"train.iters": 10, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. train.iters=100")
        try:
            out[key] = parse_value(value)
        except ConfigError as exc:
            raise ConfigError(f"--set {key}: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# schema and merging


def schema_for(options: type | None) -> type:
    """The run config dataclass for a method: :class:`RunConfig` plus the method's sections."""
    if options is None:
        return RunConfig
    hints = typing.get_type_hints(options)  # resolves string annotations (__future__ annotations)
    extra = [(f.name, hints[f.name], f) for f in dataclasses.fields(options)]
    return dataclasses.make_dataclass(f"{options.__name__}RunConfig", extra, bases=(RunConfig,))


def _dotted_to_nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are leaves."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _valid_keys(base: DictConfig, dotted: str) -> str:
    node: Any = base
    for part in dotted.split(".")[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            break
    keys = list(node.keys()) if isinstance(node, DictConfig) else []
    return ", ".join(str(k) for k in keys)


def merge_layer(base: DictConfig, layer: Mapping[str, Any], source: str) -> DictConfig:
    """Merge one layer (nested or dotted keys) into the typed config, naming ``source`` on error."""
    nested = _dotted_to_nested(flatten(layer)) if layer else {}
    for dotted, value in flatten(nested).items():
        try:
            OmegaConf.update(base, dotted, value, merge=True)
        except (oc_errors.ConfigKeyError, oc_errors.ConfigAttributeError, AttributeError,
                KeyError):
            raise ConfigError(f"{source}: unknown key '{dotted}'; valid keys here: "
                              f"{_valid_keys(base, dotted)}") from None
        except oc_errors.ValidationError as exc:
            raise ConfigError(f"{source}: {dotted}={value!r} has the wrong type "
                              f"({_short(exc)})") from None
    return base


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0]


def typed_base(schema: type) -> DictConfig:
    base = OmegaConf.structured(schema)
    OmegaConf.set_struct(base, True)
    return base


def to_object(cfg: DictConfig) -> Any:
    """Instantiate the dataclasses; their ``__post_init__`` range checks run here."""
    try:
        return OmegaConf.to_object(cfg)
    except oc_errors.ValidationError as exc:
        raise ConfigError(_short(exc)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON/YAML-safe dict of a config dataclass."""
    return dataclasses.asdict(cfg)


# Fields added after run records were committed, with the value that means "absent": the hash
# leaves them out while they hold it (or null), so the records keep their run ids.
ADDED_FIELDS = {("data", "split"): "", ("attack", "remove_colour_shift"): False}

# Facts of the machine or pure memory knobs, not of the experiment (see EvalConfig).
UNHASHED_EVAL = ("save_images", "optional_metrics", "tile_size", "tile_overlap", "tile_blend",
                 "tile_budget_mp")


def config_hash(cfg: Any) -> str:
    """Stable hash of everything that changes a run's numbers (see :func:`hash_config_dict`)."""
    return hash_config_dict(to_dict(cfg))


def hash_config_dict(data: dict[str, Any], evaluation: bool = True) -> str:
    """Hash of a saved or resolved config dict, without what never changes a run's numbers:
    ``runtime``, ``data.root``, the :data:`UNHASHED_EVAL` fields of ``eval``, and fields
    added since that still hold their "absent" default (so older run ids stay valid).
    ``eval.images: embedded`` hashes as the current held-out file list, so enlarging the embedded
    split gives new run ids instead of reusing records scored on fewer photos.
    ``evaluation=False`` drops the whole ``eval`` section (see :func:`training_hash`).
    """
    data = copy.deepcopy(data)
    data.pop("runtime", None)
    data.get("data", {}).pop("root", None)
    for (section, key), absent in ADDED_FIELDS.items():
        fields = data.get(section)
        if isinstance(fields, dict) and key in fields and fields[key] in (absent, None):
            fields.pop(key)
    for key in UNHASHED_EVAL:
        data.get("eval", {}).pop(key, None)
    if data.get("eval", {}).get("images") == "embedded":
        data["eval"]["images"] = identity()
    if not evaluation:
        data.pop("eval", None)
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def training_hash(data: dict[str, Any]) -> str:
    """The hash of how a model is trained: the run-id hash without the ``eval`` section. A
    checkpoint belongs to it (changing only what a run is evaluated on reuses the trained
    weights), and the report tells current records from stale ones by it."""
    return hash_config_dict(data, evaluation=False)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
