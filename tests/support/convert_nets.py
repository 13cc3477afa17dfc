"""Small PyTorch nets that cover what the converter must handle (test helpers, host tier).

Each factory returns a model in eval mode with deterministic weights (seeded) and realistic
BatchNorm statistics, so conversions are reproducible and cacheable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            else:
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "weight" in name else 0.0)
                )
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model.eval()


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class MobileBlocks(nn.Module):
    """Depthwise-separable convs, ReLU6, hardswish, squeeze-excite, concat, max/avg/global
    pooling, flatten → linear and softmax: 1×3×32×32 → 10 class probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, 2, 1, groups=16), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.pw = nn.Sequential(nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24), nn.ReLU6())
        self.se = SqueezeExcite(24)
        self.branch_a = nn.Conv2d(24, 8, 1)
        self.branch_b = nn.Conv2d(24, 8, 3, 1, 1)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw(self.dw(self.stem(x)))  # 24×16×16
        x = self.se(x)
        x = torch.cat([F.relu(self.branch_a(x)), F.relu(self.branch_b(x))], dim=1)  # 16×16×16
        x = F.max_pool2d(x, 2)  # 16×8×8
        x = F.avg_pool2d(x, 2)  # 16×4×4
        return F.softmax(self.head(torch.flatten(x, 1)), dim=1)


class UpNet(nn.Module):
    """Two inputs (an image and a vector), three outputs: an upsampled feature map (4-D,
    channels-last in TFLite), logits from flatten → linear over a concat with the vector, and
    a global-pooled embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.mid = nn.Conv2d(8, 8, 3, 1, 1)
        self.dec = nn.Conv2d(16, 4, 3, 1, 1)
        self.fc = nn.Linear(8 * 8 * 8 + 6, 5)

    def forward(self, img: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e = self.enc(img)  # 8×8×8
        m = F.relu(self.mid(e))
        up = F.interpolate(torch.cat([e, m], 1), scale_factor=2, mode="nearest")
        up2 = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False)
        seg = self.dec(up) + up2[:, :4]
        logits = self.fc(torch.cat([torch.flatten(m, 1), vec], 1))
        emb = F.adaptive_avg_pool2d(m, 1).flatten(1)
        return seg, logits, emb


class SignalNet(nn.Module):
    """Two signal inputs: a 1-D conv branch (N, C, L) flattened into a linear classifier —
    the rank-3 layout case — and an MLPerf-Tiny-AD-style fully connected autoencoder on a
    640-wide vector. Two outputs: class logits and the reconstruction."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * 16, 3)
        self.ae = FcAutoencoder(640, 128, depth=2)

    def forward(self, wave: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = F.max_pool1d(F.relu(self.bn(self.c1(wave))), 2)
        return self.fc(x.flatten(1)), self.ae(spec)


class TinyNet(nn.Module):
    """A few layers, for testing options cheaply."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


class DigitsCNN(nn.Module):
    """For scikit-learn's 8×8 digits: two convs, max pool, flatten → two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class DataDependentLoop(nn.Module):
    """Scripted, its loop count depends on the data: ONNX Loop, which onnx2tf cannot convert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        i = 0
        while bool(y.sum() < 100.0) and i < 10:
            y = y * 2.0 + 1.0
            i += 1
        return y


class FcAutoencoder(nn.Module):
    """The MLPerf Tiny AD shape: 640 → 128×4 → 8 → 128×4 → 640 (fully connected)."""

    def __init__(self, width: int = 640, hidden: int = 128, depth: int = 4) -> None:
        super().__init__()
        dims = [width, *[hidden] * depth, 8, *[hidden] * depth]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class NoInt8Net(nn.Module):
    """Linear → an op without an int8 TFLite kernel → linear. ``erf`` has no TFLite builtin
    at all (quantization fails); ``sin`` has a float-only one (TFLiteConverter leaves a float
    island wrapped in DEQUANTIZE/QUANTIZE, which the graph lint must catch)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 16)
        self.act = _Fn(getattr(torch, op))
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Fn(nn.Module):
    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)  # type: ignore[operator]


def mobile_blocks() -> nn.Module:
    return _seeded(MobileBlocks(), 1)


def up_net() -> nn.Module:
    return _seeded(UpNet(), 2)


def fc_autoencoder() -> nn.Module:
    return _seeded(FcAutoencoder(), 4)


def signal_net() -> nn.Module:
    return _seeded(SignalNet(), 6)


def tiny_net() -> nn.Module:
    return _seeded(TinyNet(), 7)


def erf_net() -> nn.Module:
    return _seeded(NoInt8Net("erf"), 5)


def sin_net() -> nn.Module:
    return _seeded(NoInt8Net("sin"), 5)


def raising_factory() -> nn.Module:
    raise RuntimeError("checkpoint server unreachable")


mobile_blocks.example_inputs = [(1, 3, 32, 32)]  # type: ignore[attr-defined]
