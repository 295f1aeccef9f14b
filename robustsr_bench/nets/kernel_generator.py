"""DDSR's kernel generator: an MLP that maps one fixed random code to a blur kernel.

Follows the DDSR / DIP-DKP code (its ``fcn``): ``Linear(code, hidden) -> ReLU6 -> Linear(hidden,
k*k) -> softmax``, so every output is a non-negative kernel that sums to one. The code is drawn
once, ``U(0, 1) x code_scale`` (the code's ``get_noise(200, 'noise', (1, 1))``), and kept fixed: the
network's weights are what the method optimises.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KernelGenerator(nn.Module):
    """Returns a (1, 1, k, k) kernel; parameters are the only state that changes."""

    def __init__(self, kernel_size: int, code_dim: int = 200, hidden: int = 1000,
                 code_scale: float = 0.1):
        super().__init__()
        self.kernel_size = kernel_size
        self.register_buffer("code", torch.rand(code_dim) * code_scale)
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.ReLU6(),
                                 nn.Linear(hidden, kernel_size * kernel_size), nn.Softmax(dim=-1))

    def forward(self) -> Tensor:
        k = self.kernel_size
        return self.net(self.code).view(1, 1, k, k)
