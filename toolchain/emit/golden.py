"""Golden vectors: a few inputs and the int8 outputs the host TFLM interpreter gives for them.

Inputs come from the user's calibration/validation data (a ``.npy`` or ``.npz``, in TFLite
NHWC or PyTorch NCHW layout, float or already quantized) or, when none is given, from a
seeded random generator — the header says which. Outputs come from the tflite-micro Python
interpreter (run in the :mod:`sandbox`), with the interpreter reset before every sample, so
stateful models (LSTM, SVDF, variables) start from the same state on the device.

They are written as C arrays (``<name>_golden.h/.cc``) so firmware can check itself, and as
``golden.npz`` (``input_<i>`` / ``output_<j>``, samples on axis 0) for the host-side bench
stage to compare the device's outputs.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain import safeload
from toolchain.artifacts import quantize
from toolchain.emit import carray, cnames, sandbox
from toolchain.errors import DataError, EmitError, InputFileError
from toolchain.tflite_model import NUMPY_DTYPES, TensorInfo, TFLiteModel

log = logging.getLogger(__name__)

DEFAULT_COUNT = 3
DEFAULT_SEED = 0

#: What golden data can be given as: a .npy/.npz path, one array, or arrays by input name.
GoldenData = str | os.PathLike[str] | np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray]


@dataclass(frozen=True)
class GoldenSet:
    """Samples along axis 0 of every array; inputs in the model's dtypes and layout."""

    source: str  # where the inputs came from, in words (goes into the headers)
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]

    @property
    def count(self) -> int:
        return int(self.inputs[0].shape[0]) if self.inputs else 0

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.inputs, *self.outputs))


def _dtype(t: TensorInfo) -> np.dtype:
    name = NUMPY_DTYPES.get(t.dtype)
    if name is None:
        raise EmitError(
            f"input tensor {t.name!r} has type {t.dtype}, which golden vectors cannot hold"
        )
    return np.dtype(name)


def random_inputs(model: TFLiteModel, *, count: int, seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """``count`` random samples per input: integers uniform over the whole type range, floats
    standard normal; numpy ``default_rng(seed)``, so the same seed gives the same vectors."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        dt = _dtype(t)
        shape = (count, *t.shape)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt))
        elif dt.kind == "b":
            out.append(rng.integers(0, 1, size=shape, endpoint=True).astype(bool))
        else:
            out.append(rng.standard_normal(shape).astype(dt))
    return out


def load_inputs(
    model: TFLiteModel, data: GoldenData, *, count: int
) -> tuple[list[np.ndarray], str]:
    """The first ``count`` samples of ``data`` for every model input, converted to the
    model's layout and dtype; and a description of what was done.

    Accepted: a ``.npy`` (single-input models) or ``.npz`` file (arrays named like the
    input tensors, or ``input_<i>``, or simply one array per input in order), an array, a
    mapping, or a sequence of arrays. Each array is ``(N, *shape)``, ``shape`` or ``(1,
    *shape)`` in TFLite layout, or NCHW (PyTorch) for a 4-D NHWC input, which is transposed.
    Float data for a quantized input is quantized with the input's scale and zero point
    (round half away from zero, as TFLite does). Raises DataError / InputFileError.
    """
    arrays, what = _arrays(model, data)
    notes: list[str] = []
    converted = [
        _convert(t, np.asarray(a), notes) for t, a in zip(model.inputs, arrays, strict=True)
    ]
    n = min(a.shape[0] for a in converted)
    if n == 0:
        raise DataError(f"{what}: holds no samples")
    n = min(n, count)
    desc = f"{n} sample(s) from {what}" + (f" ({'; '.join(dict.fromkeys(notes))})" if notes else "")
    return [a[:n] for a in converted], desc


def _arrays(model: TFLiteModel, data: GoldenData) -> tuple[list[np.ndarray], str]:
    inputs = model.inputs
    what = "the given arrays"
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        what = path.name
        if not path.is_file():
            raise InputFileError(
                f"no such golden data file: {path}", hint="give a .npy or .npz file"
            )
        data = safeload.load_numpy(path, what="golden data")
    if isinstance(data, np.ndarray):
        data = [data]
    if isinstance(data, Mapping):
        keys = list(data)
        by_name = [t.name for t in inputs]
        by_index = [f"input_{i}" for i in range(len(inputs))]
        for names in (by_name, by_index):
            if all(k in data for k in names):
                return [np.asarray(data[k]) for k in names], what
        if len(keys) != len(inputs):
            raise DataError(
                f"{what}: has arrays {keys}, the model has {len(inputs)} input(s)",
                hint=f"name the arrays {by_name} or {by_index}",
            )
        return [np.asarray(data[k]) for k in keys], what
    seq = list(data)
    if len(seq) != len(inputs):
        raise DataError(f"{what}: {len(seq)} array(s) for a model with {len(inputs)} input(s)")
    return [np.asarray(a) for a in seq], what


def _convert(t: TensorInfo, a: np.ndarray, notes: list[str]) -> np.ndarray:
    shape = tuple(t.shape)
    inner = shape[1:] if shape and shape[0] == 1 else shape
    nchw = (shape[3], shape[1], shape[2]) if len(shape) == 4 and shape[0] == 1 else None
    if a.ndim >= 1 and a.shape[1:] in (shape, inner):
        pass  # samples on axis 0
    elif a.shape == inner:
        a = a[None]
    elif nchw is not None and nchw != inner and a.ndim in (3, 4) and a.shape[-3:] == nchw:
        a = np.moveaxis(a if a.ndim == 4 else a[None], 1, -1)
        notes.append("PyTorch NCHW layout transposed to NHWC")
    else:
        raise DataError(
            f"golden data for input {t.name!r} has shape {a.shape}; the model wants "
            f"{shape} (samples on axis 0, TFLite or PyTorch layout)"
        )
    a = a.reshape((a.shape[0], *shape))
    dt = _dtype(t)
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise DataError(f"golden data for input {t.name!r} holds NaN or infinity")
    if dt.kind in "iu" and a.dtype.kind == "f":
        if t.scale is None or t.zero_point is None:
            raise DataError(
                f"input {t.name!r} is {t.dtype} without per-tensor quantization; give "
                f"{t.dtype} data, not float"
            )
        a = quantize(a, t.scale, t.zero_point, dt)
        notes.append(f"float data quantized with scale {t.scale:g}, zero point {t.zero_point}")
    elif dt.kind in "iu":
        if a.dtype.kind not in "iub":
            raise DataError(f"golden data for input {t.name!r} has dtype {a.dtype}")
        info = np.iinfo(dt)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise DataError(
                f"golden data for input {t.name!r} has values outside the {t.dtype} range"
            )
        a = a.astype(dt)
    else:
        a = a.astype(dt)
    return np.ascontiguousarray(a)


def run_tflm(
    mf: sandbox.ModelFile, inputs: Sequence[np.ndarray], *, arena: int
) -> list[np.ndarray]:
    """Outputs of the host TFLM interpreter for every sample (reset before each)."""
    outputs, reply = sandbox.run_samples("tflm_run", mf, inputs, arena=arena)
    if outputs is None:
        lines = [ln for ln in str(reply.get("log", "")).replace("\r", "").splitlines() if ln]
        raise EmitError(
            f"the TFLM interpreter failed on the golden inputs: {reply.get('error')}"
            + (f" ({'; '.join(lines[:3])})" if lines else "")
        )
    return outputs


def c_files(
    g: GoldenSet,
    model: TFLiteModel,
    *,
    name: str,
    about: Sequence[str],
    namespace: str | None = None,
) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """``(<name>_golden.h, bytes), (<name>_golden.cc, bytes)``.

    Declares ``k<Name>GoldenCount``, ``k<Name>GoldenInput<i>Size`` /
    ``k<Name>GoldenOutput<j>Size`` (values per sample) and ``g_<name>_golden_input<i>`` /
    ``g_<name>_golden_output<j>`` as ``[count][size]`` arrays of the tensor's C type.
    """
    cnames.check_identifier(name)
    ns = carray.Namespace.of(namespace)
    cam = cnames.camel(name)
    h_name, cc_name = f"{name}_golden.h", f"{name}_golden.cc"
    gd = cnames.guard(h_name)
    count = f"k{cam}GoldenCount"
    decls, defs = [], []
    tensors = [
        ("input", i, t, a) for i, (t, a) in enumerate(zip(model.inputs, g.inputs, strict=True))
    ]
    tensors += [
        ("output", j, t, a) for j, (t, a) in enumerate(zip(model.outputs, g.outputs, strict=True))
    ]
    for kind, i, t, a in tensors:
        ctype = carray.C_TYPES.get(a.dtype.name)
        if ctype is None:
            raise EmitError(
                f"{kind} {t.name!r} has dtype {a.dtype}, which C golden vectors cannot hold"
            )
        size = f"k{cam}Golden{kind.title()}{i}Size"
        sym = f"g_{name}_golden_{kind}{i}"
        per = int(np.prod(a.shape[1:], dtype=np.int64))
        quant = f", scale {t.scale:g}, zero point {t.zero_point}" if t.scale is not None else ""
        decls.append(
            f"// {kind} {i} {t.name!r}: {t.dtype} {list(t.shape)}{quant}\n"
            f"constexpr int {size} = {per};\n"
            f"extern const {ctype} {sym}[{count}][{size}];\n"
        )
        rows = "".join(
            "  {\n" + carray.format_values(a[k], indent=4) + "  },\n" for k in range(a.shape[0])
        )
        defs.append(f"alignas(16) const {ctype} {sym}[{count}][{size}] = {{\n{rows}}};\n")
    head = carray.banner(
        [
            *about,
            f"Golden vectors: {g.source}.",
            "Outputs: the host tflite-micro interpreter, reset before every sample.",
            "Generated by edgedeploy emit; do not edit.",
        ]
    )
    header = (
        head
        + f"#ifndef {gd}\n#define {gd}\n\n#include <cstdint>\n\n"
        + ns.open()
        + f"constexpr int {count} = {g.count};\n\n"
        + "\n".join(decls)
        + ns.close()
        + f"\n#endif  // {gd}\n"
    )
    source = head + f'#include "{h_name}"\n\n' + ns.open() + "\n".join(defs) + ns.close()
    return (h_name, header.encode("ascii")), (cc_name, source.encode("ascii"))


def npz_bytes(g: GoldenSet) -> bytes:
    """``golden.npz`` content: ``input_<i>``, ``output_<j>`` and ``source``; deterministic
    (fixed zip timestamps), readable with ``numpy.load(..., allow_pickle=False)``."""
    arrays = {f"input_{i}": a for i, a in enumerate(g.inputs)}
    arrays |= {f"output_{j}": a for j, a in enumerate(g.outputs)}
    arrays["source"] = np.array(g.source)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr, order="C"), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()
