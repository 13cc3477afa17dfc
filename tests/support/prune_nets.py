"""Small nets for the pruning tests: residual adds, depthwise convs, concat, squeeze-excite."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(c // 4, 1), 1)
        self.fc2 = nn.Conv2d(max(c // 4, 1), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))


class MixedNet(nn.Module):
    """Stem, a residual block, depthwise-separable conv + SE, a two-branch concat, a classifier."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
        )
        self.expand = nn.Sequential(nn.Conv2d(w, 2 * w, 1), nn.BatchNorm2d(2 * w), nn.ReLU6())
        self.dw = nn.Sequential(
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, groups=2 * w), nn.BatchNorm2d(2 * w), nn.ReLU()
        )
        self.se = SqueezeExcite(2 * w)
        self.branch_a = nn.Conv2d(2 * w, w, 1)
        self.branch_b = nn.Conv2d(2 * w, w, 3, padding=1)
        self.mix = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 1), nn.Hardswish())
        self.head = nn.Linear(2 * w, classes)
        self.example_inputs = (torch.zeros(1, 3, 16, 16),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.se(self.dw(self.expand(x)))
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        x = nn.functional.max_pool2d(self.mix(x), 2)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class HardCodedNet(nn.Module):
    """Flattens with a hard-coded size: runs as built, breaks once channels are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3)
        self.c2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.reshape(x.shape[0], 8 * 4 * 4))


class SmallCNN(nn.Module):
    """A digits classifier (1×8×8 inputs)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, 10)
        self.example_inputs = (torch.zeros(1, 1, 8, 8),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def mixed_net() -> MixedNet:
    """Factory for ``tests/support/prune_nets.py:mixed_net`` specs (fixed seed)."""
    torch.manual_seed(0)
    return MixedNet().eval()


def hard_coded_net() -> HardCodedNet:
    torch.manual_seed(0)
    m = HardCodedNet().eval()
    m.example_inputs = (torch.zeros(1, 1, 8, 8),)  # type: ignore[assignment]
    return m
