"""Faults: SIGKILL at many points, torn and corrupt files, a full disk, a changed config.

Every crash here is a real ``kill -9`` of a real ``python -m robustsr_bench`` process. Points that
last microseconds (a checkpoint between its bytes and its rename) are held open by the test-only
``tests/fault_hooks/sitecustomize.py``, which pauses just before the rename with the temp file
cut to half its size; the other points are found by polling the run folder. After each kill the
folder must hold only complete files, and the next ``run`` must finish with exactly the numbers
of a run that was never interrupted.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from robustsr_bench import __version__, registry, runner
from robustsr_bench.cli import main
from robustsr_bench.config import config_hash
from robustsr_bench.errors import UserError
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Checkpoints, Trainer, atomic_torch_save, torch_load
from tests.conftest import REPO, as_set_args

HOOKS = Path(__file__).resolve().parent / "fault_hooks"
KILL_TIMEOUT_S = 120


def _env(root: Path, tmp_path: Path, pause: str | None) -> dict[str, str]:
    env = {**os.environ, "ROBUSTSR_WORKDIR": str(root), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HOOKS), str(REPO)]),
           "ROBUSTSR_TEST_MARKER": str(tmp_path / "paused")}
    env.pop("ROBUSTSR_TEST_PAUSE", None)
    if pause:
        env["ROBUSTSR_TEST_PAUSE"] = pause
    return env


def kill_when(argv: list[str], tmp_path: Path, root: Path, ready: Callable[[], bool],
              pause: str | None = None) -> None:
    """Start ``argv`` as a real process and SIGKILL it as soon as ``ready()`` (or, with
    ``pause``, as soon as it sits before publishing a file matching that glob)."""
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    ready_now = (lambda: marker.exists()) if pause else ready
    with open(tmp_path / "child.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "robustsr_bench", *argv],
                                env=_env(root, tmp_path, pause), cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + KILL_TIMEOUT_S
        while not ready_now():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                proc.wait()
                tail = (tmp_path / "child.log").read_text(errors="replace")[-1500:]
                pytest.fail(f"process ended (rc {proc.returncode}) before the kill point "
                            f"{pause or ready}:\n{tail}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL


def _final_weights(run: RunDir) -> dict[str, torch.Tensor]:
    return torch_load(Checkpoints(run, 1).final_generator())["params_ema"]


def _same_weights(a: RunDir, b: RunDir) -> bool:
    wa, wb = _final_weights(a), _final_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _half_written_tmp(folder: Path) -> list[Path]:
    return [p for p in folder.glob(".*.tmp")]


# --------------------------------------------------------------------------- kill -9 in training


@pytest.mark.slow
def test_training_survives_sigkill_at_five_points(tiny, tmp_path):
    """Startup, mid-write of the first checkpoint, between checkpoints, after a checkpoint's
    model file but before its state, and mid-write of the last checkpoint (training done,
    evaluation not started): one run folder killed five times, then finished."""
    overrides = {**tiny, "train.iters": 12, "train.ckpt_every": 2, "train.milestones": [5]}
    argv = ["run", *as_set_args(overrides)]
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    root = tmp_path / "killed"
    run = RunDir.for_config(cfg, root)
    ckpt = Checkpoints(run, 2)
    states = run.path / "training_states"

    # 1. startup: the run folder exists, no step has finished
    kill_when(argv, tmp_path, root, lambda: (run.path / "train.log").is_file())
    assert not run.is_done()

    # 2. while the first checkpoint's generator is being written: nothing is published
    kill_when(argv, tmp_path, root, lambda: False, pause="net_g_2.pth")
    assert ckpt.load_latest(with_d=False) is None
    assert not (run.path / "models" / "net_g_2.pth").exists()
    assert _half_written_tmp(run.path / "models"), "the kill left a half-written temp file"

    # 3. at an arbitrary moment after the first complete checkpoint
    kill_when(argv, tmp_path, root, lambda: (states / "2.state").is_file())
    assert ckpt.load_latest(with_d=False)[0] >= 2

    # 4. the step-8 generator is published, its training state is half-written
    kill_when(argv, tmp_path, root, lambda: False, pause="8.state")
    assert (run.path / "models" / "net_g_8.pth").is_file() and not (states / "8.state").exists()
    assert ckpt.load_latest(with_d=False)[0] == 6, "the previous complete checkpoint is used"

    # 5. every step trained, the final state half-written: the record must not be written
    kill_when(argv, tmp_path, root, lambda: False, pause="12.state")
    assert ckpt.load_latest(with_d=False)[0] == 10 and not run.is_done()

    assert main(["run", "--workdir", str(root), *as_set_args(overrides)]) == 0
    assert run.is_done() and "resumed" in (run.path / "train.log").read_text()
    reference = runner.execute(cfg, tmp_path / "clean")
    assert _same_weights(reference, run), "resumed weights differ from an uninterrupted run"
    assert ckpt.steps() == [12, 10]


# --------------------------------------------------------------------------- kill -9 in evaluation


@pytest.mark.slow
def test_evaluation_survives_sigkill_at_three_points(tiny, tmp_path):
    """While the eval suite is generated, before metrics.csv and before summary.json are
    published: no torn record, and the rerun gives the numbers of an uninterrupted run."""
    overrides = {**tiny, "train.iters": 2, "train.ckpt_every": 2}
    argv = ["run", *as_set_args(overrides)]
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    root = tmp_path / "killed"
    run = RunDir.for_config(cfg, root)

    kill_when(argv, tmp_path, root, lambda: False, pause="meta.json")
    suites = root / "cache" / "suites"
    assert not list(suites.glob("*/meta.json")), "a half-generated suite is never published"

    kill_when(argv, tmp_path, root, lambda: False, pause="metrics.csv")
    assert not (run.path / "metrics.csv").exists() and not run.is_done()

    kill_when(argv, tmp_path, root, lambda: False, pause="summary.json")
    assert not run.summary_path.exists() and not run.is_done()
    pd.read_csv(run.path / "metrics.csv")  # published before the kill, so complete

    assert main(["run", "--workdir", str(root), *as_set_args(overrides)]) == 0
    reference = runner.execute(cfg, tmp_path / "clean")
    a, b = (r.read_metrics().query("metric != 'seconds'").reset_index(drop=True)
            for r in (reference, run))
    pd.testing.assert_frame_equal(a.drop(columns="run_id"), b.drop(columns="run_id"))
    assert _same_weights(reference, run)


# --------------------------------------------------------------------------- kill -9 in report


def _texts(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.suffix in (".md", ".csv", ".tex")}


@pytest.mark.slow
def test_report_killed_mid_write_leaves_old_or_new_files_only(tiny, tmp_path):
    from PIL import Image

    root, out = tmp_path / "work", tmp_path / "results"
    report = ["report", "--workdir", str(root), "--include-stale"]
    for seed in (0, 1):
        cfg = registry.resolve_config("esrgan", "smoke", seed=seed,
                                      overrides={**tiny, "train.iters": 2})
        runner.execute(cfg, root)
        if seed == 0:
            assert main([*report, "--out", str(out)]) == 0
            old = _texts(out)
    kill_when([*report, "--out", str(out)], tmp_path, root, lambda: False, pause="README.md")
    assert main([*report, "--out", str(tmp_path / "fresh")]) == 0
    new = _texts(tmp_path / "fresh")
    assert new != old, "the second run changes the report"
    for name, data in _texts(out).items():
        assert data in (old.get(name), new.get(name)), f"{name} is torn"
    for png in out.rglob("*.png"):
        Image.open(png).load()  # every figure is complete
    assert main([*report, "--out", str(out)]) == 0
    assert _texts(out) == new and main([*report, "--out", str(out), "--check"]) == 0
    assert not list(out.rglob(".*.tmp")), "the rerun removed the killed report's temp file"


# --------------------------------------------------------------------------- integrity


def _finished(tiny: dict, root: Path, **extra) -> tuple:
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, **extra})
    return cfg, runner.execute(cfg, root)


@pytest.mark.parametrize("damage", ["flip_one_byte", "truncate_half"])
def test_damaged_checkpoint_file_is_never_loaded(tiny, isolated, damage):
    """A model file that torch may still read, but whose bytes are not the ones written, is
    caught by the sha256 its state recorded; the previous good checkpoint is used, and the
    resumed run ends with the weights of the undamaged run."""
    cfg, run = _finished(tiny, isolated)
    before = _final_weights(run)
    path = run.path / "models" / "net_g_4.pth"
    data = bytearray(path.read_bytes())
    if damage == "flip_one_byte":
        data[len(data) * 3 // 4] ^= 0xFF
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))
    assert Checkpoints(run, 2).load_latest(with_d=False)[0] == 2
    run.summary_path.unlink()
    runner.execute(cfg, isolated)
    after = _final_weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_records_and_checkpoints_carry_config_hash_and_version(tiny, isolated):
    cfg, run = _finished(tiny, isolated)
    digest = config_hash(cfg)
    summary = run.read_summary()
    assert (summary["config_hash"], summary["version"]) == (digest, __version__)
    meta = torch_load(run.path / "models" / "net_g_4.pth")["meta"]
    state = torch_load(run.path / "training_states" / "4.state")
    for record in (meta, state):
        assert (record["config_hash"], record["version"]) == (digest, __version__)
    assert set(state["files"]) == {"net_g"}


@pytest.mark.parametrize("written_before", ["training_hash", "config"])
def test_checkpoints_from_older_versions_still_resume(tiny, isolated, written_before):
    """States written before they carried a training hash (or their config) resume by what they
    do carry: a run interrupted under an older version finishes under this one."""
    cfg, run = _finished(tiny, isolated)
    path = run.path / "training_states" / "4.state"
    dropped = {"training_hash"} | ({"config"} if written_before == "config" else set())
    atomic_torch_save({k: v for k, v in torch_load(path).items() if k not in dropped}, path)
    from robustsr_bench.methods.esrgan import ESRGAN

    assert Trainer(cfg, ESRGAN(), run, None, None).resume() == 4
    other = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "train.lr": 2e-3})
    with pytest.raises(UserError, match="different config"):
        Trainer(other, ESRGAN(), run, None, None).resume()


def test_resume_with_another_architecture_names_the_mismatch(tiny, isolated):
    cfg, run = _finished(tiny, isolated)
    other = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "model.num_feat": 4})
    from robustsr_bench.methods.esrgan import ESRGAN

    trainer = Trainer(other, ESRGAN(), run, None, None)
    with pytest.raises(UserError, match=r"different config \(model.num_feat: 8 in the "
                                        r"checkpoint, 4 now\); use --force") as info:
        trainer.resume()
    assert "\n" not in str(info.value)


def test_init_from_another_architecture_is_refused_naming_it(tiny, isolated, capsys):
    _, run = _finished(tiny, isolated)
    source = run.path / "models" / "net_g_4.pth"
    before = source.read_bytes()
    argv = ["run", *as_set_args({**tiny, "model.num_feat": 4}), "--init", str(source)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(source) in err[0]
    assert "shape mismatch conv_first.weight (8,3,3,3) in file vs (4,3,3,3) in model" in err[0]
    assert source.read_bytes() == before


# --------------------------------------------------------------------------- disk full


def _fsync_fails_for(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """ENOSPC from ``fsync`` of the file being written to ``name`` (where a full disk shows up
    on delayed-allocation file systems); every other fsync is real."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@NEEDS_PROC
def test_disk_full_while_rewriting_the_summary_keeps_it(tiny, isolated, monkeypatch):
    _, run = _finished(tiny, isolated)
    before = run.summary_path.read_bytes()
    _fsync_fails_for(monkeypatch, "summary.json")
    with pytest.raises(UserError, match=r"summary.json: disk full while writing; the previous "
                                        r"file is intact"):
        run.write_summary({**run.read_summary(), "status": "done", "note": "rewritten"})
    assert run.summary_path.read_bytes() == before
    assert not list(run.path.glob(".*.tmp"))


@NEEDS_PROC
@pytest.mark.parametrize("record", ["metrics.csv", "net_g_4.pth"])
def test_disk_full_in_a_rerun_keeps_the_previous_record(tiny, isolated, monkeypatch, capsys,
                                                        record):
    """A run redone from step 2 hits a full disk writing ``record``: the command fails with one
    line that says so, the old file is intact, and once space is back the rerun completes."""
    _, run = _finished(tiny, isolated)
    path = next(run.path.rglob(record))
    before = path.read_bytes()
    run.summary_path.unlink()
    (run.path / "training_states" / "4.state").unlink()
    with monkeypatch.context() as patch:
        _fsync_fails_for(patch, record)
        assert main(["run", *as_set_args(tiny)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{record}: disk full while writing" in err[0]
    assert path.read_bytes() == before and not list(run.path.rglob(".*.tmp"))
    assert main(["run", *as_set_args(tiny)]) == 0 and run.is_done()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="mounting needs root")
def test_disk_full_on_a_real_tiny_filesystem(tiny, tmp_path):
    """A real ENOSPC: a 32 MiB tmpfs (room for one tiny run on the nine held-out photos),
    filled to the brim after a finished run."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        cfg, run = _finished(tiny, mount)
        summary = run.summary_path.read_bytes()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(UserError, match="summary.json: disk full while writing; the "
                                            "previous file is intact"):
            run.write_summary({"status": "done", "padding": "x" * 100_000})
        from robustsr_bench.methods.esrgan import ESRGAN

        trainer = Trainer(cfg, ESRGAN(), run, None, None)
        with pytest.raises(UserError, match="net_g_4.pth: disk full"):
            trainer.save(4)
        assert run.summary_path.read_bytes() == summary
        assert Checkpoints(run, 2).load_latest(with_d=False)[0] == 4
        assert not list(run.path.rglob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
