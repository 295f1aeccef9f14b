"""AND: adversarial neural degradation (``and``; source ``shared/seeds/and-paper.txt``).

Training pairs are made from HR patches only: ``lq = F_theta(hr)``, where F is a small degradation
CNN. Every training step F is re-initialised to the identity (the anti-aliased downsampler), PGD
then searches its *parameters* for the nearby degradation that hurts G most, and G trains on it.

Follows the source:

* F = 5 basic blocks (3x3 conv, LeakyReLU with learnable negative slope, noise injection) ->
  anti-aliased average pooling with stride = scale -> 5 basic blocks -> last 3x3 conv; 64 channels
  except F's RGB input and output.
* Fast identity initialisation: slopes 1, noise strengths 0, only the centre tap of every kernel
  non-zero, centres of all but the last conv Xavier-initialised in 1x1 fan mode, their product
  (64x3) pseudo-inverted into the last conv's centre. One draw of all centre matrices, a chain of
  small matrix products and one SVD (float64): about a millisecond, not training.
* PGD over all of F's parameters, maximising G's content loss with G frozen: 5 normalised steps
  in an L2 ball around theta_id whose norm weights conv / noise / nonlinearity deviations by
  1 / 10 / 50 (``robustsr_bench.attacks.group_l2_pgd``). One G step (and D step in the GAN
  profile) follows, by the shared trainer. The paper's radius 20 / step 6 are *not* used as is:
  see "calibration" below.
* ANDNet = L1 objective (the default variant); ANDGAN = variant ``gan``: GAN objective with GAN
  weight 0.1, G initialised from ANDNet (``train.init: method:and``).
* Ablations of the paper's Table 2: ``no_adversarial`` (a random deviation of the same size),
  ``no_neural_degradation`` (adversarial additive noise on the bicubic LR), ``no_identity_init``
  (Xavier-random 3x3 kernels), ``classical`` (bicubic LR, no attack).

Calibration (``python -m robustsr_bench calibrate and`` -> ``results/calibration_and.md``): the
paper picks its budget "to make their respective intensity close to real-world degradation" but
does not say in which units parameters are measured. We count conv kernels in units of their
identity-init scale (Xavier std of the layer, ``attack.conv_norm: per_layer``), biases and noise
strengths in 8-bit levels (``attack.image_range: 255``), slopes unit-free. In those units the
paper's radius 20 is a realistic *random* deviation of a 64-channel F, but PGD finds directions
hundreds of times more damaging per unit norm, so under every parameterisation measured the
adversarial radius 20 clamps the LR; the adversarial radius is therefore read off the table where
the attacked LR's PSNR (against the identity LR) meets the eval suites' (against clean bicubic
LR), per profile, and ``no_adversarial``'s random radius (``attack.random_radius``) where the
random deviation's PSNR meets the attack's, so Table 2's "adversarial vs random" compares equal
strengths.

Our choices (each a config field, documented in ``configs/methods/and.yaml``):

* pooling (``degradation.pool``): ``bicubic`` (default), the benchmark's MATLAB ``imresize``,
  i.e. the downsampler every eval suite starts from: F's identity LR is the clean bicubic LR, on
  the same sampling grid (tested with impulses), and ``classical`` trains on exactly it.
  ``blurpool``: the paper's anti-aliased average pooling, average pooling of size ``scale`` then
  a binomial blur of odd size ``degradation.blur_size`` (5), one composite kernel with stride
  ``scale`` centred on bicubic's grid;
* ``degradation.head_blocks``: basic blocks before the pooling (null = ``blocks``; the smoke
  profile uses fewer because they run at HR resolution and dominate its step);
* conv biases exist, start at 0 and belong to the conv group; convs pad by reflection so that a
  perturbed kernel does not invent dark borders; slopes and noise strengths are per channel;
* the noise map n ~ N(0, 1) is one map per sample and pixel shared by a block's channels
  (StyleGAN's noise injection), drawn once per step so that PGD attacks a fixed function and G
  trains on the noise the attack saw;
* slopes are kept in ``degradation.slope_range`` ([0, 1]: F stays monotone); F's output is clamped
  to [0, 1] like a real image (``degradation.clamp_output``);
* the weighted norm is ``sqrt(sum_g ||w_g * (theta_g - theta_id_g)||^2)``; PGD starts at theta_id
  (no random start; the source initialises to the identity and then takes its 5 steps);
* attack loss: ``attack.pixel_weight`` x L1 + ``attack.perceptual_weight`` x VGG (the source's
  content loss is L1 + VGG; ANDNet, trained on L1 only, attacks L1 only);
* ``no_adversarial`` draws a uniformly random direction on the weighted sphere of radius
  ``attack.random_radius`` (calibrated to the attack's LR PSNR);
  ``no_identity_init`` uses Xavier-normal 3x3 kernels, zero biases, slopes 1, noise 0;
* ``no_neural_degradation``: L-inf PGD on F's identity (bicubic) LR, eps 8/255, step 2/255,
  5 iterations (the same count as AND's PGD), random start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from robustsr_bench.methods.base import Batch, Method, Modules, TrainContext
from robustsr_bench.attacks import (
    frozen,
    group_l2_pgd,
    linf_pgd,
    random_group_l2,
    structured_noise,
)
from robustsr_bench.data.image_ops import imresize
from robustsr_bench.methods.and_options import ANDOptions, AttackConfig

# ---------------------------------------------------------------------------------------------
# the degradation network


def binomial_row(size: int) -> Tensor:
    """Normalised 1-D binomial filter (``[1, 4, 6, 4, 1] / 16`` for size 5), float64."""
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return row / row.sum()


def binomial_kernel(size: int) -> Tensor:
    """Normalised 2-D binomial filter: :func:`binomial_row` outer itself."""
    row = binomial_row(size)
    return torch.outer(row, row)


def antialias_downsample(x: Tensor, scale: int, blur_size: int = 5) -> Tensor:
    """Anti-aliased average pooling (``blurpool``): avg-pool ``scale`` then binomial ``blur_size``.

    One composite kernel (box ``scale`` convolved with the binomial, ``scale + blur_size - 1``
    taps, stride ``scale``) centred where MATLAB's bicubic puts LR pixel ``i``:
    HR coordinate ``scale * i + (scale - 1) / 2``. That needs an odd ``blur_size`` (an even
    one leaves the grid half an HR pixel off). Reflect padding keeps ``H/scale x W/scale``.
    """
    box = np.full(scale, 1.0 / scale)
    taps = torch.from_numpy(np.convolve(box, binomial_row(blur_size).numpy()))
    kernel = torch.outer(taps, taps).to(x).expand(x.shape[1], 1, len(taps), len(taps))
    pad = (blur_size - 1) // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(x, kernel, stride=scale, groups=x.shape[1])


def identity_downsample(x: Tensor, scale: int, pool: str = "bicubic", blur_size: int = 5) -> Tensor:
    """F's pooling layer, i.e. what F at theta_id computes (``pool``: bicubic or blurpool).

    ``bicubic`` is the benchmark's MATLAB ``imresize`` (unclamped): the same downsampler the eval
    suites and the loader start from, so F's identity LR *is* the clean bicubic LR.
    """
    if pool == "bicubic":
        return imresize(x, scale_factor=1.0 / scale)
    return antialias_downsample(x, scale, blur_size)


class AntiAliasPool(nn.Module):
    """:func:`identity_downsample` as a layer (no parameters: it is not attacked)."""

    def __init__(self, scale: int, pool: str, blur_size: int):
        super().__init__()
        self.scale, self.pool, self.blur_size = scale, pool, blur_size

    def forward(self, x: Tensor) -> Tensor:
        return identity_downsample(x, self.scale, self.pool, self.blur_size)


class NoiseInjection(nn.Module):
    """``x + strength_c * n``: spatially varying degradations (sensor noise, grain, blocks)."""

    def __init__(self, channels: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.strength.view(1, -1, 1, 1) * noise


class LearnableLeakyReLU(nn.Module):
    """LeakyReLU whose per-channel negative slope is a parameter (slope 1 = identity)."""

    def __init__(self, channels: int):
        super().__init__()
        self.slope = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.slope)


class BasicBlock(nn.Module):
    """3x3 conv -> LeakyReLU -> noise injection."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")
        self.act = LearnableLeakyReLU(cout)
        self.noise = NoiseInjection(cout)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return self.noise(self.act(self.conv(x)), noise)


def xavier_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out))


class DegradationNet(nn.Module):
    """F: ``head_blocks`` (default ``blocks``) basic blocks -> anti-aliased pooling (stride
    ``scale``) -> ``blocks`` basic blocks -> 3x3 conv to RGB.

    The module's own parameters are never used in training: every step draws a fresh parameter
    dict (:meth:`initial_parameters`), perturbs it, and runs F through :meth:`apply`, so nothing
    carries over from one step to the next.
    """

    def __init__(self, scale: int, channels: int = 64, blocks: int = 5, pool: str = "bicubic",
                 blur_size: int = 5, clamp_output: bool = True, head_blocks: int | None = None):
        super().__init__()
        self.scale, self.channels, self.blocks = scale, channels, blocks
        self.head_blocks = blocks if head_blocks is None else head_blocks
        self.clamp_output = clamp_output
        self.head = nn.ModuleList([BasicBlock(3 if i == 0 else channels, channels)
                                   for i in range(self.head_blocks)])
        self.pool = AntiAliasPool(scale, pool, blur_size)
        self.tail = nn.ModuleList([BasicBlock(channels, channels) for _ in range(blocks)])
        self.last = nn.Conv2d(channels, 3, 3, padding=1, padding_mode="reflect")

    def conv_names(self) -> list[str]:
        """The convs in data-flow order (first 3->C ... last C->3)."""
        return ([f"head.{i}.conv" for i in range(self.head_blocks)]
                + [f"tail.{i}.conv" for i in range(self.blocks)] + ["last"])

    def sample_noise(self, x: Tensor) -> list[Tensor]:
        """One N(0, 1) map per block (HR size before the pooling, LR size after)."""
        b, _, h, w = x.shape
        lr = (h // self.scale, w // self.scale)
        return ([torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
                 for _ in range(self.head_blocks)]
                + [torch.randn(b, 1, *lr, device=x.device, dtype=x.dtype)
                   for _ in range(self.blocks)])

    def forward(self, x: Tensor, noises: list[Tensor] | None = None) -> Tensor:
        noises = self.sample_noise(x) if noises is None else noises
        for block, noise in zip(self.head, noises[:self.head_blocks]):
            x = block(x, noise)
        x = self.pool(x)
        for block, noise in zip(self.tail, noises[self.head_blocks:]):
            x = block(x, noise)
        x = self.last(x)
        return x.clamp(0, 1) if self.clamp_output else x

    def apply(self, theta: dict[str, Tensor], x: Tensor, noises: list[Tensor]) -> Tensor:
        """F with parameters ``theta`` (a dict as from :meth:`initial_parameters`)."""
        return functional_call(self, theta, (x, noises))

    # -- initialisation ---------------------------------------------------------------------

    def initial_parameters(self, init: str = "identity") -> dict[str, Tensor]:
        """A fresh parameter dict: the identity (``identity``) or Xavier-random kernels."""
        device = self.last.weight.device
        with torch.autocast(device.type, enabled=False):
            kernels = (self._identity_kernels(device) if init == "identity"
                       else self._xavier_kernels(device))
        theta = {}
        for name, p in self.named_parameters():
            if name.endswith(".slope"):
                theta[name] = torch.ones_like(p)
            elif name.endswith(".weight"):
                theta[name] = kernels[name.removesuffix(".weight")].to(p.dtype)
            else:
                theta[name] = torch.zeros_like(p)
        return theta

    def _identity_kernels(self, device: torch.device) -> dict[str, Tensor]:
        """Centre-only kernels whose chained product is the identity on RGB.

        All centre matrices but the last are drawn in one call (Xavier, 1x1 fan mode) and
        multiplied into one C x 3 matrix; its Moore-Penrose pseudo-inverse becomes the last conv's
        centre, so ``last @ (... @ first) = pinv(M) @ M = I_3``. float64 keeps the product exact
        to float32 precision.
        """
        c, f64 = self.channels, torch.float64
        first = torch.randn(c, 3, dtype=f64, device=device) * xavier_std(3, c)
        count = self.head_blocks + self.blocks - 1
        square = torch.randn(count, c, c, dtype=f64, device=device) * xavier_std(c, c)
        merged = torch.linalg.multi_dot([*square.flip(0), first])
        centres = [first, *square, torch.linalg.pinv(merged)]
        return {name: _centre_kernel(m) for name, m in zip(self.conv_names(), centres)}

    def _xavier_kernels(self, device: torch.device) -> dict[str, Tensor]:
        """Xavier-normal 3x3 kernels (``no_identity_init``): F is no longer near the identity."""
        out = {}
        for name in self.conv_names():
            conv = self.get_submodule(name)
            cin, cout = conv.in_channels, conv.out_channels
            out[name] = torch.randn(cout, cin, 3, 3, device=device) * xavier_std(9 * cin, 9 * cout)
        return out

    # -- the perturbation set ---------------------------------------------------------------

    @staticmethod
    def group(name: str) -> str:
        """``conv`` (kernels and biases), ``noise`` (strengths) or ``slope``."""
        if name.endswith(".strength"):
            return "noise"
        return "slope" if name.endswith(".slope") else "conv"

    def group_weights(self, conv: float, noise: float, slope: float) -> dict[str, float]:
        by_group = {"conv": conv, "noise": noise, "slope": slope}
        return {name: by_group[self.group(name)] for name, _ in self.named_parameters()}

    def norm_weights(self, a: "AttackConfig") -> dict[str, float]:
        """Per-tensor weights of the PGD ball's norm: the paper's group weights 1 / 10 / 50 times
        the units each parameter is measured in (``attack.conv_norm``, ``attack.image_range``).

        ``per_layer``: a conv kernel's deviation is counted in units of its identity-init scale
        (Xavier std, 1x1 fan mode), so a deviation means the same relative change in every layer
        and at every width. Biases and noise strengths act additively on pixel-scaled features, so
        they are counted in ``image_range`` units (255: 8-bit levels). Slopes are unit-free.
        """
        out = {}
        for name, p in self.named_parameters():
            group = self.group(name)
            if group == "noise":
                out[name] = a.noise_weight * a.image_range
            elif group == "slope":
                out[name] = a.slope_weight
            elif name.endswith(".bias"):
                out[name] = a.conv_weight * a.image_range
            elif a.conv_norm == "per_layer":
                out[name] = a.conv_weight / xavier_std(p.shape[1], p.shape[0])
            else:
                out[name] = a.conv_weight
        return out


def _centre_kernel(matrix: Tensor) -> Tensor:
    kernel = matrix.new_zeros(*matrix.shape, 3, 3)
    kernel[:, :, 1, 1] = matrix
    return kernel


def remove_colour_shift(lq: Tensor, reference: Tensor) -> Tensor:
    """``lq`` with each image's per-channel mean moved to ``reference``'s, then clamped to [0, 1]:
    the global colour/brightness part of a degradation removed, its structure kept."""
    shift = (lq - reference).mean(dim=(-2, -1), keepdim=True)
    return (lq - shift).clamp(0.0, 1.0)


def clamp_slopes(theta: dict[str, Tensor], low: float, high: float) -> dict[str, Tensor]:
    """Keep LeakyReLU slopes in ``[low, high]``; since that box holds the identity slope 1,
    clamping only moves a slope towards theta_id, so F stays inside the PGD ball."""
    return {k: v.clamp(low, high) if DegradationNet.group(k) == "slope" else v
            for k, v in theta.items()}


# ---------------------------------------------------------------------------------------------
# the adapter


@dataclass
class Degradation:
    """One step's degradation: the LR G trains on, the attacked and the initial parameters."""

    lq: Tensor
    theta: dict[str, Tensor]
    theta0: dict[str, Tensor]


class AND(Method):
    name = "and"
    options = ANDOptions

    def needs_perceptual(self, cfg: Any) -> bool:
        return cfg.attack.mode == "adversarial" and cfg.attack.perceptual_weight > 0

    def build_aux(self, cfg: Any, device: torch.device) -> dict[str, nn.Module]:
        if cfg.degradation.kind != "neural":
            return {}
        d = cfg.degradation
        net = DegradationNet(cfg.scale, d.channels, d.blocks, d.pool, d.blur_size, d.clamp_output,
                             d.head_blocks)
        return {"degradation": net.to(device).requires_grad_(False)}

    def make_inputs(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Batch:
        if ctx.cfg.degradation.kind == "bicubic":
            lq = self.perturb_bicubic(batch, modules, ctx)
        else:
            lq = self.degrade(batch.gt, modules, ctx).lq
        return Batch(lq, batch.gt, batch.extras)

    def _attack_loss(self, hr: Tensor, modules: Modules,
                     ctx: TrainContext) -> Callable[[Tensor], Tensor]:
        """G's content loss on ``lq`` against ``hr``: what every attack of AND maximises."""
        a = ctx.cfg.attack
        return lambda lq: ctx.content_loss(modules.g(lq), hr, a.pixel_weight, a.perceptual_weight)

    def degrade(self, hr: Tensor, modules: Modules, ctx: TrainContext) -> Degradation:
        """Fresh F at theta_0 (identity or Xavier), perturbed per ``attack.mode``, applied to hr."""
        cfg, a = ctx.cfg, ctx.cfg.attack
        net: DegradationNet = modules.aux["degradation"]
        theta0 = net.initial_parameters(cfg.degradation.init)
        noises = net.sample_noise(hr)
        weights = net.norm_weights(a)
        low, high = cfg.degradation.slope_range
        if a.mode == "adversarial":
            content = self._attack_loss(hr, modules, ctx)
            with frozen(modules.g):
                theta = group_l2_pgd(theta0, weights,
                                     lambda th: content(net.apply(th, hr, noises)), a.radius,
                                     a.step, a.iters, lambda th: clamp_slopes(th, low, high))
        elif a.mode == "random":
            radius = a.radius if a.random_radius is None else a.random_radius
            delta = random_group_l2(theta0, weights, radius)
            theta = clamp_slopes({k: theta0[k] + delta[k] for k in theta0}, low, high)
        else:
            theta = theta0
        with torch.no_grad():
            lq = net.apply(theta, hr, noises)
            if a.remove_colour_shift:
                lq = remove_colour_shift(lq, net.apply(theta0, hr, noises))
        return Degradation(lq.detach(), theta, theta0)

    def perturb_bicubic(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Tensor:
        """``classical`` (F's identity LR, no attack) and ``no_neural_degradation`` (additive
        noise on it). The LR is made from the HR by F's own pooling (:func:`identity_downsample`),
        not taken from the loader, so these ablations differ from AND in nothing but the attack."""
        cfg, a = ctx.cfg, ctx.cfg.attack
        d = cfg.degradation
        lq = identity_downsample(batch.gt, cfg.scale, d.pool, d.blur_size).clamp(0, 1).detach()
        if a.mode == "none":
            return lq
        if a.mode == "random":
            noise = structured_noise(lq, a.noise_eps, a.noise_structure)
            return (lq + noise).clamp(0, 1)
        with frozen(modules.g):
            return linf_pgd(lq, self._attack_loss(batch.gt, modules, ctx), a.noise_eps,
                            a.noise_alpha, a.iters, a.noise_structure)
