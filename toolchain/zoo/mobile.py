"""Mobile architectures for the converter's coverage suite (random weights, realistic BN).

Small, self-contained re-implementations of the structures of public mobile architectures —
no torchvision/timm (they do not install with the CPU torch here). Each factory returns a
model in eval mode with ``example_inputs`` (batch 1, NCHW, 64–128 px), deterministic random
weights (seeded, torchvision-style: Kaiming-normal fan-out convs) and BatchNorm statistics
near the ones that init implies (gamma 1±0.1, beta ±0.1, running mean ±0.1, variance
0.75–1.25). BN running statistics calibrated on data in train mode were tried first: every
channel then has unit variance, and random nets become chaotic — a 1 % (40 dB) perturbation
of every layer output leaves 4–12 dB at the output of MobileNetV2/MnasNet, which no trained
net does (and no int8 recipe could then reach 30 dB); with these statistics the same test
gives 34–40 dB, like trained nets. :func:`image_batch` makes the matching "representative" data (smooth random images).

Each entry of :data:`SUITE` names the converter failure class it exercises (``classes``):
``maxpool-pad`` (padded max pool → PADV2 with -FLT_MAX), ``gelu-erf`` (exact GELU → Erf),
``div-island`` (float DIV in attention/LayerNorm), ``shuffle`` (channel shuffle
transposes), ``mobilevit`` (unfold/fold patches + attention), ``ghost``/``rep``
(ghost modules, reparameterisable branches), ``low-sqnr`` (hardswish, SE, depthwise-heavy),
``shape-pos`` (shape-derived positional embedding), ``splitv`` (unequal channel split),
``control`` (nets the plain recipe already handles).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --- data and weights ----------------------------------------------------------------------


def image_batch(n: int, size: int, *, seed: int, channels: int = 3) -> torch.Tensor:
    """``n`` smooth random "images" ``(n, channels, size, size)``, about zero mean, unit
    variance per channel (like normalised photos: low-frequency content, per-image contrast
    and brightness)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, channels, max(2, size // 8), max(2, size // 8), generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.35 * torch.randn(n, channels, size, size, generator=g)
    contrast = torch.exp(0.3 * torch.randn(n, 1, 1, 1, generator=g))
    bright = 0.3 * torch.randn(n, 1, 1, 1, generator=g)
    return (x * contrast + bright).clamp(-4.0, 4.0)


def realistic(model: nn.Module, size: int, *, seed: int) -> nn.Module:
    """Seeded torchvision-style weights and BatchNorm statistics near the ones that init
    implies (see the module doc for why they are not calibrated on data)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1, generator=g)
            if isinstance(m, nn.BatchNorm2d | nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.75 + 0.5 * torch.rand(c, generator=g))
    model.eval()
    model.example_inputs = (image_batch(1, size, seed=seed + 7),)  # type: ignore[assignment]
    return model


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, *, groups: int = 1,
            act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:  # fmt: skip
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _div(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4, gate: Callable[[], nn.Module] = nn.Hardsigmoid):
        super().__init__()
        mid = _div(c / r)
        self.fc1 = nn.Conv2d(c, mid, 1)
        self.fc2 = nn.Conv2d(mid, c, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(F.relu(self.fc1(s))))


class Head(nn.Module):
    def __init__(self, c: int, classes: int = 10, hidden: int | None = None):
        super().__init__()
        self.hidden = nn.Linear(c, hidden) if hidden else None
        self.fc = nn.Linear(hidden or c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.hidden is not None:
            x = F.hardswish(self.hidden(x))
        return self.fc(x)


# --- ResNet-18 style (padded max-pool stem) -------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, s: int):
        super().__init__()
        self.c1 = conv_bn(cin, cout, 3, s)
        self.c2 = conv_bn(cout, cout, 3, 1, act=None)
        self.short = conv_bn(cin, cout, 1, s, act=None) if s != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(self.c1(x))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet18Style(nn.Module):
    """7×7/2 stem, **3×3/2 max pool with padding 1**, four BasicBlock stages."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96)):
        super().__init__()
        self.stem = conv_bn(3, widths[0], 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.pool(self.stem(x))))


# --- inverted residuals: MobileNetV2 / MnasNet / EfficientNet / MobileNetV3 -----------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, expand: float,
                 act: Callable[[], nn.Module] = nn.ReLU6, se: bool = False,
                 se_gate: Callable[[], nn.Module] = nn.Hardsigmoid):  # fmt: skip
        super().__init__()
        mid = _div(cin * expand)
        self.expand = conv_bn(cin, mid, 1, act=act) if mid != cin else None
        self.dw = conv_bn(mid, mid, k, s, groups=mid, act=act)
        self.se = SqueezeExcite(mid, 4, se_gate) if se else None
        self.project = conv_bn(mid, cout, 1, act=None)
        self.residual = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


Cfg = tuple[int, int, int, float, bool, bool]  # k, cout, stride, expand, se, hardswish


class InvertedNet(nn.Module):
    def __init__(self, stem: int, cfg: list[Cfg], last: int, *, stem_act: type[nn.Module],
                 default_act: type[nn.Module], se_gate: type[nn.Module] = nn.Hardsigmoid,
                 hidden: int | None = None):  # fmt: skip
        super().__init__()
        self.stem = conv_bn(3, stem, 3, 2, act=stem_act)
        blocks, cin = [], stem
        for k, cout, s, e, se, hs in cfg:
            act = nn.Hardswish if hs else default_act
            blocks.append(InvertedResidual(cin, cout, k, s, e, act, se, se_gate))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last = conv_bn(cin, last, 1, act=stem_act)
        self.head = Head(last, hidden=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


def _mbv2_cfg(width: float) -> list[Cfg]:
    rows = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 2, 1),
            (6, 160, 2, 2), (6, 320, 1, 1)]  # fmt: skip
    cfg: list[Cfg] = []
    for t, c, n, s in rows:
        for i in range(n):
            cfg.append((3, _div(c * width), s if i == 0 else 1, t, False, False))
    return cfg


MBV3_SMALL: list[Cfg] = [
    (3, 16, 2, 1, True, False), (3, 24, 2, 4.5, False, False), (3, 24, 1, 3.67, False, False),
    (5, 40, 2, 4, True, True), (5, 40, 1, 6, True, True), (5, 40, 1, 6, True, True),
    (5, 48, 1, 3, True, True), (5, 48, 1, 3, True, True), (5, 96, 2, 6, True, True),
    (5, 96, 1, 6, True, True), (5, 96, 1, 6, True, True),
]  # fmt: skip

MNASNET: list[Cfg] = [
    (3, 16, 1, 1, False, False), (3, 24, 2, 3, False, False), (3, 24, 1, 3, False, False),
    (5, 40, 2, 3, False, False), (5, 40, 1, 3, False, False), (5, 80, 2, 6, False, False),
    (5, 80, 1, 6, False, False), (3, 96, 1, 6, False, False), (5, 192, 2, 6, False, False),
    (3, 320, 1, 6, False, False),
]  # fmt: skip

EFFNET_B0_HALF: list[Cfg] = [
    (3, 8, 1, 1, True, False), (3, 16, 2, 6, True, False), (3, 16, 1, 6, True, False),
    (5, 24, 2, 6, True, False), (5, 24, 1, 6, True, False), (3, 40, 2, 6, True, False),
    (5, 56, 1, 6, True, False), (5, 96, 2, 6, True, False), (3, 160, 1, 6, True, False),
]  # fmt: skip


# --- MobileNetV4-style universal inverted bottleneck ----------------------------------------


class UIB(nn.Module):
    """Universal inverted bottleneck: optional start depthwise, expand, optional middle
    depthwise, project (MobileNetV4)."""

    def __init__(self, cin: int, cout: int, start_k: int, mid_k: int, s: int, expand: float):
        super().__init__()
        mid = _div(cin * expand)
        self.start = conv_bn(cin, cin, start_k, s if not mid_k else 1, groups=cin, act=None) \
            if start_k else None  # fmt: skip
        self.expand = conv_bn(cin, mid, 1)
        self.mid = conv_bn(mid, mid, mid_k, s, groups=mid) if mid_k else None
        self.project = conv_bn(mid, cout, 1, act=None)
        self.residual = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.start(x) if self.start is not None else x
        y = self.expand(y)
        if self.mid is not None:
            y = self.mid(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileNetV4Style(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 16, 3, 2), conv_bn(16, 24, 1))
        cfg = [(24, 32, 5, 5, 2, 3.0), (32, 32, 0, 3, 1, 2.0), (32, 48, 3, 3, 2, 4.0),
               (48, 48, 5, 0, 1, 3.0), (48, 48, 3, 5, 1, 3.0), (48, 64, 5, 5, 2, 4.0),
               (64, 64, 0, 5, 1, 3.0), (64, 64, 3, 0, 1, 4.0)]  # fmt: skip
        self.blocks = nn.Sequential(*[UIB(*c) for c in cfg])
        self.last = conv_bn(64, 320, 1)
        self.head = Head(320, hidden=256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


# --- ShuffleNetV2 (channel shuffle, split) ---------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, s: int):
        super().__init__()
        self.s = s
        half = cout // 2
        bin_ = cin if s > 1 else half
        self.branch2 = nn.Sequential(
            conv_bn(bin_, half, 1), conv_bn(half, half, 3, s, groups=half, act=None),
            conv_bn(half, half, 1))  # fmt: skip
        self.branch1 = (
            nn.Sequential(conv_bn(cin, cin, 3, s, groups=cin, act=None), conv_bn(cin, half, 1))
            if s > 1 else None
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2Style(nn.Module):
    def __init__(
        self, widths: tuple[int, ...] = (48, 96, 192), repeats: tuple[int, ...] = (3, 4, 3)
    ):
        super().__init__()
        self.stem = conv_bn(3, 24, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        units, cin = [], 24
        for w, r in zip(widths, repeats, strict=True):
            units += [ShuffleUnit(cin, w, 2)] + [ShuffleUnit(w, w, 1) for _ in range(r)]
            cin = w
        self.units = nn.Sequential(*units)
        self.last = conv_bn(cin, 512, 1)
        self.head = Head(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.units(self.pool(self.stem(x)))))


# --- GhostNet (ghost modules) and a RepGhost/RepVGG-style reparameterisable net --------------


class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        init = math.ceil(cout / 2)
        act = nn.ReLU if relu else None
        self.primary = conv_bn(cin, init, 1, act=act)
        self.cheap = conv_bn(init, init, 3, groups=init, act=act)
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.primary(x)
        return torch.cat([a, self.cheap(a)], 1)[:, : self.cout]


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, s: int, se: bool):
        super().__init__()
        self.g1 = GhostModule(cin, mid)
        self.dw = conv_bn(mid, mid, k, s, groups=mid, act=None) if s > 1 else None
        self.se = SqueezeExcite(mid, 4, nn.Hardsigmoid) if se else None
        self.g2 = GhostModule(mid, cout, relu=False)
        self.short = (
            None if s == 1 and cin == cout
            else nn.Sequential(conv_bn(cin, cin, k, s, groups=cin, act=None),
                               conv_bn(cin, cout, 1, act=None))
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.g1(x)
        if self.dw is not None:
            y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.g2(y)
        return y + (x if self.short is None else self.short(x))


class GhostNetStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        cfg = [(16, 16, 16, 3, 1, False), (16, 48, 24, 3, 2, False), (24, 72, 24, 3, 1, False),
               (24, 72, 40, 5, 2, True), (40, 120, 40, 5, 1, True), (40, 240, 80, 3, 2, False),
               (80, 200, 80, 3, 1, False), (80, 480, 112, 3, 1, True)]  # fmt: skip
        self.blocks = nn.Sequential(*[GhostBottleneck(*c) for c in cfg])
        self.last = conv_bn(112, 480, 1)
        self.head = Head(480, hidden=640)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


class RepBlock(nn.Module):
    """RepVGG/RepGhost-style train-time block: 3×3 conv-BN + 1×1 conv-BN + BN identity,
    summed, then ReLU (reparameterisable into one 3×3 conv)."""

    def __init__(self, cin: int, cout: int, s: int, groups: int = 1):
        super().__init__()
        self.k3 = conv_bn(cin, cout, 3, s, groups=groups, act=None)
        self.k1 = conv_bn(cin, cout, 1, s, groups=groups, act=None)
        self.idn = nn.BatchNorm2d(cin) if cin == cout and s == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.k3(x) + self.k1(x)
        if self.idn is not None:
            y = y + self.idn(x)
        return F.relu(y)


class RepGhostStyle(nn.Module):
    """Ghost-style cheap features with reparameterisable depthwise branches (MobileOne /
    RepGhost): channel slicing, concat, BN identity branches."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = RepBlock(3, 24, 2)
        layers: list[nn.Module] = []
        cin = 24
        for w, s in ((32, 2), (32, 1), (64, 2), (64, 1), (96, 2), (96, 1)):
            layers += [RepBlock(cin, cin, s, groups=cin), GhostModule(cin, w)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = Head(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


# --- attention: conv + MHSA, MobileViT, ConvNeXt (exact GELU) --------------------------------


class MHSA(nn.Module):
    """Multi-head self-attention written out (scaled dot product, softmax), tokens (B, N, C)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.dk = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.dk).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.dk)
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(y)


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.n1, self.att = nn.LayerNorm(dim), MHSA(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), act(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.n1(x))
        return x + self.mlp(self.n2(x))


class ConvAttention(nn.Module):
    """Conv stem, then tokens ``flatten(2).transpose(1, 2)`` through two transformer layers
    (ReLU MLP), back to a map and a conv head: attention reshapes, MatMul, softmax, the
    1/sqrt(d) DIV and LayerNorm."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(3, 32, 3, 2), conv_bn(32, dim, 3, 2), conv_bn(dim, dim, 3, 2)
        )
        self.layers = nn.Sequential(*[TransformerLayer(dim, 2, dim * 2, nn.ReLU) for _ in range(2)])
        self.out = conv_bn(dim, 128, 1)
        self.head = Head(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        b, c, h, w = x.shape
        t = self.layers(x.flatten(2).transpose(1, 2))
        return self.head(self.out(t.transpose(1, 2).reshape(b, c, h, w)))


class MobileViTBlock(nn.Module):
    """Local conv, unfold into 2×2 patches, transformer over patches, fold, fuse conv."""

    def __init__(self, cin: int, dim: int, depth: int, patch: int = 2):
        super().__init__()
        self.p = patch
        self.local = nn.Sequential(
            conv_bn(cin, cin, 3, act=nn.SiLU), nn.Conv2d(cin, dim, 1, bias=False)
        )
        self.tf = nn.Sequential(*[TransformerLayer(dim, 2, dim * 2) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj = conv_bn(dim, cin, 1, act=nn.SiLU)
        self.fuse = conv_bn(2 * cin, cin, 3, act=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        b, d, h, w = y.shape
        p = self.p
        # unfold: (B, D, H, W) → (B·P, N, D) with P = p² pixels per patch, N patches
        t = y.reshape(b, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1)
        t = t.reshape(b * p * p, (h // p) * (w // p), d)
        t = self.norm(self.tf(t))
        # fold back
        t = t.reshape(b, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat([x, self.proj(t)], 1))


class MobileViTStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2, act=nn.SiLU)
        self.s1 = nn.Sequential(InvertedResidual(16, 16, 3, 1, 2, nn.SiLU),
                                InvertedResidual(16, 24, 3, 2, 2, nn.SiLU))  # fmt: skip
        self.s2 = nn.Sequential(
            InvertedResidual(24, 48, 3, 2, 2, nn.SiLU), MobileViTBlock(48, 64, 2)
        )
        self.s3 = nn.Sequential(
            InvertedResidual(48, 64, 3, 2, 2, nn.SiLU), MobileViTBlock(64, 80, 2)
        )
        self.last = conv_bn(64, 256, 1, act=nn.SiLU)
        self.head = Head(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.s3(self.s2(self.s1(self.stem(x))))))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7, channels-last LayerNorm, Linear → exact GELU → Linear, residual."""

    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.pw2(F.gelu(self.pw1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStyle(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (32, 64, 96)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, 4), nn.BatchNorm2d(widths[0]))
        stages: list[nn.Module] = []
        for i, w in enumerate(widths):
            if i:
                stages += [nn.BatchNorm2d(widths[i - 1]), nn.Conv2d(widths[i - 1], w, 2, 2)]
            stages += [ConvNeXtBlock(w), ConvNeXtBlock(w)]
        self.stages = nn.Sequential(*stages)
        self.head = Head(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class GeluConvNet(nn.Module):
    """A plain CNN with exact ``nn.GELU()`` activations (the Erf export)."""

    def __init__(self) -> None:
        super().__init__()
        chans = (3, 24, 48, 64, 96)
        self.body = nn.Sequential(
            *[conv_bn(a, b, 3, 2, act=nn.GELU) for a, b in itertools.pairwise(chans)]
        )
        self.head = Head(chans[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --- shape-derived positional embedding, SplitV, group conv, fire modules -------------------


def sincos_2d(h: int, w: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """2-D sine-cosine positional embedding ``(1, dim, h, w)`` computed from the shape."""
    ys = torch.arange(h, dtype=like.dtype, device=like.device)
    xs = torch.arange(w, dtype=like.dtype, device=like.device)
    q = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(q, dtype=like.dtype) / q))
    oy, ox = ys[:, None] * omega[None], xs[:, None] * omega[None]  # (h, q), (w, q)
    emb = torch.cat([
        oy.sin()[:, None, :].expand(h, w, q), oy.cos()[:, None, :].expand(h, w, q),
        ox.sin()[None].expand(h, w, q), ox.cos()[None].expand(h, w, q)], -1)  # fmt: skip
    return emb.permute(2, 0, 1)[None]


class ShapePosEmbed(nn.Module):
    """A conv net that adds a positional embedding derived from ``x.shape`` at run time
    (Shape → Gather → Range → Sin/Cos in ONNX), then attention over the tokens."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(3, 32, 3, 2), conv_bn(32, dim, 3, 2), conv_bn(dim, dim, 3, 2)
        )
        self.layer = TransformerLayer(dim, 2, dim * 2, nn.ReLU)
        self.out = conv_bn(dim, 128, 1)
        self.head = Head(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        b, c, h, w = x.shape
        x = x + 0.5 * sincos_2d(h, w, c, x)
        t = self.layer(x.flatten(2).transpose(1, 2))
        return self.head(self.out(t.transpose(1, 2).reshape(b, c, h, w)))


class Res2Block(nn.Module):
    """Res2Net-style: 1×1 conv, **unequal** channel split (SplitV), hierarchical 3×3 convs,
    concat, 1×1 conv, residual."""

    def __init__(self, c: int, parts: tuple[int, ...]):
        super().__init__()
        self.parts = parts
        self.reduce = conv_bn(c, sum(parts), 1)
        self.convs = nn.ModuleList(conv_bn(p, p, 3) for p in parts[1:])
        self.expand = conv_bn(sum(parts), c, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = torch.split(self.reduce(x), list(self.parts), dim=1)
        outs, prev = [xs[0]], None
        for conv, part in zip(self.convs, xs[1:], strict=True):
            inp = part if prev is None or prev.shape[1] != part.shape[1] else part + prev
            prev = conv(inp)
            outs.append(prev)
        return F.relu(x + self.expand(torch.cat(outs, 1)))


class SplitVNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 32, 3, 2), conv_bn(32, 64, 3, 2))
        self.b1 = Res2Block(64, (8, 16, 16, 24))
        self.down = conv_bn(64, 96, 3, 2)
        self.b2 = Res2Block(96, (16, 24, 24, 32))
        self.head = Head(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b2(self.down(self.b1(self.stem(x)))))


class RegNetStyle(nn.Module):
    """RegNetX-style: residual bottlenecks with group convs (group width 8)."""

    def __init__(
        self, widths: tuple[int, ...] = (24, 56, 152), depths: tuple[int, ...] = (1, 2, 2)
    ):
        super().__init__()
        self.stem = conv_bn(3, 32, 3, 2)
        blocks: list[nn.Module] = []
        cin = 32
        for w, d in zip(widths, depths, strict=True):
            for i in range(d):
                blocks.append(_RegBlock(cin, w, 2 if i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class _RegBlock(nn.Module):
    def __init__(self, cin: int, cout: int, s: int, gw: int = 8):
        super().__init__()
        self.a = conv_bn(cin, cout, 1)
        self.b = conv_bn(cout, cout, 3, s, groups=cout // gw)
        self.c = conv_bn(cout, cout, 1, act=None)
        self.short = conv_bn(cin, cout, 1, s, act=None) if s != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c(self.b(self.a(x))) + (x if self.short is None else self.short(x)))


class Fire(nn.Module):
    def __init__(self, cin: int, sq: int, ex: int):
        super().__init__()
        self.sq = conv_bn(cin, sq, 1)
        self.e1, self.e3 = conv_bn(sq, ex, 1), conv_bn(sq, ex, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sq(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


class SqueezeNetStyle(nn.Module):
    """SqueezeNet 1.1 structure: fire modules, **ceil-mode** 3×3/2 max pools."""

    def __init__(self) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            conv_bn(3, 32, 3, 2), pool(), Fire(32, 16, 32), Fire(64, 16, 32), pool(),
            Fire(64, 24, 48), Fire(96, 24, 48), pool(), Fire(96, 32, 64), Fire(128, 32, 64))  # fmt: skip
        self.head = Head(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --- the suite -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteModel:
    """One suite entry: factory name in this module, input size, failure classes."""

    name: str
    size: int
    classes: tuple[str, ...]
    note: str

    @property
    def spec(self) -> str:
        return f"toolchain.zoo.mobile:{self.name}"


def resnet18_style(size: int = 96) -> nn.Module:
    return realistic(ResNet18Style(), size, seed=1)


def mobilenet_v2(size: int = 96) -> nn.Module:
    net = InvertedNet(16, _mbv2_cfg(0.5), 640, stem_act=nn.ReLU6, default_act=nn.ReLU6)
    return realistic(net, size, seed=2)


def mobilenet_v3_small(size: int = 96) -> nn.Module:
    net = InvertedNet(16, MBV3_SMALL, 576, stem_act=nn.Hardswish, default_act=nn.ReLU, hidden=1024)
    return realistic(net, size, seed=3)


def mobilenet_v4_style(size: int = 96) -> nn.Module:
    return realistic(MobileNetV4Style(), size, seed=4)


def mnasnet(size: int = 96) -> nn.Module:
    net = InvertedNet(16, MNASNET, 640, stem_act=nn.ReLU, default_act=nn.ReLU)
    return realistic(net, size, seed=5)


def efficientnet_style(size: int = 96) -> nn.Module:
    net = InvertedNet(
        16, EFFNET_B0_HALF, 640, stem_act=nn.SiLU, default_act=nn.SiLU, se_gate=nn.Sigmoid
    )
    return realistic(net, size, seed=6)


def shufflenet_v2(size: int = 96) -> nn.Module:
    return realistic(ShuffleNetV2Style(), size, seed=7)


def ghostnet(size: int = 96) -> nn.Module:
    return realistic(GhostNetStyle(), size, seed=8)


def repghost(size: int = 96) -> nn.Module:
    return realistic(RepGhostStyle(), size, seed=9)


def conv_attention(size: int = 64) -> nn.Module:
    return realistic(ConvAttention(), size, seed=10)


def mobilevit_style(size: int = 64) -> nn.Module:
    return realistic(MobileViTStyle(), size, seed=11)


def convnext_style(size: int = 64) -> nn.Module:
    return realistic(ConvNeXtStyle(), size, seed=12)


def gelu_convnet(size: int = 64) -> nn.Module:
    return realistic(GeluConvNet(), size, seed=13)


def shape_pos_embed(size: int = 64) -> nn.Module:
    return realistic(ShapePosEmbed(), size, seed=14)


def splitv_net(size: int = 64) -> nn.Module:
    return realistic(SplitVNet(), size, seed=15)


def regnet_style(size: int = 96) -> nn.Module:
    return realistic(RegNetStyle(), size, seed=16)


def squeezenet_style(size: int = 96) -> nn.Module:
    return realistic(SqueezeNetStyle(), size, seed=17)


SUITE: tuple[SuiteModel, ...] = (
    SuiteModel("resnet18_style", 96, ("maxpool-pad",), "7x7/2 stem + 3x3/2 pad-1 max pool"),
    SuiteModel("mobilenet_v2", 96, ("control",), "inverted residuals, ReLU6, width 0.5"),
    SuiteModel("mobilenet_v3_small", 96, ("low-sqnr",), "hardswish, SE (hardsigmoid), 5x5 dw"),
    SuiteModel("mobilenet_v4_style", 96, ("low-sqnr",), "universal inverted bottlenecks"),
    SuiteModel("mnasnet", 96, ("control",), "MnasNet-A-like, ReLU"),
    SuiteModel("efficientnet_style", 96, ("control",), "SiLU, SE (sigmoid), width 0.5"),
    SuiteModel("shufflenet_v2", 96, ("shuffle", "maxpool-pad"), "channel split + shuffle"),
    SuiteModel("ghostnet", 96, ("ghost",), "ghost modules (concat + slice), SE"),
    SuiteModel("repghost", 96, ("rep", "ghost"), "3x3+1x1+BN-identity branches, ghost"),
    SuiteModel("conv_attention", 64, ("div-island",), "conv stem + 2 MHSA layers"),
    SuiteModel("mobilevit_style", 64, ("mobilevit", "div-island"), "unfold/fold + MHSA"),
    SuiteModel("convnext_style", 64, ("gelu-erf",), "dw 7x7, LayerNorm, exact GELU MLP"),
    SuiteModel("gelu_convnet", 64, ("gelu-erf",), "plain CNN with exact GELU"),
    SuiteModel("shape_pos_embed", 64, ("shape-pos", "div-island"), "sin-cos from x.shape"),
    SuiteModel("splitv_net", 64, ("splitv",), "Res2Net-style unequal split"),
    SuiteModel("regnet_style", 96, ("control",), "group convs (group width 8)"),
    SuiteModel("squeezenet_style", 96, ("maxpool-pad",), "fire modules, ceil-mode max pools"),
)


def suite_model(name: str) -> SuiteModel:
    for m in SUITE:
        if m.name == name:
            return m
    raise KeyError(f"no suite model {name!r}; known: {', '.join(m.name for m in SUITE)}")
