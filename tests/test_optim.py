"""robustsr_bench.optim: the one place optimisers are built, fused where torch can."""

from __future__ import annotations

import torch

from robustsr_bench.nets.dip_unet import SkipUNet
from robustsr_bench.optim import adam, fusable


def _steps(fused: bool, n: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = SkipUNet(3, 3, 8, 2, 2)
    opt = adam(net.parameters(), 5e-3, fused=fused)
    grads = [[torch.randn_like(p) for p in net.parameters()] for _ in range(n)]
    for step in grads:
        for p, g in zip(net.parameters(), step):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_fused_adam_is_the_default_update_to_rounding():
    """Five steps from the same gradients: every parameter within float rounding."""
    for a, b in zip(_steps(False), _steps(True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_is_fused_only_where_asked_and_possible():
    net = SkipUNet(3, 3, 8, 2, 2)
    assert adam(net.parameters(), 1e-3).param_groups[0]["fused"]
    assert adam(net.parameters(), 1e-3, fused=False).param_groups[0]["fused"] is None
    integer = [torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)]
    assert not fusable(integer) and not fusable([])
