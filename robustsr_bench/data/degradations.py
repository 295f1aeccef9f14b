"""Degradation pipelines: the op language of evaluation suites and of on-the-fly LR images.

Everything works on torch tensors NCHW float in [0, 1]. Every random choice comes from an explicit
``numpy.random.Generator`` (never a global RNG, never torch's): a suite is then a pure function of
its seed, identical on CPU and GPU and independent of whatever else the process has drawn.

A degradation *pipeline* is a list of op dicts, as written in ``configs/suites/*.yaml``::

    - {op: blur, sigma: [0.2, 3], sigma_y: [0.2, 3], theta: [-3.1416, 3.1416], size: 21}
    - {op: downscale}                       # antialiased bicubic by the suite's scale
    - {op: resize, factor: [0.15, 1.5], mode: [area, bilinear, bicubic]}
    - {op: noise, sigma: 15/255, gray_prob: 0.4}
    - {op: poisson, scale: [0.05, 3]}
    - {op: jpeg, quality: [30, 95]}
    - {op: resize_to_target}                # exactly H/scale x W/scale, random mode
    - {op: one_of, probs: [0.5, 0.5], choices: [[...ops...], [...ops...]]}

A two-number list is a range drawn uniformly per application (integers for ``quality``); a list of
mode names is a uniform choice; numbers may be fraction strings like ``"14/255"``. Every op also
takes ``prob`` (apply with this probability). ``resize`` also takes ``updown_prob: [up, down,
keep]`` (Real-ESRGAN's way of drawing a factor: up in [1, hi], down in [lo, 1], or 1) and
``base: input|target`` (scale the current size, or the final LR size as Real-ESRGAN's second
stage does).

Two resizes on purpose: ``downscale`` is MATLAB's antialiased bicubic ``imresize`` (the literature's
"bicubic LR"), while ``resize``/``resize_to_target`` call ``F.interpolate`` without antialiasing,
as Real-ESRGAN does, because its aliasing is part of the degradation it models.

The caller crops the HR to a multiple of ``scale`` first (:func:`mod_crop`); :func:`apply_ops`
then guarantees an LR of exactly ``(H // scale, W // scale)`` and quantises it to 8-bit levels,
so LR made on the fly equals LR saved to (and reloaded from) a PNG suite.

Here: the synthetic ops above, the registry of every op (these, :mod:`.eval_ops`' DDSR and SR-C
ops, and third-party ops), validation, execution and the Real-ESRGAN preset. How an op is
described is :mod:`.op_spec`; the image primitives are :mod:`.image_ops`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from ..errors import ConfigError
from .eval_ops import EVAL_OPS
from .image_ops import (RESIZE_MODES, add_gaussian_noise, add_poisson_noise, bicubic_resize, blur,
                        default_kernel_size, gaussian_kernel, interpolate, jpeg, parse_number)
from .io import quantize
from .op_spec import (PROB, Op, OpContext, OpTable, draw, draw_int, draw_mode, mode_choice, number,
                      odd_kernel_size, probs, range_parts, resize_base)

SYNTHETIC_OPS = OpTable()


def resize_factor(op: Mapping[str, Any], rng: np.random.Generator) -> float:
    """The factor of a ``resize``: uniform, or Real-ESRGAN's up/down/keep draw."""
    if "updown_prob" not in op:
        return draw(op["factor"], rng)
    low, high = (parse_number(v) for v in op["factor"])
    kind = int(rng.choice(3, p=[parse_number(p) for p in op["updown_prob"]]))
    if kind == 0:
        return float(rng.uniform(1.0, high))
    return float(rng.uniform(low, 1.0)) if kind == 1 else 1.0


@SYNTHETIC_OPS("blur", {"sigma": number(1e-6)},
               {"sigma_y": number(1e-6), "size": odd_kernel_size, "theta": number(-math.inf)})
def _run_blur(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    sigma_x = draw(op["sigma"], ctx.rng)
    sigma_y = draw(op["sigma_y"], ctx.rng) if "sigma_y" in op else sigma_x
    theta = draw(op.get("theta", 0.0), ctx.rng)
    size = int(op["size"]) if "size" in op else default_kernel_size(max(sigma_x, sigma_y))
    return blur(x, gaussian_kernel(size, sigma_x, sigma_y, theta))


@SYNTHETIC_OPS("downscale")
def _run_downscale(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    return bicubic_resize(x, scale_factor=1.0 / ctx.scale)


@SYNTHETIC_OPS("resize", {"factor": number(1e-3)},
               {"mode": mode_choice, "updown_prob": probs(3), "base": resize_base})
def _run_resize(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    factor = resize_factor(op, ctx.rng)
    mode = draw_mode(op.get("mode", "bicubic"), ctx.rng)
    h, w = ctx.target if op.get("base", "input") == "target" else x.shape[-2:]
    return interpolate(x, (max(1, int(h * factor)), max(1, int(w * factor))), mode)


@SYNTHETIC_OPS("resize_to_target", optional={"mode": mode_choice})
def _run_resize_to_target(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    return interpolate(x, ctx.target, draw_mode(op.get("mode", RESIZE_MODES), ctx.rng))


@SYNTHETIC_OPS("noise", {"sigma": number(0.0)}, {"gray_prob": number(0.0, 1.0)})
def _run_noise(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    sigma = draw(op["sigma"], ctx.rng)
    return add_gaussian_noise(x, sigma, ctx.rng, parse_number(op.get("gray_prob", 0.0)))


@SYNTHETIC_OPS("poisson", {"scale": number(0.0)}, {"gray_prob": number(0.0, 1.0)})
def _run_poisson(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    scale = draw(op["scale"], ctx.rng)
    return add_poisson_noise(x, scale, ctx.rng, parse_number(op.get("gray_prob", 0.0)))


@SYNTHETIC_OPS("jpeg", {"quality": number(1, 100, integer=True)})
def _run_jpeg(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    return jpeg(x, draw_int(op["quality"], ctx.rng))


def _choices(value: Any, where: str) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of op lists")
    for i, choice in enumerate(value):
        validate_ops(choice, f"{where}[{i}]")


@SYNTHETIC_OPS("one_of", {"choices": _choices}, {"probs": probs(None)})
def _run_one_of(x: Tensor, op: Mapping[str, Any], ctx: OpContext) -> Tensor:
    choices = op["choices"]
    weights = [parse_number(p) for p in op["probs"]] if "probs" in op else None
    return _run_ops(x, choices[int(ctx.rng.choice(len(choices), p=weights))], ctx)


# --------------------------------------------------------------------------- registry, validation

OPS: dict[str, Op] = {**SYNTHETIC_OPS.ops, **EVAL_OPS.ops}


def _validate_op(op: Any, where: str) -> None:
    if not isinstance(op, Mapping) or "op" not in op:
        raise ConfigError(f"{where}: {op!r} is not an op; expected a mapping with an 'op' field "
                          f"(one of {', '.join(OPS)})")
    name = op["op"]
    if name not in OPS:
        load_entry_point_ops()
    if name not in OPS:
        raise ConfigError(f"{where}: unknown op {name!r}; expected one of {', '.join(OPS)}")
    spec, here = OPS[name], f"{where} ({name})"
    valid = [*spec.required, *spec.optional]
    for key in op:
        if key != "op" and key not in valid:
            raise ConfigError(f"{here}: unknown field {key!r}; valid fields: "
                              f"{', '.join(valid) or 'none'}")
    for key in spec.required:
        if key not in op:
            raise ConfigError(f"{here}: missing field {key!r}")
    for key, check in {**spec.required, **spec.optional}.items():
        if key in op:
            check(op[key], f"{here}.{key}")
    _validate_cross_fields(name, op, here)


def _validate_cross_fields(name: str, op: Mapping[str, Any], where: str) -> None:
    """Constraints between fields: ``updown_prob`` needs a range around 1, probs match choices."""
    if name == "resize" and "updown_prob" in op:
        ends = [parse_number(v, where) for v in range_parts(op["factor"], where)]
        if len(ends) != 2 or not ends[0] <= 1.0 <= ends[1]:
            raise ConfigError(f"{where}.factor: with updown_prob, expected a range [low, high] "
                              f"with low <= 1 <= high, got {op['factor']!r}")
    if name == "one_of" and "probs" in op and len(op["probs"]) != len(op["choices"]):
        raise ConfigError(f"{where}.probs: {len(op['probs'])} probabilities for "
                          f"{len(op['choices'])} choices; expected one per choice")


def validate_ops(ops: Any, where: str = "ops") -> None:
    """Check a whole pipeline before any pixel is touched, so a typo fails in one line at once."""
    if not isinstance(ops, Sequence) or isinstance(ops, str) or not ops:
        raise ConfigError(f"{where}: expected a non-empty list of ops (one of "
                          f"{', '.join(OPS)})")
    for i, op in enumerate(ops):
        _validate_op(op, f"{where}[{i}]")


# --------------------------------------------------------------------------- execution


def _run_ops(x: Tensor, ops: Sequence[Mapping[str, Any]], ctx: OpContext) -> Tensor:
    for op in ops:
        if "prob" in op and ctx.rng.random() >= parse_number(op["prob"]):
            continue
        x = OPS[op["op"]].run(x, op, ctx)
    return x


def apply_ops(hr: Tensor, ops: Sequence[Mapping[str, Any]], scale: int,
              rng: np.random.Generator, record: dict[str, Any] | None = None) -> Tensor:
    """Degrade an NCHW HR batch (H, W multiples of ``scale``) into its ``scale``x smaller LR.

    One draw of every random parameter per call (suites call it per image with a per-image
    generator). The result is exactly ``(H // scale, W // scale)`` and quantised to 8-bit levels.
    Ops that know something the LR cannot tell (``kernel_downscale``: the true kernel) write it
    into ``record`` when one is given.
    """
    validate_ops(ops)
    h, w = hr.shape[-2:]
    if hr.ndim != 4 or h % scale or w % scale:
        raise ValueError(f"apply_ops needs an NCHW tensor with H and W multiples of scale={scale}, "
                         f"got shape {tuple(hr.shape)}; crop it with mod_crop first")
    ctx = OpContext(scale=scale, target=(h // scale, w // scale), rng=rng,
                   record=record if record is not None else {})
    lr = _run_ops(hr, ops, ctx)
    if tuple(lr.shape[-2:]) != ctx.target:
        raise ConfigError(f"ops: produce a {lr.shape[-1]}x{lr.shape[-2]} image from a {w}x{h} HR "
                          f"at scale {scale}; expected {w // scale}x{h // scale}: add "
                          f"{{op: downscale}} or end with {{op: resize_to_target}}")
    return quantize(lr)


# --------------------------------------------------------------------------- Real-ESRGAN


def _noise_choice(sigma: list[float], poisson: list[float]) -> dict[str, Any]:
    """Real-ESRGAN's noise step: Gaussian or Poisson with probability 0.5, gray 40% of the time."""
    return {"op": "one_of", "probs": [0.5, 0.5], "choices": [
        [{"op": "noise", "sigma": sigma, "gray_prob": 0.4}],
        [{"op": "poisson", "scale": poisson, "gray_prob": 0.4}],
    ]}


def _blur(sigma: list[float], **extra: Any) -> dict[str, Any]:
    return {"op": "blur", "sigma": sigma, "sigma_y": sigma, "theta": [-math.pi, math.pi], **extra}


def realesrgan_ops(level: float = 1.0) -> list[dict[str, Any]]:
    """One draw of Real-ESRGAN's second-order degradation (``train_realesrgan_x4plus.yml``).

    First stage: blur sigma [0.2, 3], resize [0.15, 1.5] (up/down/keep 0.2/0.7/0.1), Gaussian
    noise [1, 30]/255 or Poisson [0.05, 3], JPEG [30, 95]. Second stage: blur sigma [0.2, 1.5]
    with probability 0.8, resize [0.3, 1.2] of the target size (0.3/0.4/0.3), noise [1, 25]/255 or
    Poisson [0.05, 2.5], then, in random order as in Real-ESRGAN, resize to the target size and
    JPEG [30, 95].

    ``level`` in (0, 1] (SR-C's severity / 5) shrinks every strength range towards its mild end:
    blur sigma and noise to ``[lo, lo + level (hi - lo)]``, JPEG quality to ``[hi - level (hi -
    lo), hi]``; resizes and probabilities stay (they are the scale mixture, not a strength).
    Level 1 is the published pipeline. Our choice: Real-ESRGAN defines no severities.

    Simplifications: blur kernels are anisotropic Gaussians only (Real-ESRGAN also draws
    isotropic, generalised and plateau Gaussians and sinc filters, and a random kernel size
    7-21); JPEG is OpenCV's rather than DiffJPEG; the HR is not USM-sharpened first.
    """
    if not 0.0 < level <= 1.0:
        raise ConfigError(f"realesrgan level: {level!r} is out of range; expected (0, 1]")

    def up(lo: float, hi: float) -> list[float]:
        return [lo, lo + level * (hi - lo)]

    def quality() -> list[int]:
        return [round(95 - level * (95 - 30)), 95]

    random_modes = list(RESIZE_MODES)
    return [
        _blur(up(0.2, 3.0)),
        {"op": "resize", "factor": [0.15, 1.5], "updown_prob": [0.2, 0.7, 0.1],
         "mode": random_modes},
        _noise_choice(up(1 / 255, 30 / 255), up(0.05, 3.0)),
        {"op": "jpeg", "quality": quality()},
        _blur(up(0.2, 1.5), prob=0.8),
        {"op": "resize", "factor": [0.3, 1.2], "updown_prob": [0.3, 0.4, 0.3],
         "mode": random_modes, "base": "target"},
        _noise_choice(up(1 / 255, 25 / 255), up(0.05, 2.5)),
        {"op": "one_of", "probs": [0.5, 0.5], "choices": [
            [{"op": "resize_to_target"}, {"op": "jpeg", "quality": quality()}],
            [{"op": "jpeg", "quality": quality()}, {"op": "resize_to_target"}],
        ]},
    ]


# --------------------------------------------------------------------------- user ops
# Third-party packages add ops through the entry-point group below, like methods do: the entry
# point names a callable ``run(x, op, ctx) -> x`` (NCHW float in [0, 1]; ``ctx.rng`` is the only
# allowed source of randomness, ``ctx.scale``/``ctx.target`` the suite scale and LR size), with
# optional attributes ``required_fields`` / ``optional_fields`` (field names; values are the op's
# own business). No edit of this package is needed.

OP_ENTRY_POINT_GROUP = "robustsr_bench.degradations"


def register_op(name: str, run: Callable[[Tensor, Mapping[str, Any], Any], Tensor],
                required: Sequence[str] = (), optional: Sequence[str] = ()) -> None:
    """Make ``{op: name, ...}`` usable in suites; refuses to replace a built-in op."""
    if name in _BUILTIN_OPS:
        raise ConfigError(f"degradation op {name!r} is built in and cannot be replaced")

    def anything(value: Any, where: str) -> None:
        return None

    OPS[name] = Op(name, run, {k: anything for k in required},
                   {**{k: anything for k in optional}, **PROB})


_BUILTIN_OPS = frozenset(OPS)
_ENTRY_POINTS_LOADED: list[bool] = []


def load_entry_point_ops() -> None:
    """Register every op of the ``robustsr_bench.degradations`` entry-point group (once)."""
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.append(True)
    from importlib import metadata

    for ep in metadata.entry_points(group=OP_ENTRY_POINT_GROUP):
        run = ep.load()
        register_op(ep.name, run, getattr(run, "required_fields", ()),
                    getattr(run, "optional_fields", ()))
