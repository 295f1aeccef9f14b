"""ESRGAN training losses: VGG perceptual loss and the relativistic average GAN (RaGAN) losses.

RaGAN convention (ESRGAN paper, BasicSR ``ESRGANModel``), with ``D`` returning raw logits and
``mean`` taken over the batch:

- generator:     0.5 * (BCE(D(hr) - mean D(sr), 0) + BCE(D(sr) - mean D(hr), 1)), with ``D(hr)``
  detached so that the generator step never updates the discriminator;
- discriminator: 0.5 * BCE(D(hr) - mean D(sr), 1) + 0.5 * BCE(D(sr) - mean D(hr), 0), where each
  term detaches the *other* prediction, exactly as BasicSR's two separate backward passes do.

The GAN loss weight (0.005 in ESRGAN) is applied by the caller to the generator loss only; the
discriminator loss is unweighted, as in BasicSR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PerceptualLoss(nn.Module):
    """``weight * L1(extractor(sr), extractor(hr))``; HR features carry no gradient.

    Within a training step every attack iteration and the G step compare against the same HR
    batch, so the HR features are computed once and reused while ``hr`` is the same, unmodified
    tensor (same object, same version counter) under the same autocast state: the values are
    exactly those a fresh computation gives, and RSR / BAPD save one VGG19 pass per reuse.
    """

    def __init__(self, extractor: nn.Module, weight: float = 1.0):
        super().__init__()
        self.extractor = extractor
        self.weight = weight
        self._cached: tuple[Tensor, tuple, Tensor] | None = None

    def target(self, hr: Tensor) -> Tensor:
        """``extractor(hr)`` without gradient, cached for the last ``hr`` (see the class)."""
        key = (hr._version, torch.is_autocast_enabled(hr.device.type))
        if self._cached is not None and self._cached[0] is hr and self._cached[1] == key:
            return self._cached[2]
        with torch.no_grad():
            features = self.extractor(hr)
        self._cached = (hr, key, features)  # holding hr keeps its memory from being reused
        return features

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self.weight * F.l1_loss(self.extractor(sr), self.target(hr))


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_generator_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """RaGAN generator loss; ``real_pred = D(hr)``, ``fake_pred = D(sr)`` with gradient to G."""
    real_pred = real_pred.detach()
    real_term = _bce(real_pred - fake_pred.mean(), 0.0)
    fake_term = _bce(fake_pred - real_pred.mean(), 1.0)
    return 0.5 * (real_term + fake_term)


def ragan_discriminator_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """RaGAN discriminator loss; ``fake_pred`` should come from ``D(sr.detach())``."""
    real_term = _bce(real_pred - fake_pred.detach().mean(), 1.0)
    fake_term = _bce(fake_pred - real_pred.detach().mean(), 0.0)
    return 0.5 * real_term + 0.5 * fake_term
