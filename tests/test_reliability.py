"""Nothing lost, nothing leaked: report never writes less, files are readable by colleagues,
one run per folder at a time, a killed ``--force`` keeps the old record, instant start-up."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustsr_bench import registry, runner
from robustsr_bench.cli import main
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Checkpoints
from tests.conftest import REPO, TINY, as_set_args
from tests.test_faults import _env, kill_when


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def test_report_without_records_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    # the committed tables without their records (results/records): nothing to build them from
    shutil_copy = {rel: data for rel, data in _snapshot(REPO / "results").items()
                   if not str(rel).startswith("records")}
    for rel, data in shutil_copy.items():
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_bytes(data)
    before = _snapshot(results)
    empty = tmp_path / "empty_work"
    empty.mkdir()
    assert main(["report", "--workdir", str(empty), "--out", str(results)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty / "runs") in err[0] and "left unchanged" in err[0], err
    assert _snapshot(results) == before
    assert main(["report", "--workdir", str(empty), "--out", str(results), "--check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{results} left unchanged" in err[0], err
    assert _snapshot(results) == before


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cfg = registry.resolve_config("esrgan", "smoke", overrides={**TINY, "train.iters": 2})
        run = runner.execute(cfg, tmp_path / "work")
    finally:
        os.umask(old)
    files = [p for p in run.path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.yaml", "summary.json", "metrics.csv", "net_g_2.pth", "2.state"} <= names
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes
    dirs = [p for p in (tmp_path / "work").rglob("*") if p.is_dir()]
    assert any(p.parent.name == "suites" for p in dirs)
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o755}


@pytest.mark.parametrize("argv", [
    ["--help"], ["list", "methods"], ["list", "suites"], ["list", "datasets"],
    ["run", "--workdir", "/proc/robustsr_x"], ["run", "--device", "banana"],
    ["run", "--set", "train.iters=-1"], ["run", "--set", "runtime.log_every=0"],
    # a method's own sections are checked from its torch-free options module (YAML options:)
    ["run", "--method", "rsr", "--set", "attack.eps=0"],
    ["run", "--method", "rsr", "--set", "attack.epz=1"],
    ["run", "--method", "esrgan", "--set", "attack.eps=1"],
    ["run", "--method", "ddsr", "--set", "kernel.size=8"],
    ["run", "--method", "bapd", "--set", "edges.method=x"],
    ["run", "--method", "and", "--ablation", "no_adversarial", "--set", "degradation.channels=1"],
    ["run", "--method", "esrgan", "--set", "eval.suites=[clean,nosie]"],
    ["list", "zoo"],
])
def test_help_list_and_input_errors_import_no_torch(argv):
    """Start-up stays instant: torch (seconds to import) only in commands that need it."""
    code = ("import sys\nfrom robustsr_bench.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as exc:\n    rc = exc.code\n"
            "heavy = [m for m in ('torch', 'pandas', 'methods') if m in sys.modules]\n"
            "print('RC', rc, 'HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]
    assert f"RC {2 if argv[0] == 'run' else 0} " in out.stdout


# --------------------------------------------------------------------------- one run at a time

def _start(argv: list[str], root: Path, tmp_path: Path, name: str,
           pause: str | None = None) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.log"
    with open(out, "wb") as sink:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "robustsr_bench", *argv],
                                env=_env(root, tmp_path, pause), cwd=tmp_path,
                                stdout=sink, stderr=subprocess.STDOUT)
    return proc, out


def _wait_for(what, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not what():
        assert proc is None or proc.poll() is None, f"process ended early (rc {proc.poll()})"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _table(log: Path) -> str:
    """What ``run`` prints after its record is final: the run line and the table."""
    text = log.read_text()
    return text[text.rindex("\nrun "):]


@pytest.mark.slow
def test_concurrent_identical_runs_train_once(tiny, tmp_path):
    """Two real processes start the same run while a third holds it: both wait, one trains,
    the other reuses its record; both print the same table."""
    from filelock import FileLock

    overrides = {**tiny, "train.iters": 4}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    root = tmp_path / "work"
    run = RunDir.for_config(cfg, root)
    run.path.parent.mkdir(parents=True)
    holder = FileLock(run.path.parent / f".{run.run_id}.lock")
    holder.acquire()
    (run.path.parent / f".{run.run_id}.pid").write_text(f"{os.getpid()}\n")
    argv = ["run", *as_set_args(overrides)]
    procs = [_start(argv, root, tmp_path, f"p{i}") for i in range(2)]
    for proc, log in procs:
        _wait_for(lambda log=log: f"(pid {os.getpid()}) is computing this run" in log.read_text(),
                  proc)
    holder.release()
    for proc, _ in procs:
        assert proc.wait(timeout=300) == 0
    logs = [log.read_text() for _, log in procs]
    trained = [text for text in logs if f"run {run.run_id}: method=esrgan" in text]
    assert len(trained) == 1, "exactly one process trained"
    assert sum("finished by another process meanwhile; reusing it" in t for t in logs) == 1
    assert _table(procs[0][1]) == _table(procs[1][1])
    assert run.is_done() and Checkpoints(run, 1).steps()[0] == 4


@pytest.mark.slow
def test_killed_lock_holder_does_not_block_the_next_run(tiny, tmp_path):
    """The holder is SIGKILLed (just before publishing its record) while another process waits
    for it: the lock dies with it, and the waiter finishes the run from its checkpoints."""
    overrides = {**tiny, "train.iters": 4}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    root = tmp_path / "work"
    run = RunDir.for_config(cfg, root)
    argv = ["run", *as_set_args(overrides)]
    first, _ = _start(argv, root, tmp_path, "first", pause="summary.json")
    _wait_for(lambda: (tmp_path / "paused").exists(), first)
    second, log = _start(argv, root, tmp_path, "second")
    _wait_for(lambda: f"(pid {first.pid}) is computing this run" in log.read_text(), second)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert second.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert run.is_done() and "resumed" in (run.path / "train.log").read_text()


@pytest.mark.slow
def test_force_killed_mid_redo_keeps_the_previous_record(tiny, tmp_path):
    overrides = {**tiny, "train.iters": 4}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    root = tmp_path / "work"
    run = runner.execute(cfg, root)
    before = _snapshot(run.path)
    argv = ["run", "--force", *as_set_args(overrides)]
    kill_when(argv, tmp_path, root, lambda: False, pause="net_g_4.pth")
    assert _snapshot(run.path) == before, "the finished record is untouched"
    assert main(["run", "--workdir", str(root), *argv[1:]]) == 0
    after = _snapshot(run.path)
    assert after["summary.json"] != before["summary.json"], "the redo replaced the record"
    assert after["models/net_g_4.pth"] == before["models/net_g_4.pth"], "deterministic redo"
    assert not list((root / runner.REDO_DIR).iterdir()), "nothing left beside the runs"


def test_failed_run_is_marked_with_its_reason(tiny, tmp_path, caplog, monkeypatch):
    """A run that fails mid-training keeps its checkpoints and says why in summary.json; the
    report lists it with that reason."""
    from robustsr_bench import trainer

    overrides = {**tiny, "train.iters": 4}
    root = tmp_path / "work"
    real = trainer.Trainer.save

    def fail_after_first(self, step):
        real(self, step)
        if step == 2:
            raise trainer.NonFiniteLossError("loss l_pix is nan at step 3")

    monkeypatch.setattr(trainer.Trainer, "save", fail_after_first)
    assert main(["run", "--workdir", str(root), *as_set_args(overrides)]) == 2
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    summary = RunDir.for_config(cfg, root).read_summary()
    assert summary["status"] == "failed" and "loss l_pix is nan" in summary["reason"]
    caplog.clear()
    assert main(["report", "--workdir", str(root), "--out", str(tmp_path / "out")]) == 1
    assert "failed: NonFiniteLossError: loss l_pix is nan" in caplog.text
    from robustsr_bench import launch  # `status`: the job ended, its record says why

    rid = RunDir.for_config(cfg, root).run_id
    status = launch.run_status(launch.SweepState(root, "manual"), rid,
                               {"launcher": "local", "job_id": "1"}, "ended")
    assert status.state == "failed" and "loss l_pix is nan" in status.error
    assert "loss l_pix is nan" in launch.status_table([status])
    monkeypatch.undo()  # the cause is gone: the next run resumes from the kept checkpoint
    assert main(["run", "--workdir", str(root), *as_set_args(overrides)]) == 0
    run = RunDir.for_config(cfg, root)
    assert run.is_done() and "resumed" in (run.path / "train.log").read_text()


def test_failed_run_before_any_checkpoint_leaves_no_folder(tiny, tmp_path, monkeypatch):
    from robustsr_bench import trainer

    def broken(self, *args):
        raise trainer.NonFiniteLossError("loss l_pix is nan at step 1")

    monkeypatch.setattr(trainer.Trainer, "fit", broken)
    root = tmp_path / "work"
    assert main(["run", "--workdir", str(root), *as_set_args(tiny)]) == 2
    assert [p.name for p in (root / "runs").iterdir() if not p.name.startswith(".")] == []


def test_progress_on_a_pipe_is_log_lines(tiny, tmp_path):
    """stderr to a file (Slurm, CI): no carriage returns, one line every log_every steps and
    one per evaluation suite, each on its own line."""
    overrides = {**tiny, "runtime.progress": True, "runtime.log_every": 2,
                 "eval.suites": ["clean", "gaussian_noise"]}
    proc, log = _start(["run", *as_set_args(overrides)], tmp_path / "work", tmp_path, "pipe")
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    steps = [line for line in lines if " step " in line and "it/s)" in line]
    assert [line.split(" step ")[1].split()[0] for line in steps] == ["2/4", "4/4"], steps
    assert any(line.endswith("evaluating suite 2/2 gaussian_noise") for line in lines)
