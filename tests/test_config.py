"""Config resolution: layers, overrides, fractions, and the one-line errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustsr_bench import registry
from robustsr_bench.cli import main
from robustsr_bench.config import parse_overrides, parse_value, read_yaml
from robustsr_bench.errors import ConfigError
from robustsr_bench.results import run_id, safe_name


def test_profile_and_method_layers_apply():
    cfg = registry.resolve_config("esrgan", "smoke")
    assert cfg.model.num_block == 2 and cfg.train.init == "scratch"
    paper = registry.resolve_config("esrgan", "paper")
    assert (paper.model.num_feat, paper.model.num_block, paper.model.num_grow_ch) == (64, 23, 32)
    assert paper.loss.mode == "gan" and paper.loss.gan_weight == 0.005


def test_overrides_and_fractions():
    cfg = registry.resolve_config("esrgan", "smoke", overrides=parse_overrides(
        ["train.lr=1/1000", "train.milestones=[5, 10]", "train.augment=false"]))
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.milestones == [5, 10] and cfg.train.augment is False


@pytest.mark.parametrize("overrides, message", [
    ({"train.itrs": 3}, "unknown key 'train.itrs'; valid keys here: iters"),
    ({"train.iters": "abc"}, "train.iters='abc' has the wrong type"),
    ({"train.iters": -1}, "train.iters=-1 is invalid; expected an integer >= 0"),
    ({"nosuch.key": 1}, "unknown key 'nosuch.key'"),
    ({"loss.mode": "wgan"}, "loss.mode='wgan' is invalid; expected one of: psnr, gan"),
])
def test_bad_overrides_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        registry.resolve_config("esrgan", "smoke", overrides=overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--method", "nosuch"], "unknown method 'nosuch'; valid: "),
    (["run", "--profile", "huge"], "unknown profile 'huge'; valid: paper, smoke"),
    (["run", "--ablation", "foo"], "unknown ablation for method 'esrgan' 'foo'"),
    (["run", "--set", "train.iters"], "expected key.path=value"),
    (["run", "--set", "train.iters=-5"], "train.iters=-5 is invalid"),
])
def test_cli_errors_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_yaml_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        read_yaml(bad)
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: line 2 is not valid YAML"):
        read_yaml(bad)


def test_method_yaml_unknown_key_is_refused(tmp_path: Path, monkeypatch):
    root = tmp_path / "configs"
    (root / "methods").mkdir(parents=True)
    (root / "profiles").mkdir()
    (root / "profiles" / "smoke.yaml").write_text("train: {iters: 1}\n")
    (root / "methods" / "x.yaml").write_text(
        "adapter: robustsr_bench.methods.esrgan:ESRGAN\nconfig:\n  train: {itres: 3}\n")
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(root))
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'train.itres'"):
        registry.resolve_config("x", "smoke")


def test_run_id_changes_with_config_and_is_safe():
    a = registry.resolve_config("esrgan", "smoke")
    b = registry.resolve_config("esrgan", "smoke", overrides={"train.iters": 7})
    c = registry.resolve_config("esrgan", "smoke", overrides={"runtime.num_workers": 3})
    assert run_id(a) != run_id(b)
    assert run_id(a) == run_id(c), "runtime settings must not change a run's identity"
    assert run_id(a).startswith("esrgan-smoke-s0-")
    for bad in ("../x", "a/b", "..", "", "/abs"):
        with pytest.raises(Exception, match="not allowed"):
            safe_name(bad)


@given(st.integers(-10**6, 10**6), st.integers(1, 10**6))
def test_fraction_parsing_property(num, den):
    assert parse_value(f"{num}/{den}") == pytest.approx(num / den)


@given(st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=4)))
def test_yaml_values_round_trip(value):
    import yaml

    assert parse_value(yaml.safe_dump(value).strip().removesuffix("...").strip()) == value


@pytest.mark.parametrize("method", registry.method_names())
def test_each_methods_sections_are_declared_once_and_load_without_the_adapter(method):
    """The YAML's ``options:`` names the very class the adapter uses: one definition of every
    option's range, read by the torch-free precheck and by training alike."""
    spec = registry.method_spec(method)
    assert spec.options_declared
    assert spec.load_options() is getattr(spec.load_adapter(), "options", None)


def _method_yaml(tmp_path: Path, monkeypatch, text: str) -> None:
    root = tmp_path / "configs"
    (root / "methods").mkdir(parents=True)
    (root / "methods" / "x.yaml").write_text(text)
    monkeypatch.setenv("ROBUSTSR_CONFIGS", str(root))


def test_method_yaml_options_must_name_a_class_or_none(tmp_path: Path, monkeypatch):
    _method_yaml(tmp_path, monkeypatch,
                 "adapter: robustsr_bench.methods.rsr:RSR\noptions: rsr_options\n")
    with pytest.raises(ConfigError, match=r"x.yaml: options: must be 'module:Class'"):
        registry.method_spec("x")


def test_a_plugin_without_options_line_has_its_sections_checked_with_its_adapter(
        tmp_path: Path, monkeypatch):
    _method_yaml(tmp_path, monkeypatch, "adapter: robustsr_bench.methods.rsr:RSR\n")
    bad = {"attack.eps": 0.0}
    registry.precheck_config("x", overrides=bad)  # shared sections only: nothing to refuse
    with pytest.raises(ConfigError, match=r"attack.eps=0.0 is invalid"):
        registry.resolve_config("x", overrides=bad)
    with pytest.raises(ConfigError, match=r"train.iters=-1 is invalid"):
        registry.precheck_config("x", overrides={"train.iters": -1})
