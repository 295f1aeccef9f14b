"""Pretrained files: where each must lie in the cache, and an early, exact refusal when absent.

Compute nodes often have no internet, so nothing is ever downloaded inside a run. The cache follows
the conventions torchvision, lpips and pyiqa already read (``$TORCH_HOME/hub/...``), so a file
fetched once serves all three. ``python -m robustsr_bench weights fetch NAME`` downloads (where
there is internet); a run that needs a missing file stops before training, naming the path it
looked for and that command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, MissingWeightsError


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file of the manifest."""

    name: str
    filename: str
    subdir: str
    url: str
    used_by: str
    size: int | None = None

    @property
    def path(self) -> Path:
        return hub_dir() / self.subdir / self.filename


MANIFEST: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("vgg19", "vgg19-dcbb9e9d.pth", "checkpoints",
               "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               "perceptual loss (GAN profile, RSR/AND attack losses)", 574673361),
    WeightFile("alexnet", "alexnet-owt-7be5be79.pth", "checkpoints",
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
               "LPIPS (AlexNet backbone)", 244408911),
)}


def hub_dir() -> Path:
    """``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), as torch.hub computes it."""
    import torch.hub

    return Path(torch.hub.get_dir())


def weight_file(name: str) -> WeightFile:
    if name not in MANIFEST:
        raise ConfigError(f"unknown weight file '{name}'; valid: {', '.join(sorted(MANIFEST))}")
    return MANIFEST[name]


def require(names: Iterable[str]) -> dict[str, Path]:
    """Paths of the named files; one error listing every missing path and the fetch command."""
    files = [weight_file(n) for n in dict.fromkeys(names)]
    missing = [w for w in files if not w.path.is_file()]
    if missing:
        paths = ", ".join(str(w.path) for w in missing)
        cmd = "python -m robustsr_bench weights fetch " + " ".join(w.name for w in missing)
        raise MissingWeightsError(f"missing pretrained file(s): {paths}; run `{cmd}` where there "
                                  f"is internet, or copy the file(s) to that path")
    return {w.name: w.path for w in files}
