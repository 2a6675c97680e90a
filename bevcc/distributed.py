"""Where this process sits in a torch.distributed job (torchrun), if it is in one."""

from __future__ import annotations


def rank_and_world() -> tuple[int, int]:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
