"""The Slurm launcher against a real single-node Slurm cluster started on localhost.

``scripts/slurm_local.sh`` starts slurmctld + slurmd (+ munged) once per test session; jobs are
real sbatch job arrays running ``RunJob`` through submitit. Skipped only where the Slurm and munge
binaries are absent (CI installs them: see .ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import submitit
import torch
import yaml

from robustsr_bench import cli, launch, report, runner, sweeps
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Checkpoints, torch_load

from conftest import REPO, TINY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")),
                       reason="Slurm binaries absent (apt-get install slurm-wlm munge)"),
]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
SLURM_ARGS = ["--launcher", "slurm", "--cpus-per-task", "1", "--time-min", "30",
              "--signal-delay-s", "60"]
WAIT_S = 120


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running local cluster with 16 job slots; stopped (our daemons only) at the end."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    subprocess.run([str(SCRIPT), "start", "--cpus", "16"], env=env, check=True, timeout=120)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    os.environ["PATH"] = f"{state / 'bin'}:{os.environ['PATH']}"
    try:
        yield state
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run([str(SCRIPT), "stop"], env=env, check=True, timeout=120)


def sweep_file(tmp_path: Path, seeds, extra_runs=(), **overrides) -> Path:
    path = tmp_path / "slurmy.yaml"
    runs = [{"method": "esrgan"}, *extra_runs]
    path.write_text(yaml.safe_dump({"name": "slurmy", "profile": "smoke", "seeds": list(seeds),
                                    "runs": runs, "set": {**TINY, **overrides}}))
    return path


def wait_done(root: Path) -> list[launch.RunStatus]:
    return launch.wait(root, "slurmy", poll_s=1.0, timeout_s=WAIT_S, progress=False)


def test_sweep_of_four_completes_aggregates_and_is_not_resubmitted(cluster, tmp_path, isolated,
                                                                   capsys):
    path = sweep_file(tmp_path, seeds=range(4), **{"train.iters": 2})
    assert cli.main(["sweep", str(path), *SLURM_ARGS]) == 0
    out = capsys.readouterr().out
    assert "4 submitted, 0 skipped" in out
    jobs = json.loads((isolated / "sweeps" / "slurmy" / "jobs.json").read_text())
    array_ids = {j["job_id"].split("_")[0] for j in jobs.values()}
    assert len(array_ids) == 1 and all("_" in j["job_id"] for j in jobs.values())  # one array
    assert cli.main(["status", str(path), "--wait"]) == 0
    assert "4 done" in capsys.readouterr().out
    records = report.load_records(isolated, include_stale=True)
    assert records.frame["run_id"].nunique() == 4
    table = report.aggregate(records.frame)
    assert set(table["n"]) == {4}
    assert cli.main(["sweep", str(path), *SLURM_ARGS]) == 0
    assert "0 submitted, 4 skipped" in capsys.readouterr().out


def test_a_failing_run_shows_failed_with_its_log_and_the_others_finish(cluster, tmp_path,
                                                                       isolated, capsys):
    bad = {"method": "esrgan", "set": {"data.train": "folder", "data.hr_dir": "/nonexistent"}}
    path = sweep_file(tmp_path, seeds=[0, 1], extra_runs=[bad], **{"train.iters": 2})
    assert cli.main(["sweep", str(path), *SLURM_ARGS]) == 0
    statuses = wait_done(isolated)
    assert sorted(s.state for s in statuses) == ["done", "done", "failed", "failed"]
    failed = [s for s in statuses if s.state == "failed"]
    for status in failed:
        assert "DataError" in status.error
        assert "/nonexistent" in Path(status.log).read_text()  # submitit's stderr: the traceback
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 1
    out = capsys.readouterr().out
    assert all(s.log in out for s in failed) and "2 done, 2 failed" in out


def test_fine_tunes_wait_on_their_baseline_afterok(cluster, tmp_path, isolated, monkeypatch):
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    smoke = yaml.safe_load((configs / "profiles" / "smoke.yaml").read_text())
    tiny = {"model": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, "disc": {"num_feat": 4},
            "train": {"iters": 2, "batch_size": 2, "patch_size": 32, "ckpt_every": 2,
                      "milestones": [3]},
            "eval": {"suites": ["clean"]}, "runtime": {"progress": False, "device": "cpu"}}
    smoke.update(tiny)
    (configs / "profiles" / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    esrgan = yaml.safe_load((configs / "methods" / "esrgan.yaml").read_text())
    del esrgan["profiles"]["smoke"]  # its 3.5k-step baseline schedule; keep the tiny profile's
    (configs / "methods" / "esrgan.yaml").write_text(yaml.safe_dump(esrgan))
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(configs))
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump({"name": "slurmy", "profile": "smoke", "seeds": [0], "runs": [
        {"method": "rsr", "ablation": ""}, {"method": "rsr", "ablation": "no_attack"}]}))
    assert cli.main(["sweep", str(path), *SLURM_ARGS]) == 0
    jobs = json.loads((isolated / "sweeps" / "slurmy" / "jobs.json").read_text())
    base = next(rid for rid in jobs if rid.startswith("esrgan-"))
    tunes = [rid for rid in jobs if rid.startswith("rsr")]
    assert len(tunes) == 2
    scripts = [p.read_text() for p in Path(jobs[base]["folder"]).rglob("*submission.sh")]
    assert sum(f"--dependency=afterok:{jobs[base]['job_id']}" in s for s in scripts) == 1
    assert all(s.state == "done" for s in wait_done(isolated))
    base_done = json.loads((isolated / "runs" / base / "summary.json").read_text())
    for rid in tunes:
        summary = json.loads((isolated / "runs" / rid / "summary.json").read_text())
        assert summary["init"] == base
        assert os.path.getmtime(isolated / "runs" / rid / "config.yaml") >= \
            os.path.getmtime(isolated / "runs" / base / "summary.json")
    assert base_done["status"] == "done"


def _final_weights(run: RunDir) -> dict:
    return torch_load(Checkpoints(run, 1).final_generator())


def test_preempted_run_resumes_from_its_checkpoint_bit_identically(cluster, tmp_path, isolated):
    overrides = {**TINY, "train.iters": 400, "train.ckpt_every": 5, "runtime.num_workers": 0}
    path = sweep_file(tmp_path, seeds=[0], **overrides)
    assert cli.main(["sweep", str(path), *SLURM_ARGS]) == 0
    (rid, job), = json.loads((isolated / "sweeps" / "slurmy" / "jobs.json").read_text()).items()
    states = isolated / "runs" / rid / "training_states"
    deadline = time.monotonic() + WAIT_S
    while not any(states.glob("*.state")):
        assert time.monotonic() < deadline, "the job never wrote a checkpoint"
        time.sleep(0.1)
    submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"])._interrupt()  # USR2: preempt
    assert [s.state for s in wait_done(isolated)] == ["done"]
    log = (isolated / "runs" / rid / "train.log").read_text()
    resumed = [int(n) for n in re.findall(rf"resumed {re.escape(rid)} from step (\d+)", log)]
    assert len(resumed) == 1 and 0 < resumed[0] < 400, log
    assert "this job is preempted" in Path(job["stderr"]).read_text()  # not a time-out
    assert (isolated / "runs" / rid / "summary.json").is_file()
    # The same run, never interrupted, in another work dir.
    spec, = sweeps.expand(sweeps.load(str(path)))
    other = tmp_path / "uninterrupted"
    runner.execute(spec.config(), other)
    a, b = _final_weights(RunDir(isolated / "runs" / rid)), _final_weights(RunDir(other / "runs" / rid))
    for key in ("params", "params_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_sixteen_runs_finishing_together_leave_sixteen_intact_records(cluster, tmp_path,
                                                                      isolated):
    path = sweep_file(tmp_path, seeds=range(16), **{"train.iters": 1, "train.ckpt_every": 1})
    assert cli.main(["sweep", str(path), *SLURM_ARGS, "--array-parallelism", "16"]) == 0
    statuses = wait_done(isolated)
    assert [s.state for s in statuses] == ["done"] * 16
    for status in statuses:
        run = isolated / "runs" / status.run_id
        assert json.loads((run / "summary.json").read_text())["status"] == "done"
        assert not list(run.rglob("*.tmp"))
    assert report.load_records(isolated, include_stale=True).frame["run_id"].nunique() == 16


def test_two_task_job_trains_one_run_data_parallel(cluster, tmp_path, isolated):
    """``--tasks-per-node 2`` (on GPUs: ``--gpus-per-node 2``): both tasks join one gloo group
    through submitit's job environment; task 0 alone writes the record."""
    path = sweep_file(tmp_path, seeds=[0], **{"train.batch_size": 4})
    assert cli.main(["sweep", str(path), *SLURM_ARGS, "--tasks-per-node", "2"]) == 0
    (status,) = wait_done(isolated)
    assert status.state == "done", status
    run = isolated / "runs" / status.run_id
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    assert (run / "train.log").read_text().count("run esrgan-") == 1
    scripts = list((isolated / "sweeps" / "slurmy" / "submitit").rglob("*submission.sh"))
    assert "--ntasks-per-node=2" in scripts[0].read_text()
