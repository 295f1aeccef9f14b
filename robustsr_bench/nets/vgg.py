"""Frozen VGG19 feature extractor for the ESRGAN perceptual loss.

The network is torchvision's ``vgg19(weights=None)``: it never downloads anything by itself. Weights
come from an explicit file in torchvision's ``vgg19-dcbb9e9d.pth`` format (``features.N.weight`` ...),
normally the torch hub cache that ``python -m robustsr_bench weights fetch vgg19`` fills, so that runs
are reproducible offline and a missing file is a clear one-line error rather than a hidden download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import MissingWeightsError, UserError

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
_FETCH_HINT = "python -m robustsr_bench weights fetch vgg19"
# Convolutions per block of VGG19's ``features``; each conv is followed by a ReLU, each block by a pool.
_VGG19_BLOCKS = (2, 2, 4, 4, 4)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layer_indices() -> dict[str, int]:
    """``{'conv1_1': 0, 'relu1_1': 1, ..., 'conv5_4': 34, 'relu5_4': 35, 'pool5': 36}``."""
    names: list[str] = []
    for block, num_convs in enumerate(_VGG19_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return {name: index for index, name in enumerate(names)}


VGG19_LAYERS: dict[str, int] = _vgg19_layer_indices()


def vgg19_cache_path() -> Path:
    """Where torchvision would cache VGG19 weights (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _load_features_state(features: nn.Sequential, path: Path) -> None:
    """Load only the ``features.*`` entries, strictly; the classifier is never used."""
    if not path.is_file():
        raise MissingWeightsError(f"VGG19 weights not found at {path}; run `{_FETCH_HINT}`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        features.load_state_dict(state, strict=True)
    except Exception as exc:  # unreadable file or wrong layout: both mean "re-fetch it"
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"{path}: not a torchvision VGG19 weight file ({type(exc).__name__}: {reason}); "
            f"re-run `{_FETCH_HINT}`"
        ) from exc


class VGGFeatureExtractor(nn.Module):
    """VGG19 ``features`` up to and including ``layer``, on [0, 1] RGB input; frozen, always eval.

    ``layer='conv5_4'`` (index 34) is ESRGAN's choice: features *before* the ReLU keep the negative
    responses, which gives stronger supervision for brightness and texture.
    ``weights_path=None`` leaves the network randomly initialised; that is only meant for tests of
    the wiring, never for a real perceptual loss.
    """

    def __init__(
        self,
        layer: str = "conv5_4",
        use_input_norm: bool = True,
        weights_path: str | Path | None = None,
    ):
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(
                f"unknown VGG19 layer {layer!r}; choose one of {', '.join(VGG19_LAYERS)}"
            )
        # torchvision (and the torch._dynamo it imports) costs ~1.5 s of start-up: only here
        from torchvision.models import vgg19

        # Initialising 140M parameters only to overwrite them costs seconds; skip it with a file.
        features = vgg19(weights=None, init_weights=weights_path is None).features
        if weights_path is not None:
            _load_features_state(features, Path(weights_path))
        self.layer = layer
        self.use_input_norm = use_input_norm
        self.features = features[: VGG19_LAYERS[layer] + 1]
        self.register_buffer(
            "mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Stay in eval mode even when a parent module is put in training mode."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        return self.features(x)
