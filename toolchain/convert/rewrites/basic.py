"""Rewrites of single ops: constant folding, finite max-pool padding, GELU, DIV by a constant.

Each is a :class:`~toolchain.convert.rewrites.base.Rewrite` (requires / call / ensures, then
the onnxruntime equivalence check of :func:`~toolchain.convert.rewrites.base.apply`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import onnx
from onnx import helper

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph, attr

log = logging.getLogger(__name__)

#: ops whose outputs are never negative: a zero pad before a max pool is then exact
_NONNEG_OPS = {"Relu", "Sigmoid", "HardSigmoid", "Softmax", "Abs", "Exp"}


class FoldConstants(Rewrite):
    """onnxsim in this process: fold shape-derived and constant subgraphs.

    onnx2tf runs onnxsim as a command and silently goes on without it when it is not on
    PATH; shape-derived subgraphs (Shape → Gather → Range → Sin ...) then reach onnx2tf and
    fail. Doing it here makes the result independent of PATH, and lets the pattern rewrites
    that follow see folded constants."""

    name = "fold-constants"
    exact = "exact (constant folding with onnxruntime; no arithmetic reordered)"
    purpose = "fold shape-derived/constant subgraphs with onnxsim in-process"
    tolerance = 1e-5
    _FOLDABLE = {"Shape", "ConstantOfShape", "Range", "Size", "Constant"}

    def requires(self, g: Graph) -> list[Any]:
        return [n.name for n in g.nodes if n.op_type in self._FOLDABLE][:1]

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        import onnxsim

        before = len(g.model.graph.node)
        try:
            simplified, ok = onnxsim.simplify(g.model, skip_fuse_bn=False)
        except Exception as exc:  # noqa: BLE001 - onnxsim raises many kinds; keep the graph
            log.info("onnxsim failed: %s", exc)
            return []
        if not ok:
            return []
        g.model.CopyFrom(simplified)
        g.refresh()
        return [f"{before} -> {len(g.model.graph.node)} nodes"]

    def ensures(self, g: Graph) -> str | None:
        left = [n.name for n in g.nodes if n.op_type in ("Shape", "ConstantOfShape", "Range")]
        return f"shape ops left: {', '.join(left[:3])}" if left else None


class MaxPoolFinitePad(Rewrite):
    """A padded (or ceil-mode) MaxPool → explicit Pad + unpadded MaxPool.

    TFLite has no padded max pool with ONNX's symmetric padding, so converters pad with the
    most negative float (PADV2), which wrecks calibration (a ~1e36 scale). A ceil mode that
    adds no padding is dropped; padding that is TensorFlow's SAME (a ceil-mode pool whose
    one extra row/column is at the end: SqueezeNet) becomes ``auto_pad=SAME_UPPER``, which
    onnx2tf maps to MAX_POOL_2D's own SAME padding (no PAD op). Otherwise the pad
    value is 0 when the input is never negative (after ReLU, sigmoid, a concatenation of
    such...), else the edge
    value (mode "edge"): every padded position then repeats a value of the same window
    (dilation 1, pad ≤ kernel − 1), so the max is unchanged — exact either way."""

    name = "maxpool-finite-pad"
    exact = "bit-exact (max over the same values)"
    purpose = "padded/ceil-mode max pools without -FLT_MAX padding"
    tolerance = 0.0

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for n in g.nodes:
            if n.op_type != "MaxPool" or len(n.output) > 1:
                continue
            pads = list(attr(n, "pads", []) or [])
            ceil = int(attr(n, "ceil_mode", 0) or 0)
            dil = list(attr(n, "dilations", []) or [])
            auto_pad = attr(n, "auto_pad", b"NOTSET")
            plain = auto_pad in (b"NOTSET", "NOTSET") and all(d == 1 for d in dil)
            known = g.shape(n.input[0]) is not None and g.shape(n.output[0]) is not None
            if (any(pads) or ceil) and plain and known:
                found.append(n)
        return found

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for n in matches:
            in_shape, out_shape = g.shape(n.input[0]), g.shape(n.output[0])
            assert in_shape is not None and out_shape is not None
            nsp = len(in_shape) - 2
            k = list(attr(n, "kernel_shape"))
            s = list(attr(n, "strides", None) or [1] * nsp)
            pads = list(attr(n, "pads", None) or [0] * (2 * nsp))
            begin = pads[:nsp]
            end = [
                max(0, (out_shape[2 + i] - 1) * s[i] + k[i] - (in_shape[2 + i] + begin[i]))
                for i in range(nsp)
            ]
            if not any(begin) and not any(end):  # ceil mode that changes nothing here
                pool = helper.make_node(
                    "MaxPool", [n.input[0]], list(n.output), name=n.name, kernel_shape=k, strides=s
                )
                g.replace_nodes([n], [pool], at=n)
                done.append(f"{n.name}: ceil mode without effect dropped")
                continue
            if self._same_upper(in_shape[2:], list(out_shape[2:]), k, s, begin, end):
                pool = helper.make_node("MaxPool", [n.input[0]], list(n.output), name=n.name,
                                        kernel_shape=k, strides=s, auto_pad="SAME_UPPER")  # fmt: skip
                g.replace_nodes([n], [pool], at=n)
                done.append(f"{n.name}: pads {begin}+{end} are TFLite's SAME padding")
                continue
            nonneg = self._nonneg(g, n.input[0])
            mode = "constant" if nonneg else "edge"
            pads_t = g.add_const(n.name + "_pads", np.array([0, 0, *begin, 0, 0, *end], np.int64))
            padded = g.fresh(n.input[0] + "_padded")
            inputs = [n.input[0], pads_t]
            if nonneg:
                inputs.append(g.add_const(n.name + "_zero", np.array(0.0, np.float32)))
            pad = helper.make_node("Pad", inputs, [padded], name=n.name + "_pad", mode=mode)
            pool = helper.make_node(
                "MaxPool", [padded], list(n.output), name=n.name, kernel_shape=k, strides=s
            )
            g.replace_nodes([n], [pad, pool], at=n)
            done.append(f"{n.name}: pads {begin}+{end} with {'0' if nonneg else 'edge values'}")
        return done

    @staticmethod
    def _same_upper(
        size: Any, out: list[int], k: list[int], s: list[int], begin: list[int], end: list[int]
    ) -> bool:
        """Whether the padding is TensorFlow's SAME (MAX_POOL_2D pads without PAD ops and
        never takes a padded position as the max): ``out = ceil(in / s)``, the total
        padding split with the odd one at the end."""
        for i, n in enumerate(size):
            if out[i] != -(-int(n) // s[i]):
                return False
            total = max((out[i] - 1) * s[i] + k[i] - int(n), 0)
            if begin[i] != total // 2 or end[i] != total - total // 2:
                return False
        return True

    @staticmethod
    def _nonneg(g: Graph, name: str, depth: int = 4) -> bool:
        """Whether ``name`` is never negative (a ReLU-like op, or a concatenation of such)."""
        src = g.producer.get(name)
        if src is None:
            return False
        if src.op_type in _NONNEG_OPS:
            return True
        if src.op_type == "Clip" and len(src.input) > 1:
            return (g.scalar(src.input[1]) or -1) >= 0
        if src.op_type == "Concat" and depth > 0:
            return all(MaxPoolFinitePad._nonneg(g, i, depth - 1) for i in src.input)
        return False

    def ensures(self, g: Graph) -> str | None:
        bad = [
            n.name
            for n in g.nodes
            if n.op_type == "MaxPool"
            and (any(attr(n, "pads", []) or []) or attr(n, "ceil_mode", 0))
        ]
        return f"padded max pools left: {', '.join(bad[:3])}" if bad else None


class GeluBuiltin(Rewrite):
    """Exact GELU (``x·½·(1+erf(x/√2))``, exported as Erf) → one Gelu node.

    onnx2tf turns Gelu into ``tf.nn.gelu(approximate=False)``, which TFLite quantizes to its
    int8 GELU builtin (a lookup table of the exact function), so no approximation is made;
    Erf itself has no int8 kernel. The node uses the onnxruntime contrib domain
    (``com.microsoft``; opset 17 has no Gelu), which onnxruntime runs for the check."""

    name = "gelu-builtin"
    exact = "exact function (TFLite GELU int8 is a table of the erf form)"
    purpose = "exact GELU (Erf) -> TFLite GELU builtin"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        return [m for n in g.nodes if n.op_type == "Erf" and (m := self._match(g, n))]

    def _match(self, g: Graph, erf: onnx.NodeProto) -> dict[str, Any] | None:
        scale = g.producer.get(erf.input[0])
        if scale is None or scale.op_type not in ("Div", "Mul"):
            return None
        c = g.scalar(scale.input[1])
        if c is None:
            return None
        want = math.sqrt(2.0) if scale.op_type == "Div" else 1.0 / math.sqrt(2.0)
        if abs(c - want) > 1e-4:
            return None
        x = scale.input[0]
        add = g.only_consumer(erf.output[0])
        if add is None or add.op_type != "Add":
            return None
        other = [i for i in add.input if i != erf.output[0]]
        if len(other) != 1 or g.scalar(other[0]) != 1.0:
            return None
        chain = [scale, erf, add]
        cur, have_x, have_half = add.output[0], False, False
        while not (have_x and have_half):
            mul = g.only_consumer(cur)
            if mul is None or mul.op_type != "Mul":
                return None
            o = [i for i in mul.input if i != cur]
            if len(o) != 1:
                return None
            if o[0] == x and not have_x:
                have_x = True
            elif g.scalar(o[0]) == 0.5 and not have_half:
                have_half = True
            else:
                return None
            chain.append(mul)
            cur = mul.output[0]
        # x * 0.5 first, then * (1 + erf): torch sometimes exports that order
        return {"x": x, "nodes": chain, "out": cur}

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for m in matches:
            last = m["nodes"][-1]
            node = helper.make_node(
                "Gelu", [m["x"]], [m["out"]], name=last.name + "_gelu", domain="com.microsoft"
            )
            shape = g.shape(m["x"])
            g.replace_nodes(m["nodes"], [node], at=last)
            known = {vi.name for vi in g.model.graph.value_info}
            if shape is not None and m["out"] not in known:
                # onnx shape inference does not know contrib ops: say it (elementwise), or
                # onnx2tf loses the shapes of everything after it
                g.model.graph.value_info.append(
                    helper.make_tensor_value_info(m["out"], onnx.TensorProto.FLOAT, shape)
                )
            done.append(f"{m['nodes'][1].name} -> Gelu")
        if done and not any(o.domain == "com.microsoft" for o in g.model.opset_import):
            g.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [m["nodes"][1].name for m in self.requires(g)]
        return f"GELU patterns left: {', '.join(left[:3])}" if left else None


class DivByConstant(Rewrite):
    """``x / c`` with a constant ``c`` → ``x · (1/c)``.

    TFLite has no int8 DIV kernel: the converter keeps such a DIV in float between QUANTIZE
    and DEQUANTIZE even with int8-only ops requested (the attention ``/ sqrt(d)``). A MUL by
    the reciprocal quantizes. Bit-exact when ``c`` is a power of two, else within 1 ulp."""

    name = "div-by-constant"
    exact = "exact up to float rounding (1 ulp; bit-exact for powers of two)"
    purpose = "x / const -> x * (1/const) (no float DIV islands)"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for n in g.nodes:
            if n.op_type != "Div":
                continue
            c = g.const(n.input[1])
            if c is not None and c.dtype.kind == "f" and c.size and np.all(c != 0):
                found.append(n)
        return found

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for n in matches:
            c = g.const(n.input[1])
            assert c is not None
            inv = g.add_const(n.name + "_recip", (1.0 / c.astype(np.float64)).astype(c.dtype))
            mul = helper.make_node("Mul", [n.input[0], inv], list(n.output), name=n.name + "_mul")
            g.replace_nodes([n], [mul], at=n)
            done.append(f"{n.name}: / {c.reshape(-1)[0]:.6g}" + (" ..." if c.size > 1 else ""))
        return done


class GeluTanh(GeluBuiltin):
    """Exact GELU (Erf) → its tanh form ``½x(1 + tanh(√(2/π)(x + 0.044715x³)))``, standard
    ops only. An approximation: |tanh form − exact| ≤ 4.7e-4 (at x ≈ ±2.2).

    Written for int8 as ``x · σ(x · (2k + 2ka·x²))`` with ``k = √(2/π)``, ``a = 0.044715``
    (``½(1 + tanh z) = σ(2z)``): MUL, MUL/ADD by constants, MUL, LOGISTIC, MUL. The literal
    form computes ``x³`` as a tensor, whose int8 range is the cube of the input's: on the
    ConvNeXt-style suite model that tensor kept 0.4 dB SQNR and the model 26 dB; ``x²``
    enters only through ``1 + a·x²``, where its rounding error is scaled by ``a``."""

    name = "gelu-tanh"
    exact = "approximation: |tanh-GELU - GELU| <= 4.7e-4 absolute"
    purpose = "exact GELU (Erf) -> tanh form x*sigmoid(2k(x + a x^3)) (TFLM has no GELU)"
    tolerance = 1e-3

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        k, a = math.sqrt(2.0 / math.pi), 0.044715
        for m in matches:
            last, x, out = m["nodes"][-1], m["x"], m["out"]
            base = last.name + "_tanh"
            c = {
                n: g.add_const(f"{base}_{n}", np.array(v, np.float32))
                for n, v in (("c2", 2.0 * k * a), ("c0", 2.0 * k))
            }
            t = [g.fresh(f"{base}_t{i}") for i in range(5)]
            nodes = [
                helper.make_node("Mul", [x, x], [t[0]], name=f"{base}_square"),
                helper.make_node("Mul", [t[0], c["c2"]], [t[1]], name=f"{base}_mul_a"),
                helper.make_node("Add", [t[1], c["c0"]], [t[2]], name=f"{base}_add_k"),
                helper.make_node("Mul", [x, t[2]], [t[3]], name=f"{base}_mul_x"),
                helper.make_node("Sigmoid", [t[3]], [t[4]], name=f"{base}_sigmoid"),
                helper.make_node("Mul", [x, t[4]], [out], name=f"{base}_gate"),
            ]
            g.replace_nodes(m["nodes"], nodes, at=last)
            done.append(f"{m['nodes'][1].name} -> tanh form")
        return done


class BatchNormIntoNextConv(Rewrite):
    """An inference BatchNormalization whose only consumer is an unpadded Conv → folded
    into that Conv's weights and bias.

    Exporters and onnxsim fold a BatchNorm into the conv *before* it; a BatchNorm *before*
    a conv (ConvNeXt's downsampling layers, pre-activation nets) stays, and becomes an int8
    MUL and ADD — two more requantizations of the whole map. ``BN(x) = s·x + t`` per
    channel, so ``conv(BN(x))`` has weights ``W[o, i]·s[i]`` and bias
    ``b[o] + Σ W[o, i, ·, ·]·t[i]``; exact up to float rounding when the conv has no
    padding (a zero-padded border would see ``t`` where it saw 0)."""

    name = "bn-into-next-conv"
    exact = "exact up to float rounding (unpadded conv)"
    purpose = "BatchNorm before an unpadded conv -> folded into the conv"
    tolerance = 1e-4

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for bn in g.nodes:
            if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
                continue
            conv = g.only_consumer(bn.output[0])
            if conv is None or conv.op_type != "Conv" or conv.input[0] != bn.output[0]:
                continue
            params = [g.const(i) for i in bn.input[1:5]]
            w = g.const(conv.input[1])
            pads = list(attr(conv, "pads", []) or [])
            auto = attr(conv, "auto_pad", b"NOTSET")
            if any(p is None for p in params) or w is None or any(pads):
                continue
            if auto not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
                continue
            if len(conv.input) > 2 and conv.input[2] and g.const(conv.input[2]) is None:
                continue
            found.append((bn, conv))
        return found

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for bn, conv in matches:
            gamma, beta, mean, var = (g.const(i).astype(np.float64) for i in bn.input[1:5])  # type: ignore[union-attr]
            eps = float(attr(bn, "epsilon", 1e-5))
            s = gamma / np.sqrt(var + eps)
            t = beta - mean * s
            w = g.const(conv.input[1])
            assert w is not None
            groups = int(attr(conv, "group", 1) or 1)
            cout, cin_g = w.shape[0], w.shape[1]
            # input channel of each (output channel, in-group channel) weight slice
            chan = (np.arange(cout)[:, None] // (cout // groups)) * cin_g + np.arange(cin_g)[None]
            w64 = w.astype(np.float64)
            new_w = w64 * s[chan][:, :, None, None]
            b_old = (g.const(conv.input[2]).astype(np.float64)  # type: ignore[union-attr]
                     if len(conv.input) > 2 and conv.input[2] else np.zeros(cout))  # fmt: skip
            new_b = b_old + (w64.sum(axis=(2, 3)) * t[chan]).sum(axis=1)
            node = onnx.NodeProto()
            node.CopyFrom(conv)
            del node.input[:]
            node.input.extend([
                bn.input[0],
                g.add_const(conv.name + "_wbn", new_w.astype(w.dtype)),
                g.add_const(conv.name + "_bbn", new_b.astype(w.dtype)),
            ])  # fmt: skip
            g.replace_nodes([bn, conv], [node], at=conv)
            done.append(f"{bn.name} -> {conv.name}")
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [bn.name for bn, _ in self.requires(g)]
        return f"foldable BatchNorms left: {', '.join(left[:3])}" if left else None


class HardSigmoidRelu6(Rewrite):
    """HardSigmoid → ``Relu6(x·6α + 6β) · ⅙`` (ADD, RELU6, MUL: TFLM builtins).

    TFLiteConverter lowers ``clip(αx + β, 0, 1)`` to RELU_0_TO_1, which tflite-micro has no
    kernel for ("Didn't find op for builtin opcode 'RELU_0_TO_1'"): timm's MobileNetV3 and
    LCNet squeeze-excitation gates then convert and validate on LiteRT but do not run on
    the microcontroller runtime. The same function through a 0..6 clip does."""

    name = "hardsigmoid-relu6"
    exact = "exact up to float rounding"
    purpose = "HardSigmoid -> Relu6(6ax + 6b) / 6 (TFLM has no RELU_0_TO_1 kernel)"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        return [n for n in g.nodes if n.op_type == "HardSigmoid"]

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for n in matches:
            alpha = float(attr(n, "alpha", 0.2))
            beta = float(attr(n, "beta", 0.5))
            base = n.name + "_r6"
            x, out = n.input[0], n.output[0]
            nodes = []
            if abs(6.0 * alpha - 1.0) > 1e-12:
                scaled = g.fresh(f"{base}_ax")
                nodes.append(helper.make_node(
                    "Mul", [x, g.add_const(f"{base}_a", np.array(6.0 * alpha, np.float32))],
                    [scaled], name=f"{base}_scale"))  # fmt: skip
                x = scaled
            t = [g.fresh(f"{base}_{i}") for i in range(2)]
            nodes += [
                helper.make_node("Add", [x, g.add_const(f"{base}_b", np.array(6.0 * beta,
                                 np.float32))], [t[0]], name=f"{base}_shift"),
                helper.make_node("Clip", [t[0], g.add_const(f"{base}_lo", np.array(0.0,
                                 np.float32)), g.add_const(f"{base}_hi", np.array(6.0,
                                 np.float32))], [t[1]], name=f"{base}_relu6"),
                helper.make_node("Mul", [t[1], g.add_const(f"{base}_d", np.array(1.0 / 6.0,
                                 np.float32))], [out], name=f"{base}_div"),
            ]  # fmt: skip
            g.replace_nodes([n], nodes, at=n)
            done.append(f"{n.name}: relu6(x*{6 * alpha:g} + {6 * beta:g}) / 6")
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [n.name for n in self.requires(g)]
        return f"HardSigmoid left: {', '.join(left[:3])}" if left else None


class LayerNormCentred(Rewrite):
    """LayerNormalization → ``(x − mean) / sqrt(var + eps) · scale + bias``, centred first.

    onnx2tf lowers LayerNormalization as TensorFlow's batch normalisation computes it:
    SQUARED_DIFFERENCE for the variance and ``x · r + (bias − mean · r)``. LiteRT has no
    int16 SQUARED_DIFFERENCE ("only supports FLOAT32 and INT32"), so with int16x8
    activations such a model cannot run at all. This decomposition (ReduceMean, Sub, Mul,
    ReduceMean, Add eps, Sqrt, Div → RSQRT and MUL, scale, bias — the channels-last
    island's LayerNorm on the normalised last axes) has int16x8 kernels. The strategy adds
    it to int16x8 attempts only: in int8 it measured +0.3 dB on timm's ViT (2.5 → 2.8 dB)
    and would change every int8 model with a LayerNorm."""

    name = "layernorm-centred"
    exact = "exact up to float rounding (LayerNorm decomposed, centred first)"
    purpose = "LayerNormalization -> centred mean/variance ops (int16x8 has no SQUARED_DIFFERENCE)"
    tolerance = 1e-4

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for n in g.nodes:
            if n.op_type != "LayerNormalization" or (len(n.output) > 1 and any(n.output[1:])):
                continue
            has_bias = len(n.input) > 2 and bool(n.input[2])
            if g.shape(n.input[0]) is None or g.const(n.input[1]) is None:
                continue
            if has_bias and g.const(n.input[2]) is None:
                continue
            found.append(n)
        return found

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for n in matches:
            shape = g.shape(n.input[0])
            assert shape is not None
            rank = len(shape)
            axes = list(range(int(attr(n, "axis", -1)) % rank, rank))
            eps = float(attr(n, "epsilon", 1e-5))
            base = n.name + "_c"
            x, out = n.input[0], n.output[0]
            t = {k: g.fresh(f"{base}_{k}") for k in ("mu", "xc", "sq", "var", "ve", "sd", "ys", "y")}  # fmt: skip
            has_bias = len(n.input) > 2 and bool(n.input[2])
            nodes = [
                helper.make_node("ReduceMean", [x], [t["mu"]], axes=axes, keepdims=1,
                                 name=f"{base}_mean"),
                helper.make_node("Sub", [x, t["mu"]], [t["xc"]], name=f"{base}_centre"),
                helper.make_node("Mul", [t["xc"], t["xc"]], [t["sq"]], name=f"{base}_square"),
                helper.make_node("ReduceMean", [t["sq"]], [t["var"]], axes=axes, keepdims=1,
                                 name=f"{base}_var"),
                helper.make_node("Add", [t["var"], g.add_const(f"{base}_eps",
                                 np.array(eps, np.float32))], [t["ve"]], name=f"{base}_eps"),
                helper.make_node("Sqrt", [t["ve"]], [t["sd"]], name=f"{base}_sqrt"),
                helper.make_node("Div", [t["xc"], t["sd"]], [t["ys"]], name=f"{base}_norm"),
                helper.make_node("Mul", [t["ys"], n.input[1]], [t["y"] if has_bias else out],
                                 name=f"{base}_scale"),
            ]  # fmt: skip
            if has_bias:
                nodes.append(
                    helper.make_node("Add", [t["y"], n.input[2]], [out], name=f"{base}_bias")
                )
            g.replace_nodes([n], nodes, at=n)
            done.append(f"{n.name}: axes {axes}")
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [n.name for n in self.requires(g)]
        return f"LayerNormalization left: {', '.join(left[:3])}" if left else None


class HardSwishRelu6(Rewrite):
    """HardSwish → ``(x · ⅙) · Relu6(x + 3)`` (MUL, ADD with a fused RELU6, MUL).

    onnx2tf lowers HardSwish to TFLite's HARD_SWISH, which has int8 kernels but no int16x8
    one in TFLiteConverter ("Quantization to 16x8-bit not yet supported for op:
    HARD_SWISH"): MobileNetV3 and LCNet cannot take int16 activations at all, and a mixed
    int8/int16 model cannot put the tensors around a HARD_SWISH into int16. MUL (by a
    constant and by a tensor) and ADD with a fused RELU6 have int16x8 kernels in
    TFLiteConverter, LiteRT, tflite-micro and ``edgedeploy compile``.

    The order matters: TFLiteConverter fuses ``x · (Relu6(x + 3) · ⅙)`` and
    ``(x · Relu6(x + 3)) · ⅙`` straight back into HARD_SWISH (measured with its
    2.19 optimizer); ``(x · ⅙) · Relu6(x + 3)`` it leaves alone. A tiny int16x8 conversion
    in tests/host/test_arch_coverage.py checks that no HARD_SWISH comes back.

    Not in :data:`~toolchain.convert.rewrites.DEFAULT`: in int8 the HARD_SWISH kernel is one
    op with its own fixed-point gate; the strategy adds this rewrite to int16x8 attempts
    (:data:`~toolchain.convert.rewrites.INT16`), and mixed precision may take it (see
    :data:`~toolchain.convert.rewrites.MIXED`)."""

    name = "hardswish-relu6"
    exact = "exact up to float rounding"
    purpose = "HardSwish -> (x / 6) * Relu6(x + 3) (int16x8 has no HARD_SWISH kernel)"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        """``(nodes, x, out)``: a HardSwish node, or ``x · HardSigmoid(x)`` with the
        HardSwish constants (α = ⅙, β = ½; the HardSigmoid read by that Mul only)."""
        found: list[Any] = []
        for n in g.nodes:
            if n.op_type == "HardSwish":
                found.append(([n], n.input[0], n.output[0]))
            elif n.op_type == "Mul" and len(n.input) == 2:
                for a, b in (n.input, n.input[::-1]):
                    hs = g.producer.get(b)
                    if (
                        hs is not None
                        and hs.op_type == "HardSigmoid"
                        and hs.input[0] == a
                        and abs(float(attr(hs, "alpha", 0.2)) - 1.0 / 6.0) < 1e-6
                        and abs(float(attr(hs, "beta", 0.5)) - 0.5) < 1e-6
                        and g.only_consumer(b) is not None
                    ):
                        found.append(([hs, n], a, n.output[0]))
                        break
        return found

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for old, x, out in matches:
            n = old[-1]
            base = n.name + "_r6"
            t = [g.fresh(f"{base}_{i}") for i in range(3)]
            nodes = [
                helper.make_node("Mul", [x, g.add_const(f"{base}_d", np.array(1.0 / 6.0,
                                 np.float32))], [t[0]], name=f"{base}_sixth"),
                helper.make_node("Add", [x, g.add_const(f"{base}_three", np.array(3.0,
                                 np.float32))], [t[1]], name=f"{base}_shift"),
                helper.make_node("Clip", [t[1], g.add_const(f"{base}_lo", np.array(0.0,
                                 np.float32)), g.add_const(f"{base}_hi", np.array(6.0,
                                 np.float32))], [t[2]], name=f"{base}_relu6"),
                helper.make_node("Mul", [t[0], t[2]], [out], name=f"{base}_mul"),
            ]  # fmt: skip
            g.replace_nodes(old, nodes, at=n)
            what = "HardSwish" if len(old) == 1 else "x * HardSigmoid(x)"
            done.append(f"{n.name} ({what}): (x / 6) * relu6(x + 3)")
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [m[0][-1].name for m in self.requires(g)]
        return f"HardSwish left: {', '.join(left[:3])}" if left else None
