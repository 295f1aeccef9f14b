"""The ESRGAN VGG-style discriminator, with BasicSR's ``VGGStyleDiscriminator`` parameter names.

Five stages of (3x3 stride-1 conv, 4x4 stride-2 conv), each conv but the first followed by
BatchNorm, all by LeakyReLU 0.2; channels ``num_feat`` x (1, 2, 4, 8, 8); then
``linear1 -> LeakyReLU -> linear2`` to one logit per image. For ``input_size=128`` names and shapes
equal BasicSR's, so its discriminator checkpoints load directly.

**Our choice:** other patch sizes (any multiple of 32) keep the five stages and widen ``linear1`` to
``num_feat*8*(input_size/32)**2`` inputs. BasicSR instead adds a sixth stage for 256, so a BasicSR
256 discriminator checkpoint does not load here.
"""

from __future__ import annotations

from torch import Tensor, nn

_STAGE_WIDTHS = (1, 2, 4, 8, 8)  # channel multipliers of num_feat, one per stride-2 stage


class VGGStyleDiscriminator(nn.Module):
    """Maps an (N, C, input_size, input_size) image batch to (N, 1) realness logits."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        if input_size < 32 or input_size % 32:
            raise ValueError(
                f"VGGStyleDiscriminator input_size={input_size!r} must be a positive multiple of 32 "
                "(five stride-2 stages)"
            )
        self.input_size = input_size
        in_ch = num_in_ch
        for stage, mult in enumerate(_STAGE_WIDTHS):
            out_ch = num_feat * mult
            # BasicSR's first conv has a bias and no BatchNorm; every other conv is conv + BN.
            setattr(self, f"conv{stage}_0", nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=stage == 0))
            if stage > 0:
                setattr(self, f"bn{stage}_0", nn.BatchNorm2d(out_ch, affine=True))
            setattr(self, f"conv{stage}_1", nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", nn.BatchNorm2d(out_ch, affine=True))
            in_ch = out_ch
        side = input_size // 32
        self.linear1 = nn.Linear(in_ch * side * side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def _check_input(self, x: Tensor) -> None:
        """The linear head fixes the spatial size; say so instead of failing inside a matmul."""
        size = self.input_size
        if x.dim() != 4 or tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"VGGStyleDiscriminator expects (N, C, {size}, {size}) input (the HR patch size it "
                f"was built for); got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        feat = self.lrelu(self.conv0_0(x))
        for stage in range(len(_STAGE_WIDTHS)):
            if stage > 0:
                feat = self.lrelu(
                    getattr(self, f"bn{stage}_0")(getattr(self, f"conv{stage}_0")(feat))
                )
            feat = self.lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)
