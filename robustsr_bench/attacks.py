"""Adversarial perturbations shared by the robust methods.

* :func:`linf_pgd` — L-inf PGD on an input tensor with a (structured) random start: RSR's attack,
  BAPD's pixel-level attack and AND's ``no_neural_degradation`` ablation.
* :func:`group_l2_pgd` — PGD on a network's *parameters* in a group-weighted L2 ball around a
  starting point (AND's adversarial degradation), with :func:`project_group_l2` and
  :func:`random_group_l2` (AND's ``no_adversarial`` ablation).
* :func:`frozen` — no parameter gradient is computed or accumulated while an attack runs, so the
  attacked networks' weights, ``.grad`` and optimiser state are exactly as before.

Attacks only ever need gradients with respect to their own variables; freezing the networks'
parameters also skips the weight-gradient half of every backward pass, which is what makes an
attack iteration cheaper than a training step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attack_options import LinfPGDConfig


def run_linf_pgd(cfg: LinfPGDConfig, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """:func:`linf_pgd` of ``x`` with the settings of ``cfg``."""
    return linf_pgd(x, loss_fn, cfg.eps, cfg.alpha, cfg.iters, cfg.structure, cfg.random_start)


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
    The small size is ``round(H / structure)`` (at least 1), our choice where ``H / structure``
    is fractional. Every leading dimension (batch, channel) gets independent values; ``like`` may
    have any number of them.
    """
    if structure < 1:
        raise ValueError(f"structure={structure} is invalid; expected a number >= 1")
    h, w = like.shape[-2:]
    small = (max(1, round(h / structure)), max(1, round(w / structure)))
    noise = torch.empty(*like.shape[:-2], *small, device=like.device, dtype=like.dtype)
    noise.uniform_(-eps, eps)
    if small != (h, w):
        flat = noise.reshape(1, -1, *small)  # F.interpolate wants exactly one batch+channel pair
        noise = F.interpolate(flat, size=(h, w), mode="nearest").reshape(like.shape)
    return noise


def project_linf(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    """Project onto the eps-ball around ``x`` intersected with the valid image range [0, 1]."""
    delta = (x_adv - x).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def linf_pgd(x: Tensor, loss_fn: Callable[[Tensor], Tensor], eps: float, alpha: float,
             iters: int, structure: float = 1.0, random_start: bool = True) -> Tensor:
    """Maximise ``loss_fn(x_adv)`` over ``||x_adv - x||_inf <= eps``, ``x_adv`` in [0, 1].

    Madry et al.'s PGD as RSR uses it (its Eq. 2): start from ``x`` plus :func:`structured_noise`
    projected back, then ``iters`` signed-gradient ascent steps of size ``alpha``, each followed by
    the projection. ``x`` must itself lie in [0, 1] (a valid image), else the range clip may move
    ``x_adv`` further than ``eps`` from it. With ``iters=0`` and ``random_start=False`` the result
    equals ``x`` exactly (a disabled attack changes nothing).

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


# -- parameter-space attacks (AND) ------------------------------------------------------------
#
# AND attacks the *parameters* of a degradation network instead of pixels. The ball is an L2 ball
# in which every tensor's deviation is multiplied by its group weight (conv 1, noise 10, slope 50
# in AND): substituting ``u = w * (theta - theta0)`` makes it a plain L2 ball of radius ``radius``
# in ``u``, so projection is a rescale and the steepest-ascent step of length ``step`` in the
# weighted norm is ``delta += step * (g / w**2) / ||g / w||``.


def group_l2_norm(delta: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sqrt(sum_k ||weights[k] * delta[k]||^2)``: the weighted L2 norm of a parameter deviation."""
    total = sum((weights[k] * d.detach().double()).pow(2).sum() for k, d in delta.items())
    return torch.as_tensor(total).sqrt()


def project_group_l2(delta: Mapping[str, Tensor], weights: Mapping[str, float],
                     radius: float) -> dict[str, Tensor]:
    """Rescale ``delta`` onto the weighted L2 ball of ``radius`` (unchanged when inside)."""
    norm = float(group_l2_norm(delta, weights))
    factor = min(1.0, radius / norm) if norm > 0 else 1.0
    return {k: d * factor for k, d in delta.items()}


def random_group_l2(like: Mapping[str, Tensor], weights: Mapping[str, float],
                    radius: float) -> dict[str, Tensor]:
    """A uniformly random direction on the weighted L2 sphere of ``radius`` (global torch RNG)."""
    u = {k: torch.randn_like(t) for k, t in like.items()}
    norm = float(group_l2_norm(u, {k: 1.0 for k in u}))
    return {k: v * (radius / norm) / weights[k] for k, v in u.items()}


def group_l2_pgd(theta0: Mapping[str, Tensor], weights: Mapping[str, float],
                 loss_fn: Callable[[dict[str, Tensor]], Tensor], radius: float, step: float,
                 iters: int, constrain: Callable[[dict[str, Tensor]], dict[str, Tensor]]
                 | None = None) -> dict[str, Tensor]:
    """Maximise ``loss_fn(theta)`` over ``||weights * (theta - theta0)||_2 <= radius`` by PGD.

    Starts at ``theta0``; each iteration takes a normalised steepest-ascent step of length
    ``step`` in the weighted norm, projects back onto the ball, then applies ``constrain`` (a
    per-entry clamp onto a box that contains ``theta0``, so it never leaves the ball). Tensors
    that do not influence the loss get a zero gradient. Wrap the networks ``loss_fn`` runs but
    does not attack in :func:`frozen`. Returns detached tensors.
    """
    theta0 = {k: t.detach() for k, t in theta0.items()}
    delta = {k: torch.zeros_like(t) for k, t in theta0.items()}
    for _ in range(iters):
        leaves = {k: (theta0[k] + delta[k]).requires_grad_(True) for k in theta0}
        grads = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), allow_unused=True)
        scaled = {k: torch.zeros_like(theta0[k]) if g is None else g.detach() / weights[k]
                  for k, g in zip(leaves, grads)}
        gnorm = float(group_l2_norm(scaled, {k: 1.0 for k in scaled}))
        if gnorm > 0:
            delta = {k: delta[k] + (step / gnorm) * scaled[k] / weights[k] for k in delta}
        delta = project_group_l2(delta, weights, radius)
        if constrain is not None:
            theta = constrain({k: theta0[k] + delta[k] for k in theta0})
            delta = {k: theta[k] - theta0[k] for k in theta0}
    return {k: (theta0[k] + delta[k]).detach() for k in theta0}
