"""RSR adapter: config, ablations, the attack inside a training step, and end-to-end runs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from robustsr_bench.methods.base import Batch, Modules, TrainContext
from robustsr_bench.methods.rsr import RSR
from robustsr_bench import registry
from robustsr_bench.cli import main
from robustsr_bench.config import parse_overrides, read_yaml
from robustsr_bench.errors import ConfigError
from robustsr_bench.nets.discriminator import VGGStyleDiscriminator
from tests.conftest import REPO

# The paper's Table 1 rows that differ from the default, as attack-field changes.
TABLE1 = {
    "loss_l1": {"loss": "l1"}, "loss_percep": {"loss": "percep"},
    "eps10": {"eps": 10 / 255}, "eps12": {"eps": 12 / 255}, "eps16": {"eps": 16 / 255},
    "eps18": {"eps": 18 / 255}, "iters4": {"iters": 4}, "iters6": {"iters": 6},
    "iters8": {"iters": 8}, "structure1": {"structure": 1.0}, "structure2": {"structure": 2.0},
}
NO_ATTACK = {"iters": 0, "random_start": False}


def attack_dict(ablation: str = "", profile: str = "paper", **overrides) -> dict:
    cfg = registry.resolve_config("rsr", profile, ablation, overrides=overrides)
    return dataclasses.asdict(cfg.attack)


def test_defaults_are_the_papers():
    cfg = registry.resolve_config("rsr", "paper")
    a = cfg.attack
    assert (a.eps, a.iters, a.alpha, a.structure, a.loss) == (14 / 255, 2, 1 / 255, 1.5,
                                                               "l1+percep")
    assert a.loss_weights() == (0.01, 1.0) and cfg.train.init == "baseline"
    assert registry.resolve_config("rsr", "smoke").attack.loss == "l1", "no VGG19 offline"


def test_fraction_overrides_and_one_line_errors():
    cfg = registry.resolve_config("rsr", "smoke", overrides=parse_overrides(
        ["attack.eps=10/255", "attack.alpha=2/255", "attack.loss=l1+percep"]))
    assert cfg.attack.eps == pytest.approx(10 / 255) and cfg.attack.alpha == pytest.approx(2 / 255)
    for key, value, expected in [("attack.loss", "l2", "one of: l1+percep, l1, percep"),
                                 ("attack.structure", 0.5, "a number >= 1"),
                                 ("attack.eps", 2.0, "a number in (0, 1]"),
                                 ("attack.eps", 0.0, "a number in (0, 1]"),
                                 ("attack.iters", -1, "an integer >= 0")]:
        with pytest.raises(ConfigError, match=r"is invalid; expected") as info:
            registry.resolve_config("rsr", "smoke", overrides={key: value})
        assert f"{key}={value!r}" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("ablation, changes", [*TABLE1.items(), ("no_attack", NO_ATTACK)])
def test_each_ablation_changes_exactly_its_table1_field(ablation, changes):
    default = attack_dict()
    varied = attack_dict(ablation)
    assert {k: v for k, v in varied.items() if v != default[k]} == changes


def test_ablations_are_listed_with_their_meaning(capsys):
    assert main(["list", "ablations", "--method", "rsr"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert set(listed) == {f"rsr:{name}" for name in [*TABLE1, "no_attack"]}
    assert all(len(text) > 15 for text in listed.values())


def test_needs_perceptual_only_when_the_attack_uses_it():
    rsr = RSR()

    def needs(ablation: str = "", profile: str = "paper", **overrides) -> bool:
        return rsr.needs_perceptual(registry.resolve_config("rsr", profile, ablation,
                                                            overrides=overrides))

    assert needs() and needs("loss_percep") and not needs("loss_l1")
    assert not needs(profile="smoke") and not needs("no_attack")
    assert needs(profile="smoke", **{"attack.loss": "l1+percep"})


def test_sweep_file_lists_the_table1_grid():
    sweep = read_yaml(REPO / "configs" / "sweeps" / "rsr_table1.yaml")
    assert set(sweep) == {"name", "description", "profile", "seeds", "runs"}
    assert sweep["profile"] == "paper" and sweep["seeds"] == [0]
    runs = [(r["method"], r["ablation"]) for r in sweep["runs"]]
    assert len(runs) == len(set(runs))
    assert {a for m, a in runs if m == "rsr"} == {"", "no_attack", *TABLE1}
    assert ("esrgan", "") in runs
    for method, ablation in runs:
        registry.resolve_config(method, sweep["profile"], ablation)


# -- the attack inside a training step ---------------------------------------------------------


def l1_content_loss(sr: Tensor, gt: Tensor, pixel_weight: float,
                    perceptual_weight: float) -> Tensor:
    """The trainer's content loss when VGG is not loaded."""
    return pixel_weight * F.l1_loss(sr, gt)


def tiny_setup(tiny: dict, **overrides) -> tuple[RSR, Modules, TrainContext, Batch]:
    cfg = registry.resolve_config("rsr", "smoke", overrides={**tiny, **overrides})
    torch.manual_seed(0)
    rsr = RSR()
    modules = Modules(rsr.build_generator(cfg), VGGStyleDiscriminator(3, 4, 32))
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32))
    return rsr, modules, TrainContext(cfg, 0, l1_content_loss, False), batch


def test_attack_leaves_weights_grads_flags_and_optimizer_state_untouched(tiny):
    rsr, m, ctx, batch = tiny_setup(tiny)
    opt = torch.optim.Adam(m.g.parameters(), lr=1e-3)
    F.l1_loss(m.g(batch.lq), batch.gt).backward()
    opt.step()  # the optimiser now has state, and G stale gradients
    for p in m.d.parameters():
        p.grad = torch.randn_like(p)
        p.requires_grad_(False)  # as the trainer leaves D during the G step
    snapshot = copy.deepcopy((m.g.state_dict(), m.d.state_dict(), opt.state_dict()))
    grads = [p.grad.clone() for p in [*m.g.parameters(), *m.d.parameters()]]

    torch.manual_seed(1)
    adv = rsr.make_inputs(batch, m, ctx)

    for before, after in zip(snapshot[:2], (m.g.state_dict(), m.d.state_dict())):
        assert all(torch.equal(before[k], after[k]) for k in before)
    state = opt.state_dict()["state"]
    assert all(torch.equal(snapshot[2]["state"][i][k], state[i][k]) for i in state
               for k in state[i])
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, [*m.g.parameters(),
                                                                *m.d.parameters()]))
    assert all(p.requires_grad for p in m.g.parameters())
    assert not any(p.requires_grad for p in m.d.parameters())
    delta = adv.lq - batch.lq
    assert 0 < delta.abs().max() <= ctx.cfg.attack.eps + 1e-6
    assert adv.lq.min() >= 0 and adv.lq.max() <= 1 and adv.gt is batch.gt


def test_attack_is_a_pure_function_of_the_step_seed(tiny):
    rsr, m, ctx, batch = tiny_setup(tiny)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(rsr.make_inputs(batch, m, ctx).lq)
    assert torch.equal(*outs)


def test_no_attack_passes_the_batch_through_and_draws_nothing(tiny):
    rsr, m, ctx, batch = tiny_setup(tiny, **{"attack.iters": 0, "attack.random_start": False})
    state = torch.get_rng_state()
    assert rsr.make_inputs(batch, m, ctx) is batch
    assert torch.equal(torch.get_rng_state(), state)


def test_perceptual_attack_without_vgg_is_refused(tiny):
    rsr, m, ctx, batch = tiny_setup(tiny, **{"attack.loss": "percep"})
    with pytest.raises(ConfigError, match="attack.loss=percep needs the VGG19 perceptual loss"):
        rsr.make_inputs(batch, m, ctx)


def test_run_without_vgg_refuses_before_training(isolated, capsys):
    assert main(["run", "--method", "rsr", "--set", "attack.loss=l1+percep"]) == 2
    err = capsys.readouterr().err
    assert "vgg19" in err.lower() and "weights fetch" in err
    assert not (isolated / "runs").exists()


# -- end to end ------------------------------------------------------------------------------





def finished_run(method: str, ablation: str = "", **overrides):
    from robustsr_bench.results import RunDir, workdir

    cfg = registry.resolve_config(method, "smoke", ablation, overrides=overrides)
    run = RunDir.for_config(cfg, workdir())
    assert run.is_done()
    return run


def final_generator(run) -> dict[str, dict[str, Tensor]]:
    from robustsr_bench.trainer import Checkpoints, torch_load

    files = torch_load(Checkpoints(run, 1).final_generator())
    return {k: files[k] for k in ("params", "params_ema")}


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k][n], b[k][n]) for k in a for n in a[k])


@pytest.mark.slow
def test_ablation_changes_run_id_and_recorded_config(tiny_configs):
    assert main(["run", "--method", "rsr"]) == 0
    assert main(["run", "--method", "rsr", "--ablation", "iters4"]) == 0
    default, iters4 = finished_run("rsr"), finished_run("rsr", "iters4")
    assert default.run_id != iters4.run_id
    recorded = [yaml.safe_load((r.path / "config.yaml").read_text()) for r in (default, iters4)]
    assert recorded[0]["attack"]["iters"] == 2 and recorded[1]["attack"]["iters"] == 4
    recorded[1]["attack"]["iters"], recorded[1]["ablation"] = 2, ""
    assert recorded[0] == recorded[1], "nothing else differs"
    assert not same_weights(final_generator(default), final_generator(iters4))


@pytest.mark.slow
def test_no_attack_is_exactly_clean_fine_tuning(tiny_configs):
    assert main(["run", "--method", "rsr", "--ablation", "no_attack"]) == 0
    assert main(["run", "--method", "esrgan", "--set", "train.init=baseline"]) == 0
    assert main(["run", "--method", "rsr"]) == 0
    no_attack, clean = finished_run("rsr", "no_attack"), finished_run(
        "esrgan", **{"train.init": "baseline"})
    attacked = finished_run("rsr")
    assert no_attack.read_summary()["init"] == clean.read_summary()["init"]
    assert same_weights(final_generator(no_attack), final_generator(clean))
    assert not same_weights(final_generator(attacked), final_generator(clean))
