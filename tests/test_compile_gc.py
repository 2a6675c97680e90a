"""bevcc.compile pauses the cyclic garbage collector while the pipeline runs and collects what the
run left once it ends: the young generations only, where everything the run allocated sits. A
full collection would rescan the caller's whole heap on every compile (0.2 s each in a test
process compiling small models: a third of the fuzz test's time)."""

from __future__ import annotations

import gc
import weakref

import torch
from torch import nn

import bevcc
from bevcc import Pass, PassResult
from bevcc.registry import Registry


class _Cycle:
    """Cyclic garbage a pass leaves behind: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


def test_compile_collects_the_runs_cycles_without_a_full_collection():
    left: list[weakref.ref] = []

    class LeavesACycle(Pass):
        name, ir, summary = "leaves_a_cycle", "fx", "leaves one reference cycle"

        def call(self, ir):
            left.append(weakref.ref(_Cycle()))
            return PassResult(ir, modified=False)

    registry = Registry()
    registry.add_pass(LeavesACycle)
    generations: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start" and left:  # after the pass: tracing may collect as Python does
            generations.append(info["generation"])

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    gc.callbacks.append(record)
    try:
        bevcc.compile(
            (model, (torch.randn(1, 3, 8, 8),)), pipeline="fx(leaves_a_cycle)", registry=registry
        )
    finally:
        gc.callbacks.remove(record)
    assert left and left[0]() is None  # the run's cycle is gone when compile returns
    assert generations and max(generations) < 2, generations  # no full collection
    assert gc.isenabled()
