"""PyTorch layers that compute exactly what their Keras counterparts compute.

The MLPerf Tiny reference models were built in Keras. Two details decide whether Keras weights
transfer to a PyTorch port bit for bit:

* ``padding="same"`` — Keras pads ``total = max((ceil(n / s) - 1) * s + k - n, 0)`` elements
  per spatial axis and puts the *smaller half before* the data (``before = total // 2``). With
  stride 2 and an even input (3×3 kernel on 32×32) that is 0 rows on top and 1 at the bottom,
  which no symmetric PyTorch ``padding=`` can express. :class:`SameConv2d` pads exactly like
  Keras: symmetrically inside the convolution when the split is even, otherwise with an explicit
  ``F.pad`` followed by an unpadded convolution.
* BatchNormalization uses ``epsilon=1e-3`` and ``momentum=0.99`` in Keras (PyTorch defaults
  1e-5 and 0.1, where PyTorch's momentum is Keras' ``1 - momentum``): :func:`keras_batchnorm`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

#: Keras ``BatchNormalization`` defaults, in PyTorch's terms.
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one spatial axis of length ``size`` under Keras/TF "same"."""
    if size < 1 or kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(f"bad conv geometry: size={size} kernel={kernel} stride={stride}")
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``padding="same"`` semantics for any stride and input size.

    The padding is computed from the input's spatial size at call time (a Python int under
    tracing/export, so exported graphs are static). It stays an ``nn.Conv2d`` (same parameters,
    ``groups`` for depthwise), so pruning tools and state_dicts treat it as one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        *,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            groups=groups,
            bias=bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        height, width = _static_hw(x)
        top, bottom = same_padding(height, kh, sh, dh)
        left, right = same_padding(width, kw, sw, dw)
        if top == bottom and left == right:
            return F.conv2d(
                x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups
            )
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _static_hw(x: torch.Tensor) -> tuple[int, int]:
    """Spatial size as Python ints; under tracing they become constants, which is intended
    (Keras models have static shapes), so the tracer's warning about it is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(x.shape[-2]), int(x.shape[-1])


def keras_batchnorm(num_features: int, *, dims: int = 2) -> nn.Module:
    """A BatchNorm with Keras' epsilon and momentum (``dims`` 2 → BatchNorm2d, 1 → 1d)."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(num_features, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)
