"""SR-C scores: per-family severity curves, corruption error (CE), mCE and relative mCE.

ImageNet-C (Hendrycks & Dietterich, 2019) ranks classifiers by the mean corruption error: per
corruption family f, the error summed over its 5 severities, divided by the same sum for a
baseline (AlexNet), averaged over families. SR-C transfers it with these choices (ours):

* **Error = 1 - SSIM-Y** of the SR output against the HR. It lies in [0, 1] and is 0 for a perfect
  output, like a classification error, so sums over severities and ratios behave as in
  ImageNet-C. A PSNR deficit is logarithmic and unbounded: one near-perfect clean image would
  dominate a sum of dB, and a ratio of dB deficits has no error-rate reading.
* **Baseline = bicubic** upsampling on the same images: the model every SR method must beat.
* ``CE_f = sum_s E_f,s(model) / sum_s E_f,s(bicubic)``; ``mCE`` = mean of ``CE_f`` over families;
  ``relative CE_f = sum_s (E_f,s - E_clean)(model) / sum_s (E_f,s - E_clean)(bicubic)``, the
  degradation *drop* from clean normalised the same way; relative mCE its mean. All in percent:
  bicubic scores 100; lower is better.
* **Uncertainty**: a percentile bootstrap over (seed, image) units, paired: each resample draws
  units of the model and scores bicubic on the same image multiset. (Issue 16's ``stats.py``
  will offer the project's paired bootstrap; this module keeps its own small one until then.)

The report calls :func:`report_section` once; it writes ``tables/sr_c_summary.*``,
``tables/sr_c_curves.csv`` (PSNR-Y / SSIM-Y / LPIPS where present, per model, family, severity)
and one figure per family group, and returns the README section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import registry
from .config import flatten
from .errors import UserError
from .files import atomic_write_text
from .results import RunDir

BASELINE = "bicubic"
ERROR_METRIC = "ssim_y"
CURVE_METRICS = ("psnr_y", "ssim_y", "lpips")
RESAMPLES = 2000
CI = 0.95


def family_of(suite: str) -> dict[str, Any] | None:
    """The ``corruption:`` block of a generated family suite, else None."""
    if "/" not in suite:
        return None
    try:
        return registry.suite(suite).get("corruption")
    except UserError:  # a suite whose family file is gone: not part of SR-C any more
        return None


def _ce_family(suite: str) -> dict[str, Any] | None:
    """``family_of`` for families scored by CE (not SEAL's acceptance sets)."""
    info = family_of(suite)
    return info if info and info.get("score", "ce") == "ce" else None


@dataclass(frozen=True)
class Scores:
    """One model's SR-C numbers (percent), with 95% bootstrap CIs."""

    model: str
    clean_psnr: float
    mce: float
    mce_ci: tuple[float, float]
    rel_mce: float
    rel_mce_ci: tuple[float, float]
    worst_family: str
    worst_ce: float
    families: int
    units: int


def error_cube(frame: pd.DataFrame, families: Sequence[str], severities: Sequence[int]) \
        -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """``(E[unit, family, severity], E_clean[unit], units)`` of one model's rows, where a unit is
    a (seed, image) pair and E = 1 - SSIM-Y; units missing any cell are dropped."""
    rows = frame[frame["metric"] == ERROR_METRIC].copy()
    info = {s: _ce_family(s) for s in rows["suite"].unique()}
    rows["family"] = [info[s]["family"] if info[s] else None for s in rows["suite"]]
    rows["severity"] = [int(info[s]["severity"]) if info[s] else 0 for s in rows["suite"]]
    rows.loc[rows["suite"] == "clean", "family"] = "clean"
    rows = rows.dropna(subset=["family"])
    table = rows.pivot_table(index=["seed", "image"], columns=["family", "severity"],
                             values="value", aggfunc="mean")
    wanted = [(f, s) for f in families for s in severities] + [("clean", 0)]
    table = table.reindex(columns=pd.MultiIndex.from_tuples(wanted)).dropna()
    err = 1.0 - table.to_numpy(dtype=np.float64)
    cube = err[:, :-1].reshape(len(table), len(families), len(severities))
    return cube, err[:, -1], [(int(a), str(b)) for a, b in table.index]


def corruption_errors(model: np.ndarray, model_clean: np.ndarray, base: np.ndarray,
                      base_clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(CE_f, relative CE_f)`` in percent from error cubes ``[unit, family, severity]`` (the
    baseline's rows are the same images as the model's, in the same order)."""
    m = model.mean(axis=0).sum(axis=1)
    b = base.mean(axis=0).sum(axis=1)
    severities = model.shape[2]
    m_drop = m - severities * model_clean.mean()
    b_drop = b - severities * base_clean.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(b_drop > 0, 100.0 * m_drop / b_drop, np.nan)
        return 100.0 * m / b, rel


def mce(model: np.ndarray, model_clean: np.ndarray, base: np.ndarray,
        base_clean: np.ndarray) -> tuple[float, float]:
    """``(mCE, relative mCE)``: the family means of :func:`corruption_errors`."""
    ce, rel = corruption_errors(model, model_clean, base, base_clean)
    return float(np.mean(ce)), float(np.nanmean(rel)) if np.isfinite(rel).any() else float("nan")


def bootstrap_mce(model: np.ndarray, model_clean: np.ndarray, base_by_unit: np.ndarray,
                  base_clean_by_unit: np.ndarray, resamples: int = RESAMPLES,
                  seed: int = 0) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile CIs of mCE and relative mCE, resampling (seed, image) units with replacement;
    ``base_by_unit[i]`` is bicubic on unit i's image, so each resample is paired."""
    rng = np.random.default_rng(seed)
    n = len(model)
    draws = np.empty((resamples, 2))
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        draws[r] = mce(model[idx], model_clean[idx], base_by_unit[idx], base_clean_by_unit[idx])
    lo, hi = (1 - CI) / 2 * 100, (1 + CI) / 2 * 100
    return (tuple(np.nanpercentile(draws[:, 0], [lo, hi])),  # type: ignore[return-value]
            tuple(np.nanpercentile(draws[:, 1], [lo, hi])))


def model_label(method: str, ablation: str) -> str:
    return f"{method} ({ablation})" if ablation else method


def score_models(frame: pd.DataFrame) -> tuple[list[Scores], list[str], list[int]]:
    """SR-C scores of every (method, ablation) in ``frame`` (report records) that has the clean
    suite and every family suite bicubic has; bicubic itself scores 100 by construction."""
    info = {s: _ce_family(s) for s in frame["suite"].unique()}
    fam_rows = frame[[bool(info[s]) for s in frame["suite"]]]
    base_rows = frame[frame["method"] == BASELINE]
    if fam_rows.empty or base_rows.empty:
        return [], [], []
    severities = sorted({int(i["severity"]) for i in info.values() if i})
    base_suites = set(base_rows["suite"])
    families = sorted({i["family"] for s, i in info.items() if i and s in base_suites})
    families = [f for f in families if all(
        any(i and i["family"] == f and int(i["severity"]) == s and name in base_suites
            for name, i in info.items()) for s in severities)]
    b_cube, b_clean, b_units = error_cube(base_rows, families, severities)
    if not len(b_units):
        return [], families, severities
    by_image = pd.DataFrame({"image": [u[1] for u in b_units], "i": range(len(b_units))})
    first = by_image.groupby("image")["i"].apply(list)
    out = []
    for (method, ablation), rows in frame.groupby(["method", "ablation"], sort=True):
        cube, clean, units = error_cube(rows, families, severities)
        keep = [k for k, u in enumerate(units) if u[1] in first.index]
        if not keep:
            continue
        cube, clean = cube[keep], clean[keep]
        # bicubic is deterministic; its seeds are averaged per image
        b_img = np.stack([b_cube[first[units[k][1]]].mean(axis=0) for k in keep])
        b_img_clean = np.array([b_clean[first[units[k][1]]].mean() for k in keep])
        ce, _ = corruption_errors(cube, clean, b_img, b_img_clean)
        m, rel = mce(cube, clean, b_img, b_img_clean)
        ci_m, ci_rel = bootstrap_mce(cube, clean, b_img, b_img_clean)
        psnr = rows[(rows["suite"] == "clean") & (rows["metric"] == "psnr_y")]["value"].mean()
        worst = int(np.argmax(ce))
        name = families[worst] if method != BASELINE else "-"  # bicubic: 100 everywhere
        out.append(Scores(model_label(method, ablation), float(psnr), m, ci_m, rel, ci_rel,
                          name, float(ce[worst]), len(families), len(keep)))
    return out, families, severities


def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean of each curve metric per model, family and severity (severity 0 = clean)."""
    info = {s: _ce_family(s) for s in frame["suite"].unique()}
    wanted = np.array([bool(info[s]) or s == "clean" for s in frame["suite"]], dtype=bool)
    rows = frame[frame["metric"].isin(CURVE_METRICS).to_numpy() & wanted]
    if rows.empty:
        return pd.DataFrame(columns=["model", "group", "family", "severity", "metric", "value"])
    rows = rows.assign(model=[model_label(m, a) for m, a in zip(rows["method"], rows["ablation"])])
    means = rows.groupby(["model", "suite", "metric"], as_index=False)["value"].mean()
    out = []
    families = {(i["group"], i["family"]) for i in info.values() if i}
    for rec in means.itertuples():
        i = info[rec.suite]
        targets = [(g, f, 0) for g, f in sorted(families)] if rec.suite == "clean" else \
            [(i["group"], i["family"], int(i["severity"]))]
        out += [(rec.model, g, f, s, rec.metric, rec.value) for g, f, s in targets]
    return pd.DataFrame(out, columns=["model", "group", "family", "severity", "metric", "value"]) \
        .sort_values(["group", "family", "model", "metric", "severity"], kind="stable")


ACCEPTANCE_LINES = (("bicubic", ""), ("esrgan", ""))  # SEAL's acceptance lines, ours


def acceptance_ratios(frame: pd.DataFrame, metric: str = "psnr_y", resamples: int = RESAMPLES,
                      seed: int = 0) -> pd.DataFrame:
    """SEAL's acceptance ratio: per model and acceptance line (bicubic; the clean ESRGAN model),
    the share of the acceptance set's degradations (``score: acceptance`` families, e.g. seal/*)
    on which the model's mean ``metric`` beats the line's, with a paired bootstrap CI over
    (seed, image) units. Columns: model, line, ar, lo, hi, degradations."""
    suites = sorted({s for s in frame["suite"].unique()
                     if (family_of(s) or {}).get("score") == "acceptance"})
    columns = ["model", "line", "ar", "lo", "hi", "degradations"]
    rows = frame[frame["suite"].isin(suites) & (frame["metric"] == metric)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    table = rows.pivot_table(index=["method", "ablation", "seed", "image"], columns="suite",
                             values="value", aggfunc="mean").dropna()
    out = []
    rng = np.random.default_rng(seed)
    for line in ACCEPTANCE_LINES:
        if line not in table.droplevel(["seed", "image"]).index:
            continue
        base = table.loc[line].groupby("image").mean()
        for (method, ablation), own in table.groupby(level=["method", "ablation"]):
            if (method, ablation) == line:
                continue
            own = own.droplevel(["method", "ablation"])
            images = [i for i in own.index.get_level_values("image") if i in base.index]
            if not images:
                continue
            m = own[own.index.get_level_values("image").isin(base.index)].to_numpy()
            b = base.loc[images].to_numpy()
            ar = float(np.mean(m.mean(0) > b.mean(0)))
            draws = []
            for _ in range(resamples):
                idx = rng.integers(0, len(m), len(m))
                draws.append(np.mean(m[idx].mean(0) > b[idx].mean(0)))
            lo, hi = np.percentile(draws, [(1 - CI) / 2 * 100, (1 + CI) / 2 * 100])
            out.append((model_label(method, ablation), model_label(*line), ar, float(lo),
                        float(hi), len(suites)))
    return pd.DataFrame(out, columns=columns)


def acceptance_markdown(ar: pd.DataFrame) -> str:
    if ar.empty:
        return ""
    lines = ["| Model | acceptance line | AR % [95% CI] | degradations |", "|---|---|---|---|"]
    lines += [f"| {r.model} | {r.line} | {100 * r.ar:.0f} [{100 * r.lo:.0f}, {100 * r.hi:.0f}] "
              f"| {r.degradations} |" for r in ar.itertuples()]
    lines += ["", "AR (SEAL, ICLR 2024): share of the frozen representative Real-ESRGAN "
              "degradations (configs/families/seal.yaml) on which the model's mean PSNR-Y beats "
              "the acceptance line's; CI: paired bootstrap over (seed, image) units.", ""]
    return "\n".join(lines)


def summary_markdown(scores: Sequence[Scores], families: Sequence[str],
                     severities: Sequence[int], seen: dict[str, str]) -> str:
    if not scores:
        return ""
    lines = ["| Model | Clean PSNR-Y | mCE % [95% CI] | relative mCE % [95% CI] | worst family "
             "(CE %) | families seen in training |", "|---|---|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.model} | {s.clean_psnr:.2f} | {s.mce:.1f} [{s.mce_ci[0]:.1f}, "
                     f"{s.mce_ci[1]:.1f}] | {s.rel_mce:.1f} [{s.rel_mce_ci[0]:.1f}, "
                     f"{s.rel_mce_ci[1]:.1f}] | {s.worst_family} ({s.worst_ce:.1f}) | "
                     f"{seen.get(s.model, 'none')} |")
    units = max(s.units for s in scores)
    lines += ["", f"CE = sum over severities {list(severities)} of (1 - SSIM-Y), divided by "
              f"bicubic's on the same images; mCE = mean over {len(families)} families; relative "
              f"mCE uses the drop from clean. Percent, lower is better, bicubic = 100. CIs: "
              f"percentile bootstrap ({RESAMPLES} resamples) over up to {units} (seed, image) "
              f"units, paired with bicubic. Families seen in training are not held out for that "
              f"model; its mCE is then not a generalisation score.", ""]
    return "\n".join(lines)


def summary_csv(scores: Sequence[Scores], seen: dict[str, str]) -> str:
    frame = pd.DataFrame([{
        "model": s.model, "clean_psnr_y": round(s.clean_psnr, 4), "mce": round(s.mce, 3),
        "mce_lo": round(s.mce_ci[0], 3), "mce_hi": round(s.mce_ci[1], 3),
        "rel_mce": round(s.rel_mce, 3), "rel_mce_lo": round(s.rel_mce_ci[0], 3),
        "rel_mce_hi": round(s.rel_mce_ci[1], 3), "worst_family": s.worst_family,
        "worst_ce": round(s.worst_ce, 3), "families": s.families, "units": s.units,
        "seen_in_training": seen.get(s.model, "none")} for s in scores])
    return frame.to_csv(index=False, lineterminator="\n")


def seen_in_training(frame: pd.DataFrame, families: Sequence[str]) -> dict[str, str]:
    """Per model, the SR-C families its training degradations include: a family (or the
    corruption it runs) named anywhere in the run's config (e.g. ``degradation.kind:
    realesrgan``). Today's methods train on bicubic / learned degradations: none."""
    out: dict[str, str] = {}
    for (method, ablation), rows in frame.groupby(["method", "ablation"]):
        named: set[str] = set()
        for path in rows["path"].dropna().unique() if "path" in rows else []:
            cfg = RunDir(Path(path)).read_config() or {}
            values = flatten({k: v for k, v in cfg.items() if k != "eval"}).values()
            text = {str(x) for v in values for x in (v if isinstance(v, list) else [v])}
            named |= {f for f in families if f in text}
        out[model_label(method, ablation)] = ", ".join(sorted(named)) or "none"
    return out


def per_image_records(shown: pd.DataFrame) -> pd.DataFrame:
    """The per-image rows (``metrics.csv``) of the runs the report shows, for family suites and
    clean only: the report's records are per-run means, the bootstrap needs images."""
    keep = {s for s in shown["suite"].unique() if s == "clean" or family_of(s)}
    runs = shown[shown["suite"].isin(keep)].drop_duplicates("path")
    parts = []
    for run in runs.itertuples():
        metrics = pd.read_csv(Path(run.path) / "metrics.csv")
        if "image" not in metrics.columns:
            continue
        metrics = metrics[metrics["suite"].isin(keep)]
        parts.append(metrics.assign(method=run.method, ablation=run.ablation or "",
                                    seed=int(run.seed), path=run.path,
                                    value=pd.to_numeric(metrics["value"], errors="coerce")))
    columns = ["method", "ablation", "seed", "suite", "image", "metric", "value", "path"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns].dropna(subset=["value"])


def report_section(shown: pd.DataFrame, out: Path, draw: bool = True) \
        -> tuple[str, list[Path]]:
    """The report's SR-C section (README markdown) and the text files it wrote, from the runs
    the report shows; empty when they hold no family suites. Called once from
    ``report.write_report``."""
    if not any(family_of(s) for s in shown["suite"].unique()):
        return "", []  # no SR-C suite shown: read nothing
    frame = shown if "image" in shown.columns else per_image_records(shown)
    if frame.empty:
        return "", []
    scores, families, severities = score_models(frame)
    curve = curves(frame)
    if curve.empty and not any(family_of(s) for s in frame["suite"].unique()):
        return "", []
    seen = seen_in_training(frame, families)
    written = []
    lines = ["## SR-C robustness", ""]
    if scores:
        md = summary_markdown(scores, families, severities, seen)
        for name, text in (("sr_c_summary.md", md), ("sr_c_summary.csv",
                                                     summary_csv(scores, seen))):
            atomic_write_text(out / "tables" / name, text)
            written.append(out / "tables" / name)
        lines += [md]
    else:
        lines += ["No SR-C score: bicubic has no complete set of family suites in these records.",
                  ""]
    ar = acceptance_ratios(frame)
    if not ar.empty:
        md = acceptance_markdown(ar)
        atomic_write_text(out / "tables" / "sr_c_acceptance.md", md)
        written.append(out / "tables" / "sr_c_acceptance.md")
        lines += ["### SEAL acceptance ratio", "", md]
    atomic_write_text(out / "tables" / "sr_c_curves.csv",
                      curve.to_csv(index=False, lineterminator="\n", float_format="%.4f"))
    written.append(out / "tables" / "sr_c_curves.csv")
    lines += ["Per-family curves (PSNR-Y, SSIM-Y, LPIPS where present; severity 0 = clean): "
              "`tables/sr_c_curves.csv`.", ""]
    for group in sorted(curve["group"].unique()):
        stem = out / "figures" / f"sr_c_{group}"
        if draw:
            plot_group(curve[curve["group"] == group], group, stem)
        rel = stem.with_suffix(".png").relative_to(out).as_posix()
        lines += [f"![SR-C {group}]({rel})", "", f"*SR-C {group}: PSNR-Y over severity*", ""]
    return "\n".join(lines), written


def plot_group(curve: pd.DataFrame, group: str, stem: Path, metric: str = "psnr_y") -> None:
    """One panel per family of ``group``: ``metric`` over severity, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curve[curve["metric"] == metric]
    families = sorted(data["family"].unique())
    if not families:
        return
    cols = min(4, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             sharey=True)
    for ax, family in zip(axes.flat, families):
        for model, line in data[data["family"] == family].groupby("model"):
            line = line.sort_values("severity")
            ax.plot(line["severity"], line["value"], marker="o", ms=3, label=model)
        ax.set_title(family.replace("_", " "), fontsize=9)
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    axes[0][0].set_ylabel("PSNR-Y (dB)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"SR-C {group}")
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    fig.savefig(stem.with_suffix(".pdf"))
    plt.close(fig)
