"""The package as a user installs it: a wheel that carries its configs and its method adapters
inside ``robustsr_bench`` and runs from any folder, without the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from robustsr_bench import registry

from tests.conftest import REPO, TINY, as_set_args


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a clean copy: setuptools' build/ folder in the tree would keep deleted modules.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    for name in ("robustsr_bench", "methods", "configs"):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("robustsr_bench-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_configs_and_no_top_level_methods(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"robustsr_bench"}, tops
    assert "robustsr_bench/methods/rsr.py" in names
    shipped = {n for n in names if n.startswith("robustsr_bench/configs/")}
    in_repo = {f"robustsr_bench/configs/{p.relative_to(REPO / 'configs').as_posix()}"
               for p in (REPO / "configs").rglob("*.yaml")}
    assert shipped == in_repo


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    # The test environment's third-party packages (torch, ...) without their .pth hooks, so the
    # editable install of the source tree is not on the path: only the wheel provides the package
    # (--ignore-installed: that environment's robustsr_bench metadata is not this install).
    (site / "test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "--ignore-installed", "-q", str(wheel)], check=True, capture_output=True,
                   text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBUSTSR_CONFIGS")}
    env.update(ROBUSTSR_WORKDIR=str(elsewhere / "work"), OMP_NUM_THREADS="1")

    def cli(*args: str) -> str:
        done = subprocess.run([str(py), "-m", "robustsr_bench", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = subprocess.run([str(py), "-c", "import robustsr_bench, robustsr_bench.methods.rsr "
                            "as m; print(m.__file__)"], cwd=elsewhere, env=env, check=True,
                           capture_output=True, text=True).stdout
    assert Path(where.strip()).is_relative_to(env_dir), where
    assert "realesrgan" in cli("list", "suites")
    tiny = {k: v for k, v in TINY.items() if not k.startswith(("model.", "disc.", "train."))}
    cli("run", "--method", "bicubic", *as_set_args(tiny))
    summaries = list((elsewhere / "work" / "runs").glob("bicubic*/summary.json"))
    assert len(summaries) == 1, summaries


def test_old_adapter_spelling_warns_and_loads_the_packaged_class(tmp_path: Path) -> None:
    from robustsr_bench.methods.esrgan import ESRGAN

    spec = registry.MethodSpec(name="old", adapter="methods.esrgan:ESRGAN", description="",
                               source=str(tmp_path / "old.yaml"))
    with pytest.warns(FutureWarning, match="robustsr_bench.methods.esrgan:ESRGAN"):
        adapter = spec.load_adapter()
    assert type(adapter) is ESRGAN


def test_configs_found_as_package_data_or_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBUSTSR_CONFIGS", raising=False)
    assert (registry.configs_dir() / "profiles" / "smoke.yaml").is_file()
    builtin = registry.configs_dir()
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(tmp_path))
    assert registry.configs_dir() == builtin  # a user folder is layered over the built-ins
    assert registry.config_dirs() == [tmp_path, builtin]
