"""Read a .tflite flatbuffer without TensorFlow: tensors, operators, quantization, sizes.

Uses the generated flatbuffer schema that ships with ai-edge-litert (it only needs the
``flatbuffers`` package), so inspecting, linting and emitting never pay for a TensorFlow
import. Everything is parsed eagerly in :meth:`TFLiteModel.from_bytes`, so a truncated or
corrupt file fails there with :class:`~toolchain.errors.TFLiteModelError`, not later.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

from toolchain.errors import InputFileError, TFLiteModelError

FILE_IDENTIFIER = b"TFL3"

_TENSOR_TYPE_NAMES = {
    value: name.lower()
    for name, value in vars(schema.TensorType).items()
    if not name.startswith("_") and isinstance(value, int)
}
_BUILTIN_OP_NAMES = {
    value: name
    for name, value in vars(schema.BuiltinOperator).items()
    if not name.startswith("_") and isinstance(value, int)
}
#: numpy dtype names for the tensor types a quantized model uses.
NUMPY_DTYPES = {
    "float32": "float32",
    "float16": "float16",
    "float64": "float64",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "bool": "bool",
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph. ``dtype`` is the lower-case TFLite type name (``int8``...)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    buffer_index: int = 0
    data_bytes: int = 0
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        """True when the tensor has data in the model (weights, biases, constants)."""
        return self.data_bytes > 0

    @property
    def is_quantized(self) -> bool:
        return bool(self.scales)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def scale(self) -> float | None:
        """The per-tensor scale, or None when not quantized or per-channel."""
        return self.scales[0] if len(self.scales) == 1 else None

    @property
    def zero_point(self) -> int | None:
        return self.zero_points[0] if len(self.zero_points) == 1 else None


@dataclass(frozen=True)
class OpInfo:
    """One operator. ``name`` is the builtin name (``CONV_2D``) or ``CUSTOM:<code>``."""

    index: int
    name: str
    builtin_code: int
    custom_code: str | None
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def is_custom(self) -> bool:
        return self.custom_code is not None

    @property
    def is_flex(self) -> bool:
        """Select TF ops ("Flex") are CUSTOM ops whose code starts with ``Flex``."""
        return self.custom_code is not None and self.custom_code.startswith("Flex")


@dataclass(frozen=True)
class SubgraphInfo:
    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TFLiteModel:
    """A parsed .tflite model. Build with :meth:`from_file` or :meth:`from_bytes`."""

    data: bytes = field(repr=False)
    version: int
    description: str
    subgraphs: tuple[SubgraphInfo, ...]
    source: str = ""

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TFLiteModel:
        p = Path(path)
        if os.path.isdir(p):
            raise InputFileError(
                f"{p} is a folder, not a model file",
                hint="give the .tflite file itself (e.g. the convert output "
                f"{p / 'model_int8.tflite'})",
            )
        if not os.path.isfile(p):  # (os.path: False rather than OSError for a name too long)
            why = "the name is too long" if any(len(x) > 255 for x in p.parts) else "not found"
            raise InputFileError(
                f"no such model file: {p} ({why})",
                hint="check the path; a .tflite file is expected",
            )
        return cls.from_bytes(p.read_bytes(), source=str(p))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> TFLiteModel:
        if len(data) < 8:
            raise TFLiteModelError(
                f"{source}: {len(data)} bytes is too short to be a TFLite model",
                hint="the file is empty or truncated; re-create it",
            )
        if data[4:8] != FILE_IDENTIFIER:
            raise TFLiteModelError(
                f"{source}: not a TFLite flatbuffer (file identifier {data[4:8]!r}, "
                f"expected {FILE_IDENTIFIER!r})",
                hint="pass a .tflite file produced by the TFLite converter",
            )
        try:
            return _parse(bytes(data), source)
        except TFLiteModelError:
            raise
        except Exception as exc:  # flatbuffers raises struct.error/IndexError on bad offsets
            raise TFLiteModelError(
                f"{source}: corrupt or truncated TFLite flatbuffer ({type(exc).__name__}: {exc})",
                hint="re-create the file; it does not parse",
            ) from exc

    # --- queries --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def main(self) -> SubgraphInfo:
        return self.subgraphs[0]

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(self.main.tensors[i] for i in self.main.inputs)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(self.main.tensors[i] for i in self.main.outputs)

    @property
    def operators(self) -> tuple[OpInfo, ...]:
        """Operators of every subgraph, in order (subgraph 0 first)."""
        return tuple(op for sg in self.subgraphs for op in sg.operators)

    def op_histogram(self) -> dict[str, int]:
        """Operator name → count over all subgraphs, sorted by name."""
        return dict(sorted(Counter(op.name for op in self.operators).items()))

    def op_names(self) -> list[str]:
        """The distinct operator names the model uses, sorted."""
        return sorted({op.name for op in self.operators})

    def weight_bytes(self) -> int:
        """Bytes of constant tensor data (all subgraphs)."""
        return sum(t.data_bytes for sg in self.subgraphs for t in sg.tensors)


def _parse(data: bytes, source: str) -> TFLiteModel:
    model = schema.Model.GetRootAs(data, 0)
    opcodes: list[tuple[str, int, str | None, int]] = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = oc.CustomCode()
        custom_s = custom.decode("utf-8", "replace") if custom is not None else None
        if code == schema.BuiltinOperator.CUSTOM:
            name = f"CUSTOM:{custom_s}"
        else:
            name = _BUILTIN_OP_NAMES.get(code, f"UNKNOWN_{code}")
            custom_s = None
        opcodes.append((name, code, custom_s, int(oc.Version())))

    buffer_sizes: list[int] = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.Offset() > 1:  # large models (>2 GB) keep data outside the flatbuffer
            if buf.Offset() + buf.Size() > len(data):
                raise TFLiteModelError(
                    f"{source}: buffer {i} points past the end of the file",
                    hint="the file is truncated; re-create it",
                )
            buffer_sizes.append(int(buf.Size()))
        else:
            n = int(buf.DataLength())
            if n:
                # a view, not a copy; raises when the vector runs past the end of the file
                buf.DataAsNumpy()
            buffer_sizes.append(n)

    subgraphs = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        tensors = []
        for t in range(sg.TensorsLength()):
            ten = sg.Tensors(t)
            q = ten.Quantization()
            scales: tuple[float, ...] = ()
            zps: tuple[int, ...] = ()
            qdim = 0
            if q is not None and q.ScaleLength() > 0:
                scales = tuple(float(x) for x in q.ScaleAsNumpy())
                zps = tuple(int(x) for x in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else ()
                qdim = int(q.QuantizedDimension())
            bidx = int(ten.Buffer())
            if bidx >= len(buffer_sizes) and bidx != 0:
                raise TFLiteModelError(f"{source}: tensor {t} names missing buffer {bidx}")
            shape = tuple(int(x) for x in ten.ShapeAsNumpy()) if ten.ShapeLength() else ()
            name = ten.Name()
            tensors.append(
                TensorInfo(
                    index=t,
                    name=name.decode("utf-8", "replace") if name else "",
                    shape=shape,
                    dtype=_TENSOR_TYPE_NAMES.get(int(ten.Type()), f"type{ten.Type()}"),
                    scales=scales,
                    zero_points=zps,
                    quantized_dimension=qdim,
                    buffer_index=bidx,
                    data_bytes=buffer_sizes[bidx] if bidx < len(buffer_sizes) else 0,
                    is_variable=bool(ten.IsVariable()),
                )
            )
        ops = []
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            idx = int(op.OpcodeIndex())
            if idx >= len(opcodes):
                raise TFLiteModelError(f"{source}: operator {o} uses missing opcode {idx}")
            name, code, custom_s, version = opcodes[idx]
            ops.append(
                OpInfo(
                    index=o,
                    name=name,
                    builtin_code=code,
                    custom_code=custom_s,
                    version=version,
                    inputs=tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else (),
                    outputs=tuple(int(x) for x in op.OutputsAsNumpy())
                    if op.OutputsLength()
                    else (),
                )
            )
        sg_name = sg.Name()
        subgraphs.append(
            SubgraphInfo(
                index=s,
                name=sg_name.decode("utf-8", "replace") if sg_name else "",
                tensors=tuple(tensors),
                operators=tuple(ops),
                inputs=tuple(int(x) for x in sg.InputsAsNumpy()) if sg.InputsLength() else (),
                outputs=tuple(int(x) for x in sg.OutputsAsNumpy()) if sg.OutputsLength() else (),
            )
        )
    if not subgraphs:
        raise TFLiteModelError(f"{source}: the model has no subgraph")
    desc = model.Description()
    return TFLiteModel(
        data=data,
        version=int(model.Version()),
        description=desc.decode("utf-8", "replace") if desc else "",
        subgraphs=tuple(subgraphs),
        source=source,
    )
