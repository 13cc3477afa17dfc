"""Writing a pruned model: a loadable ``.pt2`` (torch.export) or TorchScript ``.pt`` file.

The pruned ``nn.Module`` is still an instance of the user's class with smaller layers, so its
own source cannot rebuild it; an exported program carries the new shapes with it and loads
anywhere with ``torch.export.load(path).module()`` (or ``torch.jit.load`` for TorchScript) —
and with ``edgedeploy convert pruned.pt2``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from toolchain.errors import PruneError
from toolchain.prune.graph import explain_exception

log = logging.getLogger(__name__)

FORMATS = {"pt2": "model_pruned.pt2", "torchscript": "model_pruned.pt"}


def file_name(fmt: str) -> str:
    """The pruned model's file name for format ``fmt``; :class:`PruneError` for an unknown one."""
    if fmt not in FORMATS:
        raise PruneError(
            f"unknown model format {fmt!r}", hint=f"choose one of {', '.join(FORMATS)}"
        )
    return FORMATS[fmt]


def model_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...], fmt: str) -> bytes:
    """The serialised model (``pt2`` or ``torchscript``), deterministic for the same weights."""
    file_name(fmt)  # validates the format
    model = model.eval()
    buf = io.BytesIO()
    try:
        if fmt == "pt2":
            # torch.export prints the partial FX graph of a failed export to stderr; keep it
            # in the debug log so the user sees one message, not a graph dump
            dump = io.StringIO()
            try:
                with contextlib.redirect_stderr(dump):
                    program = torch.export.export(model, inputs)
            finally:
                if dump.getvalue().strip():
                    log.debug("torch.export stderr:\n%s", dump.getvalue())
            torch.export.save(program, buf)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=FutureWarning)
                warnings.simplefilter("ignore", category=DeprecationWarning)
                torch.jit.save(torch.jit.trace(model, inputs), buf)
    except Exception as exc:  # export failures come in many types
        raise PruneError(
            f"cannot save the pruned model as {fmt}: {explain_exception(exc)}",
            hint="try the other format (--format torchscript / pt2)",
        ) from exc
    return buf.getvalue()


def write_model(path: Path, model: nn.Module, inputs: tuple[torch.Tensor, ...], fmt: str) -> Path:
    """Serialise ``model`` to ``path`` (the caller stages the directory)."""
    path.write_bytes(model_bytes(model, inputs, fmt))
    return path
