"""The package's layers import downward only (DESIGN.md "Layers"), as the import-linter
contracts in pyproject.toml state them; a cycle or an upward import fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_are_kept() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path: Path) -> None:
    """The check can fail: config (bottom) importing runner (top half) is reported."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "pyproject.toml", copy)
    shutil.copytree(REPO / "robustsr_bench", copy / "robustsr_bench", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods").symlink_to(REPO / "methods")
    config = copy / "robustsr_bench" / "config.py"
    config.write_text(config.read_text() + "\nfrom . import runner  # noqa: E402\n")
    done = lint_imports(copy)
    assert done.returncode != 0
    assert "robustsr_bench.config is not allowed to import robustsr_bench.runner" in done.stdout
