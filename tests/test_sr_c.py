"""SR-C: corruption families from imagecorruptions, generated suite names, determinism and
severity ordering (robustsr_bench.families, data.corruptions)."""

from __future__ import annotations

import numpy as np
import pytest

from robustsr_bench import registry
from robustsr_bench.data import embedded
from robustsr_bench.data.degradations import apply_ops, realesrgan_ops
from robustsr_bench.data.image_ops import mod_crop
from robustsr_bench.data.io import load_image, to_numpy, to_tensor
from robustsr_bench.data.suites import suite_ops
from robustsr_bench.errors import ConfigError

# Families whose library severities are not ordered by distortion on every image: glass_blur's
# (sigma, iterations) and frost's / fog's blend weights are not monotone in the library's tables,
# saturate goes from desaturating (1-2) to oversaturating (3-5) by design; zoom_blur and spatter
# flip one adjacent pair on some images; realesrgan is a random pipeline whose Poisson draws and
# integer JPEG qualities are not coupled across levels. For them only "severity 5 is worse than
# severity 1" holds, which is what is tested (measured on the 4 held-out photos: README SR-C).
NON_MONOTONE = {"glass_blur", "frost", "fog", "saturate", "zoom_blur", "spatter", "realesrgan"}


def _families() -> dict[str, list[str]]:
    fams: dict[str, list[str]] = {}
    for name, spec in registry.family_suites().items():
        if spec["corruption"]["prefix"] == "src":
                fams.setdefault(spec["corruption"]["family"], []).append(name)
    return {f: sorted(n, key=lambda s: int(s.rsplit("/", 1)[1])) for f, n in fams.items()}


@pytest.fixture(scope="module")
def hr():
    image = load_image(embedded.held_out_paths()[0])[:256, :256]  # LR 64x64: fast
    return mod_crop(to_tensor(image), 4)


def _lr(hr, suite: str, index: int = 0) -> np.ndarray:
    seed = registry.suite(suite)["seed"]
    return to_numpy(apply_ops(hr, suite_ops(registry.suite_spec(suite)), 4, np.random.default_rng([seed, index])))


def test_sr_c_has_at_least_15_families_of_5_severities_listed_by_name():
    fams = _families()
    assert len(fams) >= 15
    assert all(len(n) == 5 for n in fams.values())
    names = registry.names_in("suites")
    assert "src/gaussian_noise/3" in names and "clean" in names
    spec = registry.suite("src/gaussian_noise/3")
    assert spec["ops"] == [{"op": "downscale"},
                           {"op": "corrupt", "name": "gaussian_noise", "severity": 3}]
    assert registry.suite("src/camera_defocus_blur/2")["ops"][0]["op"] == "corrupt"
    with pytest.raises(ConfigError, match="unknown suite 'src/nope/3'"):
        registry.suite("src/nope/3")


def test_every_family_and_severity_is_deterministic_and_leaves_global_rng_alone(hr):
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    for names in _families().values():
        for suite in names:
            np.testing.assert_array_equal(_lr(hr, suite), _lr(hr, suite), err_msg=suite)
    assert np.random.random() == before  # the library's np.random use was restored
    noise = "src/gaussian_noise/3"
    assert not np.array_equal(_lr(hr, noise, 0), _lr(hr, noise, 1))


def test_lr_psnr_against_clean_lr_decreases_with_severity(hr):
    clean = _lr(hr, "clean").astype(np.float64)

    def psnr(suite: str) -> float:
        mse = np.mean((_lr(hr, suite).astype(np.float64) - clean) ** 2)
        return float(10 * np.log10(1.0 / max(mse, 1e-12)))

    for family, names in _families().items():
        curve = [psnr(s) for s in names]
        if family in NON_MONOTONE:
            assert curve[-1] < curve[0], (family, curve)
        else:
            assert all(b <= a + 1e-9 for a, b in zip(curve, curve[1:])), (family, curve)


def test_realesrgan_family_top_severity_is_the_published_pipeline():
    assert suite_ops(registry.suite_spec("src/realesrgan/5")) == realesrgan_ops() == suite_ops(registry.suite_spec("realesrgan"))
    assert suite_ops(registry.suite_spec("src/realesrgan/1"))[0]["sigma"] == pytest.approx([0.2, 0.2 + 2.8 / 5])


def test_a_misspelt_corruption_fails_in_one_line_naming_the_field(tmp_path, monkeypatch):
    folder = tmp_path / "user" / "families"
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(
        "families:\n  x: {group: noise, corruption: gausian_noise}\n")
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(tmp_path / "user"))
    with pytest.raises(ConfigError, match=r"\(corrupt\)\.name: 'gausian_noise' is not an "
                                          r"imagecorruptions corruption"):
        suite_ops_checked("mine/x/1")
    (folder / "mine.yaml").write_text("families:\n  x: {group: nosie, corruption: contrast}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: families.x.group: 'nosie'"):
        registry.suite("mine/x/1")


def suite_ops_checked(name: str) -> None:
    from robustsr_bench.data.degradations import validate_ops

    validate_ops(suite_ops(registry.suite_spec(name)))


# --------------------------------------------------------------------------- scores


def _synthetic_records():
    """Two images, two families: bicubic SSIM 0.9 clean; gaussian_noise 0.9 - 0.1 s; contrast
    0.8 flat. The model: 0.95 clean; gaussian_noise 0.95 - 0.05 s; contrast 0.8 on image a and
    0.6 on image b (mean error 0.3)."""
    import pandas as pd

    rows = []

    def add(method, image, suite, ssim, psnr=30.0):
        for metric, value in (("ssim_y", ssim), ("psnr_y", psnr)):
            rows.append({"method": method, "ablation": "", "seed": 0, "suite": suite,
                         "image": image, "metric": metric, "value": value, "path": None})

    for image in ("a", "b"):
        add("bicubic", image, "clean", 0.9, 25.0)
        add("model", image, "clean", 0.95, 27.0 if image == "a" else 29.0)
        for s in range(1, 6):
            add("bicubic", image, f"src/gaussian_noise/{s}", 0.9 - 0.1 * s)
            add("bicubic", image, f"src/contrast/{s}", 0.8)
            add("model", image, f"src/gaussian_noise/{s}", 0.95 - 0.05 * s)
            add("model", image, f"src/contrast/{s}", 0.8 if image == "a" else 0.6)
    return pd.DataFrame(rows)


def test_mce_and_relative_mce_equal_a_hand_computation():
    from robustsr_bench import sr_c

    scores, families, severities = sr_c.score_models(_synthetic_records())
    assert families == ["contrast", "gaussian_noise"] and severities == [1, 2, 3, 4, 5]
    got = {s.model: s for s in scores}
    # gaussian_noise: model sum of errors 0.25 + 0.75 = 1.0, bicubic 0.5 + 1.5 = 2.0 -> CE 50 %;
    #   drops from clean 1.0 - 5 * 0.05 = 0.75 vs 2.0 - 5 * 0.1 = 1.5 -> relative CE 50 %.
    # contrast: model 5 * 0.3 = 1.5 vs bicubic 5 * 0.2 = 1.0 -> CE 150 %;
    #   drops 1.5 - 0.25 = 1.25 vs 1.0 - 0.5 = 0.5 -> relative CE 250 %.
    model = got["model"]
    assert model.mce == pytest.approx((50 + 150) / 2)
    assert model.rel_mce == pytest.approx((50 + 250) / 2)
    assert model.worst_family == "contrast" and model.worst_ce == pytest.approx(150)
    assert model.clean_psnr == pytest.approx(28.0)
    assert got["bicubic"].mce == pytest.approx(100) and got["bicubic"].rel_mce == pytest.approx(100)
    assert model.mce_ci[0] <= model.mce <= model.mce_ci[1]
    assert model.mce_ci[1] > model.mce_ci[0]  # images differ on contrast: a real interval


def test_report_section_writes_the_summary_table_and_curves(tmp_path):
    from robustsr_bench import sr_c

    text, files = sr_c.report_section(_synthetic_records(), tmp_path, draw=False)
    assert "| model | 28.00 | 100.0 [" in text
    names = sorted(p.name for p in files)
    assert names == ["sr_c_curves.csv", "sr_c_summary.csv", "sr_c_summary.md"]
    curve = (tmp_path / "tables" / "sr_c_curves.csv").read_text().splitlines()
    assert "model,digital,contrast,0,ssim_y,0.9500" in curve


# --------------------------------------------------------------------------- SEAL-style set


def test_seal_set_is_the_frozen_kmeans_choice_of_concrete_pipelines(hr):
    from robustsr_bench.data import seal

    path = registry.configs_dir() / "families" / "seal.yaml"
    assert path.read_text() == seal.family_yaml()  # regenerating gives the committed file
    levels = [n for n in registry.names_in("suites") if n.startswith("seal/")]
    assert len(levels) >= 20
    for name in levels:
        for op in suite_ops(registry.suite_spec(name)):
            assert not any(isinstance(v, list) for v in op.values()), (name, op)  # no ranges
        np.testing.assert_array_equal(_lr(hr, name), _lr(hr, name), err_msg=name)


def test_acceptance_ratio_counts_degradations_beaten_with_a_ci():
    import pandas as pd

    from robustsr_bench import sr_c

    rows = []
    for k in range(1, 25):
        for image in ("a", "b"):
            for method, value in (("bicubic", 25.0), ("esrgan", 26.0),
                                  ("model", 27.0 if k <= 6 else 24.0)):
                rows.append({"method": method, "ablation": "", "seed": 0, "image": image,
                             "suite": f"seal/realesrgan/{k}", "metric": "psnr_y", "value": value})
    ar = sr_c.acceptance_ratios(pd.DataFrame(rows), resamples=50).set_index(["model", "line"])
    assert ar.loc[("model", "bicubic"), "ar"] == pytest.approx(6 / 24)
    assert ar.loc[("model", "esrgan"), "ar"] == pytest.approx(6 / 24)
    assert ar.loc[("esrgan", "bicubic"), "ar"] == 1.0
    assert ("esrgan", "esrgan") not in ar.index
    assert ar.loc[("model", "bicubic"), "degradations"] == 24


# --------------------------------------------------------------------------- user config folders


def _user_folder(root, suite_text: str):
    (root / "suites").mkdir(parents=True)
    (root / "suites" / "my_noise.yaml").write_text(suite_text)
    return root


def test_a_suite_in_a_configs_folder_is_listed_and_used(tmp_path, capsys, monkeypatch):
    import json

    from robustsr_bench.cli import main

    monkeypatch.delenv("ROBUSTSR_CONFIGS", raising=False)
    user = _user_folder(tmp_path / "mine", "description: my own noise\nseed: 3\nops:\n"
                        "  - {op: downscale}\n  - {op: corrupt, name: shot_noise, severity: 2}\n")
    assert main(["list", "suites", "--configs", str(user)]) == 0
    listed = capsys.readouterr().out
    assert "my_noise" in listed and "my own noise" in listed and "src/fog/5" in listed
    work = tmp_path / "work"
    assert main(["run", "--method", "bicubic", "--configs", str(user), "--workdir", str(work),
                 "--set", "eval.suites=[my_noise]", "--set", "eval.save_images=[]"]) == 0
    summary = json.loads(next(work.glob("runs/bicubic-*/summary.json")).read_text())
    assert summary["suites"] == ["my_noise"] and "my_noise" in summary["means"]
    assert any((work / "cache" / "suites").glob("my_noise-x4-*/lr/astronaut.png"))


def test_a_malformed_user_suite_fails_in_one_line_naming_file_and_field(tmp_path, capsys,
                                                                         monkeypatch):
    from robustsr_bench.cli import main

    monkeypatch.delenv("ROBUSTSR_CONFIGS", raising=False)
    user = _user_folder(tmp_path / "mine", "ops:\n  - {op: downscale}\n"
                        "  - {op: corrupt, name: shot_noise, severty: 2}\n")
    code = main(["run", "--method", "bicubic", "--configs", str(user), "--workdir",
                 str(tmp_path / "work"), "--set", "eval.suites=[my_noise]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and "my_noise.yaml: ops[1] (corrupt): unknown field " \
        "'severty'" in err[-1]
    assert not (tmp_path / "work" / "runs").exists()  # refused before anything was written


def test_configs_folders_layer_over_the_builtins_and_report_shadowing_once(tmp_path, monkeypatch,
                                                                          caplog):
    import os

    first = _user_folder(tmp_path / "a", "description: first\nops: [{op: downscale}]\n")
    second = tmp_path / "b"
    (second / "suites").mkdir(parents=True)
    (second / "suites" / "my_noise.yaml").write_text("description: second\n"
                                                     "ops: [{op: downscale}]\n")
    (second / "suites" / "clean.yaml").write_text("description: my clean\nops: [{op: downscale}]\n")
    monkeypatch.setenv("ROBUSTSR_CONFIGS", os.pathsep.join([str(first), str(second)]))
    with caplog.at_level("WARNING", logger="robustsr_bench"):
        assert registry.suite("my_noise")["description"] == "first"
        assert registry.suite("clean")["description"] == "my clean"
        registry.names_in("suites")
    shadows = [r.message for r in caplog.records if "shadows the built-in" in r.message]
    assert len(shadows) == 1 and "suites/clean.yaml" in shadows[0]
    assert "jpeg" in registry.names_in("suites")  # built-ins stay visible


def test_a_user_op_registers_without_editing_the_package():
    from robustsr_bench.data import degradations

    def invert(x, op, ctx):
        return 1.0 - x

    degradations.register_op("test_invert", invert)
    hr = torch_ones()
    lr = degradations.apply_ops(hr, [{"op": "downscale"}, {"op": "test_invert"}], 4,
                                np.random.default_rng(0))
    assert float(lr.max()) == 0.0
    with pytest.raises(ConfigError, match="built in"):
        degradations.register_op("noise", invert)


def torch_ones():
    import torch

    return torch.ones(1, 3, 32, 32)


def test_ops_of_the_entry_point_group_are_loaded_when_first_named(monkeypatch):
    from importlib import metadata

    from robustsr_bench.data import degradations

    def darken(x, op, ctx):
        return x * float(op["factor"])

    darken.required_fields = ("factor",)

    class EntryPoint:
        name = "test_darken"

        def load(self):
            return darken

    monkeypatch.setattr(metadata, "entry_points", lambda group: [EntryPoint()]
                        if group == degradations.OP_ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(degradations, "_ENTRY_POINTS_LOADED", [])
    lr = degradations.apply_ops(torch_ones(), [{"op": "downscale"},
                                               {"op": "test_darken", "factor": 0.5}], 4,
                                np.random.default_rng(0))
    assert float(lr.max()) == pytest.approx(0.5, abs=1 / 255)
    with pytest.raises(ConfigError, match=r"\(test_darken\): missing field 'factor'"):
        degradations.validate_ops([{"op": "test_darken"}])


def test_report_section_reads_per_image_rows_of_the_shown_runs(tmp_path):
    """The report's records are per-run means; the section reads each run's metrics.csv."""
    import pandas as pd

    from robustsr_bench import sr_c

    per_image = _synthetic_records()
    shown = []
    for method, rows in per_image.groupby("method"):
        run = tmp_path / "runs" / method
        run.mkdir(parents=True)
        rows.drop(columns=["method", "ablation", "seed", "path"]).to_csv(run / "metrics.csv",
                                                                         index=False)
        means = rows.groupby(["suite", "metric"], as_index=False)["value"].mean()
        shown.append(means.assign(method=method, ablation="", seed=0, path=str(run)))
    text, _ = sr_c.report_section(pd.concat(shown), tmp_path / "out", draw=False)
    assert "| model | 28.00 | 100.0 [" in text and "| bicubic | 25.00 | 100.0 [" in text
