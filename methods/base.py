"""The method-adapter contract: what a robust-SR method says, and nothing the trainer owns.

The trainer owns data, optimisers, the ESRGAN losses, the discriminator, EMA, checkpoints and
evaluation. An adapter adds only what is specific to its method:

* ``options``: a dataclass whose fields become config sections (RSR's ``attack``);
* :meth:`Method.build_generator` / :meth:`Method.build_aux`: the networks it needs;
* :meth:`Method.make_inputs`: the robust part (attack the LR, synthesise a degradation);
* :meth:`Method.forward`: how G is run in training (one pass by default);
* :meth:`Method.extra_losses`: losses beyond the shared ESRGAN ones;
* :meth:`Method.restore`: inference (test-time methods optimise here), returning
  :class:`Restored`: the SR image and, for a blind method, the blur kernel it estimated.

What the harness must know about a method before running it is declared here once, and every
caller asks the adapter rather than deciding for itself:

* ``trains``: the shared trainer trains G (False: a test-time method, ``restore`` does the work;
  the run starts from nothing, records training data ``none`` and has no checkpoints);
* ``tiles``: ``restore`` is one feed-forward pass of ``net``, so evaluation may compute it tile by
  tile on images over ``eval.tile_budget_mp`` (False where it optimises per image or interpolates);
* :meth:`Method.needs_vgg`: whether a run needs the VGG19 weights (the GAN objective's perceptual
  loss when it trains, plus what the adapter's own attacks or losses use: :meth:`needs_perceptual`).

Adding a method means one module in ``methods/`` and one YAML in ``configs/methods/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from robustsr_bench.nets.rrdbnet import RRDBNet


@dataclass
class Batch:
    """One training batch. ``lq`` is what G sees; ``extras`` carries e.g. edge maps."""

    lq: Tensor
    gt: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.lq.to(device), self.gt.to(device),
                     {k: v.to(device) for k, v in self.extras.items()})


@dataclass(frozen=True)
class Restored:
    """What :meth:`Method.restore` returns for one LR image: the SR image (1x3xHxW in [0, 1])
    and, from a blind method that estimates it (DDSR), the 2-D blur kernel it found (None
    otherwise). Evaluation scores the kernel where the suite knows the true one."""

    sr: Tensor
    kernel: Tensor | None = None


@dataclass
class Outputs:
    """What :meth:`Method.forward` produced; the shared losses use ``sr``."""

    sr: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Modules:
    """The networks of a run. ``g`` is trained (and EMA-averaged) by the trainer; ``d`` exists in
    the GAN profile; ``aux`` holds method networks the trainer does not optimise (AND's F)."""

    g: nn.Module
    d: nn.Module | None = None
    aux: dict[str, nn.Module] = field(default_factory=dict)


@dataclass
class TrainContext:
    """What the trainer lends an adapter during a step.

    ``content_loss(sr, gt, pixel_weight, perceptual_weight)`` is the shared L1 + VGG perceptual
    loss (perceptual only where its weights are loaded); attacks maximise it.
    """

    cfg: Any
    step: int
    content_loss: Callable[..., Tensor]
    has_perceptual: bool


class Method:
    """Base adapter: clean training with the shared trainer, plain G(lq) inference."""

    name: ClassVar[str] = ""
    options: ClassVar[type | None] = None
    trains: ClassVar[bool] = True
    tiles: ClassVar[bool] = True

    def needs_vgg(self, cfg: Any) -> bool:
        """Whether a run of ``cfg`` needs the VGG19 weights: only a trained method does, for the
        GAN objective's perceptual loss or for what :meth:`needs_perceptual` adds."""
        return self.trains and (cfg.loss.mode == "gan" or self.needs_perceptual(cfg))

    def needs_perceptual(self, cfg: Any) -> bool:
        """Whether the adapter's own attacks or losses use the VGG19 perceptual loss (beyond
        what ``loss.mode`` asks for). Override this, not :meth:`needs_vgg`."""
        return False

    def build_generator(self, cfg: Any) -> nn.Module:
        return RRDBNet(num_in_ch=3, num_out_ch=3, scale=cfg.scale, num_feat=cfg.model.num_feat,
                       num_block=cfg.model.num_block, num_grow_ch=cfg.model.num_grow_ch)

    def build_aux(self, cfg: Any, device: torch.device) -> dict[str, nn.Module]:
        return {}

    def make_inputs(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Batch:
        return batch

    def forward(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Outputs:
        return Outputs(sr=modules.g(batch.lq))

    def extra_losses(self, batch: Batch, outputs: Outputs, modules: Modules,
                     ctx: TrainContext) -> dict[str, Tensor]:
        return {}

    @torch.no_grad()
    def restore(self, lr: Tensor, net: nn.Module | None, cfg: Any) -> Restored:
        """Super-resolve ``lr`` (1x3xhxw in [0, 1]) with the trained (EMA) generator ``net``.

        Everything an image's restoration produced is in the return value, so the adapter keeps
        no state between images (a blind method returns its kernel estimate with the image)."""
        assert net is not None
        return Restored(net(lr).clamp(0, 1))
