"""A SEAL-style fixed set of representative Real-ESRGAN degradations (Zhang et al., ICLR 2024).

SEAL's point: one random draw per image of the Real-ESRGAN pipeline (suite ``realesrgan``) mixes
easy and hard cases into one average, and a fresh draw gives another number. Instead, sample the
pipeline's parameter space densely, cluster it, and keep one *representative* concrete pipeline
per cluster; a model is then scored per degradation, by the acceptance ratio (the share of
degradations where it beats an acceptance line, e.g. bicubic or the clean ESRGAN model).

How the set is chosen (:func:`choose`): draw ``samples`` concrete pipelines from
:func:`~robustsr_bench.data.degradations.realesrgan_ops` (every range, choice and probability
resolved by a seeded generator), describe each by 12 numbers (both stages' blur sigmas, log
resize factors, Gaussian sigma, Poisson scale and JPEG quality, and the final resize/JPEG
order), z-score them, run k-means (``scipy.cluster.vq.kmeans2``, k-means++ init, seeded) and keep
the sampled pipeline nearest each centroid. SEAL uses 100 clusters on a GPU; 24 keep the CPU
smoke protocol fast. The result is frozen into ``configs/families/seal.yaml`` by
``python -m robustsr_bench.data.seal`` (what was chosen never changes silently); only the noise
realisation is drawn at evaluation time, from the suite seed and the image index.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ..files import configs_dir
from .degradations import resize_factor, realesrgan_ops
from .image_ops import RESIZE_MODES, parse_number
from .op_spec import draw, draw_int, draw_mode

SAMPLES = 4000
CLUSTERS = 24
SEED = 2024
FEATURES = ("blur1", "blur1_y", "resize1", "gauss1", "poisson1", "jpeg1",
            "blur2", "blur2_y", "resize2", "gauss2", "poisson2", "jpeg2")


def freeze(ops: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """One concrete pipeline: every range drawn, every ``one_of`` and ``prob`` decided."""
    out: list[dict[str, Any]] = []
    for op in ops:
        if "prob" in op and rng.random() >= parse_number(op["prob"]):
            continue
        kind = op["op"]
        if kind == "one_of":
            probs = [parse_number(p) for p in op["probs"]] if "probs" in op else None
            out += freeze(op["choices"][int(rng.choice(len(op["choices"]), p=probs))], rng)
        elif kind == "blur":
            sx = draw(op["sigma"], rng)
            sy = draw(op["sigma_y"], rng) if "sigma_y" in op else sx
            out.append({"op": "blur", "sigma": round(sx, 4), "sigma_y": round(sy, 4),
                        "theta": round(draw(op.get("theta", 0.0), rng), 4)})
        elif kind == "resize":
            factor = resize_factor(op, rng)
            out.append({"op": "resize", "factor": round(factor, 4),
                        "mode": draw_mode(op.get("mode", "bicubic"), rng),
                        "base": op.get("base", "input")})
        elif kind == "resize_to_target":
            mode = draw_mode(op.get("mode", RESIZE_MODES), rng)
            out.append({"op": "resize_to_target", "mode": mode})
        elif kind in ("noise", "poisson"):
            field = "sigma" if kind == "noise" else "scale"
            value = draw(op[field], rng)
            gray = rng.random() < parse_number(op.get("gray_prob", 0.0))
            out.append({"op": kind, field: round(value, 5), "gray_prob": 1.0 if gray else 0.0})
        elif kind == "jpeg":
            out.append({"op": "jpeg", "quality": draw_int(op["quality"], rng)})
        else:
            out.append(dict(op))
    return out


def features(ops: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The 12 numbers k-means sees (0 where a step was skipped), plus the final order."""
    vec = dict.fromkeys(FEATURES, 0.0)
    stage, blurs, resizes, jpegs = 1, 0, 0, 0
    order = 0.0
    for op in ops:
        kind = op["op"]
        if kind == "blur":
            stage = 1 if resizes == 0 else 2
            vec[f"blur{stage}"], vec[f"blur{stage}_y"] = op["sigma"], op["sigma_y"]
            blurs += 1
        elif kind == "resize":
            resizes += 1
            vec[f"resize{resizes}"] = math.log(op["factor"])
        elif kind == "noise":
            vec[f"gauss{min(resizes, 2)}"] = op["sigma"] * 255
        elif kind == "poisson":
            vec[f"poisson{min(resizes, 2)}"] = op["scale"]
        elif kind == "jpeg":
            jpegs += 1
            vec[f"jpeg{min(jpegs, 2)}"] = op["quality"]
        elif kind == "resize_to_target":
            order = 1.0 if jpegs < 2 else 0.0  # 1: resize then JPEG
    return np.array([*vec.values(), order])


def choose(samples: int = SAMPLES, clusters: int = CLUSTERS, seed: int = SEED) \
        -> list[list[dict[str, Any]]]:
    """The sampled pipelines nearest the k-means centroids, in cluster order."""
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    pipelines = [freeze(realesrgan_ops(), rng) for _ in range(samples)]
    x = np.stack([features(p) for p in pipelines])
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    centroids, _ = kmeans2(z, clusters, minit="++", seed=np.random.default_rng(seed))
    chosen: list[int] = []
    for c in centroids:
        order = np.argsort(((z - c) ** 2).sum(axis=1))
        chosen.append(int(next(i for i in order if i not in chosen)))
    return [pipelines[i] for i in chosen]


def family_yaml(samples: int = SAMPLES, clusters: int = CLUSTERS, seed: int = SEED) -> str:
    how = (f"{samples} concrete Real-ESRGAN second-order pipelines sampled with seed {seed}; "
           f"features {', '.join(FEATURES)}, final order; z-scored; scipy kmeans2 k={clusters} "
           f"(k-means++, seed {seed}); the sample nearest each centroid is kept. Regenerate: "
           f"python -m robustsr_bench.data.seal")
    data = {"prefix": "seal", "description": "SEAL-style representative Real-ESRGAN "
            "degradations (acceptance ratio AR)", "how_chosen": how, "seed": 7,
            "score": "acceptance",
            "families": {"realesrgan": {
                "group": "pipelines", "library": "robustsr_bench (Real-ESRGAN pipeline, SEAL)",
                "description": "SEAL representative Real-ESRGAN degradation",
                "levels": {i + 1: ops for i, ops in enumerate(choose(samples, clusters, seed))}}}}
    header = ("# Generated by `python -m robustsr_bench.data.seal`: do not edit by hand.\n"
              "# A frozen, seeded SEAL-style set (robustsr_bench/data/seal.py says how chosen).\n")
    return header + yaml.safe_dump(data, sort_keys=False, width=100)


def main() -> None:
    path = configs_dir() / "families" / "seal.yaml"
    path.write_text(family_yaml(), encoding="utf-8")
    print(path)


if __name__ == "__main__":
    main()
