"""Sweep files, planning and the debug/local launchers (the Slurm path: tests/test_slurm.py)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest
import yaml

from robustsr_bench import cli, launch, registry, sweeps
from robustsr_bench.config import flatten, to_dict
from robustsr_bench.errors import ConfigError
from robustsr_bench.launch_local import LocalJob
from robustsr_bench.results import RunDir, run_id

from conftest import TINY

FAILING = {"data.train": "folder", "data.hr_dir": "/nonexistent/hr"}


def write_sweep(path: Path, **data) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "profile": "smoke", **data}))
    return path


def tiny_sweep(tmp_path: Path, seeds=(0, 1), fail: bool = False) -> Path:
    runs = [{"method": "esrgan", "ablation": ""}]
    if fail:
        runs.append({"method": "esrgan", "set": FAILING})
    return write_sweep(tmp_path / "tiny.yaml", seeds=list(seeds), runs=runs,
                       set={**TINY, "train.iters": 2})


def test_existing_sweeps_expand_to_the_run_ids_run_uses():
    for name in sweeps.names():
        sweep = sweeps.load(name)
        specs = sweeps.expand(sweep)
        if sweep.includes:  # e.g. reference: the union of its parts, in order
            parts = [s.run_id for part in sweep.includes for s in sweeps.expand(part)]
            assert [s.run_id for s in specs] == list(dict.fromkeys(parts))
            continue
        assert len(specs) == len(sweep.entries) * len(sweep.seeds)
        first = sweep.entries[0]
        cfg = registry.resolve_config(first.method, sweep.profiles[0], first.ablation,
                                      sweep.seeds[0], flatten(sweep.overrides))
        assert specs[0].run_id == run_id(cfg)
        assert to_dict(specs[0].config()) == to_dict(cfg)


def test_grid_crosses_methods_ablations_overrides_seeds_and_profiles(tmp_path):
    path = write_sweep(tmp_path / "g.yaml", profiles=["smoke", "paper"], seeds=[0, 1], grid={
        "methods": ["esrgan", "rsr"], "ablations": {"rsr": ["", "eps12"]},
        "overrides": [{}, {"train.lr": 3.0e-4}]})
    specs = sweeps.expand(sweeps.load(str(path)))
    # esrgan: 1 ablation, rsr: 2; x 2 overrides x 2 profiles x 2 seeds
    assert len(specs) == (1 + 2) * 2 * 2 * 2
    assert len({s.run_id for s in specs}) == len(specs)
    assert {s.values["train.lr"] for s in specs} >= {3.0e-4}


def test_duplicate_runs_are_listed_once_and_cli_set_applies_to_all(tmp_path):
    path = write_sweep(tmp_path / "d.yaml", runs=[{"method": "esrgan"}, {"method": "esrgan"}])
    specs = sweeps.expand(sweeps.load(str(path)), {"train.iters": 3})
    assert len(specs) == 1 and specs[0].values["train.iters"] == 3


@pytest.mark.parametrize("data, message", [
    ({"runs": [{"method": "esrgan", "abl": "x"}]}, "unknown key 'abl'"),
    ({"runs": []}, "lists no runs"),
    ({"grid": {"ablations": [""]}}, "needs 'methods"),
    ({"runs": [{"method": "esrgan"}], "seeds": []}, "empty list"),
])
def test_bad_sweep_files_fail_with_one_line(tmp_path, data, message):
    path = write_sweep(tmp_path / "bad.yaml", **data)
    with pytest.raises(ConfigError, match=message):
        sweeps.load(str(path))


def test_include_plans_other_sweeps_with_their_own_seeds_once_each(tmp_path):
    a = write_sweep(tmp_path / "a.yaml", seeds=[0, 1], runs=[{"method": "esrgan"}])
    b = write_sweep(tmp_path / "b.yaml", seeds=[1, 2], runs=[{"method": "esrgan"}],
                    set={"train.lr": 3.0e-4})
    both = write_sweep(tmp_path / "both.yaml", include=[str(a), str(b)],
                       runs=[{"method": "bicubic"}])
    specs = sweeps.expand(sweeps.load(str(both)), {"train.iters": 3})
    assert [(s.method, s.seed) for s in specs] == [("esrgan", 0), ("esrgan", 1), ("esrgan", 1),
                                                   ("esrgan", 2), ("bicubic", 0)]
    assert [s.values["train.lr"] for s in specs[2:4]] == [3.0e-4, 3.0e-4]  # b's own set
    assert all(s.values["train.iters"] == 3 for s in specs)  # the CLI's --set: everywhere
    loop = write_sweep(tmp_path / "loop.yaml", include=[str(tmp_path / "loop.yaml")])
    with pytest.raises(ConfigError, match="loop.yaml: includes itself"):
        sweeps.load(str(loop))


def test_a_run_reusing_a_planned_training_waits_for_it_instead_of_training_twice(tmp_path):
    """Same training, other eval suites (the robustness and SR-C sweeps re-evaluate the
    benchmark's models): the second run waits and then evaluates the first one's weights."""
    suites = [{"eval.suites": ["clean"]}, {"eval.suites": ["jpeg"]}]
    path = write_sweep(tmp_path / "r.yaml", runs=[
        {"method": m, "set": s} for m in ("rsr", "bicubic") for s in suites])
    cli_set = {k: v for k, v in TINY.items() if k != "eval.suites"}
    planned = launch.plan(sweeps.expand(sweeps.load(str(path)), cli_set), tmp_path / "work")
    for method in ("esrgan", "rsr"):  # the baselines (sharing the eval section) and fine-tunes
        first, second = [p for p in planned if p.spec.method == method]
        assert first.run_id in second.deps and first.run_id not in [
            d for p in planned[:planned.index(first)] for d in p.deps]
    assert not any(p.deps for p in planned if p.spec.method == "bicubic")  # nothing to share


def test_unknown_sweep_lists_the_valid_names():
    with pytest.raises(ConfigError, match="valid: .*rsr_table1"):
        sweeps.load("nope")


def test_plan_submits_the_clean_baseline_first_and_fine_tunes_wait_on_it(tmp_path):
    path = write_sweep(tmp_path / "p.yaml", runs=[{"method": "rsr"}, {"method": "rsr",
                                                                      "ablation": "eps12"}])
    specs = sweeps.expand(sweeps.load(str(path)), TINY)
    planned = launch.plan(specs, tmp_path / "work")
    assert [p.spec.method for p in planned] == ["esrgan", "rsr", "rsr"]
    base = planned[0].run_id
    assert planned[1].deps == [base] and planned[2].deps == [base]
    groups = launch._dependency_groups(planned)
    assert [[p.run_id for p in g] for g in groups] == [[base], [p.run_id for p in planned[1:]]]


def test_slurm_options_merge_validate_and_pass_sbatch_args():
    opts = launch.SlurmOptions.merged({"partition": "gpu", "time_min": 10},
                                      {"time_min": 30, "partition": None,
                                       "extra": ["--exclusive", "--mail-type=END"]})
    assert opts.partition == "gpu" and opts.time_min == 30
    assert opts.extra_parameters() == {"exclusive": True, "mail_type": "END"}
    params = opts.executor_parameters()
    assert params["slurm_partition"] == "gpu" and "gpus_per_node" not in params
    with pytest.raises(ConfigError, match="signal_delay_s"):
        launch.SlurmOptions(time_min=1, signal_delay_s=90)
    with pytest.raises(ConfigError, match="unknown slurm option 'gpu'"):
        launch.SlurmOptions.merged({"gpu": 1})



def test_launchers_are_declared_once_for_cli_and_submit(tmp_path):
    """The command line accepts exactly the registry's launchers, each entry loads its executor,
    and an unknown name fails in one line naming the valid ones before a sweep file is written."""
    from robustsr_bench.launchers import LAUNCHERS

    parser = cli.build_parser()
    for name, launcher in LAUNCHERS.items():
        assert parser.parse_args(["sweep", "tiny", "--launcher", name]).launcher == name
        assert callable(launcher.executor())
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "tiny", "--launcher", "kubernetes"])
    with pytest.raises(ConfigError, match="launcher 'kubernetes' is unknown; valid: debug, "
                                          "local, slurm"):
        launch.submit([], tmp_path, "tiny", "kubernetes")
    assert not (tmp_path / "sweeps").exists()

@pytest.mark.slow
def test_debug_sweep_runs_records_failures_and_resubmits_nothing(tmp_path, isolated, capsys):
    path = tiny_sweep(tmp_path, seeds=(0,), fail=True)
    assert cli.main(["sweep", str(path), "--launcher", "debug"]) == 1
    statuses = {s.run_id: s for s in launch.sweep_status(isolated, "tiny")}
    states = sorted(s.state for s in statuses.values())
    assert states == ["done", "failed"]
    failed = next(s for s in statuses.values() if s.state == "failed")
    # refused before training: the error names the folder, and no log file is pointed at
    assert "DataError: /nonexistent/hr: folder not found" in failed.error and not failed.log
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 done, 1 failed" in out and failed.log in out
    # Only the failed run is launched again; the finished one is skipped.
    assert cli.main(["sweep", str(path), "--launcher", "debug"]) == 1
    assert "1 submitted, 1 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_local_launcher_runs_in_parallel_and_a_second_submission_is_empty(tmp_path, isolated,
                                                                           capsys):
    path = tiny_sweep(tmp_path, seeds=(0, 1))
    assert cli.main(["sweep", str(path), "--launcher", "local", "--parallel", "2"]) == 0
    statuses = launch.sweep_status(isolated, "tiny")
    assert [s.state for s in statuses] == ["done", "done"]
    jobs = json.loads((isolated / "sweeps" / "tiny" / "jobs.json").read_text())
    assert {j["launcher"] for j in jobs.values()} == {"local"}
    for status in statuses:
        assert RunDir(isolated / "runs" / status.run_id).is_done()
    capsys.readouterr()
    assert cli.main(["sweep", str(path), "--launcher", "local"]) == 0
    assert "0 submitted, 2 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failed_local_run_points_at_its_own_log_with_the_error(tmp_path, isolated, capsys):
    path = tiny_sweep(tmp_path, seeds=(0,), fail=True)
    assert cli.main(["sweep", str(path), "--launcher", "local", "--parallel", "2"]) == 1
    done, failed = sorted(launch.sweep_status(isolated, "tiny"), key=lambda s: s.state)
    assert (done.state, failed.state) == ("done", "failed")
    assert "/nonexistent/hr: folder not found" in failed.error
    assert "DataError: /nonexistent/hr" in Path(failed.log).read_text()


def _sleep_forever(started: Path) -> None:
    started.touch()
    time.sleep(600)


def test_a_cancelled_local_job_stops(tmp_path):
    """Ctrl-C on a local sweep cancels its running jobs (SIGINT, as submitit's local jobs)."""
    started = tmp_path / "started"
    job = LocalJob(functools.partial(_sleep_forever, started), tmp_path / "logs")
    assert job.job_id.isdigit()
    for _ in range(600):
        if started.exists():
            break
        time.sleep(0.1)
    assert not job.done()
    job.cancel()
    job.process.join(30)
    assert job.done() and job.process.exitcode != 0
    assert "KeyboardInterrupt" in job.paths.stderr.read_text()
