"""Reference models; each is ``features`` (→ penultimate vector) followed by ``classifier`` (``nn.Linear``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    """``classifier(features(x))``: the final ``nn.Linear`` reads the penultimate features."""

    features: nn.Module
    classifier: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsMLP(FeatureClassifier):
    """MLP for 8×8 digits ``(C, 8, 8)``: 64·C → 128 → 64 → ``n_classes``."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * in_channels, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU()
        )
        self.classifier = nn.Linear(64, n_classes)


class DigitsCNN(FeatureClassifier):
    """Small CNN for 8×8 digits: two 3×3 convs (16, 32), 2×2 max-pool, 64-unit penultimate layer."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(64, n_classes)


class BasicConv(FeatureClassifier):
    """LeNet-style CNN for 28×28 (the DualView paper's MNIST model): conv 5×5 (16, 32) + pools, 128 → 64."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(64, n_classes)


class CifarResNet18(FeatureClassifier):
    """ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), torchvision blocks; 512-d features."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.features = net
        self.classifier = nn.Linear(512, n_classes)


ARCHITECTURES: dict[str, Callable[..., FeatureClassifier]] = {
    "digits_mlp": DigitsMLP,
    "digits_cnn": DigitsCNN,
    "basic_conv": BasicConv,
    "lenet": BasicConv,
    "resnet18": CifarResNet18,
}


def build_model(arch: str, n_classes: int, in_channels: int = 1) -> FeatureClassifier:
    """A freshly initialised model (seed torch first for a fixed init).

    Raises:
        KeyError: unknown ``arch`` (the message lists the known ones).
    """
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown arch {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[arch](n_classes=n_classes, in_channels=in_channels)
