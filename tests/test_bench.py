"""``bench``: interleaved step timing, references, memory, inference and loader rates, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustsr_bench import bench, cli
from robustsr_bench.errors import ConfigError

TINY_NET = {"model.num_feat": 8, "model.num_block": 1, "model.num_grow_ch": 4,
            "disc.num_feat": 4, "degradation.channels": 4}


def options(**kw) -> bench.BenchOptions:
    base = {"methods": ["esrgan", "rsr"], "sizes": ["smoke"], "repeats": 1, "warmup": 0,
            "device": "cpu", "infer_lr": 16, "infer_tile": 8, "loader_batches": 2, "patch": 8,
            "batch": 2, "overrides": TINY_NET}
    return bench.BenchOptions(**{**base, **kw})


def test_quartiles_and_ratios_are_per_round():
    assert bench.quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert bench.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    times = {"esrgan": [1.0, 2.0, 4.0], "rsr": [2.0, 4.0, 8.0]}
    rows = bench.summarise_steps(times, {"esrgan": "esrgan", "rsr": "esrgan"})
    rsr = rows[1]
    assert rsr["ratio"] == 2.0 and rsr["ratio_iqr"] == 0.0  # load drift cancels per round
    assert rsr["step_ms"] == 4000.0 and rsr["samples"] == 3


def test_a_method_with_another_objective_also_gets_a_same_objective_reference():
    specs = bench.variants("paper", options(methods=["esrgan", "and", "rsr", "ddsr"],
                                            overrides=TINY_NET))
    by_label = {v.label: v for v in specs}
    assert list(by_label) == ["esrgan", "esrgan[psnr]", "and", "rsr"]  # ddsr does not train
    assert by_label["esrgan"].cfg.loss.mode == "gan"
    assert by_label["esrgan[psnr]"].cfg.loss.mode == "psnr"
    assert by_label["and"].reference == "esrgan[psnr]" and by_label["rsr"].reference == "esrgan"
    assert by_label["rsr"].cfg.train.patch_size == 32 and by_label["rsr"].cfg.train.batch_size == 2
    assert by_label["rsr"].cfg.model.num_feat == 8  # --set reaches every config


def test_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="--sizes huge is invalid"):
        bench.BenchOptions(sizes=["huge"])
    with pytest.raises(ConfigError, match="--repeats=0 is invalid"):
        bench.BenchOptions(repeats=0)


def test_peak_memory_sees_a_step_sized_allocation():
    with bench.peak_memory(torch.device("cpu")) as mem:
        block = torch.ones(64, 2**20 // 4 * 4)  # 64 MB, touched
        del block
    assert mem["mb"] > 32


def test_bench_writes_markdown_and_json_with_machine_info(tmp_path):
    report = bench.run_bench(options(), tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    for key in ("cpu", "cpu_count", "gpu", "torch", "threads", "device", "load_average_1m"):
        assert key in data["machine"]
    size = data["sizes"][0]
    assert size["size"] == "smoke" and size["model"]["num_feat"] == 8
    rows = {r["variant"]: r for r in size["steps"]}
    assert set(rows) == {"esrgan", "rsr"} and rows["esrgan"]["ratio"] == 1.0
    assert rows["rsr"]["ratio"] > 0 and rows["rsr"]["peak_mb"] >= 0
    assert size["inference"]["untiled_mp_s"] > 0 and size["inference"]["tiled_mp_s"] > 0
    assert data["loader_images_s"]["embedded"] > 0
    text = (tmp_path / "bench.md").read_text()
    assert "| rsr |" in text and data["machine"]["cpu"] in text
    assert report["sizes"][0]["steps"][0]["variant"] == "esrgan"


@pytest.mark.slow
def test_cli_bench_paper_size_with_a_gan_reference(tmp_path, capsys):
    sets = [a for k, v in TINY_NET.items() for a in ("--set", f"{k}={v}")]
    code = cli.main(["bench", "--methods", "and", "--sizes", "paper", "--repeats", "2",
                     "--warmup", "0", "--patch", "8", "--infer-lr", "16", "--infer-tile", "8",
                     "--loader-batches", "1", "--device", "cpu", "--out", str(tmp_path), *sets])
    assert code == 0
    rows = {r["variant"]: r for r in
            json.loads((tmp_path / "bench.json").read_text())["sizes"][0]["steps"]}
    assert set(rows) == {"esrgan", "esrgan[psnr]", "and"}
    assert rows["and"]["reference"] == "esrgan[psnr]" and rows["and"]["samples"] == 2
    assert "| and |" in capsys.readouterr().out


def test_cli_large_inference_reports_time_and_peak_memory(tmp_path, monkeypatch, capsys):
    real = bench.registry.resolve_config

    def tiny_paper(method, profile="smoke", ablation="", seed=0, overrides=None):
        return real(method, profile, ablation, seed, {**(overrides or {}), **{
            k: v for k, v in TINY_NET.items() if k != "degradation.channels"}})

    monkeypatch.setattr(bench.registry, "resolve_config", tiny_paper)
    assert cli.main(["bench", "--large", "40", "--tile", "16", "--device", "cpu",
                     "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench_large.json").read_text())
    assert result["out_shape"] == [1, 3, 160, 160] and result["peak_mb"] > 0
    assert result["seconds"] > 0 and "MP/s" in capsys.readouterr().out


def test_each_timed_step_trains_on_a_fresh_batch(tmp_path):
    sized = bench.prepare_size("smoke", options(repeats=2, warmup=1), tmp_path)
    batches = sized.batches["esrgan"]
    assert len(batches) == 1 + 2 + 2  # warm-up + timed + FLOP count + memory pass
    assert len({id(b.gt) for b in batches}) == len(batches)
    assert not torch.equal(batches[0].gt, batches[1].gt)  # no HR-feature cache hit across steps


def test_paper_real_size_is_the_papers_patch_and_batch():
    cfg = bench.variants("paper-real", options(overrides=TINY_NET))[0].cfg
    assert (cfg.train.patch_size, cfg.train.batch_size, cfg.scale) == (128, 16, 4)
    assert cfg.loss.mode == "gan"  # the paper profile's objective


def test_step_flops_and_conv_rate_are_measured():
    cfg = bench.resolve("esrgan", "smoke", bench.size_overrides("smoke", options()))
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        trainer = bench.build_trainer(cfg, Path(tmp))
        flops = bench.step_flops(trainer, bench.random_batch(cfg, trainer.device))
    g = cfg.model.num_feat
    lr = cfg.train.patch_size // cfg.scale
    first_conv = 2 * cfg.train.batch_size * 3 * g * 9 * lr * lr
    assert flops > 3 * first_conv  # at least forward + backward of the first conv
    assert bench.conv3x3_rate(8, 8, 1, torch.device("cpu"), repeats=1) > 0


def test_a_busy_machine_refuses_a_reference_result_unless_forced(tmp_path, monkeypatch):
    assert bench.busy_reason({"start": 0.5, "end": 1.0, "max": 1.5}, 2) is None
    # the bench's own 2 threads on 2 cores: about 2, not other work
    assert bench.busy_reason({"start": 0.7, "end": 2.0, "max": 2.21}, 2) is None
    assert "reached 2.8 on 2 cores" in bench.busy_reason({"start": 0.7, "end": 2.0, "max": 2.8}, 2)
    monkeypatch.setattr(bench, "_measure", lambda opts, device, report: report.update(
        sizes=[], loader_images_s={}))
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    with pytest.raises(bench.UserError, match="load average reached 9.0 on 2 cores") as exc:
        bench.run_bench(options(), tmp_path / "ref", reference=True)
    assert not (tmp_path / "ref").exists()  # nothing written there; the measurement is kept
    assert "this measurement: " in str(exc.value)
    kept = Path(str(exc.value).split("this measurement: ")[1].split(";")[0])
    assert "BUSY" in (kept / "bench.md").read_text()
    report = bench.run_bench(options(), tmp_path / "forced", reference=True, force=True)
    assert report["machine"]["load_average"] == {"start": 9.0, "end": 9.0, "max": 9.0}
    assert "BUSY" in (tmp_path / "forced" / "bench.md").read_text()
    bench.run_bench(options(), tmp_path / "scratch")  # not a reference: written, marked busy
    assert (tmp_path / "scratch" / "bench.json").is_file()
