"""BAPD: bi-level attack-embedded perturbation defense (``../shared/METHODS.md`` section 3).

Only the abstract of BAPD is public. Each of its sentences maps to one part below; *how* each part
is built is our design, written down in METHODS.md and exposed as config fields.

Follows the abstract (what exists and what it is for):

* the network = an attack layer, a detail-preserving defense layer and a reconstruction layer;
* the attack injects perturbations at two levels: on the *high-frequency component* of image
  features, by changing its mean and variance, and on the *pixels* of the image ("unidentified
  factors");
* the defense keeps the features of the perturbed image coherent with those of the unaltered one
  by *bidirectional distillation*, and a *detail-recovery* component restores detail the attack
  removed; the reconstruction layer outputs the result.

Our design (METHODS.md; every constant is a config field with this default):

* generator = RRDBNet split into head (``conv_first``), body (RRDB trunk + ``conv_body``, with
  the long skip) and tail (upsampler = the reconstruction layer), with RRDBNet's parameter names;
  the detail-recovery branch lives under its own prefix ``detail_recovery.``. A clean RRDBNet
  checkpoint therefore initialises BAPD (the branch keeps its fresh initialisation), and
  :func:`rrdbnet_state` turns a BAPD checkpoint back into one RRDBNet loads;
* high-frequency attack (``attack.hf``): head features ``f`` split into ``low = GaussianBlur(f)``
  and ``high = f - low``; per sample and channel ``high <- (high - mu)(1 + d_sigma) + mu + d_mu``
  (the abstract's ``(high - mu) / sigma * sigma (1 + d_sigma) + mu + d_mu`` without dividing by
  sigma, which is the same map and safe where sigma is 0), with ``(d_mu, d_sigma)`` found by
  ``steps`` (1) signed-gradient ascent steps inside the box ``|d_mu| <= mu_box (0.1) * std of mu``
  and ``|d_sigma| <= sigma_box (0.2)``, starting from 0;
* pixel attack (``attack.pixel``): RSR's L-inf PGD (:func:`robustsr_bench.attacks.linf_pgd`)
  with eps 8/255 and 1 step;
* defense: ``L_distill = |p - sg(c)|_1 + lambda_back (0.5) * |c - sg(p)|_1`` between the body
  features of the clean pass ``c`` and of the attacked pass ``p`` (sg = stop-gradient), weight
  1.0; detail recovery = ``conv3x3 -> LeakyReLU -> conv3x3`` on ``[p, LR edge map]`` whose output
  is added to ``p`` before the tail, trained with ``L1(edge(SR), edge(HR))`` x 0.1;
* the shared ESRGAN losses are applied to the attacked pass; inference runs
  head -> body -> detail recovery (no attack) -> tail.

Our choice where METHODS.md is silent too:

* attack order: pixel attack first, then the high-frequency attack on the head features of the
  attacked LR, so the attacked pass carries both. Both attacks maximise the shared content loss
  (``ctx.content_loss``: L1 x ``attack.pixel_weight`` + perceptual x
  ``attack.perceptual_weight``, ESRGAN's 0.01 / 1.0, or one term with ``attack.loss``) of the
  generator's inference path (detail recovery included), with G and D frozen;
* pixel attack random start, step and noise structure are RSR's (start U(-eps, eps) at structure
  1.5, alpha 1/255);
* HF attack: Gaussian blur sigma 1, 5 taps, reflect padding (on features); ``std of mu`` is the
  standard deviation of each channel's mean over the batch (as in DSU-style feature-statistics
  perturbation), so with batch size 1 only the variance is attacked; each ascent step moves by
  ``step_frac`` (1.0) times the box half-width, then clips to the box;
* the detail-recovery branch reads the edge map of the *clean* LR (the detail the attack removed;
  at inference the LR given), pixel-unshuffled like the image for x2/x1; hidden width
  ``defense.detail_channels`` (0 = ``model.num_feat``); first conv kaiming x 0.1, last conv
  zero-initialised so that BAPD starts as exactly the RRDBNet it was initialised from;
* HR edge maps (the edge-loss target) come from the batch's ``edge`` entry (``data.edge_dir``,
  BAPD's ``train_EDGE_sub``) when present, else from :func:`robustsr_bench.data.edges.edge_map`
  on the HR patch (Sobel magnitude; ``edges.method: canny`` configurable);
* when no attack is enabled the clean pass *is* the attacked pass (``c = p``), so the
  distillation loss is exactly 0 and no second pass is run; ``no_detail_recovery`` removes the
  branch and its edge loss; ``one_way_distillation`` keeps only ``|p - sg(c)|``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustsr_bench.methods.base import Batch, Method, Modules, Outputs, TrainContext
from robustsr_bench.attacks import frozen, run_linf_pgd
from robustsr_bench.data.edge_options import EdgeConfig
from robustsr_bench.data.edges import edge_map, gaussian_blur
from robustsr_bench.errors import ConfigError
from robustsr_bench.methods.bapd_options import (
    BAPDOptions,
    DefenseConfig,
    HFAttackConfig,
)
from robustsr_bench.nets.rrdbnet import RRDBNet, default_init_weights

BRANCH_PREFIX = "detail_recovery."
_WRAPPERS = ("params", "params_ema")


# -- configuration ---------------------------------------------------------------------------


# -- generator -------------------------------------------------------------------------------


class DetailRecovery(nn.Module):
    """``conv3x3 -> LeakyReLU -> conv3x3`` on [features, edge map]: a residual for the features."""

    def __init__(self, num_feat: int, edge_ch: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat + edge_ch, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        default_init_weights([self.conv1], 0.1)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity: BAPD == its RRDBNet init
        nn.init.zeros_(self.conv2.bias)

    def forward(self, feat: Tensor, edge: Tensor) -> Tensor:
        return self.conv2(self.lrelu(self.conv1(torch.cat((feat, edge), 1))))


class BAPDGenerator(RRDBNet):
    """RRDBNet (same parameter names) + an optional detail-recovery branch.

    ``forward`` is inference: head -> body -> detail recovery on the LR's edge map -> tail.
    Training composes :meth:`features` (with an optional head-feature perturbation) and
    :meth:`reconstruct`.
    """

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 23,
                 num_grow_ch: int = 32, detail_channels: int = 0,
                 edges: EdgeConfig | None = None):
        super().__init__(3, 3, scale, num_feat, num_block, num_grow_ch)
        self.edges = edges or EdgeConfig()
        self.detail_recovery = (DetailRecovery(num_feat, self.unshuffle**2, detail_channels)
                                if detail_channels else None)

    def describe(self) -> str:
        branch = " + detail recovery" if self.detail_recovery is not None else ""
        return f"BAPD {super().describe()}{branch}"

    def lr_edges(self, lq: Tensor) -> Tensor | None:
        """The LR edge map the branch reads (None without a branch)."""
        return edge_map(lq, self.edges) if self.detail_recovery is not None else None

    def features(self, lq: Tensor, perturb: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Body features of ``lq``; ``perturb`` (the HF attack) acts on the head features."""
        feat = self.head(lq)
        return self.body_features(perturb(feat) if perturb is not None else feat)

    def reconstruct(self, feat: Tensor, lr_edge: Tensor | None) -> Tensor:
        """Detail recovery (when present) then the reconstruction layer."""
        if self.detail_recovery is not None:
            if lr_edge is None:
                raise ValueError("the detail-recovery branch needs the LR edge map")
            if self.unshuffle > 1:
                lr_edge = F.pixel_unshuffle(lr_edge, self.unshuffle)
            feat = feat + self.detail_recovery(feat, lr_edge)
        return self.tail(feat)

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(self.features(x), self.lr_edges(x))

    def complete_state(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A plain RRDBNet state (no branch entry at all) keeps this branch's initialisation."""
        own = self.state_dict()
        branch = [k for k in own if k.startswith(BRANCH_PREFIX)]
        if branch and not any(k.startswith(BRANCH_PREFIX) for k in state):
            return {**state, **{k: own[k] for k in branch}}
        return dict(state)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Strict as usual, except that a clean RRDBNet state initialises BAPD (the trainer's
        ``train.init: baseline`` path)."""
        return super().load_state_dict(self.complete_state(state_dict), strict, assign)


def rrdbnet_state(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A BAPD generator state (plain, or BasicSR-style with ``params`` / ``params_ema``) without
    the detail-recovery entries: what :func:`robustsr_bench.nets.rrdbnet.load_generator_state`
    loads into a plain RRDBNet."""
    out = {}
    for key, value in obj.items():
        if key.removeprefix("module.").startswith(BRANCH_PREFIX):
            continue
        out[key] = rrdbnet_state(value) if key in _WRAPPERS and isinstance(value, Mapping) else value
    return out


# -- attack layer ----------------------------------------------------------------------------


def split_frequencies(feat: Tensor, cfg: HFAttackConfig) -> tuple[Tensor, Tensor]:
    """(low, high) = (GaussianBlur(feat), feat - low)."""
    low = gaussian_blur(feat, cfg.blur_sigma, cfg.blur_size)
    return low, feat - low


def perturb_high(high: Tensor, d_mu: Tensor, d_sigma: Tensor) -> Tensor:
    """Per-channel statistics shift: mean ``mu -> mu + d_mu``, std ``sigma -> sigma (1 + d_sigma)``."""
    mu = high.mean((2, 3), keepdim=True)
    return (high - mu) * (1 + d_sigma) + mu + d_mu


def apply_hf_perturbation(feat: Tensor, d_mu: Tensor, d_sigma: Tensor,
                          cfg: HFAttackConfig) -> Tensor:
    """``low + perturb_high(high)``: the low-frequency component is passed through unchanged."""
    low, high = split_frequencies(feat, cfg)
    return low + perturb_high(high, d_mu, d_sigma)


def hf_box(high: Tensor, cfg: HFAttackConfig) -> tuple[Tensor, Tensor]:
    """Half-widths of the box, per sample and channel: ``mu_box * std_batch(mu)``, ``sigma_box``."""
    mu = high.mean((2, 3), keepdim=True)
    box_mu = cfg.mu_box * mu.std(0, unbiased=False, keepdim=True).expand_as(mu)
    return box_mu.contiguous(), torch.full_like(mu, cfg.sigma_box)


def _ascend(d: Tensor, grad: Tensor, box: Tensor, frac: float) -> Tensor:
    d = d.detach() + frac * box * grad.sign()
    return torch.maximum(torch.minimum(d, box), -box)


def hf_attack(feat: Tensor, loss_fn: Callable[[Tensor], Tensor],
              cfg: HFAttackConfig) -> tuple[Tensor, Tensor]:
    """``(d_mu, d_sigma)`` (Bx C x1x1) maximising ``loss_fn`` of the perturbed features, by
    ``cfg.steps`` signed-gradient ascent steps from 0 inside :func:`hf_box`. Draws no random
    numbers; wrap the networks ``loss_fn`` runs in :func:`frozen`. Results are detached."""
    low, high = split_frequencies(feat.detach(), cfg)
    box_mu, box_sigma = hf_box(high, cfg)
    d_mu, d_sigma = torch.zeros_like(box_mu), torch.zeros_like(box_sigma)
    for _ in range(cfg.steps):
        d_mu, d_sigma = d_mu.requires_grad_(True), d_sigma.requires_grad_(True)
        loss = loss_fn(low + perturb_high(high, d_mu, d_sigma))
        g_mu, g_sigma = torch.autograd.grad(loss, (d_mu, d_sigma))
        d_mu = _ascend(d_mu, g_mu, box_mu, cfg.step_frac)
        d_sigma = _ascend(d_sigma, g_sigma, box_sigma, cfg.step_frac)
    return d_mu.detach(), d_sigma.detach()


# -- defense layer ---------------------------------------------------------------------------


def distillation_terms(p: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(``|p - sg(c)|_1``, ``|c - sg(p)|_1``): each term trains only its student side."""
    return F.l1_loss(p, c.detach()), F.l1_loss(c, p.detach())


def distillation_loss(p: Tensor, c: Tensor, cfg: DefenseConfig) -> Tensor:
    """Bidirectional (forward + ``lambda_back`` x backward) or one-way distillation, unweighted."""
    forward, backward = distillation_terms(p, c)
    return forward if cfg.distillation == "one_way" else forward + cfg.lambda_back * backward


# -- the adapter -----------------------------------------------------------------------------


class BAPD(Method):
    """Attacked pass (pixel + HF attack) trained with the ESRGAN losses, distilled against the
    clean pass, with an edge-guided detail-recovery branch."""

    name = "bapd"
    options = BAPDOptions

    def needs_perceptual(self, cfg: Any) -> bool:
        """VGG19 is needed when an attack runs and its objective has the perceptual term."""
        return cfg.attack.enabled and cfg.attack.loss_weights()[1] > 0

    def build_generator(self, cfg: Any) -> BAPDGenerator:
        d = cfg.defense
        channels = (d.detail_channels or cfg.model.num_feat) if d.detail_recovery else 0
        return BAPDGenerator(cfg.scale, cfg.model.num_feat, cfg.model.num_block,
                             cfg.model.num_grow_ch, channels, cfg.edges)

    def make_inputs(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Batch:
        """Keep the clean LR and its edge map; run the pixel, then the HF attack."""
        a, g, gt = ctx.cfg.attack, modules.g, batch.gt
        extras = {**batch.extras, "lq_clean": batch.lq}
        lr_edge = g.lr_edges(batch.lq)
        if lr_edge is not None:
            extras["lr_edge"] = lr_edge
        if not a.enabled:
            return Batch(batch.lq, gt, extras)
        pixel_w, percep_w = a.loss_weights()
        if percep_w > 0 and not ctx.has_perceptual:
            raise ConfigError(f"attack.loss={a.loss} needs the VGG19 perceptual loss, which this "
                              f"run did not load; use attack.loss=l1")

        def pixel_loss(lq: Tensor) -> Tensor:
            return ctx.content_loss(g.reconstruct(g.features(lq), lr_edge), gt, pixel_w, percep_w)

        def feature_loss(feat: Tensor) -> Tensor:
            return ctx.content_loss(g.reconstruct(g.body_features(feat), lr_edge), gt, pixel_w,
                                    percep_w)

        lq, p = batch.lq, a.pixel
        with frozen(g, modules.d):
            if p.enabled:
                lq = run_linf_pgd(p, lq, pixel_loss)
            if a.hf.enabled:
                with torch.no_grad():
                    feat = g.head(lq)
                extras["hf_d_mu"], extras["hf_d_sigma"] = hf_attack(feat, feature_loss, a.hf)
        return Batch(lq, gt, extras)

    def forward(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Outputs:
        """The attacked pass -> SR; the clean pass only where distillation needs it.

        When both passes run, their head features go through the trunk as one batch of twice
        the size: RRDBNet has no batch statistics, so every sample's features (and gradients)
        are what two separate passes give, while one large pass uses the hardware better than
        two half-size ones (about 30% less trunk time for the paper-size net at batch 2 on CPU).
        """
        cfg, g = ctx.cfg, modules.g
        head = g.head(batch.lq)
        if "hf_d_mu" in batch.extras:
            head = apply_hf_perturbation(head, batch.extras["hf_d_mu"],
                                         batch.extras["hf_d_sigma"], cfg.attack.hf)
        distil = cfg.defense.distillation != "none"
        if distil and cfg.attack.enabled:
            clean_head = g.head(batch.extras["lq_clean"])
            p, c = g.body_features(torch.cat((head, clean_head))).split(len(head))
        else:
            p = g.body_features(head)
            c = p
        extras = {"p": p, "c": c} if distil else {"p": p}
        return Outputs(sr=g.reconstruct(p, batch.extras.get("lr_edge")), extras=extras)

    def extra_losses(self, batch: Batch, outputs: Outputs, modules: Modules,
                     ctx: TrainContext) -> dict[str, Tensor]:
        d, losses = ctx.cfg.defense, {}
        if "c" in outputs.extras:
            losses["l_distill"] = d.distill_weight * distillation_loss(
                outputs.extras["p"], outputs.extras["c"], d)
        if modules.g.detail_recovery is not None:
            target = batch.extras.get("edge")
            if target is None:
                target = edge_map(batch.gt, ctx.cfg.edges)
            losses["l_edge"] = d.edge_weight * F.l1_loss(edge_map(outputs.sr, ctx.cfg.edges),
                                                         target)
        return losses
