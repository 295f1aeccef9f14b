"""A peer for ``bench``: ESRGAN's training step written to BasicSR's published one.

BasicSR 1.4.2 cannot be imported on this torchvision (see /work/shared/ENVIRONMENT.md), so
:class:`BasicSRStep` re-states its ``ESRGANModel.optimize_parameters`` and ``model_ema`` line for
line: G = RRDBNet 64x23 as spandrel builds it (spandrel's ESRGAN architecture, loaded from our
generator's state dict, so both start from the same weights), the VGG-style discriminator, L1 x
0.01 + VGG19 ``conv5_4`` (before ReLU, ImageNet-normalised input) x 1.0 + RaGAN x 0.005, Adam
(1e-4, betas 0.9/0.99), MultiStepLR, EMA 0.999 by ``mul_``/``add_`` per parameter. Its D step runs
D three times (BasicSR recomputes ``D(output)`` for the fake term; our trainer reuses it).

VGG19's weights are absent offline: the peer's VGG19 is randomly initialised, which costs the
same FLOPs as the trained one (timing only; no number from it is a result).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .nets.discriminator import VGGStyleDiscriminator

CONV5_4 = 34  # index of conv5_4 in torchvision's vgg19().features
MILESTONES = [50000, 100000, 200000, 300000]


def _bce(pred: Tensor, target: float) -> Tensor:
    """BasicSR's ``GANLoss(gan_type='vanilla')``: BCE with logits against a constant label."""
    return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, target))


class BasicSRStep:
    """One BasicSR ESRGAN training iteration (``step(lq, gt)``) on ``g_state``'s weights."""

    def __init__(self, g_state: dict[str, Tensor], patch: int, device: torch.device,
                 seed: int = 0, d_feat: int = 64):
        from spandrel import ModelLoader
        from torchvision.models import vgg19

        torch.manual_seed(seed)
        self.g = ModelLoader().load_from_state_dict(g_state).model.to(device).train()
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.d = VGGStyleDiscriminator(3, d_feat, patch).to(device).train()
        self.vgg = vgg19(weights=None).features[: CONV5_4 + 1].to(device).eval()
        self.vgg.requires_grad_(False)
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.sched = [torch.optim.lr_scheduler.MultiStepLR(o, MILESTONES, 0.5)
                      for o in (self.opt_g, self.opt_d)]

    def _features(self, x: Tensor) -> Tensor:
        return self.vgg((x - self.mean) / self.std)

    def _percep(self, x: Tensor, gt: Tensor) -> Tensor:
        return F.l1_loss(self._features(x), self._features(gt.detach()))

    def step(self, lq: Tensor, gt: Tensor) -> dict[str, float]:
        """``optimize_parameters`` then ``model_ema(decay=0.999)``; returns the losses."""
        for p in self.d.parameters():
            p.requires_grad = False
        self.opt_g.zero_grad()
        output = self.g(lq)
        l_pix = 0.01 * F.l1_loss(output, gt)
        l_percep = 1.0 * self._percep(output, gt)
        real_d_pred = self.d(gt).detach()
        fake_g_pred = self.d(output)
        l_g_real = _bce(real_d_pred - torch.mean(fake_g_pred), 0.0)
        l_g_fake = _bce(fake_g_pred - torch.mean(real_d_pred), 1.0)
        l_gan = 0.005 * (l_g_real + l_g_fake) / 2
        (l_pix + l_percep + l_gan).backward()
        self.opt_g.step()

        for p in self.d.parameters():
            p.requires_grad = True
        self.opt_d.zero_grad()
        fake_d_pred = self.d(output).detach()
        real_d_pred = self.d(gt)
        l_d_real = _bce(real_d_pred - torch.mean(fake_d_pred), 1.0) * 0.5
        l_d_real.backward()
        fake_d_pred = self.d(output.detach())
        l_d_fake = _bce(fake_d_pred - torch.mean(real_d_pred.detach()), 0.0) * 0.5
        l_d_fake.backward()
        self.opt_d.step()
        for sched in self.sched:
            sched.step()
        self._model_ema(0.999)
        losses = {"l_pix": l_pix, "l_percep": l_percep, "l_gan": l_gan, "l_d": l_d_real + l_d_fake}
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def _model_ema(self, decay: float) -> None:
        g = dict(self.g.named_parameters())
        for name, p_ema in self.g_ema.named_parameters():
            p_ema.data.mul_(decay).add_(g[name].data, alpha=1 - decay)


def peer_for(trainer: Any) -> BasicSRStep:
    """The BasicSR step on ``trainer``'s generator weights, D width and patch size."""
    cfg = trainer.cfg
    return BasicSRStep(trainer.modules.g.state_dict(), cfg.train.patch_size, trainer.device,
                       cfg.seed, cfg.disc.num_feat)


def share_weights(peer: BasicSRStep, trainer: Any) -> None:
    """Give the peer the trainer's G, D and VGG weights, so that the two steps' losses can be
    compared number for number (each step's losses depend only on the weights it starts from)."""
    _copy_in_order(trainer.modules.g, peer.g)
    peer.d.load_state_dict(trainer.modules.d.state_dict())
    peer.vgg.load_state_dict(trainer.perceptual.extractor.features.state_dict())


@torch.no_grad()
def _copy_in_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy ``src``'s tensors into ``dst`` by position: spandrel renames our generator's keys
    (old-ESRGAN layout) but keeps their order and shapes."""
    pairs = list(zip(src.state_dict().values(), dst.state_dict().values(), strict=True))
    for a, b in pairs:
        if a.shape != b.shape:
            raise ValueError(f"generator tensors differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        b.copy_(a)
