"""The model argument every emit function accepts: bytes, a path, or a parsed model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias

from toolchain.emit.sandbox import ModelFile
from toolchain.tflite_model import TFLiteModel

#: A .tflite model as bytes, as a path to a file, or already parsed.
ModelLike: TypeAlias = bytes | str | os.PathLike[str] | TFLiteModel


def load(model: ModelLike) -> TFLiteModel:
    """Parse ``model`` (no TensorFlow import).

    Raises :class:`~toolchain.errors.InputFileError` for a missing file and
    :class:`~toolchain.errors.TFLiteModelError` for anything that is not a valid TFLite
    flatbuffer (too short, wrong file identifier, truncated).
    """
    if isinstance(model, TFLiteModel):
        return model
    if isinstance(model, bytes | bytearray | memoryview):
        return TFLiteModel.from_bytes(bytes(model))
    return TFLiteModel.from_file(model)


def model_file(model: TFLiteModel) -> ModelFile:
    """A file the sandbox worker can read: the model's own file when it came from one."""
    src = Path(model.source) if model.source and not model.source.startswith("<") else None
    if src is not None and src.is_file() and src.stat().st_size == model.size:
        return ModelFile.of(model.data, src)
    return ModelFile.of(model.data)
