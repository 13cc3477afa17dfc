"""Stage 1: PyTorch → ONNX with the legacy (TorchScript) exporter, opset 17.

The legacy exporter (``dynamo=False``) is the one onnx2tf handles best (see FACTS.md). Node
names keep the PyTorch module path (``/layer1/conv1/Conv``), which the per-layer report uses
to name layers. Raises :class:`~toolchain.errors.ExportError` with the exporter's message.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path

import torch

from toolchain.convert.options import ONNX_OPSET
from toolchain.errors import ExportError
from toolchain.modelsrc import LoadedModel

log = logging.getLogger(__name__)


class _Frozen(torch.nn.Module):
    """Wraps a module whose ``train()`` raises (a ``torch.export`` program's module): the
    legacy exporter switches modes; this wrapper does not pass that on."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "inner", inner)  # not a child: train() must not reach it
        for p in inner.parameters():
            p.requires_grad_(False)  # traced as constants

    def forward(self, *args: torch.Tensor) -> object:
        inner: torch.nn.Module = self.__dict__["inner"]
        return inner(*args)

    def train(self, mode: bool = True) -> _Frozen:
        self.training = mode
        return self


def _exportable(module: torch.nn.Module) -> torch.nn.Module:
    try:
        module.train(False)
    except NotImplementedError:
        return _Frozen(module)
    return module


def export_onnx(model: LoadedModel, path: Path) -> bytes:
    """Export ``model`` to ``path``; returns the file's bytes."""
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _exportable(model.module),
                model.example_inputs,
                buf,  # type: ignore[arg-type]  # file-like objects work
                opset_version=ONNX_OPSET,
                dynamo=False,
                input_names=list(model.input_names),
                output_names=list(model.output_names),
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter's own errors name the unsupported op
        raise ExportError(
            f"{model.source}: export to ONNX failed: {type(exc).__name__}: {str(exc)[:800]}",
            hint="the model must be traceable with fixed shapes (no data-dependent control "
            "flow); an operator without an ONNX opset 17 symbolic cannot be converted",
        ) from exc
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def onnx_fingerprint(data: bytes) -> str:
    """A hash of an ONNX model that ignores doc strings (the exporter puts source lines there)."""
    import onnx

    m = onnx.load_from_string(data)
    for node in m.graph.node:
        node.doc_string = ""
    m.doc_string = ""
    m.producer_version = ""
    return hashlib.sha256(m.SerializeToString(deterministic=True)).hexdigest()
