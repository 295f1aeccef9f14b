"""One planning rule: what run this is (its id) and what it starts from, the same for `run`,
`sweep --dry-run` and `report`; a method that does not train starts from nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from robustsr_bench import plan, registry, runner
from robustsr_bench.cli import main
from robustsr_bench.errors import ConfigError
from robustsr_bench.report import load_records
from tests.conftest import TINY, as_set_args


def drop_init_line(configs: Path, method: str) -> None:
    path = configs / "methods" / f"{method}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["config"].pop("train", None)
    path.write_text(yaml.safe_dump(spec))


def dry_run(tmp_path: Path, method: str, capsys: pytest.CaptureFixture) -> list[str]:
    sweep = tmp_path / "one.yaml"
    sweep.write_text(yaml.safe_dump({"name": "one", "profile": "smoke", "seeds": [0],
                                     "runs": [{"method": method}], "set": dict(TINY)}))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()[:-1]


def test_test_time_method_needs_no_init_line(tiny_configs, tmp_path, capsys) -> None:
    drop_init_line(tiny_configs, "ddsr")
    cfg = registry.resolve_config("ddsr", "smoke", overrides=TINY)
    assert cfg.train.init == "baseline"  # the schema's default, which a fine-tune needs
    assert plan.start_method(cfg) is None
    assert dry_run(tmp_path, "ddsr", capsys) == [plan.run_id(cfg)]  # no baseline before it
    rsr = registry.resolve_config("rsr", "smoke", overrides=TINY)
    assert plan.start_method(rsr) == plan.BASELINE_METHOD


@pytest.mark.slow
def test_run_sweep_and_report_agree_on_the_run_id(tiny_configs, isolated, tmp_path,
                                                  capsys) -> None:
    drop_init_line(tiny_configs, "bicubic")
    cfg = registry.resolve_config("bicubic", "smoke", overrides=TINY)
    planned = plan.run_id(cfg)
    assert dry_run(tmp_path, "bicubic", capsys) == [planned]
    assert main(["run", "--method", "bicubic", *as_set_args(TINY)]) == 0
    assert f"run {planned} -> " in capsys.readouterr().out
    runs = [p.name for p in (isolated / "runs").iterdir() if not p.name.startswith(".")]
    assert runs == [planned]  # no baseline trained (hidden: the run's lock file)
    assert set(load_records(isolated).frame["run_id"]) == {planned}


def test_dependencies_come_first_and_are_not_trained_by_the_run_itself(tiny_configs,
                                                                        isolated) -> None:
    andgan = registry.resolve_config("and", "smoke", "gan", overrides=TINY)
    chain = plan.dependencies(andgan)
    assert [(c.method, c.ablation) for c in chain] == [("esrgan", ""), ("and", "")]
    assert plan.dependencies(chain[0]) == []
    rsr = registry.resolve_config("rsr", "smoke", overrides=TINY)
    base = plan.run_id(plan.dependencies(rsr)[0])
    with pytest.raises(ConfigError, match=f"starts from run {base}, which is not finished"):
        runner.execute(rsr, isolated)
    assert not (isolated / "runs" / base).exists()


@pytest.mark.slow
def test_run_is_a_one_node_sweep(tiny_configs, isolated, tmp_path, capsys, caplog) -> None:
    """`run` executes what `sweep --dry-run` plans for the same run (baseline first), then the
    bicubic reference row, in that order and each once."""
    planned = dry_run(tmp_path, "rsr", capsys)
    caplog.set_level("INFO", logger="robustsr_bench")
    assert main(["run", "--method", "rsr", *as_set_args(TINY)]) == 0
    started = [m.group(1) for r in caplog.records
               if (m := re.match(r"run (\S+): method=", r.getMessage()))]
    rsr = registry.resolve_config("rsr", "smoke", overrides=TINY)
    assert started == [*(line.split()[0] for line in planned),
                       plan.run_id(plan.reference_config(rsr))]
    assert planned[-1].startswith(plan.run_id(rsr))


@pytest.mark.slow
def test_a_finished_fine_tune_does_not_retrain_its_deleted_baseline(tiny_configs, isolated,
                                                                     tmp_path, capsys) -> None:
    """Deleting a baseline after its fine-tune finished must not make `run` (or a sweep) spend
    the baseline's training again: the finished run is reused as it is, its table without the
    baseline column. `--force` on the fine-tune does need it, and plans it first."""
    import shutil

    assert main(["run", "--method", "rsr", *as_set_args(TINY)]) == 0
    rsr = registry.resolve_config("rsr", "smoke", overrides=TINY)
    base = isolated / "runs" / plan.run_id(plan.dependencies(rsr)[0])
    shutil.rmtree(base)
    assert dry_run(tmp_path, "rsr", capsys) == [plan.run_id(rsr)]
    assert main(["run", "--method", "rsr", *as_set_args(TINY)]) == 0
    out = capsys.readouterr().out
    assert not base.exists() and "Δ = rsr − bicubic" in out
    assert main(["run", "--method", "rsr", "--force", *as_set_args(TINY)]) == 0
    assert (base / "summary.json").is_file()
