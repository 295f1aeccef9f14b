"""Calibrate AND's PGD radius against the eval suites' degradation strength.

The AND paper sets its perturbation budget "to make their respective intensity close to
real-world degradation". This module measures that intensity in the one currency both sides
share: the PSNR of a degraded LR against its clean LR. For AND, the attacked LR ``F_theta(hr)``
against the identity LR ``F_theta_id(hr)`` (the clean bicubic LR when ``degradation.pool`` is
``bicubic``) on crops of the embedded training photos, for a grid of radii, adversarial (the
method's own PGD, run by :meth:`AND.degrade`) and random (``no_adversarial``'s deviation);
for each eval suite, its LR against the clean suite's LR on the eval photos.

The attacked network is a fixed stand-in for G, MATLAB bicubic upsampling: the budget is a
property of the degradation family, not of one checkpoint, and the stand-in needs no weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import registry
from .config import check
from .data import embedded
from .data.degradations import apply_ops
from .data.image_ops import imresize, mod_crop
from .data.io import load_image, to_tensor
from .data.suites import suite_ops
from .errors import ConfigError
from .files import atomic_write_text

SUITES = ("gaussian_noise", "jpeg", "blur_noise", "camera", "realesrgan")


@dataclass
class CalibrationOptions:
    profiles: Sequence[str] = ("smoke", "paper")
    radii: Sequence[float] = (0.003, 0.01, 0.015, 0.02, 0.03, 0.04, 0.1, 1.0, 1.5, 2.0, 20.0)
    crops: int = 8
    patch: int = 64
    seed: int = 0
    units: bool = True
    suites: Sequence[str] = SUITES

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> "CalibrationOptions":
        """From the CLI's values (``None`` = default); radii / profiles comma-separated."""
        out = cls()
        if args.get("radii"):
            out.radii = tuple(_positive(r, "--radii") for r in str(args["radii"]).split(","))
        if args.get("profiles"):
            out.profiles = tuple(p.strip() for p in str(args["profiles"]).split(","))
            for name in out.profiles:
                registry.profile(name)  # a clear error for an unknown profile
        for key in ("crops", "patch", "seed"):
            if args.get(key) is not None:
                setattr(out, key, int(args[key]))
        if args.get("units") is not None:
            out.units = bool(args["units"])
        check(out.crops >= 1, "--crops", out.crops, "an integer >= 1")
        check(out.patch >= 16 and out.patch % 4 == 0, "--patch", out.patch,
              "a multiple of 4, >= 16")
        return out


def _positive(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    check(value > 0, where, text, "comma-separated numbers > 0, e.g. 0.01,0.04,20")
    return value


class BicubicUp(nn.Module):
    """The attacked stand-in for G: MATLAB bicubic upsampling by ``scale``."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, scale_factor=self.scale)


def lr_psnr(a: Tensor, b: Tensor) -> list[float]:
    """Per-image RGB PSNR (peak 1) of NCHW ``a`` against ``b``."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return [math.inf if m == 0 else 10 * math.log10(1 / m) for m in mse.tolist()]


def training_crops(count: int, patch: int, scale: int, seed: int) -> Tensor:
    """``count`` random ``patch``-px HR crops of the embedded training photos (seeded)."""
    rng = np.random.default_rng(seed)
    photos = [to_tensor(load_image(p))[0] for p in embedded.train_paths()]
    crops = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[-2:]
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        crops.append(img[:, y:y + patch, x:x + patch])
    return mod_crop(torch.stack(crops), scale)


def attacked_psnr(hr: Tensor, cfg, radius: float, mode: str, seed: int = 0) -> list[float]:
    """PSNR of AND's degraded LR against F's identity LR, one figure per HR crop."""
    return attacked_stats(hr, cfg, radius, mode, seed)[0]


def dc_share(error: Tensor) -> float:
    """Fraction of an NCHW error's energy in its per-channel mean (a global colour shift)."""
    error = error.double()
    return float(error.mean((2, 3)).pow(2).mean() / error.pow(2).mean().clamp_min(1e-30))


def attacked_stats(hr: Tensor, cfg, radius: float, mode: str,
                   seed: int = 0) -> tuple[list[float], list[float]]:
    """Per HR crop: PSNR of AND's degraded LR against F's identity LR, and the share of that
    error's energy that is a per-channel DC shift (:func:`dc_share`).

    Runs the method's own :meth:`AND.degrade` (``attack.mode`` = ``mode``; ``random`` uses the
    same ``radius``), with one crop per call so that each crop gets its own attack.
    """
    from robustsr_bench.methods.and_degradation import AND
    from robustsr_bench.methods.base import Modules, TrainContext

    a = cfg.attack
    a.mode, a.radius, a.random_radius = mode, radius, None
    a.step = radius * (6.0 / 20.0)  # the paper's step / radius ratio
    method = AND()
    modules = Modules(BicubicUp(cfg.scale), None, method.build_aux(cfg, torch.device("cpu")))
    ctx = TrainContext(cfg, 0, lambda sr, gt, pw, qw: pw * F.l1_loss(sr, gt), False)
    net = modules.aux["degradation"]
    psnrs, shares = [], []
    for i in range(hr.shape[0]):
        torch.manual_seed(seed * 100003 + i)
        one = hr[i:i + 1]
        deg = method.degrade(one, modules, ctx)
        ident = net.apply(deg.theta0, one, net.sample_noise(one))
        psnrs += lr_psnr(deg.lq, ident)
        shares.append(dc_share(deg.lq - ident))
    return psnrs, shares


def suite_psnr(name: str, scale: int, paths: Sequence[Path]) -> list[float]:
    """PSNR of suite ``name``'s LR against the clean suite's LR, per eval photo (seeded as
    the suite generator seeds them)."""
    return suite_stats(name, scale, paths)[0]


def suite_stats(name: str, scale: int,
                paths: Sequence[Path]) -> tuple[list[float], list[float]]:
    """:func:`suite_psnr` and the DC share of each suite LR's error (:func:`dc_share`)."""
    suite, clean = registry.suite_spec(name), registry.suite_spec("clean")
    psnrs, shares = [], []
    for index, path in enumerate(paths):
        hr = mod_crop(to_tensor(load_image(path)), scale)
        lr = apply_ops(hr, suite_ops(suite), scale, np.random.default_rng([suite.seed, index]))
        ref = apply_ops(hr, suite_ops(clean), scale, np.random.default_rng([clean.seed, index]))
        psnrs += lr_psnr(lr, ref)
        shares.append(dc_share(lr - ref))
    return psnrs, shares


def _pct(values: Sequence[float]) -> str:
    return f"{100 * float(np.median(values)):.0f} %"


def summary(values: Sequence[float]) -> str:
    """``median [q1, q3]`` in dB."""
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def _resolve(profile: str, **attack: Any):
    cfg = registry.resolve_config("and", profile)
    for key, value in attack.items():
        setattr(cfg.attack, key, value)
    return cfg


def _mark(radius: float, a) -> str:
    tags = [t for t, r in (("PGD default", a.radius), ("random default", a.random_radius))
            if r is not None and math.isclose(radius, r)]
    return f"{radius:g}" + (f" ({', '.join(tags)})" if tags else "")


def calibration_table(options: CalibrationOptions) -> str:
    """The markdown table: suites first, then per profile and radius AND adversarial / random,
    then (``units``) the paper's radius 20 under each norm parameterisation."""
    lines = ["# AND calibration: LR PSNR against the clean LR (dB, median [IQR])", "",
             "Command: `python -m robustsr_bench calibrate and` "
             f"({options.crops} crops of {options.patch} px from the embedded training photos, "
             f"seed {options.seed}; attacked G stand-in: bicubic upsampling; PGD step = "
             "0.3 x radius as the paper's 6/20; 5 PGD steps; CPU, float32). \"DC\": median share "
             "of the LR error's energy that is a per-channel mean shift (a global colour change).",
             "", "| degradation | LR PSNR vs clean LR | DC |", "|---|---|---|"]
    scale = registry.resolve_config("and", options.profiles[0]).scale
    paths = embedded.held_out_paths()
    suite_values: list[float] = []
    suite_dc: list[float] = []
    for name in options.suites:
        values, dc = suite_stats(name, scale, paths)
        suite_values += values
        suite_dc += dc
        lines.append(f"| suite `{name}` ({len(values)} eval photos) | {summary(values)} | "
                     f"{_pct(dc)} |")
    lines.append(f"| all {len(options.suites)} suites pooled | {summary(suite_values)} | "
                 f"{_pct(suite_dc)} |")
    crops: dict[int, Tensor] = {}
    for profile in options.profiles:
        cfg = registry.resolve_config("and", profile)
        hr = crops.setdefault(cfg.scale, training_crops(options.crops, options.patch, cfg.scale,
                                                        options.seed))
        a = cfg.attack
        lines += ["", f"Profile `{profile}` (F: {cfg.degradation.channels} channels, "
                  f"pool {cfg.degradation.pool}, conv_norm {a.conv_norm}, image_range "
                  f"{a.image_range:g})", "",
                  "| radius | adversarial (PGD) | DC | random (no_adversarial) | DC |",
                  "|---|---|---|---|---|"]
        grid = sorted({*options.radii, a.radius, *([a.random_radius] if a.random_radius else [])})
        for radius in grid:
            adv, adv_dc = attacked_stats(hr, _resolve(profile), radius, "adversarial",
                                         options.seed)
            rnd, rnd_dc = attacked_stats(hr, _resolve(profile), radius, "random", options.seed)
            lines.append(f"| {_mark(radius, a)} | {summary(adv)} | {_pct(adv_dc)} | "
                         f"{summary(rnd)} | {_pct(rnd_dc)} |")
    if options.units:
        profile = options.profiles[-1]
        hr = crops[registry.resolve_config("and", profile).scale]
        lines += ["", f"The paper's radius 20 under each norm parameterisation (profile "
                  f"`{profile}`):", "",
                  "| conv_norm | image_range | adversarial (PGD) | random |", "|---|---|---|---|"]
        for conv_norm in ("raw", "per_layer"):
            for image_range in (1.0, 255.0):
                units = {"conv_norm": conv_norm, "image_range": image_range}
                adv = attacked_psnr(hr, _resolve(profile, **units), 20.0, "adversarial",
                                    options.seed)
                rnd = attacked_psnr(hr, _resolve(profile, **units), 20.0, "random",
                                    options.seed)
                lines.append(f"| {conv_norm} | {image_range:g} | {summary(adv)} | "
                             f"{summary(rnd)} |")
    return "\n".join(lines) + "\n"


def calibrate_command(method: str, args: Mapping[str, Any], out: Path) -> int:
    """Write ``out`` (markdown) and print it."""
    if method != "and":
        raise ConfigError(f"calibrate: method {method!r} has no calibration; valid: and")
    text = calibration_table(CalibrationOptions.from_args(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(text, end="")
    return 0
