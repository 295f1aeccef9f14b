"""RSR: robust super-resolution by L-inf PGD attacks on the LR input (Castillo et al., 2021).

Every training step, before G sees the batch, the LR input is replaced by an adversarial one
(``../shared/METHODS.md`` section 1):

1. G's and D's parameters are frozen, so the attack computes no weight gradient and leaves the
   weights, their ``.grad`` and the optimiser state exactly as they were;
2. random start: structured noise U(-eps, eps) drawn at ``1/structure`` resolution and
   nearest-resized, projected so that ``lq + delta`` stays in [0, 1];
3. ``iters`` PGD steps of size ``alpha`` that maximise the content loss
   ``L1 x w_pix + perceptual x w_per`` of ``G(lq + delta)`` against the HR patch (no GAN term),
   each followed by the projection onto the eps-ball and [0, 1];
4. the shared trainer then trains G and D with the usual ESRGAN losses on ``lq + delta``.

Follows the source: the attack, its defaults (eps 14/255, 2 iterations, alpha 1/255, structure
1.5, loss L1 + perceptual), fine-tuning from the clean ESRGAN (``train.init: baseline``) and the
ablation axes of the paper's Table 1.

Our choice:

* ``attack.pixel_weight`` / ``attack.perceptual_weight`` default to ESRGAN's GAN-profile weights
  (0.01 / 1.0). The signed gradient depends only on their ratio, and the paper writes the plain
  sum; we keep the trainer's weighting so the attack maximises what G minimises. ``loss: l1``
  uses L1 with weight 1, ``loss: percep`` the perceptual loss with weight 1.
* The attack is computed on the batch mean of the loss; each sample's input only affects its own
  term, so the signed step per sample is what a per-sample attack gives.
* ``attack.random_start`` exists so that ``no_attack`` (no start, no iterations) is *exactly*
  clean fine-tuning: no random numbers drawn, input untouched.
* Randomness comes from torch's global generator, which the trainer reseeds every step, so a
  resumed run draws the same noise.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from robustsr_bench.methods.base import Batch, Method, Modules, TrainContext
from robustsr_bench.attacks import frozen, run_linf_pgd
from robustsr_bench.errors import ConfigError
from robustsr_bench.methods.rsr_options import RSROptions


class RSR(Method):
    """Adversarial fine-tuning: the shared ESRGAN training on PGD-attacked LR inputs."""

    name = "rsr"
    options = RSROptions

    def needs_perceptual(self, cfg: Any) -> bool:
        """VGG19 is needed when the attack runs and its objective has the perceptual term."""
        a = cfg.attack
        return a.iters > 0 and a.loss_weights()[1] > 0

    def make_inputs(self, batch: Batch, modules: Modules, ctx: TrainContext) -> Batch:
        a = ctx.cfg.attack
        if not a.enabled:
            return batch
        pixel_w, percep_w = a.loss_weights()
        if a.iters > 0 and percep_w > 0 and not ctx.has_perceptual:
            # Without VGG the perceptual term would silently vanish from the attack.
            raise ConfigError(f"attack.loss={a.loss} needs the VGG19 perceptual loss, which this "
                              f"run did not load; use attack.loss=l1")
        g, gt = modules.g, batch.gt

        def attack_loss(lq: Tensor) -> Tensor:
            return ctx.content_loss(g(lq), gt, pixel_w, percep_w)

        with frozen(g, modules.d):
            lq = run_linf_pgd(a, batch.lq, attack_loss)
        return Batch(lq, gt, batch.extras)
