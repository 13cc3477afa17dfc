"""A small model zoo to point ``edgedeploy convert`` at.

* :mod:`toolchain.zoo.mlperf_tiny` — PyTorch ports of the four MLPerf Tiny reference models
  (``resnet8``, ``ds_cnn``, ``mobilenet_v1_025``, ``fc_autoencoder``) that take the
  reference's trained weights (:mod:`toolchain.zoo.weights`), e.g.
  ``edgedeploy convert toolchain.zoo.mlperf_tiny:resnet8 --weights resnet8.pt ...``.
* :mod:`toolchain.zoo.digits` — a tiny CNN trained in seconds on scikit-learn's digits.
* :mod:`toolchain.zoo.mlperf_data` — inputs for the ports built from the reference folder.

Every factory returns an ``nn.Module`` in eval mode with an ``example_inputs`` tuple.
:data:`ZOO` lists them; :func:`save_weights` turns trained weights of another framework
(Keras .h5, SavedModel, .tflite) into a state_dict for ``edgedeploy convert --weights``.
"""

from __future__ import annotations

import importlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolchain.errors import UsageError

if TYPE_CHECKING:  # importing this package must stay cheap (the CLI lists the zoo): no torch
    from torch import nn


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry. ``spec`` is what ``edgedeploy convert`` takes as MODEL."""

    name: str
    spec: str
    task: str
    input_shape: tuple[int, ...]  # PyTorch layout, batch 1
    params: int  # with BatchNorm folded
    weights: str  # where trained weights come from


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnet8", "toolchain.zoo.mlperf_tiny:resnet8", "MLPerf Tiny IC (CIFAR-10)",
             (1, 3, 32, 32), 77_706, "ic/pretrainedResnet.h5"),
    ZooModel("ds_cnn", "toolchain.zoo.mlperf_tiny:ds_cnn", "MLPerf Tiny KWS (12 words)",
             (1, 1, 49, 10), 22_604, "kws/kws_ref_model_float32.tflite or _savedmodel"),
    ZooModel("mobilenet_v1_025", "toolchain.zoo.mlperf_tiny:mobilenet_v1_025",
             "MLPerf Tiny VWW (person / no person)", (1, 3, 96, 96), 210_850, "vww/vww_96.h5"),
    ZooModel("fc_autoencoder", "toolchain.zoo.mlperf_tiny:fc_autoencoder",
             "MLPerf Tiny AD (ToyCar autoencoder)", (1, 640), 265_864,
             "ad/ad01_fp32.tflite (reference) or ad/ad01.h5"),
    ZooModel("digits", "toolchain.zoo.digits:model", "scikit-learn digits (10 classes)",
             (1, 1, 8, 8), 38_282, "trained on first use (a few seconds)"),
)  # fmt: skip


def get(name: str) -> ZooModel:
    """The zoo entry ``name``; :class:`UsageError` listing the names when unknown."""
    for m in ZOO:
        if m.name == name:
            return m
    raise UsageError(
        f"no zoo model named {name!r}", hint=f"choose one of {', '.join(m.name for m in ZOO)}"
    )


def build(name: str) -> nn.Module:
    """Call the factory of zoo entry ``name``."""
    module, _, factory = get(name).spec.partition(":")
    model: nn.Module = getattr(importlib.import_module(module), factory)()
    return model


def save_weights(name: str, source: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Load ``source`` (Keras .h5, SavedModel dir, .tflite, .pt) into zoo model ``name`` and
    write its state_dict to ``out`` atomically (for ``edgedeploy convert --weights``).

    Raises UsageError (unknown name), InputFileError / ModelLoadError (bad weights).
    """
    import torch

    from toolchain.fsutil import atomic_write_bytes, check_output_path, writing_to
    from toolchain.zoo.weights import load_weights

    if not get(name).spec.startswith("toolchain.zoo.mlperf_tiny:"):
        raise UsageError(f"{name} takes no imported weights (it trains itself)")
    check_output_path(out, option="--out", kind="file")
    model = load_weights(build(name), source)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with writing_to(out, option="--out"):
        return atomic_write_bytes(out, buf.getvalue())


def folded_parameter_count(model: nn.Module) -> int:
    """Parameters once BatchNorm is folded: conv/linear weights plus one bias per output.

    This is what a TFLite model stores (BatchNorm disappears into the preceding layer's
    weights and bias), so it compares directly with published counts.
    """
    from torch import nn

    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear):
            total += m.weight.numel() + int(m.weight.shape[0])
    return total
