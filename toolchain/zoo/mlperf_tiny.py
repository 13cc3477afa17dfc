"""PyTorch ports of the four MLPerf Tiny v0.5+ reference models.

Each factory builds the published Keras structure layer for layer (Keras "same" padding via
:class:`~toolchain.zoo.keras_layers.SameConv2d`, Keras BatchNorm epsilon, the final softmax),
sets ``model.example_inputs`` (a tuple with one tensor, PyTorch NCHW layout) and optionally
loads the reference trained weights:

================  ==========  =====================  ==================  ====================
factory           task        input (PyTorch)        folded parameters   reference weights
================  ==========  =====================  ==================  ====================
``resnet8``       IC          1×3×32×32, 0..255      77,706              ``pretrainedResnet.h5``
``ds_cnn``        KWS         1×1×49×10, MFCC        22,604              ``kws_ref_model_savedmodel``
``mobilenet_v1_025``  VWW     1×3×96×96, 0..1        210,850             ``vww_96.h5``
``fc_autoencoder``  AD        1×640, log-mel         265,864             ``ad01.h5``
================  ==========  =====================  ==================  ====================

``weights`` may be a Keras ``.h5`` file, a Keras SavedModel directory, a float (or int8)
``.tflite`` with BatchNorm folded (all read by :mod:`toolchain.zoo.weights`) or a PyTorch
state_dict (``.pt``/``.pth``, loaded with ``weights_only=True``). Without it the weights are
PyTorch's random initialisation.

Every port has ``keras_layers()``: its weighted modules in the order of the Keras model's
layers with weights, which is how the loaders map Keras weights onto it.

The IC model takes raw pixel values 0..255 (the reference was trained and calibrated on
unnormalised CIFAR-10, hence its int8 input scale 1.0); VWW takes pixels scaled to 0..1.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from toolchain.zoo.keras_layers import SameConv2d, keras_batchnorm

WeightsArg = str | os.PathLike[str] | None


class _Port(nn.Module):
    """Base of the ports: ``keras_layers()`` and ``example_inputs``."""

    example_inputs: tuple[torch.Tensor, ...]

    def keras_layers(self) -> list[nn.Module]:
        """Weighted modules (conv, depthwise conv, batchnorm, linear) in Keras layer order."""
        raise NotImplementedError


def _conv_bn(cin: int, cout: int, k: int | tuple[int, int], s: int = 1) -> list[nn.Module]:
    return [SameConv2d(cin, cout, k, s), keras_batchnorm(cout)]


def _dw_bn(c: int, s: int = 1) -> list[nn.Module]:
    return [SameConv2d(c, c, 3, s, groups=c), keras_batchnorm(c)]


def _head(features: int, classes: int, softmax: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(features, classes)]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


# --- IC: ResNet-8 (CIFAR-10) ------------------------------------------------------------


class _ResidualStack(nn.Module):
    """conv-bn-relu, conv-bn, + shortcut (identity, or a 1×1 strided conv without BN), relu."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3)
        self.shortcut: nn.Module | None = (
            SameConv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.relu(s + y)

    def keras_layers(self) -> list[nn.Module]:
        # Keras creates the shortcut conv after the second conv, before its batchnorm.
        short = [] if self.shortcut is None else [self.shortcut]
        return [self.conv1, self.bn1, self.conv2, *short, self.bn2]


class ResNet8(_Port):
    """MLPerf Tiny IC reference (``resnet_v1_eembc``): 3 residual stacks of 16/32/64 filters."""

    def __init__(self, *, num_classes: int = 10, softmax: bool = True) -> None:
        super().__init__()
        self.conv, self.bn = _conv_bn(3, 16, 3)
        self.relu = nn.ReLU()
        self.stack1 = _ResidualStack(16, 16, 1)
        self.stack2 = _ResidualStack(16, 32, 2)
        self.stack3 = _ResidualStack(32, 64, 2)
        self.pool = nn.AvgPool2d(8)
        self.head = _head(64, num_classes, softmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.head(self.pool(x))

    def keras_layers(self) -> list[nn.Module]:
        stacks = [m for s in (self.stack1, self.stack2, self.stack3) for m in s.keras_layers()]
        return [self.conv, self.bn, *stacks, self.head[1]]


# --- KWS: DS-CNN ----------------------------------------------------------------------


class _FeaturesHead(_Port):
    """A plain conv stack (``features``) followed by flatten → linear (→ softmax)."""

    features: nn.Sequential
    head: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def keras_layers(self) -> list[nn.Module]:
        weighted = (nn.Conv2d, nn.BatchNorm2d)
        return [m for m in self.features if isinstance(m, weighted)] + [self.head[1]]


class DSCNN(_FeaturesHead):
    """MLPerf Tiny KWS reference (DS-CNN small): 10×4/2 conv, 4 depthwise-separable blocks of 64.

    Input: 49 frames × 10 MFCCs, PyTorch layout N×1×49×10 (Keras: N×49×10×1).
    """

    def __init__(self, *, num_classes: int = 12, softmax: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(1, 64, (10, 4), 2), nn.ReLU(), nn.Dropout(0.2)]
        for _ in range(4):
            layers += [*_dw_bn(64), nn.ReLU(), *_conv_bn(64, 64, 1), nn.ReLU()]
        layers += [nn.Dropout(0.4), nn.AvgPool2d((25, 5))]
        self.features = nn.Sequential(*layers)
        self.head = _head(64, num_classes, softmax)


# --- VWW: MobileNetV1 0.25 --------------------------------------------------------------

#: (input channels, output channels, depthwise stride) of the 13 depthwise-separable blocks.
_MOBILENET_BLOCKS = (
    (8, 16, 1),
    (16, 32, 2),
    (32, 32, 1),
    (32, 64, 2),
    (64, 64, 1),
    (64, 128, 2),
    *((128, 128, 1),) * 5,
    (128, 256, 2),
    (256, 256, 1),
)


class MobileNetV1(_FeaturesHead):
    """MLPerf Tiny VWW reference: MobileNetV1 with width multiplier 0.25 on 96×96 RGB."""

    def __init__(self, *, num_classes: int = 2, softmax: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 8, 3, 2), nn.ReLU()]
        for cin, cout, stride in _MOBILENET_BLOCKS:
            layers += [*_dw_bn(cin, stride), nn.ReLU(), *_conv_bn(cin, cout, 1), nn.ReLU()]
        layers.append(nn.AvgPool2d(3))
        self.features = nn.Sequential(*layers)
        self.head = _head(256, num_classes, softmax)


# --- AD: fully connected autoencoder ----------------------------------------------------


class FCAutoencoder(_Port):
    """MLPerf Tiny AD reference (ToyCar): 640 → 4×128 → 8 → 4×128 → 640, BN + ReLU between."""

    def __init__(self, *, inputs: int = 640, hidden: int = 128, bottleneck: int = 8) -> None:
        super().__init__()
        widths = [inputs, *[hidden] * 4, bottleneck, *[hidden] * 4]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(cin, cout), keras_batchnorm(cout, dims=1), nn.ReLU()]
        layers.append(nn.Linear(hidden, inputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def keras_layers(self) -> list[nn.Module]:
        return [m for m in self.layers if isinstance(m, nn.Linear | nn.BatchNorm1d)]


# --- factories ------------------------------------------------------------------------


def _finish(model: _Port, example: torch.Tensor, weights: WeightsArg) -> _Port:
    model.example_inputs = (example,)
    if weights is not None:
        from toolchain.zoo.weights import load_weights

        load_weights(model, weights)
    return model.eval()


def _example(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return low + (high - low) * torch.rand(shape, generator=g)


def resnet8(*, weights: WeightsArg = None, softmax: bool = True) -> nn.Module:
    """IC: ResNet-8 for CIFAR-10, input 1×3×32×32 raw pixels (0..255), 10 class probabilities."""
    return _finish(ResNet8(softmax=softmax), _example((1, 3, 32, 32), 0.0, 255.0), weights)


def ds_cnn(*, weights: WeightsArg = None, softmax: bool = True) -> nn.Module:
    """KWS: DS-CNN, input 1×1×49×10 MFCCs, 12 class probabilities (Speech Commands v2)."""
    return _finish(DSCNN(softmax=softmax), _example((1, 1, 49, 10), -30.0, 30.0), weights)


def mobilenet_v1_025(*, weights: WeightsArg = None, softmax: bool = True) -> nn.Module:
    """VWW: MobileNetV1-0.25, input 1×3×96×96 pixels scaled to 0..1, P(no person), P(person)."""
    return _finish(MobileNetV1(softmax=softmax), _example((1, 3, 96, 96), 0.0, 1.0), weights)


def fc_autoencoder(*, weights: WeightsArg = None) -> nn.Module:
    """AD: the ToyCar FC autoencoder, input 1×640 (5 frames × 128 log-mel bins), output 1×640."""
    return _finish(FCAutoencoder(), _example((1, 640), -60.0, 20.0), weights)


#: Short names (the MLPerf Tiny task names) → factory.
FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "ic": resnet8,
    "kws": ds_cnn,
    "vww": mobilenet_v1_025,
    "ad": fc_autoencoder,
}
