"""The spine end to end: train, evaluate, record, reuse, resume, refuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustsr_bench import plan, registry, runner
from robustsr_bench.cli import main
from robustsr_bench.errors import MissingWeightsError
from robustsr_bench.results import RunDir
from robustsr_bench.trainer import Checkpoints, atomic_torch_save, torch_load
from tests.conftest import REPO, as_set_args


def _final_weights(run: RunDir) -> dict[str, torch.Tensor]:
    return torch_load(Checkpoints(run, 1).final_generator())["params_ema"]


def test_run_writes_a_complete_record(tiny, isolated, capsys):
    assert main(["run", "--method", "esrgan", *as_set_args(tiny)]) == 0
    out = capsys.readouterr().out
    runs = sorted((isolated / "runs").iterdir())
    esr = next(RunDir(p) for p in runs if p.name.startswith("esrgan-"))
    summary = esr.read_summary()
    lines = out.splitlines()
    header = next(line.split() for line in lines if line.startswith("PSNR↑"))
    clean = next(line.split() for line in lines if line.startswith("clean"))  # first block: PSNR
    # tiny: only the clean suite; esrgan starts from scratch, so bicubic is what it is held to
    assert header == ["PSNR↑", "bicubic", "esrgan", "Δ", "[95%", "CI]"]
    assert clean[2] == f"{summary['means']['clean']['psnr_y']:.2f}"
    assert "esrgan: 1 seed (0) x 9 images" in out
    table = lines[lines.index(next(x for x in lines if x.startswith("esrgan: "))):]
    assert max(len(line) for line in table) <= 100  # the run's path above may be longer
    assert summary["status"] == "done" and summary["trained_on"] == "embedded"
    frame = esr.read_metrics()
    assert set(frame["metric"]) == {"psnr_y", "ssim_y", "seconds"}
    assert set(frame["image"]) == {"astronaut", "chelsea", "coffee", "rocket",
                                   "I03", "I04", "I06", "I08", "I19"}
    assert (esr.path / "config.yaml").is_file() and (esr.path / "models" / "net_g_4.pth").is_file()
    assert (esr.path / "training_states" / "4.state").is_file()
    psnr = frame[frame.metric == "psnr_y"]["value"]
    assert psnr.between(5, 60).all()


def test_finished_run_is_reused_and_force_redoes(tiny, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    run = runner.execute(cfg, isolated)
    stamp = run.summary_path.stat().st_mtime_ns
    assert runner.execute(cfg, isolated).summary_path.stat().st_mtime_ns == stamp
    runner.execute(cfg, isolated, force=True)
    assert run.summary_path.stat().st_mtime_ns != stamp


def test_new_eval_suites_reuse_the_trained_weights(tiny, isolated):
    """Same training, other suites: a new run id, evaluated on the finished run's final weights
    (bit-identical, no training step); a change to training trains anew."""
    trained = runner.execute(registry.resolve_config("esrgan", "smoke", overrides=tiny), isolated)
    state_path = trained.path / "training_states" / f"{tiny['train.iters']}.state"
    state = torch_load(state_path)  # as written before states carried their training config
    atomic_torch_save({k: v for k, v in state.items() if k not in ("training_hash", "config")},
                      state_path)
    more = {**tiny, "eval.suites": ["clean", "gaussian_noise"]}
    again = runner.execute(registry.resolve_config("esrgan", "smoke", overrides=more), isolated)
    assert again.run_id != trained.run_id
    log = (again.path / "train.log").read_text()
    assert f"trained exactly like finished run {trained.run_id}" in log and "it/s" not in log
    assert again.read_summary()["init"] == f"weights of {trained.run_id}"
    assert all(torch.equal(a, b) for a, b in zip(_final_weights(trained).values(),
                                                 _final_weights(again).values()))
    clean = [r.read_summary()["means"]["clean"]["psnr_y"] for r in (trained, again)]
    assert clean[0] == clean[1]
    longer = {**more, "train.iters": tiny["train.iters"] + 2}
    retrained = runner.execute(registry.resolve_config("esrgan", "smoke", overrides=longer),
                               isolated)
    log = (retrained.path / "train.log").read_text()
    assert "trained exactly like" not in log and "it/s" in log


def test_robust_method_fine_tunes_from_the_cached_baseline(tiny_configs, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={"train.init": "baseline"})
    assert main(["run", "--method", "esrgan", "--set", "train.init=baseline"]) == 0
    run = RunDir.for_config(cfg, isolated)
    base = RunDir.for_config(plan.baseline_config(cfg), isolated)
    assert base.is_done(), "the clean baseline is trained first"
    assert run.read_summary()["init"] == base.run_id


def test_resume_in_process_is_bit_identical(tiny, isolated):
    overrides = {**tiny, "train.iters": 6}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    reference = runner.execute(cfg, isolated / "a")

    class Killed(Exception):
        pass

    def kill_at_5(step: int) -> None:
        if step == 5:
            raise Killed

    from robustsr_bench.methods.esrgan import ESRGAN
    from robustsr_bench.trainer import Trainer

    run = RunDir.for_config(cfg, isolated / "b")
    with pytest.raises(Killed):
        Trainer(cfg, ESRGAN(), run, None, None).fit(on_step=kill_at_5)
    assert Checkpoints(run, 2).steps() == [4, 2]
    resumed = runner.execute(cfg, isolated / "b")
    a, b = _final_weights(reference), _final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resumed" in (resumed.path / "train.log").read_text()


@pytest.mark.slow
def test_kill_9_then_rerun_gives_identical_weights(tiny, isolated, tmp_path):
    """A real SIGKILL mid-training; the rerun resumes and matches an uninterrupted run."""
    overrides = {**tiny, "train.iters": 40, "train.ckpt_every": 5, "train.milestones": [20]}
    argv = [sys.executable, "-m", "robustsr_bench", "run", *as_set_args(overrides)]
    env = {**os.environ, "ROBUSTSR_WORKDIR": str(tmp_path / "killed"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "killed").glob("runs/*/training_states/1[05].state")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True).returncode == 0
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    killed = RunDir.for_config(cfg, tmp_path / "killed")
    assert "resumed" in (killed.path / "train.log").read_text()
    clean = runner.execute(cfg, tmp_path / "clean")
    a, b = _final_weights(clean), _final_weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    run = runner.execute(cfg, isolated)
    (run.path / "training_states" / "4.state").write_bytes(b"torn")
    step, _ = Checkpoints(run, 2).load_latest(with_d=False)
    assert step == 2


def test_gan_profile_needs_vgg_and_refuses_before_training(tiny, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "loss.mode": "gan"})
    with pytest.raises(MissingWeightsError, match=r"vgg19-dcbb9e9d.pth.*weights fetch vgg19"):
        runner.execute(cfg, isolated)
    assert not (isolated / "runs").exists(), "nothing is written before the refusal"


def test_vgg19_is_needed_where_the_adapter_says_only(isolated):
    """One answer, :meth:`Method.needs_vgg`: the GAN objective of a trained method or the
    adapter's own perceptual attack; a test-time method under the GAN profile (the bicubic
    reference of ``evaluate --profile paper``, DDSR) needs no VGG19 file."""
    def vgg(method: str, profile: str = "paper", **overrides) -> bool:
        cfg = registry.resolve_config(method, profile, overrides=overrides)
        return "vgg19" in runner.needed_weights(cfg, registry.method_spec(method).load_adapter())

    assert vgg("esrgan") and not vgg("esrgan", "smoke")
    assert vgg("rsr", "smoke", **{"attack.loss": "l1+percep"}) and not vgg("rsr", "smoke")
    assert not vgg("bicubic") and not vgg("ddsr")


def _fake_vgg19(torch_home: Path) -> None:
    """A VGG19 file with the real structure and random values (the loading path is real)."""
    import torchvision

    state = torchvision.models.vgg19(weights=None).features.state_dict()
    path = torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in state.items()}, path)


@pytest.mark.slow
def test_gan_profile_end_to_end_with_cached_vgg(tiny, isolated, tmp_path):
    _fake_vgg19(tmp_path / "torch_home")
    overrides = {**tiny, "loss.mode": "gan", "train.iters": 2}
    cfg = registry.resolve_config("esrgan", "smoke", overrides=overrides)
    run = runner.execute(cfg, isolated)
    assert (run.path / "models" / "net_d_2.pth").is_file()
    state = torch_load(run.path / "training_states" / "2.state")
    assert "opt_d" in state
    frame = pd.read_csv(run.path / "metrics.csv")
    assert frame["value"].notna().all()


def test_non_finite_loss_stops_with_clear_message(tiny, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides={**tiny, "train.lr": 1e30,
                                                                  "train.iters": 6,
                                                                  "train.ckpt_every": 1})
    with pytest.raises(Exception, match=r"loss l_pix became (nan|inf).*last good checkpoint: step 1"):
        runner.execute(cfg, isolated)


def test_published_checkpoint_as_init(tiny, isolated, tmp_path):
    cfg = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    from robustsr_bench.methods.esrgan import ESRGAN

    net = ESRGAN().build_generator(cfg)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "published.pth")
    init_cfg = registry.resolve_config("esrgan", "smoke", overrides={
        **tiny, "train.init": str(tmp_path / "published.pth")})
    assert runner.execute(init_cfg, isolated).read_summary()["init"].endswith("published.pth")
    wrong = registry.resolve_config("esrgan", "smoke", overrides={
        **tiny, "model.num_feat": 4, "train.init": str(tmp_path / "published.pth")})
    with pytest.raises(Exception, match="published.pth"):
        runner.execute(wrong, isolated)


def test_summary_json_is_valid(tiny, isolated):
    cfg = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    run = runner.execute(cfg, isolated)
    summary = json.loads(run.summary_path.read_text())
    assert set(summary["means"]["clean"]) == {"psnr_y", "ssim_y", "seconds"}


def test_fine_tune_id_covers_the_run_it_starts_from(tiny, monkeypatch):
    """Changing the baseline's schedule must not reuse fine-tunes of the old baseline."""
    from robustsr_bench.results import run_id

    cfg = registry.resolve_config("rsr", "smoke", overrides=tiny)
    before = run_id(cfg)
    original = plan.baseline_config

    def longer_baseline(c, method=plan.BASELINE_METHOD):
        return registry.resolve_config(method, c.profile, "", c.seed, {"train.iters": 7})

    monkeypatch.setattr(plan, "baseline_config", longer_baseline)
    assert run_id(cfg) != before
    monkeypatch.setattr(plan, "baseline_config", original)
    assert run_id(cfg) == before
    scratch = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    assert run_id(scratch).startswith("esrgan-smoke-s0-")


def test_run_table_fits_100_columns_at_default_settings(isolated):
    """Six suites, three metrics, four models (one an ablation with a long name) and three
    seeds: one block per metric keeps every line within 100 characters."""
    from robustsr_bench.runview import Column, render
    from tests.test_report import SIX, make_run

    suites = ["clean", "gaussian_noise", "jpeg", "blur_noise", "realesrgan", "camera"]
    values = {s: {"psnr_y": 26.0, "ssim_y": 0.7, "piqe": 80.0} for s in suites}
    columns = []
    for label, method, ablation, shift in (("bicubic", "bicubic", "", -0.5),
                                           ("esrgan", "esrgan", "", 0.0), ("bapd", "bapd", "", 0.3),
                                           ("bapd [no_pixel_attack+no_distillation]", "bapd",
                                            "no_pixel_attack+no_distillation", 0.2)):
        shifted = {s: {m: v + shift for m, v in d.items()} for s, d in values.items()}
        runs = [RunDir(make_run(isolated, method, shifted, ablation, seed=s, images=SIX))
                for s in (0, 1, 2)]
        columns.append(Column(label, runs))
    text = render(columns, ["psnr_y", "ssim_y", "piqe"], suites)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "bapd [no_pixel_attack+no_distillation]: 3 seeds (0, 1, 2) x 6 images" in text
    assert "Δ = run − bapd" in text
    psnr_avg = next(line for line in lines if line.startswith("average"))
    assert psnr_avg.split()[1:5] == ["25.50", "26.00", "26.30", "26.20"]
    assert "-0.10 [-0.10, -0.10]*" in psnr_avg


def test_seeds_option_is_validated(capsys):
    assert main(["run", "--method", "bicubic", "--seeds", "0,x"]) == 2
    assert "--seeds '0,x' is invalid" in capsys.readouterr().err


@pytest.mark.slow
def test_run_seeds_shows_baseline_full_method_and_ablation_delta(tiny_configs, isolated,
                                                                  capsys):
    base = ["--method", "rsr", "--seeds", "0,1", "--set", "eval.optional_metrics=[]"]
    assert main(["run", *base]) == 0
    assert main(["run", *base, "--ablation", "no_attack"]) == 0
    out = capsys.readouterr().out.split("rsr [no_attack]: ")[1]
    assert out.startswith("2 seeds (0, 1) x 9 images")
    header = next(line.split() for line in out.splitlines() if line.startswith("PSNR↑"))
    assert header[:5] == ["PSNR↑", "bicubic", "esrgan", "rsr", "run"]
    assert "Δ = run − rsr, paired over seeds x images" in out
    assert len([p for p in (isolated / "runs").iterdir() if p.name.startswith("rsr-no_attack")]) == 2
