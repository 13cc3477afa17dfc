"""Export a small PyTorch net to ONNX bytes the way the converter does (legacy exporter,
opset 17, constants folded), and count the ops of the result (test helpers, host tier)."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Sequence

import onnx
import torch
from torch import nn


def onnx_bytes(
    model: nn.Module, *inputs: torch.Tensor, input_names: Sequence[str] | None = None
) -> bytes:
    """``model`` (as it is: call ``.eval()`` first) exported with ``inputs`` as ONNX bytes."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(inputs), buf, opset_version=17, dynamo=False,
                          do_constant_folding=True,
                          input_names=list(input_names) if input_names else None)  # fmt: skip
    return buf.getvalue()


def op_counts(data: bytes) -> Counter[str]:
    """How many nodes of each op type the ONNX model ``data`` has."""
    return Counter(n.op_type for n in onnx.load_from_string(data).graph.node)
