"""Load any published SR checkpoint into a network the evaluation can run: spandrel, safely.

spandrel detects 40-odd SR/restoration architectures from a bare state dict (BasicSR's
``params`` / ``params_ema`` wrappers and ``module.`` prefixes included) and builds the model with
the right hyper-parameters. We read the file ourselves, so that nothing in it can run code and
every failure is one line naming the file: ``.safetensors`` through safetensors, anything else
through ``torch.load(weights_only=True)`` (tensors and plain containers only; a pickle that
would import or call anything is refused before any of it runs). The state dict then goes to
spandrel; where spandrel cannot build it, our own RRDBNet loader is tried, because the harness
writes RRDBNets whose grow channels spandrel does not infer (it assumes 32; the smoke profile
uses 8).

The network evaluation gets (:class:`PublishedSR`) runs spandrel's own call, which pads the input
to the architecture's size requirement (minimum side, multiple, square) with reflection, runs the
model, clamps to [0, 1] and crops the padding off again; for the RRDBNet fallback the same is
done here. Tiles are aligned to the requirement's multiple (``unshuffle``, the attribute tiled
evaluation reads), so a tile needs padding only where the image itself does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UserError
from .nets.rrdbnet import RRDBNet, load_generator_state

log = logging.getLogger("robustsr_bench")
HARNESS_RRDBNET = "RRDBNet (robustsr_bench)"


class CheckpointError(UserError):
    """A file that is not a loadable super-resolution checkpoint."""


def _install_extra_arches() -> None:
    """Installing the optional ``spandrel-extra-arches`` package is the opt-in to its
    architectures (non-commercial licences, see README); nothing happens without it."""
    try:
        import spandrel_extra_arches
    except ImportError:
        return
    try:
        spandrel_extra_arches.install(ignore_duplicates=True)
    except Exception as exc:  # noqa: BLE001 - an incompatible version must not break loading
        log.warning("spandrel-extra-arches is installed but could not be registered: %s", exc)


def supported_families() -> list[str]:
    """spandrel's architecture names (what ``evaluate`` can load)."""
    from spandrel import MAIN_REGISTRY

    _install_extra_arches()
    return [a.architecture.name for a in MAIN_REGISTRY.architectures("detection")]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def read_state(path: Path) -> dict[str, Any]:
    """The file's contents as tensors and plain containers; never runs code from the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file "
                                  f"({_first_line(exc)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refused: its pickle asks to import or call code "
                f"({_unsafe_global(text)}), and checkpoints are read with "
                f"torch.load(weights_only=True); nothing from the file was run") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated/corrupt "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def _unsafe_global(message: str) -> str:
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported global" in line:
            return line.strip().rstrip(".")[:160]
    return "a global outside the weights-only allow-list"


@dataclass
class LoadedModel:
    """What evaluation needs to know about a loaded checkpoint."""

    net: PublishedSR
    architecture: str
    scale: int
    minimum: int
    multiple_of: int
    square: bool
    parameters: int
    tiling: str  # spandrel's advice: supported / discouraged / internal
    purpose: str


class PublishedSR(nn.Module):
    """``forward(lr)``: padded to the size requirement, run, clamped to [0, 1], cropped back."""

    def __init__(self, model: nn.Module, call: Callable[[Tensor], Tensor], scale: int,
                 multiple_of: int):
        super().__init__()
        self.model = model
        self._call = call
        self.scale = scale
        self.unshuffle = multiple_of  # tiled evaluation aligns tile edges to this

    def forward(self, lr: Tensor) -> Tensor:
        return self._call(lr)


def _rrdbnet_call(net: RRDBNet) -> Callable[[Tensor], Tensor]:
    """Our RRDBNet x2/x1 needs sides divisible by its pixel-unshuffle: reflect-pad, crop back."""
    m = net.unshuffle

    def call(lr: Tensor) -> Tensor:
        h, w = lr.shape[-2:]
        ph, pw = -h % m, -w % m
        x = F.pad(lr, (0, pw, 0, ph), mode="reflect") if ph or pw else lr
        return net(x).clamp(0, 1)[..., : h * net.scale, : w * net.scale]
    return call


def _harness_rrdbnet(state: dict[str, Any], path: Path) -> LoadedModel:
    """Build our RRDBNet with the sizes the state dict implies, then load it strictly."""
    inner = state
    for key in ("params_ema", "params"):
        if isinstance(state.get(key), dict):
            inner = state[key]
            break
    inner = {k.removeprefix("module."): v for k, v in inner.items()}
    first = inner["conv_first.weight"]
    unshuffle = {3: 1, 12: 2, 48: 4}[first.shape[1]]
    scale = {1: 4 if "conv_up2.weight" in inner else 3, 2: 2, 4: 1}[unshuffle]
    blocks = len({k.split(".")[1] for k in inner if k.startswith("body.")})
    net = RRDBNet(num_in_ch=3, num_out_ch=inner["conv_last.weight"].shape[0], scale=scale,
                  num_feat=first.shape[0], num_block=blocks,
                  num_grow_ch=inner["body.0.rdb1.conv1.weight"].shape[0])
    load_generator_state(net, inner, str(path))
    net.eval()
    return LoadedModel(PublishedSR(net, _rrdbnet_call(net), scale, net.unshuffle),
                       HARNESS_RRDBNET, scale, 0, net.unshuffle, False,
                       sum(p.numel() for p in net.parameters()), "supported", "SR")


def from_descriptor(desc: Any) -> LoadedModel:
    req = desc.size_requirements
    desc.model.eval()
    return LoadedModel(PublishedSR(desc.model, desc, desc.scale, req.multiple_of),
                       str(desc.architecture.id), int(desc.scale), req.minimum, req.multiple_of,
                       req.square, sum(p.numel() for p in desc.model.parameters()),
                       desc.tiling.name.lower(), str(desc.purpose))


def load_model(path: Path) -> LoadedModel:
    """Read ``path`` safely and build its network (spandrel, else our RRDBNet); CPU, eval mode.

    Refused with one line naming the file: unreadable or unsafe files, state dicts of no known
    architecture (the line lists the supported families), and models that are not image-to-image
    RGB super-resolution (inpainting, grayscale, face-restoration-only).
    """
    from spandrel import ImageModelDescriptor, ModelLoader, canonicalize_state_dict

    path = Path(path)
    state = read_state(path)
    _install_extra_arches()
    try:
        desc = ModelLoader("cpu").load_from_state_dict(canonicalize_state_dict(dict(state)))
    except Exception as exc:  # noqa: BLE001 - detection misses raise several types
        spandrel_error = exc
    else:
        if not isinstance(desc, ImageModelDescriptor):
            raise CheckpointError(f"{path}: a {desc.architecture.name} {desc.purpose} model, not "
                                  f"an image super-resolution model")
        if desc.input_channels != 3 or desc.output_channels != 3:
            raise CheckpointError(f"{path}: a {desc.architecture.name} model with "
                                  f"{desc.input_channels}->{desc.output_channels} channels; "
                                  f"the benchmark needs RGB in and out (3->3)")
        return from_descriptor(desc)
    try:
        return _harness_rrdbnet(state, path)
    except (KeyError, IndexError, AttributeError, TypeError, UserError):
        pass
    families = ", ".join(supported_families())
    raise CheckpointError(f"{path}: not a super-resolution checkpoint spandrel or robustsr_bench "
                          f"recognises ({type(spandrel_error).__name__}: "
                          f"{_first_line(spandrel_error) or 'no architecture matched'}); "
                          f"supported families: {families}, and the harness's RRDBNet")
