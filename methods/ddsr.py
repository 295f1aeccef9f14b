"""DDSR: test-time blind SR with a deep image prior and a meta-learned kernel generator.

DDSR (XYLGroup, seed ``ddsr-readme.txt``; ``../shared/METHODS.md`` section 4) has no training set.
For every LR image it optimises, from scratch, two networks:

* an image prior ``x = DIP(z)``: the deep-image-prior skip U-Net fed with fixed noise ``z`` at HR
  size (:class:`~robustsr_bench.nets.dip_unet.SkipUNet`);
* a kernel generator ``k = G()``: an MLP from a fixed code to a softmax kernel
  (:class:`~robustsr_bench.nets.kernel_generator.KernelGenerator`),

so that the forward model ``w * ((x (*) k) subsampled by s)`` (circular padding;
:func:`~robustsr_bench.data.blur_kernels.blur_downsample`) reproduces the LR image. ``w`` is the
observation weight: the partial-cover mask and the darkness factor.

The loop, as the public code runs it:

1. warm-up ("random kernel learning"): ``warmup`` Adam steps regressing ``G`` onto one random
   anisotropic Gaussian kernel per step (MSE);
2. ``image_steps // inner`` outer steps; each draws ``samples`` random kernels, scores how well
   each explains the LR through the current ``x`` (MSE), turns the scores into focal weights
   ``w_i = -(1 - p_i)^2 log(p_i + 1e-3)`` with ``p_i = (e_i - min e) / (sum_j (e_j - min e) +
   1e-5)`` and takes one ``G`` step on ``sum_i w_i MSE(G(), k_i)`` ("meta-learning");
3. then ``inner`` image steps: ``x`` takes a step on the data loss (``1 - SSIM`` up to outer step
   ``ssim_until``, MSE after) with ``k`` frozen, plus the hyper-Laplacian prior
   ``prior_weight * sum (|grad x| + 1e-8)^0.67 / #LR values`` over four neighbour differences;
   the data loss of ``k`` with ``x`` frozen is accumulated and ``G`` steps on it every
   ``kernel_every`` global image steps (the accumulator restarts with each outer step);
4. the result is the last ``x`` and ``k`` of the loop.

Follows the source: every step, loss, schedule and default above (warm-up 200, 1000 image steps,
5 kernels, 5 image steps per outer step, kernel step every 3, SSIM for outer steps 0..80, Adam 5e-3
for the prior and 1e-4 for the generator, prior 0.001 x 0.2, kernel size ``min(4s+3, 21)``, random
kernel variances ``[0.175 s + 3 + (s-4), min(2.5 s, 10) + 10 + (s-4)]``), the DIP and MLP
architectures, and the degradation options the code names: partial cover (mask), noise (the
LR "image disturbance", 0 by default) and dark (a known darkness factor; the code then switches the
gradient prior off, see the ``dark`` ablation).

Our choice:

* Test-time only: ``trains = False`` and ``tiles = False`` (the loop needs the whole image);
  :meth:`DDSR.restore` runs the loop and returns the estimated kernel with the image
  (:class:`~robustsr_bench.methods.base.Restored`), so evaluation scores it where the suite
  knows the true kernel.
* Random kernels are centred on the bicubic pixel grid by default (``kernel.centre: aligned``;
  the code's own centring is off by ``s - 1`` HR pixels, see
  :mod:`robustsr_bench.data.blur_kernels`); ``kernel.centre: code`` restores it.
* The source is told where the cover is. Here ``forward.cover: auto`` finds it in the LR: pixels
  that are exactly 0 in every channel (the code's cover is a zero box). Truly black image content
  (astronaut's background) is then left to the prior too, so the default is ``none`` (the code's
  default case) and the ``cover`` ablation switches it on for the ``ddsr_cover`` suite. Likewise
  the darkness factor is a setting (``forward.dark``, 1 by default; the ``dark`` ablation), as the
  code's ``dark_fc`` is.
* Reproducibility: each image is restored with torch's global RNG reseeded from ``cfg.seed``
  inside a forked RNG state, so results do not depend on image order and leave the caller's RNG
  untouched. The code draws its random kernels and disturbance with numpy.
* The random-kernel draws of the meta step only weight the generator's loss, so they are scored
  under ``no_grad`` (same values, no graph); all candidates are blurred in one convolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustsr_bench.methods.base import Method, Restored
from robustsr_bench.data.blur_kernels import blur_downsample, random_gaussian_kernels
from robustsr_bench.data.kernel_options import kernel_size_for
from robustsr_bench.methods.ddsr_options import (
    DDSROptions,
    ForwardConfig,
)
from robustsr_bench.nets.dip_unet import SkipUNet
from robustsr_bench.nets.kernel_generator import KernelGenerator
from robustsr_bench.optim import adam

_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5  # the standard SSIM window of the code's SSIM module
_FOCAL_EPS, _SCORE_EPS, _PRIOR_EPS = 1e-3, 1e-5, 1e-8  # the code's numerical guards


# ---------------------------------------------------------------------------------------------
# losses


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), zero padded, per channel."""
    c = x.shape[1]
    offsets = torch.arange(_SSIM_WINDOW, dtype=x.dtype, device=x.device) - _SSIM_WINDOW // 2
    g = torch.exp(-offsets ** 2 / (2 * _SSIM_SIGMA ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(c, 1, -1, -1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, padding=_SSIM_WINDOW // 2, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)
    return (num / den).mean()


def neighbour_differences(x: Tensor) -> Tensor:
    """``x`` minus its up, up-left, left and down-left neighbours (reflection padded)."""
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    centre = p[..., 1:-1, 1:-1]
    return torch.stack([centre - p[..., :-2, 1:-1], centre - p[..., :-2, :-2],
                        centre - p[..., 1:-1, :-2], centre - p[..., 2:, :-2]])


def focal_weights(errors: Tensor) -> Tensor:
    """Weights of the random kernels from how badly each explains the LR (lower error, larger)."""
    excess = errors - errors.min()
    p = excess / (excess.sum() + _SCORE_EPS)
    return -((1 - p) ** 2) * torch.log(p + _FOCAL_EPS)


def observation_weight(lr: Tensor, fwd: ForwardConfig) -> Tensor:
    """(1, 1, h, w) weight of the forward model: darkness x (0 where the LR is covered)."""
    weight = torch.full_like(lr[:, :1], fwd.dark)
    if fwd.cover == "auto":
        weight = weight * (lr != 0).any(dim=1, keepdim=True)
    return weight


# ---------------------------------------------------------------------------------------------
# the per-image solver


class DDSRSolver:
    """DDSR on one LR image. Construct, then :meth:`warm_up` and :meth:`solve` (or :meth:`run`)."""

    def __init__(self, cfg: Any, lr: Tensor):
        self.cfg, self.scale, self.lr = cfg, cfg.scale, lr
        dev, (_, c, h, w) = lr.device, lr.shape
        self.size = kernel_size_for(cfg.scale, cfg.kernel.size)
        self.variances = cfg.kernel.variances(cfg.scale)
        self.weight = observation_weight(lr, cfg.forward)
        self.z = torch.rand(1, c, h * self.scale, w * self.scale, device=dev) * cfg.dip.input_scale
        d, k = cfg.dip, cfg.kernel
        self.dip = SkipUNet(c, c, d.channels, d.skip_channels, d.levels).to(dev)
        if cfg.runtime.channels_last:  # the image prior runs at HR size: NHWC is ~1.2x on CPU
            self.dip.to(memory_format=torch.channels_last)
            self.z = self.z.contiguous(memory_format=torch.channels_last)
        self.gen = KernelGenerator(self.size, k.code_dim, k.hidden, k.code_scale).to(dev)
        self.opt_x = adam(self.dip.parameters(), d.lr, fused=cfg.runtime.fused_adam)
        self.opt_k = adam(self.gen.parameters(), k.lr, fused=cfg.runtime.fused_adam)

    def sample_kernels(self, n: int) -> Tensor:
        return random_gaussian_kernels(n, self.size, self.scale, *self.variances,
                                       device=self.lr.device, centre=self.cfg.kernel.centre)

    def observe(self, x: Tensor, kernels: Tensor) -> Tensor:
        """The forward model: what an HR estimate ``x`` looks like through each kernel."""
        return blur_downsample(x, kernels, self.scale) * self.weight

    def data_loss(self, out: Tensor, target: Tensor, outer: int) -> Tensor:
        if outer <= self.cfg.loop.ssim_until:
            return 1 - ssim(out, target)
        return F.mse_loss(out, target)

    def prior(self, x: Tensor) -> Tensor:
        """Hyper-Laplacian gradient prior, normalised by the LR size as the code does."""
        loop = self.cfg.loop
        if loop.prior_weight == 0:
            return x.new_zeros(())
        grads = neighbour_differences(x).abs() + _PRIOR_EPS
        return loop.prior_weight * grads.pow(loop.prior_exponent).sum() / self.lr.numel()

    def warm_up(self) -> list[float]:
        """Random kernel learning: regress the generator onto random kernels; returns losses."""
        losses = []
        for _ in range(self.cfg.loop.warmup):
            loss = F.mse_loss(self.gen(), self.sample_kernels(1))
            self.opt_k.zero_grad()
            loss.backward()
            self.opt_k.step()
            losses.append(loss.item())
        return losses

    def meta_step(self) -> None:
        """Pull the generator towards the random kernels that best explain the LR."""
        n = self.cfg.loop.samples
        if n == 0:
            return
        with torch.no_grad():
            candidates = self.sample_kernels(n)
            errors = ((self.observe(self.dip(self.z), candidates) - self.lr) ** 2).mean(
                dim=(1, 2, 3))
            weights = focal_weights(errors)
        per_kernel = ((candidates - self.gen()) ** 2).mean(dim=(1, 2, 3))
        self.opt_k.zero_grad()
        (weights * per_kernel).sum().backward()
        self.opt_k.step()

    def disturbed_target(self) -> Tensor:
        amount = self.cfg.loop.disturbance
        if amount == 0:
            return self.lr
        std = float(torch.rand(())) * amount
        return self.lr + torch.randn_like(self.lr) * std

    def solve(self) -> Restored:
        """The alternating loop after warm-up; returns the last image and kernel estimates."""
        loop = self.cfg.loop
        sr = kernel = None
        for outer in range(loop.outer_steps):
            self.meta_step()
            pending: Tensor | None = None
            for inner in range(loop.inner):
                kernel = self.gen()
                sr = self.dip(self.z)
                loss_x = self.data_loss(self.observe(sr, kernel.detach()), self.disturbed_target(),
                                        outer) + self.prior(sr)
                self.opt_x.zero_grad()
                loss_x.backward()
                self.opt_x.step()
                loss_k = self.data_loss(self.observe(sr.detach(), kernel), self.lr, outer)
                pending = loss_k if pending is None else pending + loss_k
                if (outer * loop.inner + inner + 1) % loop.kernel_every == 0:
                    self.opt_k.zero_grad()
                    pending.backward()
                    self.opt_k.step()
                    pending = None
        assert sr is not None and kernel is not None
        return Restored(sr.detach().clamp(0, 1), kernel.detach()[0, 0])

    def run(self) -> Restored:
        self.warm_up()
        return self.solve()


class DDSR(Method):
    """Test-time method: nothing to train; every LR image is restored by its own optimisation."""

    name = "ddsr"
    options = DDSROptions
    trains = False
    tiles = False

    def restore(self, lr: Tensor, net: nn.Module | None, cfg: Any) -> Restored:
        devices = [lr.device.index or 0] if lr.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(cfg.seed)
            out = DDSRSolver(cfg, lr.detach()).run()
        # The kernel on the CPU, where evaluation scores it; the copy waits for the GPU's queue,
        # so the restore time evaluation records covers the whole loop.
        return Restored(out.sr, out.kernel.cpu())
