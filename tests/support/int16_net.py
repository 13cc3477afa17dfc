"""A small net whose int16x8 conversion holds most int16 kernels of the compiled runtime.

``Int16Ops`` (1×3×16×16 → 5 class probabilities, ~3 K parameters): SiLU (LOGISTIC, MUL),
a channel split (STRIDED_SLICE), TANH, SUB, MUL, CONCATENATION, PAD, a depthwise conv, ReLU,
MAX_POOL_2D, a global mean (MEAN), FULLY_CONNECTED and SOFTMAX; the converter adds an
int16 → int16 QUANTIZE. Seeded weights; the int16x8 .tflite is about 8 KB with a 12 KB arena,
so it fits every QEMU board (lm3s6965evb: 64 KiB of RAM). Converted through the converter's
cache, so tests in one session that pass the same ``cache_dir`` convert it once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 3, 16, 16)
#: the int16 operators the converted graph holds
OPS = frozenset({"CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                 "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "SOFTMAX",
                 "STRIDED_SLICE", "SUB", "TANH"})  # fmt: skip


class Int16Ops(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x * torch.sigmoid(x)
        a, b = x[:, :4], x[:, 4:]
        b = torch.tanh(b)
        y = torch.cat([a - b, a * b], 1)
        y = F.pad(y, (1, 1, 1, 1))
        y = F.relu(self.dw(y))
        y = F.max_pool2d(self.pw(y), 2)
        y = y.mean((2, 3))
        return F.softmax(self.fc(y), dim=1)


def convert_int16(out_dir: Path, cache_dir: Path) -> Path:
    """Convert :class:`Int16Ops` with int16 activations; the .tflite path."""
    from toolchain.convert import QuantOptions, convert

    torch.manual_seed(0)
    model = Int16Ops().eval()
    calib = np.random.default_rng(0).normal(0, 1, (16, *INPUT_SHAPE[1:])).astype(np.float32)
    convert(model, calib=calib, input_shapes=[INPUT_SHAPE], out_dir=out_dir, cache=True,
            cache_dir=cache_dir, options=QuantOptions(activations="int16"))  # fmt: skip
    return out_dir / "model_int8.tflite"
