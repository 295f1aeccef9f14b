"""Speed knobs of a run (``runtime.bf16``, ``bf16_cpu``, ``channels_last``, ``compile``,
``fused_adam``).

Each knob changes how the same computation runs, not what it computes (``bf16`` lowers its
precision): the trainer calls :func:`prepare` once on its networks and enters :func:`autocast`
around every forward pass. They are off by default (our choice: results reproduce bit for bit
unless asked otherwise); on CUDA a paper-scale run would typically turn on ``bf16`` and
``channels_last`` (tensor cores want NHWC bf16), and ``compile`` for long runs where the
compilation minutes pay off. ``fused_adam`` is the exception, on by default: Adam's fused kernel
is the same update to float rounding, in one pass instead of several per tensor
(:mod:`robustsr_bench.optim` builds it). The tests run
every path on CPU (``compile`` with the quick ``aot_eager`` backend), so none is GPU-only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustsr_bench.methods.base import Modules


def autocast_enabled(runtime: Any, device: torch.device) -> bool:
    """bf16 autocast on CUDA when ``bf16``; on CPU only when ``bf16_cpu`` asks for it too."""
    return bool(runtime.bf16) and (device.type == "cuda" or bool(runtime.bf16_cpu))


def autocast(runtime: Any, device: torch.device) -> torch.autocast:
    """The autocast context of a training step (disabled unless :func:`autocast_enabled`)."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=autocast_enabled(runtime, device))


def to_channels_last(*nets: nn.Module | None) -> None:
    """Store every 4-D parameter and buffer NHWC; convolutions then return NHWC outputs."""
    for net in nets:
        if net is not None:
            net.to(memory_format=torch.channels_last)


def compile_blocks(g: nn.Module, backend: str = "inductor") -> int:
    """``torch.compile`` every block of G's trunk in place (``nn.Module.compile``), returning
    how many. Compiling the repeated block rather than the whole generator keeps the parameter
    names (checkpoints, EMA) and every entry point the methods use (``head``, ``body_features``,
    ``tail``) unchanged, and the identical blocks share one compiled graph. ``backend``: torch's
    default ``inductor`` (generates C++/Triton; minutes of compilation on a small CPU), or e.g.
    ``aot_eager`` to check the traced graphs quickly."""
    body = getattr(g, "body", None)
    blocks = list(body) if isinstance(body, nn.Sequential) else []
    for block in blocks:
        block.compile(backend=backend)
    return len(blocks)


def prepare(modules: Modules, runtime: Any, *others: nn.Module | None) -> None:
    """Apply ``channels_last`` to every network of the run (``others``: G's EMA, the VGG of the
    perceptual loss) and ``compile`` to G only (the EMA copy only evaluates)."""
    if runtime.channels_last:
        to_channels_last(modules.g, modules.d, *modules.aux.values(), *others)
    if runtime.compile:
        compile_blocks(modules.g)
