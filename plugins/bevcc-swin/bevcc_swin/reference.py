"""The registered model `swin_tiny_camera`: seeded weights, example input, calibration batches."""

from __future__ import annotations

import torch

from bevcc_swin.model import SwinBackbone, SwinConfig

IMAGE = (1, 3, 112, 112)  # a 28 x 28 patch grid: 4 x 4 windows of 7 x 7, then 2 x 2


def swin_tiny_camera(seed: int = 0):
    """(model, example inputs): the small Swin backbone with deterministic weights."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear / nn.Conv2d draw their default init from the global RNG
    model = SwinBackbone(SwinConfig())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias_table"):
                # Trained Swin tables are far from their 0.02 init; a spread of 1 makes the
                # attention peaked, as it is in a trained model.
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval(), (torch.randn(IMAGE, generator=generator),)


def calibration_batches(count: int = 8, seed: int = 1):
    """Images keyed by the input name `x` (`--calib bevcc_swin.reference:calibration_batches`)."""
    generator = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(IMAGE, generator=generator).numpy()} for _ in range(count)]
