"""The op resolver header: a ``tflite::MicroMutableOpResolver<N>`` with exactly the operators
the model uses, read from the flatbuffer (no TensorFlow import).

:data:`BUILTIN_METHODS` / :data:`CUSTOM_METHODS` map TFLite operator names (and the custom
codes TFLM knows) to ``MicroMutableOpResolver`` methods. The table was checked against
tensorflow/lite/micro/micro_mutable_op_resolver.h of tflite-micro at commit 90b983c2
(2026-08-20): every ``Add...()`` method except ``AddCustom``/``AddBuiltin`` is listed, with
the ``BuiltinOperator_*`` or custom name it registers. TFLM versions differ a little; an op
missing here is reported by name instead of generating code that would not compile.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.emit import carray, cnames
from toolchain.errors import EmitError
from toolchain.tflite_model import TFLiteModel

BUILTIN_METHODS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}
CUSTOM_METHODS: dict[str, str] = {
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
    "TFLM_DECODE": "AddDecode",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "ethos-u": "AddEthosU",
}


@dataclass(frozen=True)
class ResolverSpec:
    """Which ``Add...()`` calls the model needs, in a deterministic (alphabetical) order."""

    ops: tuple[str, ...]  # operator names as tflite_model reports them (CONV_2D, CUSTOM:x)
    methods: tuple[str, ...]  # the matching MicroMutableOpResolver methods, sorted

    @property
    def count(self) -> int:
        return len(self.methods)


def method_for(op: str) -> str | None:
    """``CONV_2D`` → ``AddConv2D``; ``CUSTOM:SignalWindow`` → ``AddWindow``; None if unknown."""
    if op.startswith("CUSTOM:"):
        return CUSTOM_METHODS.get(op.removeprefix("CUSTOM:"))
    return BUILTIN_METHODS.get(op)


def resolver_spec(model: TFLiteModel) -> ResolverSpec:
    """The resolver for ``model``. Raises :class:`EmitError` naming every operator that
    TFLM's MicroMutableOpResolver has no method for."""
    ops = tuple(model.op_names())
    unknown = [op for op in ops if method_for(op) is None]
    if unknown:
        raise EmitError(
            f"{model.source}: TFLite Micro has no kernel for {', '.join(unknown)}",
            hint="TFLM cannot run this model; re-convert it with TFLM-supported builtin ops "
            "(see docs/emit.md for the list)",
        )
    pairs = sorted({(method_for(op) or "", op) for op in ops})
    return ResolverSpec(ops=tuple(op for _, op in pairs), methods=tuple(m for m, _ in pairs))


def header(
    spec: ResolverSpec, *, name: str, about: list[str], namespace: str | None = None
) -> tuple[str, bytes]:
    """``(<name>_op_resolver.h, its bytes)``: ``k<Name>OpCount``, ``<Name>OpResolver`` (a
    ``tflite::MicroMutableOpResolver<k<Name>OpCount>``) and ``Register<Name>Ops(resolver)``."""
    cnames.check_identifier(name)
    ns = carray.Namespace.of(namespace)
    cam = cnames.camel(name)
    fname = f"{name}_op_resolver.h"
    g = cnames.guard(fname)
    calls = "".join(
        f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;  // {op}\n"
        for m, op in zip(spec.methods, spec.ops, strict=True)
    )
    text = (
        carray.banner([*about, "Generated by edgedeploy emit; do not edit."])
        + f"#ifndef {g}\n#define {g}\n\n"
        + '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        + ns.open()
        + f"// The {spec.count} operator(s) the model uses: {', '.join(spec.ops)}.\n"
        + f"constexpr int k{cam}OpCount = {spec.count};\n"
        + f"using {cam}OpResolver = tflite::MicroMutableOpResolver<k{cam}OpCount>;\n\n"
        + "// Registers exactly these operators. Returns kTfLiteOk, or kTfLiteError when a\n"
        + "// registration fails (TFLM prints why).\n"
        + f"inline TfLiteStatus Register{cam}Ops({cam}OpResolver& resolver) {{\n"
        + calls
        + "  return kTfLiteOk;\n}\n"
        + ns.close()
        + f"\n#endif  // {g}\n"
    )
    return fname, text.encode("ascii")
