"""Generator, discriminator, VGG extractor and loss tests; tiny nets on CPU so they run in seconds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from robustsr_bench.errors import MissingWeightsError, UserError
from robustsr_bench.losses import (
    PerceptualLoss,
    ragan_discriminator_loss,
    ragan_generator_loss,
)
from robustsr_bench.nets.discriminator import VGGStyleDiscriminator
from robustsr_bench.nets.rrdbnet import RRDBNet, load_generator_file, load_generator_state
from robustsr_bench.nets.vgg import VGG19_LAYERS, VGGFeatureExtractor, vgg19_cache_path

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def tiny_net(scale: int = 4, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(scale=scale, **TINY).eval()


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_rrdbnet_output_shape(scale: int) -> None:
    x = torch.rand(2, 3, 12, 16)
    with torch.no_grad():
        assert tiny_net(scale)(x).shape == (2, 3, 12 * scale, 16 * scale)


def test_rrdbnet_parameter_names_match_basicsr() -> None:
    keys = set(RRDBNet(**TINY).state_dict())
    expected = {
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "body.0.rdb3.conv5.bias",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.bias",
    }
    assert expected <= keys
    assert "conv_up2.weight" not in RRDBNet(scale=3, **TINY).state_dict()
    assert RRDBNet(scale=2, **TINY).conv_first.in_channels == 12
    assert RRDBNet(scale=1, **TINY).conv_first.in_channels == 48


def test_rrdbnet_rejects_bad_scale_and_odd_size() -> None:
    with pytest.raises(ValueError, match="scale=5"):
        RRDBNet(scale=5, **TINY)
    with pytest.raises(ValueError, match="divisible by 2"):
        tiny_net(2)(torch.rand(1, 3, 9, 8))


def test_head_body_tail_compose_to_forward() -> None:
    net = tiny_net(4)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net.tail(net.body_features(net.head(x))), net(x))


@pytest.mark.parametrize("wrap", ["plain", "params_ema", "params", "module_prefix"])
def test_published_layout_loads_from_file(tmp_path: Path, wrap: str) -> None:
    src = tiny_net(seed=1)
    sd = src.state_dict()
    obj = {
        "plain": sd,
        "params_ema": {"params_ema": sd, "params": tiny_net(seed=2).state_dict()},
        "params": {"params": sd},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
    }[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    dst = tiny_net(seed=3)
    load_generator_file(dst, path)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(dst(x), src(x))


def test_wrong_architecture_is_refused_with_path_and_key(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"params_ema": RRDBNet(num_feat=4, num_block=2, num_grow_ch=4).state_dict()}, path)
    with pytest.raises(UserError) as info:
        load_generator_file(tiny_net(), path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "unexpected body.1.rdb1.conv1.weight" in message
    assert "shape mismatch conv_first.weight (4,3,3,3) in file vs (8,3,3,3) in model" in message


def test_missing_keys_and_bad_files_are_user_errors(tmp_path: Path) -> None:
    sd = tiny_net().state_dict()
    del sd["conv_last.weight"]
    with pytest.raises(UserError, match=r"^mem: not an RRDBNet\(scale=4.*missing conv_last.weight"):
        load_generator_state(tiny_net(), sd, "mem")
    with pytest.raises(UserError, match="nothere.pth: generator checkpoint not found"):
        load_generator_file(tiny_net(), tmp_path / "nothere.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt.pth: not a PyTorch checkpoint"):
        load_generator_file(tiny_net(), corrupt)
    with pytest.raises(UserError, match="not a state dict"):
        load_generator_state(tiny_net(), [1, 2], "list.pth")


@pytest.mark.parametrize("size", [128, 64])
def test_discriminator_output_shape(size: int) -> None:
    net = VGGStyleDiscriminator(num_feat=8, input_size=size)
    assert net(torch.rand(2, 3, size, size)).shape == (2, 1)


def test_discriminator_linear1_size_and_checks() -> None:
    net = VGGStyleDiscriminator(num_feat=64, input_size=128)
    assert sum(p.numel() for p in net.linear1.parameters()) == 8192 * 100 + 100
    with pytest.raises(ValueError, match="multiple of 32"):
        VGGStyleDiscriminator(input_size=100)
    with pytest.raises(ValueError, match=r"\(N, C, 64, 64\).*got \(1, 3, 32, 32\)"):
        VGGStyleDiscriminator(num_feat=8, input_size=64)(torch.rand(1, 3, 32, 32))


def test_vgg19_layer_map() -> None:
    assert VGG19_LAYERS["conv1_1"] == 0
    assert VGG19_LAYERS["conv5_4"] == 34
    assert VGG19_LAYERS["relu5_4"] == 35
    assert VGG19_LAYERS["pool5"] == 36
    assert len(VGG19_LAYERS) == 37  # len(vgg19().features)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-format VGG19 file; classifier entries shrunk since the extractor skips them."""
    torch.manual_seed(0)
    state = vgg19(weights=None).state_dict()
    state = {k: v if k.startswith("features.") else v.new_zeros(1) for k, v in state.items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path


def test_vgg_extractor_loads_file_and_is_deterministic(vgg_file: Path) -> None:
    first = VGGFeatureExtractor("conv5_4", weights_path=vgg_file)
    second = VGGFeatureExtractor("conv5_4", weights_path=vgg_file)
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(first.features[34].weight, saved["features.34.weight"])
    assert len(first.features) == 35  # truncated right after conv5_4, before its ReLU
    assert all(not p.requires_grad for p in first.parameters())
    first.train()
    assert not first.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = first(x)
        assert out.shape == (1, 512, 2, 2)
        assert torch.equal(out, second(x))


def test_vgg_extractor_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pth"
    with pytest.raises(MissingWeightsError) as info:
        VGGFeatureExtractor(weights_path=missing)
    assert str(missing) in str(info.value)
    assert "python -m robustsr_bench weights fetch vgg19" in str(info.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="wrong.pth: not a torchvision VGG19"):
        VGGFeatureExtractor(weights_path=wrong)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        VGGFeatureExtractor(layer="conv6_1")


def test_vgg19_cache_path_respects_torch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert vgg19_cache_path() == tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"


def test_perceptual_loss_is_weighted_l1_of_features(vgg_file: Path) -> None:
    extractor = VGGFeatureExtractor("relu2_2", weights_path=vgg_file)
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    hr = torch.rand(1, 3, 16, 16)
    loss = PerceptualLoss(extractor, weight=0.5)(sr, hr)
    expected = 0.5 * (extractor(sr) - extractor(hr)).abs().mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert sr.grad is not None


def _bce(x: float, y: float) -> float:
    """Binary cross-entropy of one logit, written out by hand."""
    p = 1.0 / (1.0 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_ragan_losses_match_hand_computation() -> None:
    real = [1.0, -0.5]
    fake = [0.2, 0.6]
    mean_real, mean_fake = sum(real) / 2, sum(fake) / 2
    g_expected = 0.5 * (
        sum(_bce(r - mean_fake, 0) for r in real) / 2
        + sum(_bce(f - mean_real, 1) for f in fake) / 2
    )
    d_expected = (
        0.5 * sum(_bce(r - mean_fake, 1) for r in real) / 2
        + 0.5 * sum(_bce(f - mean_real, 0) for f in fake) / 2
    )
    real_t = torch.tensor(real).view(2, 1)
    fake_t = torch.tensor(fake).view(2, 1)
    assert ragan_generator_loss(real_t, fake_t).item() == pytest.approx(g_expected, rel=1e-6)
    assert ragan_discriminator_loss(real_t, fake_t).item() == pytest.approx(d_expected, rel=1e-6)


def test_ragan_gradients_flow_only_where_intended() -> None:
    real = torch.tensor([[1.0], [-0.5]], requires_grad=True)
    fake = torch.tensor([[0.2], [0.6]], requires_grad=True)
    ragan_generator_loss(real, fake).backward()
    assert real.grad is None and fake.grad is not None
