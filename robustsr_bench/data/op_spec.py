"""How a degradation op is described: its fields and their checks, its context, its draws.

An op is a function ``run(x, op, ctx) -> x`` on NCHW float tensors in [0, 1] plus the fields it
accepts, each with a check that names the suite file's field and what is valid. The op modules
(:mod:`.degradations` for the synthetic pipelines, :mod:`.eval_ops` for DDSR's known-kernel test
images and SR-C's library corruptions) describe their ops with :class:`OpTable`; the pipeline
(:mod:`.degradations`) collects the tables into one registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from ..errors import ConfigError
from .image_ops import RESIZE_MODES, parse_number

# --------------------------------------------------------------------------- field checks

Check = Callable[[Any, str], None]


def range_parts(value: Any, where: str) -> list[Any]:
    """A scalar, or the two ends of a ``[lo, hi]`` range."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ConfigError(f"{where}: {list(value)!r} is not a range; expected a number or "
                              f"[low, high]")
        return list(value)
    return [value]


def number(low: float, high: float = math.inf, integer: bool = False) -> Check:
    """A check for a number or ``[lo, hi]`` range within ``[low, high]``."""
    def check(value: Any, where: str) -> None:
        nums = [parse_number(v, where) for v in range_parts(value, where)]
        for num in nums:
            if not low <= num <= high or (integer and num != int(num)):
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"{where}: {num:g} is out of range; expected {kind} in "
                                  f"[{low:g}, {high:g}]")
        if nums[0] > nums[-1]:
            raise ConfigError(f"{where}: range {value!r} is reversed; expected [low, high]")
    return check


def odd_kernel_size(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
            or value % 2 == 0:
        raise ConfigError(f"{where}: {value!r} is not a kernel size; expected an odd integer "
                          f">= 1, e.g. 21")


def mode_choice(value: Any, where: str) -> None:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, Sequence) \
        else [value]
    bad = [n for n in names if n not in RESIZE_MODES]
    if bad or not names:
        raise ConfigError(f"{where}: {bad[0] if bad else value!r} is not a resize mode; expected "
                          f"one of {', '.join(RESIZE_MODES)} (or a list of them)")


def probs(count: int | None) -> Check:
    """A list of non-negative probabilities summing to 1 (of ``count`` items if given)."""
    def check(value: Any, where: str) -> None:
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        nums = [parse_number(v, where) for v in value] if ok else []
        if not nums or (count and len(nums) != count) or min(nums) < 0 \
                or abs(sum(nums) - 1) > 1e-6:
            size = f"{count} " if count else ""
            raise ConfigError(f"{where}: {value!r} is not a probability list; expected {size}"
                              f"non-negative numbers summing to 1")
    return check


def resize_base(value: Any, where: str) -> None:
    if value not in ("input", "target"):
        raise ConfigError(f"{where}: {value!r} is not a resize base; expected input or target")


@dataclass(frozen=True)
class Op:
    """One degradation op, described once: the fields it accepts, each with its value check
    (``prob``, the chance the op is applied, is accepted by every op), and how it runs."""

    name: str
    run: Callable[[Tensor, Mapping[str, Any], Any], Tensor]
    required: Mapping[str, Check]
    optional: Mapping[str, Check]


PROB = {"prob": number(0.0, 1.0)}


class OpTable:
    """The ops one module describes: ``@table("name", required, optional)`` on a ``run``
    function adds ``Op(name, run, ...)`` to ``table.ops`` (``prob`` is accepted by every op)."""

    def __init__(self) -> None:
        self.ops: dict[str, Op] = {}

    def __call__(self, name: str, required: Mapping[str, Check] | None = None,
                 optional: Mapping[str, Check] | None = None) -> Callable[[Callable], Callable]:
        def describe(run: Callable) -> Callable:
            self.ops[name] = Op(name, run, dict(required or {}), {**(optional or {}), **PROB})
            return run
        return describe


# --------------------------------------------------------------------------- context and draws


@dataclass(frozen=True)
class OpContext:
    """What every op may use besides its fields: the suite scale, the final LR size, the RNG,
    and ``record``, where an op leaves side outputs for the caller (the true blur kernel)."""

    scale: int
    target: tuple[int, int]
    rng: np.random.Generator
    record: dict[str, Any] = field(default_factory=dict)


def draw(value: Any, rng: np.random.Generator) -> float:
    """A number, or a uniform draw from a ``[lo, hi]`` range."""
    parts = range_parts(value, "value")
    if len(parts) == 1:
        return parse_number(parts[0])
    return float(rng.uniform(parse_number(parts[0]), parse_number(parts[1])))


def draw_int(value: Any, rng: np.random.Generator) -> int:
    """An integer, or a uniform integer draw from ``[lo, hi]`` inclusive."""
    parts = [int(parse_number(v)) for v in range_parts(value, "value")]
    return parts[0] if len(parts) == 1 else int(rng.integers(parts[0], parts[1] + 1))


def draw_mode(value: Any, rng: np.random.Generator) -> str:
    if isinstance(value, str):
        return value
    names = list(value)
    return str(names[int(rng.integers(len(names)))])
