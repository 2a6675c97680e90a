"""Specialize a model's forward to its example inputs: the core's step, under its old name.

bevcc's frontend now specializes every PyTorch model whose example inputs it knows
(bevcc/ir/specialize.py): non-tensor inputs such as mmdet3d's `batch_size` become constants,
shape values the example fixes fold, the voxel count stays live, no-op input casts go. A builder
can therefore return `(module, (voxel_features, coors, 1))` as it is; `specialize` stays for
code that wants the specialized GraphModule itself.
"""

from __future__ import annotations

import torch

from bevcc.ir.specialize import specialize as specialize_core


def specialize(module: torch.nn.Module, example_inputs: tuple, rules=None):
    """(GraphModule with tensor-only named inputs, the tensor example inputs)."""
    if rules is None:
        from bevcc.plugins import get_registry

        rules = get_registry().trace_rules()
    result = specialize_core(module, tuple(example_inputs), rules)
    return result.module, result.example_inputs
