"""A small CNN trained on scikit-learn's bundled digits (8x8 images, 10 classes): real data for
accuracy checks of quantization (PTQ and QAT) without downloads. Needs scikit-learn."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TRAIN = 1400  # of 1797 images; the rest is the held-out split


class DigitsNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.body = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width * 16, 10)

    def forward(self, image):
        return self.classifier(torch.flatten(self.body(self.stem(image)), 1))


def digits_splits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (test images, labels)); images float32 [N, 1, 8, 8] in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], data.target[order].astype(np.int64)
    return (images[:TRAIN], labels[:TRAIN]), (images[TRAIN:], labels[TRAIN:])


def train(
    model: nn.Module, images, labels, epochs: int = 12, lr: float = 3e-3, seed: int = 0
) -> nn.Module:
    """Adam on cross-entropy, minibatches of 64; deterministic for a seed."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def accuracy(predict, images, labels) -> float:
    """Share of correct top-1 predictions; `predict` maps an image batch to logits."""
    with torch.no_grad():
        logits = predict(torch.from_numpy(images))
    return float((np.asarray(logits).argmax(1) == labels).mean())


def trained_digits_net(seed: int = 0):
    """(model in eval mode, example input, train split, test split)."""
    train_split, test_split = digits_splits()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = train(DigitsNet(), *train_split, seed=seed)
    return model, (torch.from_numpy(train_split[0][:1]),), train_split, test_split


def calibration_batches(images: np.ndarray, count: int = 8, size: int = 32) -> list[dict]:
    return [{"image": images[i * size : (i + 1) * size]} for i in range(count)]
