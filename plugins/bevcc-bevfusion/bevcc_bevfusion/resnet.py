"""ResNet-50 in plain torch (no torchvision on this machine): the camera backbone of the BEVFusion
reference. Bottleneck blocks with a conv downsample, stages [3, 4, 6, 3], widths scaled by
`width` (64 is the real network); returns the last three stages' feature maps as the FPN takes
them."""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self, width: int = 64, layers=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(width), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = width, []
        for i, blocks in enumerate(layers):
            stage_width = width * 2**i
            stage = []
            for j in range(blocks):
                stage.append(Bottleneck(cin, stage_width, 2 if j == 0 and i > 0 else 1))
                cin = stage_width * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, image):
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return c2, c3, self.layer4(c3)


def resnet50(seed: int = 0, width: int = 64, size=(256, 704)):
    """(model in eval mode with non-trivial BN statistics, example image [1, 3, H, W])."""
    from bevcc.reference import seeded

    model, generator = seeded(lambda: ResNet50(width), seed)
    return model.eval(), (torch.randn(1, 3, *size, generator=generator),)
