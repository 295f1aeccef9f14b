"""Adversarial perturbations shared by the robust methods.

* :func:`linf_pgd` — L-inf PGD on an input tensor with a (structured) random start: RSR's attack,
  BAPD's pixel-level attack and AND's ``no_neural_degradation`` ablation.
* :func:`frozen` — no parameter gradient is computed or accumulated while an attack runs, so the
  attacked networks' weights, ``.grad`` and optimiser state are exactly as before.

Attacks only ever need gradients with respect to their own variables; freezing the networks'
parameters also skips the weight-gradient half of every backward pass, which is what makes an
attack iteration cheaper than a training step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def frozen(*nets: nn.Module | None) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on every parameter; restore the flags after."""
    params = [p for net in nets if net is not None for p in net.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def structured_noise(like: Tensor, eps: float, structure: float) -> Tensor:
    """U(-eps, eps) drawn at ``1/structure`` resolution and nearest-resized to ``like``'s size.

    With ``structure > 1`` neighbouring pixels share a value: RSR's "grouped" real-world noise.
    """
    h, w = like.shape[-2:]
    small = (max(1, round(h / structure)), max(1, round(w / structure)))
    noise = torch.empty(*like.shape[:-2], *small, device=like.device, dtype=like.dtype)
    noise.uniform_(-eps, eps)
    if small != (h, w):
        noise = F.interpolate(noise, size=(h, w), mode="nearest")
    return noise


def project_linf(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    """Project onto the eps-ball around ``x`` intersected with the valid image range [0, 1]."""
    delta = (x_adv - x).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def linf_pgd(x: Tensor, loss_fn: Callable[[Tensor], Tensor], eps: float, alpha: float,
             iters: int, structure: float = 1.0, random_start: bool = True) -> Tensor:
    """Maximise ``loss_fn(x_adv)`` over ``||x_adv - x||_inf <= eps``, ``x_adv`` in [0, 1].

    ``loss_fn`` must reduce to a scalar; wrap the networks it runs in :func:`frozen`. The result
    is detached. Randomness comes from torch's global generator (the trainer seeds it per step).
    """
    x = x.detach()
    x_adv = project_linf(x, x + structured_noise(x, eps, structure), eps) if random_start else x
    for _ in range(iters):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        x_adv = project_linf(x, x_adv.detach() + alpha * grad.sign(), eps)
    return x_adv.detach()
