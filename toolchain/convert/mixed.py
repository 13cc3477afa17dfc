"""Per-layer mixed precision: int16 activation islands inside an int8 model.

The same float model is quantized twice (in the TF worker): the normal int8 model and an
int16x8 model (int16 activations, int8 weights; ops without a 16x8 kernel stay float
there). :func:`splice` builds one model from the two: the int8 model, with a chosen set of
its operators replaced by their int16x8 twins (their builtin options, their constant
inputs — int8 weights, int64 biases — and the int16 model's quantization of the
activations they produce), and QUANTIZE operators where int8 and int16 tensors meet
(int8→int16 before an island, int16→int8 after it and before every graph output). The
graph inputs, outputs, signature and I/O types stay the int8 model's; every operator is a
TFLM builtin (QUANTIZE int8↔int16 included).

:func:`choose` picks the islands by measurement. The unit that can help is an activation
*tensor*: its producer and all its consumers int16 remove its int8 rounding. Each
candidate tensor is measured alone (LiteRT, a few calibration samples, float reference
outputs), ranked by error removed per extra byte, and the shortest prefix of that ranking
that reaches the target SQNR is found by binary search, re-measuring the spliced model,
within a bytes budget (a fraction of the int8 model's bytes); when the target is out of
reach the best prefix within the budget is taken.

The SQNR measured here is the outputs' input-dependent SQNR (each output minus its mean
over the samples, :func:`toolchain.convert.validate.centered_sqnr_db`), the worst output;
it is measured on calibration samples only, never on the validation data.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.artifacts import TensorSpec
from toolchain.convert import flatbuf
from toolchain.convert.options import MIXED_BUDGET, MIXED_TARGET_SQNR
from toolchain.errors import ConversionError, UsageError

log = logging.getLogger(__name__)

#: calibration samples the chosen model is measured on (the pipeline passes this many)
MEASURE_SAMPLES = 64
#: calibration samples each single-tensor candidate is ranked on
RANK_SAMPLES = 8
#: ranking stops measuring candidates after this long (the rest follow in graph order)
RANK_TIME_S = 20.0
#: with a ``--min-sqnr`` gate and no explicit target, aim this much above the gate
GATE_MARGIN_DB = 1.0
DEFAULT_TARGET_SQNR = MIXED_TARGET_SQNR
#: QUANTIZE's operator version for int16 in or out (LiteRT registers 1..3 for int16)
QUANTIZE_VERSION_INT16 = 3

_T = schema.TensorType
_QUANTIZE = schema.BuiltinOperator.QUANTIZE
_DEQUANTIZE = schema.BuiltinOperator.DEQUANTIZE


# --- pairing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Which operators of the int8 model have an int16x8 twin, and the candidate tensors.

    ``ops``: int8 operator index → int16 operator index (same opcode, same output tensor
    names and shapes, inputs verified to carry the same values). ``candidates``: int8
    activation tensor indices whose producer and every consumer are paired (and that are
    int16 in the int16 model): making such a tensor int16 removes its int8 rounding."""

    ops: dict[int, int]
    candidates: tuple[int, ...]
    unpaired: int


def _code(model: Any, op: Any) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))


def _name(t: Any) -> str:
    n = t.name
    return n.decode() if isinstance(n, bytes) else str(n)


def _is_const(model: Any, t: Any) -> bool:
    buf = model.buffers[t.buffer] if 0 <= t.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _shape(t: Any) -> list[int]:
    return [int(v) for v in t.shape] if t.shape is not None else []


def _one_subgraph(model: Any, what: str) -> Any:
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ConversionError(
            f"mixed precision: the {what} model has {len(model.subgraphs or [])} subgraphs "
            "(one expected)",
            hint="convert with --activations int8 or int16",
        )
    return model.subgraphs[0]


def _producers(sg: Any) -> dict[int, int]:
    return {int(t): i for i, op in enumerate(sg.operators or []) for t in op.outputs}


def _source(model: Any, g: Any, prod: dict[int, int], t: int) -> str:
    """The name of the value a tensor carries, looking through the QUANTIZE/DEQUANTIZE
    operators the converter puts at float I/O, around float ops and for requantizations."""
    seen = 0
    while seen < 8:
        p = prod.get(t)
        if p is None:
            break
        op = g.operators[p]
        if _code(model, op) not in (_QUANTIZE, _DEQUANTIZE):
            break
        t = int(op.inputs[0])
        seen += 1
    return _name(g.tensors[t])


def pair(m8: Any, m16: Any) -> Pairing:
    """Pair the operators of the unpacked int8 model ``m8`` with those of the int16x8 model
    ``m16`` (see :class:`Pairing`). An operator that does not pair is simply no candidate."""
    g8, g16 = _one_subgraph(m8, "int8"), _one_subgraph(m16, "int16x8")
    by_outputs: dict[tuple[str, ...], int] = {}
    for j, op in enumerate(g16.operators or []):
        by_outputs.setdefault(tuple(_name(g16.tensors[t]) for t in op.outputs), j)
    prod16, prod8 = _producers(g16), _producers(g8)
    ops: dict[int, int] = {}
    for i, op in enumerate(g8.operators or []):
        key = tuple(_name(g8.tensors[t]) for t in op.outputs)
        found = by_outputs.get(key)
        if found is None or op.intermediates is not None and len(op.intermediates):
            continue
        j = found
        o16 = g16.operators[j]
        if _code(m8, op) != _code(m16, o16) or len(op.inputs) != len(o16.inputs):
            continue
        if _code(m8, op) in (_QUANTIZE, _DEQUANTIZE):
            continue
        if not _same_io(m8, g8, op, m16, g16, o16, prod8, prod16):
            continue
        ops[i] = j
    users = flatbuf.tensor_users(g8)
    graph_in = {int(t) for t in g8.inputs}
    candidates = []
    for t, p in prod8.items():
        if t in graph_in or p not in ops:
            continue
        tensor = g8.tensors[t]
        if int(tensor.type) != _T.INT8 or not all(u in ops for u in users.get(t, [])):
            continue
        o16 = g16.operators[ops[p]]
        t16 = g16.tensors[o16.outputs[list(g8.operators[p].outputs).index(t)]]
        if int(t16.type) != _T.INT16:
            continue
        candidates.append(t)
    return Pairing(
        ops=ops, candidates=tuple(sorted(candidates)), unpaired=len(g8.operators) - len(ops)
    )


def _same_io(
    m8: Any,
    g8: Any,
    op: Any,
    m16: Any,
    g16: Any,
    o16: Any,
    prod8: dict[int, int],
    prod16: dict[int, int],
) -> bool:
    """Whether operator ``op`` (int8) and ``o16`` (int16x8) read the same values and write
    tensors of the same shapes; their activations int8 and int16 (int32 where both are)."""
    for a, b in zip(op.outputs, o16.outputs, strict=True):
        ta, tb = g8.tensors[a], g16.tensors[b]
        if _shape(ta) != _shape(tb) or int(tb.type) not in (
            _T.INT16,
            _T.INT32,
            int(ta.type),
        ):
            return False
    for a, b in zip(op.inputs, o16.inputs, strict=True):
        if (a < 0) != (b < 0):
            return False
        if a < 0:
            continue
        ta, tb = g8.tensors[a], g16.tensors[b]
        ca, cb = _is_const(m8, ta), _is_const(m16, tb)
        if ca != cb or _shape(ta) != _shape(tb):
            return False
        if ca:
            continue
        if int(ta.type) == _T.INT8 and int(tb.type) != _T.INT16:
            return False  # a float input in the int16 model: this op is float there
        if int(ta.type) not in (_T.INT8, _T.INT16) and int(ta.type) != int(tb.type):
            return False
        if _source(m8, g8, prod8, int(a)) != _source(m16, g16, prod16, int(b)):
            return False
    return True


# --- splicing ----------------------------------------------------------------------------


@dataclass
class SpliceInfo:
    """What a splice did: int16 operators, int16 activation tensors, QUANTIZE ops added
    (``quantize_up`` of them int8→int16: the ones LiteRT runs through float)."""

    int16_ops: int = 0
    int16_tensors: int = 0
    quantize_added: int = 0
    quantize_up: int = 0
    int16_op_names: list[str] = field(default_factory=list)


class _Models:
    """The two unpacked models and their pairing (unpacked once, spliced many times)."""

    def __init__(self, int8: bytes, int16: bytes, io16: tuple[bool, bool] = (False, False)) -> None:
        self.io16 = io16
        try:
            self.m8 = flatbuf.unpack(int8)
            self.m16 = flatbuf.unpack(int16)
        except Exception as exc:
            raise ConversionError(f"mixed precision: a model is not a .tflite file: {exc}") from exc
        self.pairing = pair(self.m8, self.m16)
        self.g8 = self.m8.subgraphs[0]
        self.g16 = self.m16.subgraphs[0]
        self.users = flatbuf.tensor_users(self.g8)
        self.prod8 = _producers(self.g8)
        for what, flag, t8s, t16s in (
            ("input", io16[0], self.g8.inputs, self.g16.inputs),
            ("output", io16[1], self.g8.outputs, self.g16.outputs),
        ):
            if flag and not (
                len(t8s) == len(t16s)
                and all(int(self.g16.tensors[t].type) == _T.INT16 for t in t16s)
                and all(int(self.g8.tensors[t].type) == _T.INT8 for t in t8s)
            ):
                raise ConversionError(
                    f"mixed precision: int16 graph {what}s need int8 {what}s in the int8 model "
                    f"and int16 {what}s in the int16x8 model"
                )

    def drop_kind(self, kind: str) -> int:
        """Take every candidate whose producer or a consumer is a ``kind`` operator (a
        builtin name) out of the pairing; how many were taken out."""
        bad = {i for i, op in enumerate(self.g8.operators or [])
               if flatbuf.op_name(self.m8, op) == kind}  # fmt: skip
        keep = tuple(t for t in self.pairing.candidates
                     if self.prod8[t] not in bad and not bad & set(self.users.get(t, [])))  # fmt: skip
        dropped = len(self.pairing.candidates) - len(keep)
        self.pairing = replace(self.pairing, candidates=keep)
        return dropped

    def ops_of(self, tensors: Sequence[int]) -> set[int]:
        """The int8 operators that become int16 when ``tensors`` are int16."""
        ops: set[int] = set()
        for t in tensors:
            if t not in self.pairing.candidates:
                raise UsageError(f"mixed precision: tensor {t} is not a candidate for int16")
            ops.add(self.prod8[t])
            ops.update(self.users.get(t, []))
        return ops

    def splice(
        self, int16_ops: set[int], litert: bool = False, force8: frozenset[int] = frozenset()
    ) -> tuple[bytes, SpliceInfo]:
        """Splice (see :func:`splice`); ``litert``: the form LiteRT can run
        (:func:`litert_form`); ``force8``: int8 tensors rounded to int8 even between two
        int16 operators (int16 → QUANTIZE → int8 → QUANTIZE → int16: what one tensor's
        int8 rounding costs is measured so)."""
        return _splice(self, int16_ops, litert, force8)


def splice(
    int8: bytes,
    int16: bytes,
    chosen: Sequence[int] | set[int],
    io16: tuple[bool, bool] = (False, False),
) -> bytes:
    """The int8 model with the operators ``chosen`` (indices into the int8 model's operator
    list; each must pair, see :func:`pair`) taken from the int16x8 model, QUANTIZE ops
    between int8 and int16 tensors. With nothing chosen and ``io16`` false the int8 model's
    behaviour is unchanged (same operators, tensors and buffers).

    ``io16`` (inputs, outputs): the graph inputs / outputs become int16 with the int16x8
    model's input / output tensor parameters (both models must have one int8 resp. int16
    tensor at each position): int8 readers of an input get a QUANTIZE int16→int8, int16
    islands read it directly; an int8 producer of an output gets a QUANTIZE int8→int16."""
    models = _Models(int8, int16, io16)
    bad = sorted(set(chosen) - set(models.pairing.ops))
    if bad:
        raise UsageError(
            f"mixed precision: operator(s) {bad[:5]} of the int8 model have no int16x8 twin",
            hint="choose among pair(...).ops",
        )
    return models.splice(set(chosen))[0]


def _bare(t: Any) -> Any:
    """A copy of an int16-model tensor without the calibration min/max the converter leaves
    in int16x8 models (runtimes read scale and zero point only; they were 8 % of the bytes
    of an int16x8 MobileNetV2)."""
    nt = copy.deepcopy(t)
    if nt.quantization is not None:
        nt.quantization.min = None
        nt.quantization.max = None
    return nt


def strip_calibration_stats(data: bytes) -> bytes:
    """``data`` without the calibration min/max arrays TFLiteConverter leaves in the
    quantization of int16x8 models (TFLM and LiteRT read scale and zero point only; the
    int8 path writes none). ``data`` itself when there are none."""
    model = flatbuf.unpack(data)
    n = 0
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            q = t.quantization
            if q is not None and (q.min is not None or q.max is not None):
                n += len(q.min if q.min is not None else []) + len(
                    q.max if q.max is not None else []
                )
                q.min = q.max = None
    if not n:
        return data
    out = flatbuf.pack(model)
    log.info("dropped %d calibration min/max values: %d -> %d bytes", n, len(data), len(out))
    return out


def _opcode(model: Any, code: int, version: int) -> int:
    for k, oc in enumerate(model.operatorCodes):
        if (
            max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code
            and int(oc.version) == version
        ) and oc.customCode is None:
            return k
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _splice(
    ms: _Models, int16_ops: set[int], litert: bool, force8: frozenset[int]
) -> tuple[bytes, SpliceInfo]:
    m8, m16, g8, g16 = ms.m8, ms.m16, ms.g8, ms.g16
    model = copy.copy(m8)
    model.buffers = list(m8.buffers)  # the BufferT objects are shared, never changed
    model.operatorCodes = copy.deepcopy(m8.operatorCodes)
    model.metadata = copy.deepcopy(m8.metadata)
    model.signatureDefs = copy.deepcopy(m8.signatureDefs)
    sg = copy.copy(g8)
    sg.tensors = copy.deepcopy(g8.tensors)  # compact() renumbers their buffers in place
    model.subgraphs = [sg]
    info = SpliceInfo(int16_ops=len(int16_ops))
    in16, out16 = ms.io16
    if not int16_ops and not in16 and not out16:
        sg.operators = copy.deepcopy(g8.operators)
        return flatbuf.pack(model), info

    new_ops: list[Any] = []
    # int16 tensor (ours) standing for an int16-model tensor
    of16: dict[int, int] = {}
    # int16 copies of int8 tensors: (int8 tensor, int16-model tensor) -> our tensor
    up: dict[tuple[int, int], int] = {}
    const16: dict[int, int] = {}
    graph_out = {int(t) for t in g8.outputs} if not out16 else set()

    def add_tensor(t: Any, suffix: str) -> int:
        nt = _bare(t)
        nt.name = (_name(t) + suffix).encode()
        nt.buffer = 0
        sg.tensors.append(nt)
        return len(sg.tensors) - 1

    def quantize(src: int, dst: int) -> None:
        if (
            litert
            and int(sg.tensors[src].type) == _T.INT8
            and int(sg.tensors[dst].type) == _T.INT16
        ):
            src = _via_float(model, sg, src, new_ops)
        op = schema.OperatorT()
        op.opcodeIndex = _opcode(model, _QUANTIZE, QUANTIZE_VERSION_INT16)
        op.inputs, op.outputs = [src], [dst]
        op.builtinOptionsType = 0
        new_ops.append(op)
        info.quantize_added += 1

    rename: dict[int, int] = {}  # int8 graph I/O tensor -> its int16 replacement
    if in16:  # int16 graph inputs; int8 readers get a QUANTIZE int16 -> int8
        for a, b in zip(g8.inputs, g16.inputs, strict=True):
            gin = add_tensor(g16.tensors[b], "")
            sg.tensors[int(a)].name = (_name(g8.tensors[a]) + "/int8").encode()
            of16[int(b)] = gin
            rename[int(a)] = gin
            quantize(gin, int(a))  # dropped by _live when only islands read the input
            info.quantize_added -= 1  # counted below only when kept
    for i, op in enumerate(g8.operators):
        if i not in int16_ops:
            new_ops.append(copy.deepcopy(op))
            continue
        o16 = g16.operators[ms.pairing.ops[i]]
        nop = copy.deepcopy(o16)
        oc = m16.operatorCodes[o16.opcodeIndex]
        nop.opcodeIndex = _opcode(
            model, max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), int(oc.version)
        )
        ins: list[int] = []
        for a, b in zip(op.inputs, o16.inputs, strict=True):
            if b < 0:
                ins.append(-1)
                continue
            tb = g16.tensors[b]
            if _is_const(m16, tb):
                if b not in const16:
                    nt = _bare(tb)
                    nt.name = (_name(tb) + "/int16").encode()
                    buf = schema.BufferT()
                    buf.data = m16.buffers[tb.buffer].data
                    model.buffers.append(buf)
                    nt.buffer = len(model.buffers) - 1
                    sg.tensors.append(nt)
                    const16[b] = len(sg.tensors) - 1
                ins.append(const16[b])
                continue
            if int(tb.type) != _T.INT16:  # int32 activations (shapes): as in the int8 model
                ins.append(int(a))
                continue
            if b in of16:  # made by an int16 operator of ours with exactly these params
                ins.append(of16[b])
                continue
            key = (int(a), int(b))
            if key not in up:
                dst = add_tensor(tb, "/int16")
                p = ms.prod8.get(int(a))
                src16 = None
                if p is not None and p in int16_ops:  # requantize int16 → int16 instead
                    k = list(g8.operators[p].outputs).index(int(a))
                    src16 = of16.get(int(g16.operators[ms.pairing.ops[p]].outputs[k]))
                elif p is not None and _code(m8, g8.operators[p]) == _QUANTIZE:
                    # a float graph input quantized to int8: quantize it to int16 instead
                    q_in = int(g8.operators[p].inputs[0])
                    if int(g8.tensors[q_in].type) == _T.FLOAT32:
                        src16 = q_in
                if src16 is None:
                    info.quantize_up += 1
                quantize(src16 if src16 is not None else int(a), dst)
                up[key] = dst
            ins.append(up[key])
        nop.inputs = ins
        outs: list[int] = []
        back: list[tuple[int, int]] = []
        for a, b in zip(op.outputs, o16.outputs, strict=True):
            tb = g16.tensors[b]
            if int(tb.type) != _T.INT16:
                outs.append(int(a))
                continue
            dst = add_tensor(tb, "/int16")
            if int(a) not in force8:
                of16[int(b)] = dst
            info.int16_tensors += 1
            outs.append(dst)
            if (
                int(a) in graph_out
                or int(a) in force8
                or any(u not in int16_ops for u in ms.users.get(int(a), []))
            ):
                back.append((dst, int(a)))
        nop.outputs = outs
        nop.intermediates = None
        new_ops.append(nop)
        info.int16_op_names.append(flatbuf.op_name(model, nop))
        for src, dst in back:
            quantize(src, dst)  # the int8 tensor keeps its index, params and consumers
        if out16:  # an island writes a graph output: that int16 tensor is the output
            for a, dst in zip(op.outputs, outs, strict=True):
                if int(a) in g8.outputs and dst != int(a):
                    rename[int(a)] = dst
    if out16:  # int8 producers of graph outputs: QUANTIZE int8 -> int16
        for a, b in zip(g8.outputs, g16.outputs, strict=True):
            if int(a) not in rename:
                gout = add_tensor(g16.tensors[b], "")
                sg.tensors[int(a)].name = (_name(g8.tensors[a]) + "/int8").encode()
                quantize(int(a), gout)
                rename[int(a)] = gout
    if rename:
        sg.inputs = [rename.get(int(t), int(t)) for t in sg.inputs]
        sg.outputs = [rename.get(int(t), int(t)) for t in sg.outputs]
        for sig in model.signatureDefs or []:
            for m in (sig.inputs or []) + (sig.outputs or []):
                m.tensorIndex = rename.get(int(m.tensorIndex), int(m.tensorIndex))
    sg.operators = _live(new_ops, {int(t) for t in sg.outputs})
    if in16:
        gins = {rename[int(t)] for t in g8.inputs}
        info.quantize_added += sum(1 for op in sg.operators if int(op.inputs[0]) in gins
                                   and _code(model, op) == _QUANTIZE)  # fmt: skip
    flatbuf.compact(model)
    return flatbuf.pack(model), info


def _live(ops: list[Any], graph_out: set[int]) -> list[Any]:
    """``ops`` without those whose outputs nothing reads (e.g. a float input's QUANTIZE to
    int8 once an island quantizes that input to int16 itself)."""
    while True:
        read = {int(t) for op in ops for t in op.inputs if t >= 0} | graph_out
        keep = [op for op in ops if any(int(t) in read for t in op.outputs)]
        if len(keep) == len(ops):
            return ops
        ops = keep


def _via_float(model: Any, sg: Any, src: int, ops: list[Any]) -> int:
    """LiteRT has no int8→int16 QUANTIZE (TFLM has) and no int16 requantization from a
    non-zero zero point: for LiteRT the same step is DEQUANTIZE int8→float32 then QUANTIZE
    float32→int16 (equal to the integer requantization except, rarely, 1 int16 LSB at a
    rounding tie). Appends the DEQUANTIZE to ``ops``; returns its float output tensor."""
    t = copy.deepcopy(sg.tensors[src])
    t.name = (_name(t) + "/float").encode()
    t.type = _T.FLOAT32
    t.buffer = 0
    t.quantization = None
    sg.tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, _DEQUANTIZE, 2)
    op.inputs, op.outputs = [src], [len(sg.tensors) - 1]
    op.builtinOptionsType = 0
    ops.append(op)
    return len(sg.tensors) - 1


def needs_litert_form(data: bytes) -> bool:
    """Whether the model has a QUANTIZE int8→int16, which LiteRT cannot run (see
    :func:`litert_form`). Reads the flatbuffer in place (no copy of the weights)."""
    try:
        m = schema.Model.GetRootAs(data, 0)
        if m.SubgraphsLength() < 1:
            return False
        codes = [
            max(
                int(m.OperatorCodes(k).BuiltinCode()),
                int(m.OperatorCodes(k).DeprecatedBuiltinCode()),
            )
            for k in range(m.OperatorCodesLength())
        ]
        if _QUANTIZE not in codes:
            return False
        g = m.Subgraphs(0)
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            if codes[op.OpcodeIndex()] != _QUANTIZE or op.InputsLength() < 1:
                continue
            a, b = g.Tensors(op.Inputs(0)), g.Tensors(op.Outputs(0))
            if a.Type() == _T.INT8 and b.Type() == _T.INT16:
                return True
    except Exception:  # noqa: BLE001 - not ours to judge here: LiteRT will say what is wrong
        return False
    return False


def litert_form(data: bytes) -> bytes:
    """The model with every QUANTIZE int8→int16 run as DEQUANTIZE + QUANTIZE float→int16,
    the form LiteRT can run (tensor indices unchanged: new tensors are appended). The
    model TFLM runs and ``edgedeploy compile`` compiles is the integer one."""
    model = flatbuf.unpack(data)
    for sg in model.subgraphs:
        ops: list[Any] = []
        for op in sg.operators or []:
            if (
                flatbuf.op_name(model, op) == "QUANTIZE"
                and int(sg.tensors[op.inputs[0]].type) == _T.INT8
                and int(sg.tensors[op.outputs[0]].type) == _T.INT16
            ):
                op.inputs = [_via_float(model, sg, int(op.inputs[0]), ops)]
            ops.append(op)
        sg.operators = ops
    return flatbuf.pack(model)


# --- choosing the islands ----------------------------------------------------------------


def _error_default(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    return _error(ref, got)


def _rank(
    ms: _Models,
    cands: Sequence[int],
    all_ops: set[int],
    run: Callable[[bytes, int], list[np.ndarray]],
    ref: Sequence[np.ndarray],
    k: int,
    int8_bytes: int,
    time_s: float,
    error: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float] = _error_default,
) -> tuple[int, list[int]]:
    """Rank the candidate tensors by error removed per extra byte; (how many were
    measured, the ranking). A tensor's gain is what its int8 rounding costs when every other
    candidate is int16 (leave one out: against a quiet background the cross terms with the
    other tensors' rounding stay small), on ``k`` samples; its bytes are those of its island
    alone (integer form). Candidates not measured within ``time_s`` follow in graph order."""
    t0 = time.perf_counter()
    ref_k = [r[:k] for r in ref]
    err_all = error(ref_k, run(ms.splice(all_ops, litert=True)[0], k))
    rows: list[tuple[float, int]] = []
    for t in cands:
        if time.perf_counter() - t0 > time_s:
            break
        extra = len(ms.splice(ms.ops_of([t]))[0]) - int8_bytes
        data_t, _ = ms.splice(all_ops, litert=True, force8=frozenset([t]))
        gain = error(ref_k, run(data_t, k)) - err_all
        rows.append((gain / max(extra, 64), t))
    if len(rows) < len(cands):
        log.warning(
            "mixed precision: %d of %d candidates ranked within %.0f s; the rest follow in "
            "graph order", len(rows), len(cands), time_s,
        )  # fmt: skip
    rows.sort(key=lambda r: -r[0])
    done = {t for _, t in rows}
    return len(rows), [t for _, t in rows] + [t for t in cands if t not in done]


@dataclass(frozen=True)
class MixedResult:
    """The chosen model (the int8 model itself when nothing helped) and its record."""

    data: bytes
    record: dict[str, Any]


#: what ``choose`` measures: the outputs' input-dependent SQNR (each side's mean over the
#: samples removed; the issue's figure) or the plain SQNR (what ``--min-sqnr`` gates)
MEASURES = ("input-dependent", "plain")


def _error(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], centered: bool = True) -> float:
    """The worst output's error power relative to its signal power (input-dependent part
    when ``centered``)."""
    worst = 0.0
    for r, q in zip(ref, got, strict=True):
        r64, q64 = np.asarray(r, np.float64), np.asarray(q, np.float64)
        rc = r64 - r64.mean(axis=0, keepdims=True) if centered else r64
        qc = q64 - q64.mean(axis=0, keepdims=True) if centered else q64
        sig = float(np.sum(rc * rc))
        if sig <= 0.0:
            continue  # an output that does not vary with the input: nothing to win there
        worst = max(worst, float(np.sum((rc - qc) ** 2)) / sig)
    return worst


def _io_specs(
    data: bytes, ins: Sequence[TensorSpec], outs: Sequence[TensorSpec]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """``ins``/``outs`` with the type and quantization of ``data``'s graph I/O tensors."""
    from dataclasses import replace

    from toolchain.tflite_model import TFLiteModel

    parsed = TFLiteModel.from_bytes(data, source="mixed-precision model")

    def fix(specs: Sequence[TensorSpec], tensors: Sequence[Any]) -> list[TensorSpec]:
        return [
            replace(
                s,
                dtype=tensors[s.tflite_index].dtype,
                scale=tensors[s.tflite_index].scale,
                zero_point=tensors[s.tflite_index].zero_point,
            )
            for s in specs
        ]

    return fix(ins, parsed.inputs), fix(outs, parsed.outputs)


def _db(err: float) -> float:
    return math.inf if err <= 0.0 else round(-10.0 * math.log10(err), 3)


#: LiteRT's error for an operator it has no kernel for with these types
_NO_KERNEL = re.compile(r"\(([A-Z][A-Z0-9_]*)\) failed to (?:invoke|prepare)")


def _drop_what_litert_cannot_run(
    ms: _Models,
    inputs: Sequence[np.ndarray],
    input_specs: Sequence[TensorSpec],
    output_specs: Sequence[TensorSpec],
) -> dict[str, int]:
    """Take the candidates of operators LiteRT cannot run in int16 (e.g. its
    SQUARED_DIFFERENCE has no int16 kernel, TFLM's has) out of the pairing: every
    measurement runs in LiteRT. Probes the all-candidates model on one sample; returns
    operator name → candidates taken out. ConversionError when the failure is not one."""
    from toolchain.convert.runtime import run_tflite

    dropped: dict[str, int] = {}
    while ms.pairing.candidates:
        data = ms.splice(ms.ops_of(ms.pairing.candidates), litert=True)[0]
        ins, outs = _io_specs(data, input_specs, output_specs) if any(ms.io16) else (
            input_specs, output_specs)  # fmt: skip
        try:
            run_tflite(data, [np.asarray(a)[:1] for a in inputs], input_specs=ins,
                       output_specs=outs)  # fmt: skip
            break
        except RuntimeError as exc:
            m = _NO_KERNEL.search(str(exc))
            kind = m.group(1) if m else None
            if kind is None or kind in dropped or not (n := ms.drop_kind(kind)):
                raise ConversionError(
                    f"mixed precision: LiteRT cannot run the spliced model: {exc}"
                ) from exc
            log.info("mixed precision: LiteRT has no int16 %s; its %d candidates stay int8",
                     kind, n)  # fmt: skip
            dropped[kind] = n
    return dropped


def choose(
    int8: bytes,
    int16: bytes,
    inputs: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    input_specs: Sequence[TensorSpec],
    output_specs: Sequence[TensorSpec],
    target_sqnr: float = DEFAULT_TARGET_SQNR,
    budget: float = MIXED_BUDGET,
    rank_samples: int = RANK_SAMPLES,
    rank_time_s: float = RANK_TIME_S,
    measure: str = "input-dependent",
    arena: Callable[[bytes], int | None] | None = None,
    io16: tuple[bool, bool] = (False, False),
) -> MixedResult:
    """Choose the int16 activation tensors by measurement and splice them in.

    ``inputs``: calibration samples in PyTorch layout (one ``(N, ...)`` array per model
    input); ``reference``: the float model's outputs on them (one array per output);
    ``input_specs``/``output_specs``: the int8 model's I/O (as :func:`run_tflite` takes
    them). ``target_sqnr``: dB, input-dependent SQNR of the worst output on these samples;
    ``budget``: at most this fraction of the int8 model's bytes may be added. ``arena``:
    measures a model's arena (for the record; None: not measured). ``io16``: int16 graph
    inputs / outputs (see :func:`splice`; the specs' types and parameters are then read
    from each measured model, and "int8" below means the int8 model with those I/O types).

    Raises UsageError for a negative budget or a non-positive target, ConversionError when
    the two models cannot be read or have no single subgraph."""
    from toolchain.convert.runtime import run_tflite

    if not budget >= 0:
        raise UsageError(
            f"the mixed-precision budget must be 0 or more (got {budget})",
            hint="give a fraction of the int8 model's bytes, e.g. 0.1",
        )
    if not target_sqnr > 0:
        raise UsageError(f"the mixed-precision target SQNR must be positive (got {target_sqnr})")
    if measure not in MEASURES:
        raise UsageError(
            f"mixed precision cannot measure {measure!r}", hint=f"one of {', '.join(MEASURES)}"
        )
    centered = measure == "input-dependent"

    def _err(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
        return _error(ref, got, centered)

    t0 = time.perf_counter()
    ms = _Models(int8, int16, io16)
    n = int(np.asarray(inputs[0]).shape[0])
    no_litert = _drop_what_litert_cannot_run(ms, inputs, input_specs, output_specs)
    if any(io16):  # the int8 model with int16 graph I/O is where choosing starts
        int8 = ms.splice(set())[0]
    k_rank = max(2, min(rank_samples, n))
    ref = [np.asarray(r)[:n] for r in reference]

    def run(data: bytes, k: int) -> list[np.ndarray]:
        ins, outs = input_specs, output_specs
        if any(io16):
            ins, outs = _io_specs(data, input_specs, output_specs)
        return run_tflite(data, [np.asarray(a)[:k] for a in inputs], input_specs=ins,
                          output_specs=outs)  # fmt: skip

    out8 = run(int8, n)
    err8 = _err(ref, out8)
    target_err = 10.0 ** (-target_sqnr / 10.0)
    allowed = budget * len(int8)
    cands = ms.pairing.candidates
    order: list[int] = list(cands)  # the ranking (graph order until ranked)
    evaluated: dict[int, tuple[float, bytes, SpliceInfo]] = {0: (err8, int8, SpliceInfo())}

    def evaluate(k: int) -> tuple[float, bytes, SpliceInfo]:
        """The prefix of length ``k`` of ``order``, spliced and measured on all samples."""
        if k not in evaluated:
            ops_k = ms.ops_of(order[:k])
            data_k, info = ms.splice(ops_k)  # the integer (TFLM) form: its bytes
            err = _err(ref, run(ms.splice(ops_k, litert=True)[0], n))
            evaluated[k] = (err, data_k, info)
        return evaluated[k]

    all_ops = ms.ops_of(cands)
    all_extra = len(ms.splice(all_ops)[0]) - len(int8) if cands else 0
    how, ranked, t_rank, k = "", 0, 0.0, -1
    if not cands:
        how, k = "no operator pairs with an int16x8 twin", 0
    elif err8 <= target_err:
        how, k = "the int8 model meets the target", 0
    elif all_extra <= allowed and evaluate(len(cands))[0] > target_err:
        # every candidate fits the budget and still misses the target: the best there is
        how, k = "every candidate (fits the budget; the target is out of reach)", len(cands)
    if k < 0:
        t1 = time.perf_counter()
        ranked, order = _rank(ms, cands, all_ops, run, ref, k_rank, len(int8), rank_time_s, _err)
        t_rank = time.perf_counter() - t1
        keep_all = evaluated.pop(len(cands), None)  # the same set in any order
        evaluated = {0: evaluated[0]}
        if keep_all is not None:
            evaluated[len(cands)] = keep_all
        if all_extra <= allowed:
            k_max = len(order)
        else:  # the longest prefix whose spliced bytes fit (bytes grow with the prefix)
            lo, hi = 0, len(order)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if len(ms.splice(ms.ops_of(order[:mid]))[0]) - len(int8) <= allowed:
                    lo = mid
                else:
                    hi = mid
            k_max = lo
        if k_max == 0:
            how, k = "no int16 island fits the budget", 0
        elif evaluate(k_max)[0] > target_err:
            k = min(evaluated, key=lambda j: (evaluated[j][0], j))
            how = "the best prefix within the budget (the target is out of reach)"
        else:
            lo, hi = 0, k_max  # sqnr(lo) < target <= sqnr(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if evaluate(mid)[0] <= target_err:
                    hi = mid
                else:
                    lo = mid
            how, k = "the shortest prefix of the ranking that reaches the target", hi
    err_k, data, info = evaluate(k)
    if k > 0 and err_k >= err8:
        k, (err_k, data, info) = 0, evaluated[0]
        how = "no int16 island lowered the error on the calibration samples"
    chosen = order[:k]
    a8 = arena(int8) if arena is not None and k > 0 else None
    ak = arena(data) if arena is not None and k > 0 else None
    names = [_name(ms.g8.tensors[t]) for t in chosen]
    kinds: dict[str, int] = {}
    for nm in info.int16_op_names:
        kinds[nm] = kinds.get(nm, 0) + 1
    record: dict[str, Any] = {
        "used": k > 0,
        "target_sqnr_db": target_sqnr,
        "reached": err_k <= target_err,
        "budget_pct": round(100.0 * budget, 2),
        "samples": n,
        "rank_samples": k_rank,
        "sqnr_measure": f"{measure} SQNR of the worst output, calibration samples",
        "pairable_ops": len(ms.pairing.ops),
        "unpaired_ops": ms.pairing.unpaired,
        "candidates": len(cands),
        **({"not_in_litert": no_litert} if no_litert else {}),
        "ranked_candidates": ranked,
        "how": how,
        "extra_bytes_all_candidates_pct": round(100.0 * all_extra / len(int8), 2),
        "int16_tensors": k,
        "int16_tensor_names": names[:8],
        "int16_ops": info.int16_ops,
        "int16_op_kinds": kinds,
        "quantize_added": info.quantize_added,
        "sqnr_before_db": _db(err8),
        "sqnr_after_db": _db(err_k),
        "bytes_int8": len(int8),
        "bytes": len(data),
        "extra_bytes_pct": round(100.0 * (len(data) / len(int8) - 1.0), 2),
        "arena_int8": a8,
        "arena": ak,
        "extra_arena_pct": round(100.0 * (ak / a8 - 1.0), 2) if a8 and ak else None,
        "seconds": {
            "rank": round(t_rank, 2),
            "prefixes": len(evaluated) - 1,
            "total": round(time.perf_counter() - t0, 2),
        },
    }
    log.info(
        "mixed precision: %d int16 tensor(s) (%d ops, %d QUANTIZE), SQNR %.2f -> %.2f dB on %d "
        "calibration samples, %+.1f %% bytes, %.1f s",
        k, info.int16_ops, info.quantize_added, _db(err8), _db(err_k), n,
        record["extra_bytes_pct"], record["seconds"]["total"],
    )  # fmt: skip
    return MixedResult(data=data, record=record)
