"""Tiled inference equals untiled inference, and evaluation tiles large images on its own."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from robustsr_bench.methods.base import Method, Restored
from robustsr_bench import registry
from robustsr_bench.errors import ConfigError
from robustsr_bench.evaluate import restore_image
from robustsr_bench.nets.rrdbnet import RRDBNet
from robustsr_bench.tiling import needs_tiling, tiled_restore

# One RRDB: 17 LR convs + the x4 tail, so its receptive radius is under 20 LR pixels.
RADIUS = 20


def tiny_net(scale: int = 4) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=scale).eval()


def image(h: int, w: int, seed: int = 0) -> Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("h, w, tile, blend", [(64, 64, 32, 4), (70, 53, 17, 5), (41, 29, 16, 8),
                                               (33, 90, 24, 0)])
def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(h, w, tile, blend):
    net, lr = tiny_net(), image(h, w)
    with torch.no_grad():
        full = net(lr)
        tiled = tiled_restore(net, lr, 4, tile, overlap=RADIUS + blend, blend=blend)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() < 1e-4


def test_tile_larger_than_the_image_is_one_untiled_pass():
    net, lr = tiny_net(), image(20, 27)
    calls = []

    def counted(x: Tensor) -> Tensor:
        calls.append(x.shape)
        return net(x)

    with torch.no_grad():
        assert torch.equal(tiled_restore(counted, lr, 4, 64, 16, 8), net(lr))
    assert calls == [lr.shape]


def test_x2_tiles_fall_on_the_pixel_unshuffle_grid():
    net, lr = tiny_net(scale=2), image(38, 46)
    with torch.no_grad():
        tiled = tiled_restore(net, lr, 2, 15, overlap=RADIUS * 2 + 4, blend=4, multiple=2)
        assert (tiled - net(lr)).abs().max() < 1e-4


def test_blend_weights_are_a_partition_of_unity():
    """A constant image upscaled by nearest-neighbour stays exactly constant across seams."""
    lr = torch.full((1, 3, 45, 38), 0.3)

    def nearest(x: Tensor) -> Tensor:
        return x.repeat_interleave(4, -1).repeat_interleave(4, -2)

    out = tiled_restore(nearest, lr, 4, 10, overlap=6, blend=6)
    assert (out - 0.3).abs().max() < 1e-6


def test_short_overlap_differs_only_slightly_near_seams():
    net, lr = tiny_net(), image(64, 64)
    with torch.no_grad():
        full = net(lr)
        soft = tiled_restore(net, lr, 4, 16, overlap=4, blend=4)
    err = (soft - full).abs().amax((0, 1))
    assert 0 < err.max() < 1e-2
    assert err[24:40, 24:40].max() < 1e-6  # inside a core, 6+ px from any seam: exact


def test_bad_tile_settings_are_refused():
    with pytest.raises(ValueError, match="blend"):
        tiled_restore(lambda x: x, image(8, 8), 1, 4, overlap=2, blend=3)
    with pytest.raises(ConfigError, match="eval.tile_blend=17 is invalid"):
        registry.resolve_config("esrgan", "smoke", overrides={"eval.tile_blend": 17})


def test_needs_tiling_follows_the_budget_and_the_switch():
    assert needs_tiling(1024, 1024, 256, 0.25)
    assert not needs_tiling(128, 128, 256, 0.25)
    assert not needs_tiling(1024, 1024, 0, 0.25)  # tile_size 0: never
    assert needs_tiling(100, 100, 64, 0.0)
    assert not needs_tiling(60, 60, 64, 0.0)  # one tile would hold it


class Recording(Method):
    """A plain feed-forward method whose restore records the input sizes it saw."""

    def __init__(self, tiles: bool = True):
        self.tiles, self.sizes = tiles, []

    def restore(self, lr: Tensor, net, cfg) -> Restored:
        self.sizes.append(tuple(lr.shape[-2:]))
        with torch.no_grad():
            return Restored(net(lr).clamp(0, 1))


def test_evaluation_tiles_images_over_the_budget_and_matches_untiled(tiny):
    over = registry.resolve_config("esrgan", "smoke", overrides={
        **tiny, "eval.tile_budget_mp": 0.001, "eval.tile_size": 24, "eval.tile_overlap": 24,
        "eval.tile_blend": 4})
    under = registry.resolve_config("esrgan", "smoke", overrides=tiny)
    net, lr = tiny_net(), image(48, 40)
    tiled_method, plain_method = Recording(), Recording()
    tiled = restore_image(tiled_method, lr, net, over).sr
    plain = restore_image(plain_method, lr, net, under).sr
    assert len(tiled_method.sizes) == 4 and plain_method.sizes == [(48, 40)]
    assert (tiled - plain).abs().max() < 1e-4


def test_methods_that_do_not_tile_are_never_tiled(tiny):
    """``tiles`` on the adapter alone decides; the test-time methods (DDSR optimises per image,
    bicubic is the whole-image reference) declare False, the trained ones True."""
    cfg = registry.resolve_config("esrgan", "smoke", overrides={
        **tiny, "eval.tile_budget_mp": 0.0, "eval.tile_size": 8})
    method = Recording(tiles=False)
    restore_image(method, image(32, 32), tiny_net(), cfg)
    assert method.sizes == [(32, 32)]
    tiles = {name: registry.method_spec(name).load_adapter().tiles
             for name in ("ddsr", "bicubic", "esrgan", "rsr")}
    assert tiles == {"ddsr": False, "bicubic": False, "esrgan": True, "rsr": True}


def test_an_adapter_returning_a_bare_tensor_still_works_with_a_warning(tiny):
    """Adapters written before ``restore`` returned :class:`Restored` keep working (deprecated)."""

    class Old(Method):
        @torch.no_grad()
        def restore(self, lr: Tensor, net, cfg) -> Tensor:
            return net(lr).clamp(0, 1)

    cfg = registry.resolve_config("esrgan", "smoke", overrides={
        **tiny, "eval.tile_budget_mp": 0.0, "eval.tile_size": 16})
    net, lr = tiny_net(), image(32, 32)
    with pytest.warns(FutureWarning, match="Old.restore: return .*Restored"):
        out = restore_image(Old(), lr, net, cfg)
    assert out.kernel is None
    assert torch.allclose(out.sr, restore_image(Recording(), lr, net, cfg).sr)


def test_tile_fields_do_not_change_the_run_id():
    from robustsr_bench.results import run_id

    a = registry.resolve_config("esrgan", "smoke")
    b = registry.resolve_config("esrgan", "smoke", overrides={
        "eval.tile_size": 64, "eval.tile_overlap": 8, "eval.tile_blend": 2,
        "eval.tile_budget_mp": 0.0, "runtime.channels_last": True, "runtime.compile": True})
    assert run_id(a) == run_id(b)
