"""Nothing lost, nothing leaked: report never writes less, files are readable by colleagues,
one run per folder at a time, a killed ``--force`` keeps the old record, instant start-up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from robustsr_bench import registry, runner
from robustsr_bench.cli import main
from robustsr_bench.results import RunDir
from tests.conftest import REPO, TINY


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def test_report_without_records_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    shutil_copy = _snapshot(REPO / "results")
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


def test_help_imports_no_torch():
    code = ("import sys\nfrom robustsr_bench.cli import main\n"
            "for argv in (['--help'], ['list', 'methods'], ['list', 'suites']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'pandas', 'methods') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
