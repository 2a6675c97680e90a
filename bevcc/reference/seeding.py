"""Deterministic construction of reference models: seeded init and realistic BN statistics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def seeded(factory: Callable[[], nn.Module], seed: int) -> tuple[nn.Module, torch.Generator]:
    """Build a model with parameters drawn from `seed`, leaving the global RNG as it was.

    Returns the model (with randomised BN statistics) and a generator for further draws, such
    as example inputs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # parameter init draws from the global generator
        torch.manual_seed(seed)
        model = factory()
    randomize_batchnorm(model, generator)
    return model, generator


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters.

    Freshly built BN layers are identities (mean 0, var 1, weight 1, bias 0), which would let a
    wrong BN fold pass every numerics test.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(c, generator=generator) * 0.1)
