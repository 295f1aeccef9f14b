"""ImageNet-C corruptions (Hendrycks & Dietterich, 2019) from the maintained ``imagecorruptions``
package (the ``imagecorruptions-imaug`` fork), as the degradation op ``corrupt``.

We do not re-implement any of them: the library's definitions *are* the benchmark, and a copy
would drift. What this module adds is determinism. The library draws from NumPy's global RNG (and
``impulse_noise``/``glass_blur`` from a ``seed=`` argument, else fresh OS entropy), so each call
seeds both from the suite's per-image generator and restores the global state afterwards: the
same (suite seed, image) gives the same pixels in any process, and nothing else in the process
sees its RNG move.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

# Corruptions whose function takes its own ``seed=`` instead of the global RNG.
_SEED_ARGUMENT = ("impulse_noise", "glass_blur")
MIN_SIDE = 32  # the library refuses smaller images


@lru_cache(maxsize=1)
def corruption_names() -> tuple[str, ...]:
    """The 19 corruptions the library defines (15 ImageNet-C test + 4 validation ones)."""
    from imagecorruptions import get_corruption_names

    return tuple(get_corruption_names("all"))


def check_name(name: object, where: str) -> None:
    if name not in corruption_names():
        raise ConfigError(f"{where}: {name!r} is not an imagecorruptions corruption; expected one "
                          f"of {', '.join(corruption_names())}")


def corrupt_u8(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One HxWx3 uint8 image through ``imagecorruptions.corrupt`` with every random draw taken
    from ``seed``; the global NumPy RNG is left as it was."""
    from imagecorruptions import corrupt

    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ConfigError(f"corrupt {name}: a {w}x{h} image is too small; imagecorruptions needs "
                          f"both sides >= {MIN_SIDE} (use larger eval images)")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        extra = {"seed": seed} if name in _SEED_ARGUMENT else {}
        out = corrupt(image, severity=int(severity), corruption_name=name, **extra)
    finally:
        np.random.set_state(state)
    if out.shape != image.shape:  # frost/zoom on odd sizes: the library may round
        out = np.asarray(out)[:h, :w]
    return np.ascontiguousarray(out, dtype=np.uint8)


def corrupt_batch(x: Tensor, name: str, severity: int, rng: np.random.Generator) -> Tensor:
    """``corrupt_u8`` on every image of an NCHW [0, 1] batch, one seed per image from ``rng``."""
    u8 = (x.detach().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    seeds = rng.integers(0, 2**31 - 1, size=len(u8))
    out = np.stack([corrupt_u8(np.ascontiguousarray(img), name, severity, int(s))
                    for img, s in zip(u8, seeds)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x) / 255.0
