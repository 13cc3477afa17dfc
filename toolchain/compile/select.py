"""Kernel selection: per layer, at compile time, the kernel that suits the target's CPU.

:mod:`.lower` turns every operator into a call of the portable reference-order kernel
(``edc_conv``, ``edc_dwconv``, ``edc_fc``: plain C, bit-exact with TFLM's reference kernels).
:func:`specialize` then swaps in the fast kernels where they apply, re-laying out the layer's
constants for them:

* ``CONV_2D`` (one group) → ``edc_conv_fast_s8``: im2col of two output pixels into an arena
  scratch buffer, a 2×2 block (two pixels × two output channels) of dual 16-bit MACs, weights
  pair-interleaved and zero-padded to a multiple of 4, the input offset folded into the bias
  and padding filled with the input zero point (so it contributes nothing, as in TFLM).
* ``DEPTHWISE_CONV_2D`` with depth multiplier 1 → ``edc_dwconv_fast_s8``: four channels per
  step, weights in TFLite's [k_h][k_w][channels] order.
* ``FULLY_CONNECTED`` → ``edc_fc_fast_s8``: four rows per step, weights row-interleaved.

The fast kernels' SIMD steps (``edc_simd.h``) are single DSP instructions on cores with the
DSP extension (Cortex-M4/M7/M33/M55) and portable C elsewhere, with identical results; the
policy ``"auto"`` uses them where the target profile says ``dsp = true`` and on the Cortex-M3
(portable C, measured twice as fast as the reference-order kernels there). Every kernel,
fast or not, is bit-exact with TFLM: int32 accumulation is exact, so only the order of the
additions changes, and the requantization is TFLM's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from toolchain.compile import quant
from toolchain.compile.ir import ConstArray, FieldValue, Graph, Op
from toolchain.errors import UsageError

if TYPE_CHECKING:
    from toolchain.targets import Target

#: ``kernels=`` values: auto (see :func:`wants_fast`), fast (everywhere), ref (never)
POLICIES = ("auto", "fast", "ref")


#: cores without the DSP extension where the fast kernels' portable C was measured faster
#: than the reference-order kernels (KWS on QEMU lm3s6965evb: 12.44 M vs 26.60 M
#: instructions); M0/M0+ (no unaligned loads, no 32x32->64 multiply) were not measured
PORTABLE_FAST_CORES = frozenset({"cortex-m3"})


#: cores whose 3x3 depthwise windows run row by row (``rolled`` in edc_dwconv_fast.h), measured
#: in QEMU with our kernels, no split execution: on the M4 (mps2-an386) person_detect 21.86 M ->
#: 21.44 M instructions (its depthwise layers 7..9 % fewer); the M7 (mps2-an500, KWS 6.92 M
#: unrolled vs 6.98 M rolled) and the M3 (lm3s6965evb, KWS 12.29 M vs 12.46 M) keep nine taps
#: unrolled. Without a target (host builds, tests) the rolled form is used.
ROLLED_DW_CORES = frozenset({"cortex-m4"})


def rolled_dw(target: str | Target | None) -> bool:
    """Whether the fast depthwise kernel runs 3x3 windows row by row on ``target``'s core."""
    if target is None:
        return True
    from toolchain.targets import load_target

    return (load_target(target) if isinstance(target, str) else target).cpu.core in ROLLED_DW_CORES


def wants_fast(target: str | Target | None) -> bool:
    """The ``auto`` policy: fast kernels on cores with the DSP extension (one instruction per
    SIMD step) and on :data:`PORTABLE_FAST_CORES`; the reference-order kernels elsewhere
    (host builds, no target, M0/M0+). ``target``: a profile, or its name or .toml path."""
    if target is None:
        return False
    from toolchain.targets import load_target

    cpu = (load_target(target) if isinstance(target, str) else target).cpu
    return bool(cpu.dsp) or cpu.core in PORTABLE_FAST_CORES


def _i32(values: np.ndarray, what: str) -> ConstArray | None:
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < -(2**31) or v.max() > 2**31 - 1):
        return None  # keep the reference kernel: the folded constant does not fit
    return ConstArray("int32_t", v.astype(np.int32), what)


def _small_shift(bound: np.ndarray, shift: object) -> tuple[int, ConstArray]:
    """(small_acc, shifts) for the fast kernels: (1, shifts for edc_requant_small) when every
    channel's accumulator bound allows it (|acc| * 2^max(shift, 0) < 2^29), else (0, the
    shifts unchanged: the kernel then uses the general edc_requant).

    Right shifts beyond 30 become 30: with |acc| < 2^29 the doubling high multiply's result
    is below 2^29 in magnitude too, so dividing it by 2^30 or more rounds to 0 either way
    (TFLM gives such shifts to channels whose multiplier underflows)."""
    assert isinstance(shift, ConstArray)
    raw = shift.values.astype(np.int64).reshape(-1)
    s = np.full(bound.shape, int(raw[0]), np.int64) if raw.size == 1 else raw
    if not np.all(bound.astype(np.float64) * np.exp2(np.maximum(s, 0)) < 2.0**29):
        return 0, shift
    return 1, ConstArray("int8_t", np.maximum(raw, -30).astype(np.int8), "shift")


def _per_channel(values: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(values).reshape(-1)
    return np.broadcast_to(v, (n,)).copy() if v.size == 1 else v


def dead_channel_values(
    op: Op, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Per output channel of a convolution, the int8 output of a channel whose weights are all
    zero: its accumulator is the bias alone at every pixel (TFLM adds
    ``(x + in_offset) * 0``), requantized and clamped exactly as TFLM's reference kernel does.
    Only the dead channels' entries are meaningful (the others are the same formula)."""
    f = op.fields
    oc = int(np.asarray(bias).size)
    m, s = _per_channel(mult, oc), _per_channel(shift, oc)
    out_offset, lo, hi = f["out_offset"], f["act_min"], f["act_max"]
    assert isinstance(out_offset, int) and isinstance(lo, int) and isinstance(hi, int)
    vals = [
        min(
            hi,
            max(lo, quant.multiply_by_quantized_multiplier(int(b), int(mm), int(ss)) + out_offset),
        )
        for b, mm, ss in zip(np.asarray(bias).reshape(-1), m, s, strict=True)
    ]
    return np.asarray(vals, np.int8)


def _conv_fast(op: Op) -> bool:
    f = op.fields
    if f["groups"] != 1:
        return False
    w = f["weights"]
    assert isinstance(w, ConstArray)
    oc, kh, kw, ic = w.values.shape
    k = kh * kw * ic
    k4 = -(-k // 4) * 4
    flat = w.values.reshape(oc, k).astype(np.int64)
    in_offset = f["in_offset"]
    assert isinstance(in_offset, int)
    pre = f.get("bias_folded")  # newer lowering: folded already, plain bias maybe dropped
    if isinstance(pre, ConstArray):
        folded: ConstArray | None = pre
    else:
        bias = f["bias"].values.astype(np.int64) if isinstance(f["bias"], ConstArray) else 0
        folded = _i32(bias + in_offset * flat.sum(axis=1), "bias (input offset folded)")
    if folded is None:
        return False
    mult, shift_all = f["mult"], f["shift"]
    assert isinstance(mult, ConstArray) and isinstance(shift_all, ConstArray)
    # a layer whose filters are all zero keeps channel 0 as its one computed channel (its
    # result is its constant, exactly), so that no array is empty
    live_idx = np.flatnonzero(np.any(flat != 0, axis=1)) if flat.any() else np.zeros(1, np.int64)
    live = live_idx.size < oc  # dead filters: drop them (see edc_conv_fast.h)
    extra: dict[str, FieldValue] = {}
    if live:
        fill = dead_channel_values(op, folded.values, mult.values, shift_all.values)
        flat = flat[live_idx]
        w_live = w.values.reshape(oc, k)[live_idx]
        folded = ConstArray("int32_t", folded.values[live_idx], folded.what)
        mult = ConstArray("int32_t", _per_channel(mult.values, oc)[live_idx], mult.what)
        shift_all = ConstArray("int8_t", _per_channel(shift_all.values, oc)[live_idx], "shift")
        extra = {
            "live_c": int(live_idx.size),
            "ch": ConstArray("uint16_t", live_idx.astype(np.uint16), "live channels"),
            "fill": ConstArray("int8_t", fill, "dead channels' outputs"),
        }
    else:
        w_live = w.values.reshape(oc, k)
    n = int(w_live.shape[0])
    # inputs are int8 (padding too: the zero point), so |acc| <= |bias'| + 128 * sum|w|
    bound = np.abs(folded.values.astype(np.int64)) + 128 * np.abs(flat).sum(axis=1)
    small, shift = _small_shift(bound, shift_all)
    oc2 = n + (n & 1)
    padded = np.zeros((oc2, k4), np.int8)
    padded[:n, :k] = w_live
    inter = padded.reshape(oc2 // 2, 2, k4 // 4, 4).transpose(0, 2, 1, 3)
    fields = {
        "batches": f["batches"], "in_h": f["in_h"], "in_w": f["in_w"], "in_c": f["in_c"],
        "out_h": f["out_h"], "out_w": f["out_w"], "out_c": f["out_c"],
        "k_h": kh, "k_w": kw, "k4": k4,
        "stride_h": f["stride_h"], "stride_w": f["stride_w"],
        "dil_h": f["dil_h"], "dil_w": f["dil_w"], "pad_h": f["pad_h"], "pad_w": f["pad_w"],
        "pad_value": -in_offset,
        "out_offset": f["out_offset"], "act_min": f["act_min"], "act_max": f["act_max"],
        "small_acc": small,
        "weights": ConstArray("int8_t", np.ascontiguousarray(inter).reshape(-1),
                              "weights (channel pairs, word-interleaved)"),
        "bias": folded, "mult": mult, "shift": shift, **extra,
    }  # fmt: skip
    func = "edc_conv_fast_live_s8" if live else "edc_conv_fast_s8"
    op.kernel, op.func, op.struct = "edc_conv_fast", func, "edc_conv_fast_params"
    op.fields = fields
    op.scratch_bytes = 2 * k4 if ic % 4 == 0 else 3 * k4
    return True


def _dwconv_fast(op: Op) -> bool:
    f = op.fields
    w = f["weights"]
    assert isinstance(w, ConstArray)
    if f["depth_mult"] != 1 and f["in_c"] == 1:
        # one input channel (e.g. a grayscale stem): a depthwise conv is an ordinary conv
        oc, kh, kw = w.values.shape
        conv = {k: v for k, v in f.items() if k not in ("depth_mult",)}
        conv.update(out_c=oc, groups=1, weights=ConstArray(
            "int8_t", w.values.reshape(oc, kh, kw, 1), "weights"))  # fmt: skip
        saved = op.fields
        op.fields = conv
        if _conv_fast(op):
            return True
        op.fields = saved
        return False
    if f["depth_mult"] != 1:
        return False
    c, kh, kw = w.values.shape  # [channels][k_h][k_w]
    bias = f["bias"]
    pre = f.get("bias_folded")  # newer lowering may drop the plain bias: recover it exactly
    if isinstance(pre, ConstArray):
        in_offset = f["in_offset"]
        assert isinstance(in_offset, int)
        sums = w.values.reshape(c, -1).astype(np.int64).sum(axis=1)
        bias = _i32(pre.values.astype(np.int64) - in_offset * sums, "bias")
        if bias is None:
            return False
    # |x + in_offset| <= 255
    plain = bias.values.astype(np.int64) if isinstance(bias, ConstArray) else 0
    bound = np.abs(plain) + 255 * np.abs(w.values.reshape(c, -1).astype(np.int64)).sum(axis=1)
    small, shift = _small_shift(np.broadcast_to(bound, (c,)), f["shift"])
    c4 = -(-c // 4) * 4
    padded = np.zeros((c4, kh * kw), np.int8)
    padded[:c] = w.values.reshape(c, kh * kw)
    # [channel group of 4][tap][4 channels]: a group's taps are consecutive words
    hwc = np.ascontiguousarray(padded.reshape(c4 // 4, 4, kh * kw).transpose(0, 2, 1)).reshape(-1)
    fields = {
        "batches": f["batches"], "in_h": f["in_h"], "in_w": f["in_w"], "channels": c,
        "out_h": f["out_h"], "out_w": f["out_w"], "k_h": kh, "k_w": kw,
        "stride_h": f["stride_h"], "stride_w": f["stride_w"],
        "dil_h": f["dil_h"], "dil_w": f["dil_w"], "pad_h": f["pad_h"], "pad_w": f["pad_w"],
        "in_offset": f["in_offset"], "out_offset": f["out_offset"],
        "act_min": f["act_min"], "act_max": f["act_max"], "small_acc": small,
        "weights": ConstArray("int8_t", hwc, "weights (channel fours, taps, 4)"),
        "bias": bias, "mult": f["mult"], "shift": shift,
    }  # fmt: skip
    op.kernel, op.func = "edc_dwconv_fast", "edc_dwconv_fast_s8"
    op.struct = "edc_dwconv_fast_params"
    op.fields = fields
    return True


def fc_layout(w: np.ndarray) -> np.ndarray:
    """FC weights [rows][depth] in edc_fc_fast's order (see edc_fc_fast.h)."""
    rows, n = w.shape
    n4 = n & ~3
    parts: list[np.ndarray] = []
    r4 = rows & ~3
    for r in range(0, r4, 4):
        g = w[r : r + 4]
        parts.append(g[:, :n4].reshape(4, n4 // 4, 4).transpose(1, 0, 2).reshape(-1))
        parts.append(g[:, n4:].reshape(-1))
    for r in range(r4, rows):
        parts.append(w[r])
    return np.ascontiguousarray(np.concatenate(parts) if parts else w.reshape(-1))


#: Under ``auto``, when every fully connected layer of a model has at most this many weights,
#: they keep the plain kernel: the fast one would save < ~2 K instructions and costs ~0.4 KB
#: more flash (measured on IC's 64->10 classifier: 96,232 -> 95,864 B). A model with a larger
#: one links the fast kernel anyway and uses it for all (AD's 128->8: plain +13 K
#: instructions). ``fast`` swaps every layer.
FC_FAST_MIN_WEIGHTS = 4096


def _small_fc(op: Op) -> bool:
    w = op.fields.get("weights")
    return isinstance(w, ConstArray) and w.values.size <= FC_FAST_MIN_WEIGHTS


def _fc_fast(op: Op) -> bool:
    f = dict(op.fields)
    w = f["weights"]
    b = f["bias"]
    assert isinstance(w, ConstArray) and isinstance(b, ConstArray)
    bound = np.abs(b.values.astype(np.int64)) + 128 * np.abs(w.values.astype(np.int64)).sum(axis=1)
    small, shift = _small_shift(bound, f["shift"])
    f["shift"], f["small_acc"] = shift, small
    f["weights"] = ConstArray("int8_t", fc_layout(w.values), "weights (rows in fours)")
    op.kernel, op.func, op.struct = "edc_fc_fast", "edc_fc_fast_s8", "edc_fc_fast_params"
    op.fields = f
    return True


#: the int8 reference kernels each fast kernel replaces (int16 layers keep theirs)
_FAST = {"edc_conv_s8": _conv_fast, "edc_dwconv_s8": _dwconv_fast, "edc_fc_s8": _fc_fast}


def specialize(graph: Graph, *, kernels: str = "auto", target: str | Target | None = None) -> Graph:
    """Swap fast kernels in (in place) by ``kernels`` policy; returns ``graph``.

    ``auto``: see :func:`wants_fast`; ``fast``: everywhere (the SIMD steps
    are then portable C: the host tests use this); ``ref``: keep the reference-order kernels.
    """
    if kernels not in POLICIES:
        raise UsageError(f"unknown kernel policy {kernels!r}", hint=", ".join(POLICIES))
    if kernels == "ref" or (kernels == "auto" and not wants_fast(target)):
        return graph
    rolled = int(rolled_dw(target))
    fcs = [op for op in graph.ops if op.func == "edc_fc_s8" and op.kernel and not op.parts]
    plain_fc = kernels == "auto" and all(_small_fc(op) for op in fcs)
    for op in graph.ops:
        fn = _FAST.get(op.func)
        if fn is not None and op.kernel and not op.parts:
            if plain_fc and fn is _fc_fast:
                continue
            fn(op)
            if op.func == "edc_dwconv_fast_s8":
                op.fields["rolled"] = rolled
    return graph
