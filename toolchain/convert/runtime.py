"""Run a .tflite on the host (ai-edge-litert) with PyTorch-layout float inputs.

:func:`run_tflite` is the "feed the right bytes" helper for the later stages: it transposes
and quantizes each input as its :class:`~toolchain.artifacts.TensorSpec` says, invokes the
model once per sample, and returns the outputs dequantized and back in PyTorch layout.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.artifacts import ConvertResult, TensorSpec
from toolchain.errors import DataError, TFLiteModelError
from toolchain.tflite_model import TensorInfo, TFLiteModel

ModelArg = str | os.PathLike[str] | bytes | ConvertResult


def specs_for(model: ModelArg) -> tuple[bytes, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The model bytes and its input/output specs.

    Specs come from the :class:`ConvertResult`, or from a report.json beside the file when
    it describes this very file; otherwise they are read from the flatbuffer with the TFLite
    layout taken as the PyTorch one (``perm`` identity).
    """
    if isinstance(model, ConvertResult):
        return model.tflite_path.read_bytes(), model.inputs, model.outputs
    if isinstance(model, bytes | bytearray):
        data = bytes(model)
        parsed = TFLiteModel.from_bytes(data)
    else:
        parsed = TFLiteModel.from_file(model)
        data = parsed.data
        report = Path(model).with_name("report.json")
        if report.is_file():
            try:
                rep = json.loads(report.read_text())
            except (OSError, ValueError):
                rep = {}
            if rep.get("tflite_sha256") == parsed.sha256:
                ins = tuple(TensorSpec.from_dict(d) for d in rep["inputs"])
                outs = tuple(TensorSpec.from_dict(d) for d in rep["outputs"])
                return data, ins, outs
    ins = tuple(plain_spec(t, i) for i, t in enumerate(parsed.inputs))
    outs = tuple(plain_spec(t, i) for i, t in enumerate(parsed.outputs))
    return data, ins, outs


def plain_spec(t: TensorInfo, position: int) -> TensorSpec:
    """A spec for a tensor we know nothing more about: PyTorch layout = TFLite layout."""
    return TensorSpec(
        name=t.name,
        index=position,
        tflite_index=position,
        tflite_name=t.name,
        shape=t.shape,
        dtype=t.dtype,
        scale=t.scale,
        zero_point=t.zero_point,
        torch_shape=t.shape,
        perm=tuple(range(len(t.shape))),
        layout="",
    )


def make_interpreter(data: bytes, *, preserve_all_tensors: bool = False) -> Any:
    """A LiteRT interpreter with tensors allocated: the builtin optimized int8 kernels,
    without the XNNPACK delegate (so results do not depend on the host's delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from toolchain.convert import mixed

    if mixed.needs_litert_form(data):  # a mixed-precision model: int8→int16 QUANTIZE
        data = mixed.litert_form(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # preserve_all_tensors "is for debugging"
            interp = Interpreter(
                model_content=data,
                experimental_preserve_all_tensors=preserve_all_tensors,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                num_threads=1,
            )
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise TFLiteModelError(f"LiteRT cannot load the model: {exc}") from exc
    return interp


def run_tflite(
    model: ModelArg,
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    input_specs: Sequence[TensorSpec] | None = None,
    output_specs: Sequence[TensorSpec] | None = None,
) -> list[np.ndarray]:
    """Run ``model`` on PyTorch-layout float ``inputs``; float outputs in PyTorch layout.

    ``inputs`` holds one array per model input (PyTorch order), each ``(N, *sample)`` with
    the batch-1 sample shape of the spec's ``torch_shape[1:]``; a bare array is the single
    input. Returns one float32 array ``(N, *sample)`` per output, PyTorch order.
    Raises DataError for inputs that do not fit.
    """
    data, ins, outs = specs_for(model)
    ins = tuple(input_specs) if input_specs is not None else ins
    outs = tuple(output_specs) if output_specs is not None else outs
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    if len(arrays) != len(ins):
        raise DataError(f"{len(arrays)} input array(s) for a model with {len(ins)} input(s)")
    n = int(np.asarray(arrays[0]).shape[0])
    interp = make_interpreter(data)
    in_det = interp.get_input_details()
    out_det = interp.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(n):
        for spec, arr in zip(ins, arrays, strict=True):
            interp.set_tensor(in_det[spec.tflite_index]["index"], spec.to_tflite(arr[i : i + 1]))
        interp.invoke()
        for k, spec in enumerate(outs):
            results[k].append(
                spec.from_tflite(interp.get_tensor(out_det[spec.tflite_index]["index"]))
            )
    return [np.concatenate(r) for r in results]
