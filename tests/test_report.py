"""Reports from synthetic run records: best marks, averages, LaTeX structure, plots, broken runs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustsr_bench import registry, report
from robustsr_bench.cli import main
from robustsr_bench.config import config_hash
from robustsr_bench.data.io import save_image
from robustsr_bench.results import METRIC_COLUMNS, RunDir, run_id
from tests.conftest import REPO

SUITES = ["clean", "gaussian_noise"]
# Per-image offsets around a run's mean (they sum to 0): images differ, as real photos do.
SIX = {"im0": -1.0, "im1": -0.5, "im2": 0.0, "im3": 0.25, "im4": 0.5, "im5": 0.75}


def make_run(root: Path, method: str, means: dict[str, dict[str, float]], ablation: str = "",
             seed: int = 0, trained_on: str = "embedded",
             images: dict[str, float] | None = None) -> Path:
    """A finished run record as ``runner.execute`` writes it, with the given per-suite values
    (each image's value is the mean plus its offset in ``images``; default one image)."""
    images = images or {"astronaut": 0.0}
    cfg = registry.resolve_config(method, "smoke", ablation, seed,
                                  {"eval.suites": list(means)})
    run = RunDir.for_config(cfg, root)
    run.write_config(cfg)
    rows = [{"run_id": run.run_id, "method": method, "ablation": ablation, "profile": "smoke",
             "seed": seed, "suite": s, "image": image, "metric": m,
             "value": v + (offset if m != "seconds" else 0.0)}
            for s, values in means.items() for m, v in values.items()
            for image, offset in images.items()]
    run.write_metrics(pd.DataFrame(rows, columns=METRIC_COLUMNS))
    run.write_summary({"status": "done", "method": method, "ablation": ablation,
                       "profile": "smoke", "seed": seed, "trained_on": trained_on,
                       "suites": list(means), "means": means})
    return run.path


def both(psnr: float, seconds: float) -> dict[str, dict[str, float]]:
    return {s: {"psnr_y": psnr + i, "ssim_y": 0.5, "seconds": seconds} for i, s in
            enumerate(SUITES)}


@pytest.fixture
def records(isolated: Path) -> Path:
    make_run(isolated, "bicubic", both(20.0, 0.1), trained_on="none", images=SIX)
    make_run(isolated, "esrgan", both(24.0, 0.5), images=SIX)
    make_run(isolated, "rsr", both(25.0, 0.9), seed=0, images=SIX)
    make_run(isolated, "rsr", both(27.0, 0.7), seed=1, images=SIX)
    return isolated


def cells(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).set_index(["Method", "group", "metric"])


def test_tables_mark_significant_best_and_average(records: Path, tmp_path: Path) -> None:
    opts = report.ReportOptions(metrics=("psnr_y", "seconds"))
    report.write_report(records, tmp_path / "out", opts, draw=False)
    table = cells(tmp_path / "out" / "tables" / "cross_dataset.csv")
    # higher is better: rsr (mean of seeds 25 and 27 = 26) best; esrgan is 1-3 dB below it on
    # every image and seed (significant), so it is not bold, nor is bicubic
    assert table.loc[("rsr", "clean", "psnr_y"), ["mean", "rank", "n"]].tolist() == [26.0, 1, 2]
    assert table.loc[("rsr", "clean", "psnr_y"), "std"] == pytest.approx(np.std([25, 27], ddof=1))
    assert table.loc[("esrgan", "clean", "psnr_y"), "rank"] == 0
    assert table.loc[("bicubic", "clean", "psnr_y"), "rank"] == 0
    # lower is better: bicubic fastest, the others significantly slower
    assert table.loc[("bicubic", "gaussian_noise", "seconds"), "rank"] == 1
    assert table.loc[("esrgan", "gaussian_noise", "seconds"), "rank"] == 0
    assert table.loc[("rsr", "gaussian_noise", "seconds"), "rank"] == 0
    # average over suites: esrgan 24 and 25 -> 24.5
    assert table.loc[("esrgan", report.AVERAGE, "psnr_y"), "mean"] == pytest.approx(24.5)
    md = (tmp_path / "out" / "tables" / "cross_dataset.md").read_text()
    assert "**26.00 ± 1.41**" in md and "| 24.00 " in md and "**0.10**" in md
    assert "PSNR↑" in md and "Seconds↓" in md and "not significantly worse" in md


def test_rows_within_noise_are_both_bold_and_a_clearly_worse_row_is_not(isolated: Path,
                                                                          tmp_path: Path):
    base = [-1.0, -0.6, -0.2, 0.0, 0.2, 0.4, 0.5, 0.7]  # per-image difficulty, mean 0
    tie = [0.35, -0.25, 0.4, -0.3, 0.1, -0.2, 0.3, 0.0]  # mean +0.05: noise around a tie
    worse = [-1.1, -0.9, -1.05, -0.95, -1.0, -1.1, -0.9, -1.0]  # ~1 dB below on every image
    for ablation, extra in (("", [0.0] * 8), ("no_hf_attack", tie), ("no_pixel_attack", worse)):
        make_run(isolated, "bapd", {"clean": {"psnr_y": 26.66}}, ablation,
                 images={f"im{i}": b + e for i, (b, e) in enumerate(zip(base, extra))})
    report.write_report(isolated, tmp_path / "out", report.ReportOptions(), draw=False)
    table = pd.read_csv(tmp_path / "out" / "tables" / "ablation_bapd.csv")
    rank = table[table.group == "clean"].set_index("Variant")["rank"]
    assert rank["bapd [no_hf_attack]"] == 1 and rank["bapd"] == 1  # 0.05 dB apart: a tie
    assert rank["bapd [no_pixel_attack]"] == 0  # ~1 dB worse on every image
    verdict = pd.read_csv(tmp_path / "out" / "tables" / "verdict_ablation_bapd.csv")
    row = verdict.set_index(["a", "group"]).loc[("bapd [no_pixel_attack]", "clean")]
    assert bool(row["significant"]) and row["ci_high"] < 0 and row["prob_improvement"] < 0.2
    tie = verdict.set_index(["a", "group"]).loc[("bapd [no_hf_attack]", "clean")]
    assert not tie["significant"] and tie["ci_low"] < 0 < tie["ci_high"]


def test_verdicts_against_baseline_and_control_with_quotable_lines(records: Path,
                                                                    tmp_path: Path) -> None:
    make_run(records, "esrgan", both(24.0, 0.5), seed=1, images=SIX)
    make_run(records, "rsr", both(25.5, 0.9), ablation="no_attack", seed=0, images=SIX)
    make_run(records, "rsr", both(26.5, 0.9), ablation="no_attack", seed=1, images=SIX)
    report.write_report(records, tmp_path / "out", report.ReportOptions(metrics=("psnr_y",)),
                        draw=False)
    verdict = pd.read_csv(tmp_path / "out" / "tables" / "verdict_rsr.csv")
    pairs = verdict.set_index(["b", "group"])
    assert pairs.loc[("esrgan", "clean"), "diff"] == pytest.approx(2.0)
    assert pairs.loc[("esrgan", "clean"), "n_seeds"] == 2
    assert pairs.loc[("esrgan", "clean"), "n_images"] == 6
    assert pairs.loc[("rsr [no_attack]", "gaussian_noise"), "diff"] == pytest.approx(0.0)
    assert not pairs.loc[("rsr [no_attack]", "gaussian_noise"), "significant"]
    md = (tmp_path / "out" / "tables" / "verdict_rsr.md").read_text()
    assert "- rsr vs esrgan (PSNR): better on 1 of 1 unseen suites" in md
    assert "; clean +2.00 dB [" in md
    assert "rsr vs rsr [no_attack] (PSNR): better on 0 of 1 unseen suites" in md
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## verdict rsr" in readme


def test_a_deterministic_row_shows_no_spread(records: Path, tmp_path: Path) -> None:
    make_run(records, "bicubic", both(20.0, 0.1), seed=1, trained_on="none", images=SIX)
    report.write_report(records, tmp_path / "out", report.ReportOptions(), draw=False)
    md = (tmp_path / "out" / "tables" / "cross_dataset.md").read_text()
    bicubic = next(line for line in md.splitlines() if line.startswith("| bicubic"))
    assert "20.00" in bicubic and "±" not in bicubic
    assert "26.00 ± 1.41" in md


def test_tables_cover_the_suites_the_runs_share_and_suites_picks(isolated: Path,
                                                                  tmp_path: Path) -> None:
    """RSR vs its control on a suite outside the profile's protocol: the ablation table and the
    verdict show it (it used to be left out); ``--suites`` picks the columns."""
    extra = {s: {"psnr_y": 25.0} for s in ("clean", "ddsr_gaussian")}
    make_run(isolated, "esrgan", {"clean": {"psnr_y": 24.0}}, images=SIX)
    make_run(isolated, "rsr", extra, images=SIX)
    make_run(isolated, "rsr", {s: {"psnr_y": 24.0} for s in extra}, "no_attack", images=SIX)
    report.write_report(isolated, tmp_path / "out", report.ReportOptions(), draw=False)
    ablation = pd.read_csv(tmp_path / "out" / "tables" / "ablation_rsr.csv")
    assert list(ablation["group"].unique()) == ["clean", "ddsr_gaussian", report.AVERAGE]
    verdict = pd.read_csv(tmp_path / "out" / "tables" / "verdict_rsr.csv")
    assert set(verdict[verdict.b == "rsr [no_attack]"]["group"]) == {
        "clean", "ddsr_gaussian", report.AVERAGE}
    assert set(verdict[verdict.b == "esrgan"]["group"]) == {"clean"}
    out = tmp_path / "picked"
    assert main(["report", "--workdir", str(isolated), "--out", str(out),
                 "--suites", "ddsr_gaussian"]) == 0
    picked = pd.read_csv(out / "tables" / "ablation_rsr.csv")
    assert list(picked["group"].unique()) == ["ddsr_gaussian", report.AVERAGE]
    assert main(["report", "--workdir", str(isolated), "--suites", "nope"]) == 2


def _latex_columns(row: str) -> int:
    row = row.rstrip().removesuffix(r"\\")
    spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", row)]
    return row.count("&") + 1 + sum(n - 1 for n in spans)


def test_latex_is_structurally_sound(records: Path, tmp_path: Path) -> None:
    report.write_report(records, tmp_path / "out", report.ReportOptions(), draw=False)
    tex = (tmp_path / "out" / "tables" / "cross_dataset.tex").read_text()
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert tex.count(r"\begin{") == tex.count(r"\end{")
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1)
    assert len(spec) == 2 + 3 * 2  # method, training data; (2 suites + average) x 2 metrics
    body = tex.split(r"\toprule")[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.rstrip().endswith(r"\\")]
    assert len(rows) == 2 + 3  # two header lines, three methods
    assert all(_latex_columns(row) == len(spec) for row in rows)
    assert r"\textbf{26.00 $\pm$ 1.41}" in tex and r"gaussian\_noise" in tex


def test_missing_cells_are_footnoted_not_zero(records: Path, tmp_path: Path) -> None:
    make_run(records, "bapd", {"clean": {"psnr_y": 30.0, "ssim_y": 0.9}})
    report.write_report(records, tmp_path / "out", report.ReportOptions(), draw=False)
    table = cells(tmp_path / "out" / "tables" / "cross_dataset.csv")
    missing = table.loc[("bapd", "gaussian_noise", "psnr_y")]
    assert pd.isna(missing["mean"]) and "not evaluated" in missing["note"]
    assert pd.isna(table.loc[("bapd", report.AVERAGE, "psnr_y"), "mean"])
    assert table.loc[("bapd", "clean", "psnr_y"), "rank"] == 1
    md = (tmp_path / "out" / "tables" / "cross_dataset.md").read_text()
    assert "–<sup>a</sup>" in md and "–<sup>c</sup>" in md and "<sup>a</sup> not evaluated" in md


def test_plots_curves_and_grids_are_written(records: Path, tmp_path: Path) -> None:
    make_run(records, "rsr", both(26.0, 0.8), ablation="no_attack")
    levels = {f"noise_s{s}": {"psnr_y": 30.0 - s / 5, "ssim_y": 0.8} for s in (0, 15, 30)}
    for method, offset in (("bicubic", 0.0), ("esrgan", 1.0)):
        make_run(records, method, {k: {m: v + offset for m, v in d.items()}
                                   for k, d in levels.items()},
                 trained_on="none" if method == "bicubic" else "embedded")
    esrgan = make_run(records, "esrgan", both(24.0, 0.5))
    save_image(esrgan / "images" / "clean" / "astronaut.png", np.full((512, 512, 3), 0.5))
    out = tmp_path / "out"
    report.write_report(records, out, report.ReportOptions())
    for name in ("per_suite_psnr_y", "ablation_rsr", "robustness_gaussian_noise"):
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{name}{suffix}").stat().st_size > 1000
    assert (out / "grids" / "clean_astronaut.png").stat().st_size > 1000
    robust = pd.read_csv(out / "tables" / "robustness_gaussian_noise.csv")
    assert list(robust["group"].unique()) == [0, 15, 30]
    readme = (out / "README.md").read_text()
    assert "figures/robustness_gaussian_noise.png" in readme and report.REGENERATE in readme
    ablation = pd.read_csv(out / "tables" / "ablation_rsr.csv")
    assert set(ablation["attack"]) == {"✓", "✗"}


def test_broken_records_are_reported_and_skipped(records: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    runs = records / "runs"
    (runs / "torn").mkdir()
    (runs / "torn" / "summary.json").write_text("{not json")
    (runs / "unfinished").mkdir()
    no_metrics = make_run(records, "bapd", both(22.0, 0.3))
    (no_metrics / "metrics.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="robustsr_bench"):
        report.write_report(records, tmp_path / "out", report.ReportOptions(), draw=False)
    readme = (tmp_path / "out" / "README.md").read_text()
    # workdir problems are logged; the README (committed) names only committed records
    for path, why in ((runs / "torn", "not valid JSON"), (runs / "unfinished", "unfinished"),
                      (no_metrics, "metrics.csv is missing")):
        assert f"{path}: " in caplog.text and why in caplog.text and str(path) not in readme
    table = cells(tmp_path / "out" / "tables" / "cross_dataset.csv")
    assert set(table.index.get_level_values(0)) == {"bicubic", "esrgan", "rsr"}


def test_stale_and_superseded_records_are_not_shown(records: Path) -> None:
    stale = RunDir(records / "runs" / "esrgan-old")
    stale.path.mkdir()
    cfg = registry.resolve_config("esrgan", "smoke", "", 0, {"train.iters": 7})
    stale.write_config(cfg)
    stale.write_metrics(pd.DataFrame([["esrgan-old", "esrgan", "", "smoke", 0, "clean", "x",
                                       "psnr_y", 99.0]], columns=METRIC_COLUMNS))
    stale.write_summary({"status": "done", "method": "esrgan", "ablation": "", "profile": "smoke",
                         "seed": 0, "suites": ["clean"], "means": {}})
    loaded = report.load_records(records)
    assert 99.0 not in set(loaded.frame["value"])
    assert any("differs from configs" in s.reason for s in loaded.skipped)
    assert 99.0 in set(report.load_records(records, include_stale=True).frame["value"])


def test_sweep_filter_and_unknown_sweep(records: Path) -> None:
    make_run(records, "bapd", both(22.0, 0.3), ablation="no_attack")
    frame = report.load_records(records).frame
    kept = report.select(frame, sweep="bapd_ablation")
    assert set(zip(kept["method"], kept["ablation"])) == {("esrgan", ""), ("bapd", "no_attack")}
    with pytest.raises(Exception, match="unknown sweep 'nope'"):
        report.select(frame, sweep="nope")


def test_check_flags_changed_files(records: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results"
    args = ["report", "--workdir", str(records), "--out", str(out)]
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    table = out / "tables" / "cross_dataset.md"
    table.write_text(table.read_text().replace("24.00", "24.01"))
    capsys.readouterr()
    assert main(args + ["--check"]) == 1
    assert "tables/cross_dataset.md" in capsys.readouterr().err


def test_unknown_metric_direction_is_left_unmarked(records: Path, tmp_path: Path) -> None:
    make_run(records, "bapd", {s: {"psnr_y": 1.0, "mystery": 3.0} for s in SUITES})
    opts = report.ReportOptions(metrics=("mystery",))
    report.write_report(records, tmp_path / "out", opts, draw=False)
    table = pd.read_csv(tmp_path / "out" / "tables" / "cross_dataset.csv")
    assert set(table["rank"]) == {0}


def test_evaluation_saves_sr_images_without_changing_the_run_id(isolated: Path) -> None:
    cfg = registry.resolve_config("bicubic", "smoke", "", 0, {"eval.suites": ["clean"]})
    other = registry.resolve_config("bicubic", "smoke", "", 0, {"eval.suites": ["clean"],
                                                                "eval.save_images": []})
    assert run_id(cfg) == run_id(other) and config_hash(cfg) == config_hash(other)
    assert main(["run", "--method", "bicubic", "--set", "eval.suites=[clean]"]) == 0
    saved = list((isolated / "runs").glob("bicubic-*/images/clean/*.png"))
    assert [p.stem for p in saved] == ["astronaut"]
    assert json.loads((saved[0].parents[2] / "summary.json").read_text())["status"] == "done"


def test_ablation_marks_follow_declared_components(isolated: Path, tmp_path: Path) -> None:
    """``no_attack`` of BAPD switches both attack levels off, as its YAML ``disables:`` declares;
    AND's ``classical`` (no ``no_`` prefix) still shows the adversarial part switched off."""
    for method, ablation in (("bapd", ""), ("bapd", "no_attack"), ("bapd", "no_hf_attack"),
                             ("and", ""), ("and", "classical")):
        make_run(isolated, method, both(25.0, 0.5), ablation=ablation)
    report.write_report(isolated, tmp_path / "out", report.ReportOptions(), draw=False)
    bapd = pd.read_csv(tmp_path / "out" / "tables" / "ablation_bapd.csv")
    marks = bapd.drop_duplicates("Variant").set_index("Variant")
    assert list(marks.loc["bapd [no_attack]", ["pixel attack", "hf attack"]]) == ["✗", "✗"]
    assert list(marks.loc["bapd [no_hf_attack]", ["pixel attack", "hf attack"]]) == ["✓", "✗"]
    assert "attack" not in marks.columns
    and_marks = pd.read_csv(tmp_path / "out" / "tables" / "ablation_and.csv")
    classical = and_marks[and_marks["Variant"] == "and [classical]"].iloc[0]
    assert classical["adversarial"] == "✗" and classical["neural degradation"] == "✗"


def test_ablation_off_must_be_a_list(tmp_path: Path) -> None:
    bad = {"adapter": "robustsr_bench.methods.esrgan:ESRGAN", "ablations": {"x": {"help": "h", "disables": "attack"}}}
    with pytest.raises(registry.ConfigError, match="'disables:' must be a list"):
        registry._parse_spec("esrgan", bad, "configs/methods/esrgan.yaml")
    bad["ablations"]["x"] = {"help": "h", False: ["attack"]}  # what YAML makes of `off:`
    with pytest.raises(registry.ConfigError, match="unknown key 'False'; valid: help, set"):
        registry._parse_spec("esrgan", bad, "configs/methods/esrgan.yaml")


def test_sweep_filter_understands_grids_and_seeds(records: Path, tmp_path: Path) -> None:
    make_run(records, "rsr", both(26.0, 0.8), ablation="no_attack")
    grid = tmp_path / "grid.yaml"
    grid.write_text("profile: smoke\nseeds: [1]\n"
                    "grid: {methods: [rsr], ablations: ['', no_attack]}\n")
    kept = report.select(report.load_records(records).frame, sweep=str(grid))
    assert set(zip(kept["method"], kept["ablation"], kept["seed"])) == {("rsr", "", 1)}


def test_readme_says_what_each_suite_was_scored_on(isolated: Path, tmp_path: Path) -> None:
    """Old records: counted from metrics.csv; new ones: their ``eval_data`` (dataset, count)."""
    make_run(isolated, "esrgan", both(24.0, 0.5))
    newer = make_run(isolated, "rsr", both(25.0, 0.5))
    summary = json.loads((newer / "summary.json").read_text())
    summary["eval_data"] = {"clean": {"dataset": "RealSR-Canon:test", "images": 50}}
    (newer / "summary.json").write_text(json.dumps(summary))
    report.write_report(isolated, tmp_path / "out", report.ReportOptions(), draw=False)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| clean | RealSR-Canon:test, 50 images; embedded, 1 image |" in readme
    assert "| gaussian_noise | embedded, 1 image |" in readme


def test_committed_records_let_a_clone_check_the_tables(records: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """``report`` copies each shown run's config/summary/metrics into ``<out>/records/``; with
    no workdir at all, ``report --check`` then passes on those records and fails when one of
    them changes."""
    rsr = next((records / "runs").glob("rsr-*"))
    (rsr / "models").mkdir()
    (rsr / "models" / "net_g_4.pth").write_bytes(b"weights stay out of the repository")
    out, clone = tmp_path / "results", tmp_path / "clone_workdir"
    assert main(["report", "--workdir", str(records), "--out", str(out)]) == 0
    copied = out / "records" / rsr.name
    assert sorted(p.name for p in copied.iterdir()) == ["config.yaml", "metrics.csv",
                                                        "summary.json"]
    assert len(list((out / "records").iterdir())) == 4
    check = ["report", "--workdir", str(clone), "--out", str(out), "--check"]
    assert main(check) == 0
    assert "matches the run records" in capsys.readouterr().out
    metrics = copied / "metrics.csv"
    frame = pd.read_csv(metrics)
    frame.loc[frame.metric == "psnr_y", "value"] += 0.5
    frame.to_csv(metrics, index=False)
    assert main(check) == 1
    assert "tables/cross_dataset.md" in capsys.readouterr().err
    (out / "records" / "torn").mkdir()
    (out / "records" / "torn" / "summary.json").write_text("{not json")
    assert main(["report", "--workdir", str(clone), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert "`records/torn`: summary.json is not valid JSON" in readme
    assert main(check) == 0


def test_control_must_name_a_method_or_ablation(tmp_path: Path) -> None:
    assert report_control("rsr") == {"method": "rsr", "ablation": "no_attack"}
    assert report_control("ddsr") == {"method": "bicubic", "ablation": ""}
    bad = {"adapter": "robustsr_bench.methods.esrgan:ESRGAN", "control": {"abl": "x"}}
    with pytest.raises(registry.ConfigError, match="control: must be"):
        registry._parse_spec("esrgan", bad, "configs/methods/esrgan.yaml")


def report_control(method: str) -> dict | None:
    from robustsr_bench.verdicts import control_of

    return control_of(method)


@pytest.mark.skipif(not (REPO / "results" / "records").is_dir(),
                    reason="results/records/ is not committed yet (the lead's 3-seed re-run)")
def test_committed_results_match_their_committed_records(isolated: Path, capsys) -> None:
    """What a fresh clone's CI checks: the committed tables are what the committed records give,
    with an empty workdir (no training)."""
    assert main(["report", "--out", str(REPO / "results"), "--check"]) == 0, \
        capsys.readouterr().err
