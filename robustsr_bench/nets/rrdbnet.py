"""RRDBNet, the ESRGAN generator, laid out exactly as BasicSR's ``basicsr/archs/rrdbnet_arch.py``.

Module and parameter names (``conv_first``, ``body.N.rdb1.conv1`` ... ``conv_last``), layer order,
initialisation and the pixel-unshuffle trick for x2/x1 all follow BasicSR, so the published
ESRGAN / Real-ESRGAN RRDBNet checkpoints load with :func:`load_generator_file` without any key
conversion, and a checkpoint we save loads in BasicSR.

**Our choice:** x3 is supported with a single ``nearest x3 -> conv_up1 -> LeakyReLU`` stage and
*no* ``conv_up2``. BasicSR's RRDBNet has no x3 mode; dropping the second upsampling conv (instead of
keeping an unused one) keeps every parameter in the graph, which optimisers, EMA and DDP expect.

The forward pass is split into :meth:`RRDBNet.head`, :meth:`RRDBNet.body_features` and
:meth:`RRDBNet.tail` because BAPD perturbs the head features and distils the body features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

SUPPORTED_SCALES = (1, 2, 3, 4)
# BasicSR feeds x2/x1 inputs through pixel-unshuffle so that the trunk always upsamples x4.
_UNSHUFFLE = {1: 4, 2: 2, 3: 1, 4: 1}
_MAX_LISTED = 4  # offending keys named in one error line


@torch.no_grad()
def default_init_weights(modules: Iterable[nn.Module], scale: float = 1.0) -> None:
    """Kaiming-normal conv weights scaled by ``scale`` and zero biases (BasicSR's initialiser).

    ESRGAN scales the dense-block convs by 0.1 so that a deep residual trunk starts close to the
    identity and trains stably.
    """
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, output scaled by 0.2 plus input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator; ``forward(x) == tail(body_features(head(x)))``."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ):
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(
                f"RRDBNet scale={scale!r} is not supported; use one of {SUPPORTED_SCALES}"
            )
        self.scale = scale
        self.num_feat = num_feat
        self.num_block = num_block
        self.unshuffle = _UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale != 3:
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def describe(self) -> str:
        """Short architecture label used in checkpoint error messages."""
        return f"RRDBNet(scale={self.scale}, num_feat={self.num_feat}, num_block={self.num_block})"

    def complete_state(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``state`` plus the entries a checkpoint may leave out: none for RRDBNet itself.

        Subclasses with an optional extra part (BAPD's detail-recovery branch) fill it from their
        own initialisation, so that a clean RRDBNet checkpoint still initialises them strictly.
        """
        return dict(state)

    def head(self, x: Tensor) -> Tensor:
        """LR image -> shallow features (pixel-unshuffle for x2/x1, then ``conv_first``)."""
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(
                    f"RRDBNet x{self.scale} needs input height and width divisible by "
                    f"{self.unshuffle}; got {h}x{w}"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        return self.conv_first(x)

    def body_features(self, feat: Tensor) -> Tensor:
        """Trunk output including the long skip: ``feat + conv_body(body(feat))``."""
        return feat + self.conv_body(self.body(feat))

    def tail(self, feat: Tensor) -> Tensor:
        """Reconstruction layers: nearest upsampling + conv stages, then ``conv_hr``, ``conv_last``."""
        if self.scale == 3:
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=3, mode="nearest")))
        else:
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.body_features(self.head(x)))


def _extract_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    """Unwrap BasicSR's ``{'params_ema': ...}`` / ``{'params': ...}`` and DataParallel prefixes.

    ``params_ema`` wins over ``params`` because published GAN checkpoints ship the EMA weights as
    the ones to evaluate.
    """
    if not isinstance(obj, Mapping):
        raise UserError(f"{source}: not a state dict (the file holds a {type(obj).__name__})")
    for key in ("params_ema", "params"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise UserError(
                f"{source}: not a state dict (entry {key!r} is a {type(value).__name__})"
            )
        state[key.removeprefix("module.")] = value
    return state


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _shape(t: Tensor | torch.Size) -> str:
    return "(" + ",".join(str(d) for d in t) + ")"


def _state_problems(net: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Missing, unexpected and wrongly shaped keys, each as one short phrase."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {_shape(state[k].shape)} in file vs {_shape(v.shape)} in model"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing " + _listed(missing))
    if unexpected:
        problems.append("unexpected " + _listed(unexpected))
    if mismatched:
        problems.append("shape mismatch " + _listed(mismatched))
    return problems


def load_generator_state(net: RRDBNet, obj: Any, source: str) -> None:
    """Load a plain or BasicSR-wrapped state dict into ``net``, strictly.

    Strictness matters: a silently half-loaded generator would produce plausible-looking but wrong
    benchmark numbers, so every mismatch is refused with one line naming ``source`` and the keys.
    """
    state = net.complete_state(_extract_state_dict(obj, source))
    problems = _state_problems(net, state)
    if problems:
        raise UserError(f"{source}: not an {net.describe()} state dict: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)


def load_generator_file(net: RRDBNet, path: str | Path) -> None:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no pickled code runs) and load it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: generator checkpoint not found")
    load_generator_state(net, read_checkpoint(path), str(path))


def read_checkpoint(path: Path) -> object:
    """``torch.load(weights_only=True)`` with one line saying what the file is not.

    torch's own messages for a bad file are long, of many exception types, and end in advice
    to load with ``weights_only=False`` (i.e. run the file's code), so they are not repeated.
    """
    import pickle
    import warnings

    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise UserError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    is_zip = head == b"PK\x03\x04"  # torch.save's format since 1.6; a legacy file is a pickle
    if not is_zip and head[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        raise UserError(f"{path}: not a PyTorch checkpoint (expected a file written by "
                        f"torch.save, e.g. a .pth state dict)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: a pickle that is not a plain state dict (it holds code or "
                        f"custom objects): refused for safety; re-save it with "
                        f"torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many unrelated types for a bad file
        what = "a damaged PyTorch checkpoint (truncated or corrupt zip archive)" if is_zip \
            else "a damaged or unsupported PyTorch checkpoint"
        raise UserError(f"{path}: {what} ({type(exc).__name__})") from None
