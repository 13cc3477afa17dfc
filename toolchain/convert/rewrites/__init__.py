"""Pre-conversion ONNX rewrites: each exactly equivalent, checked, and recorded.

The converter applies :data:`DEFAULT` (in that order) to the exported ONNX model before
onnx2tf (see :mod:`toolchain.convert.strategy`). Every rewrite follows the
requires / call / ensures contract of :mod:`toolchain.convert.rewrites.base` and is checked
against the model before it with onnxruntime; one that fails is undone and reported.

========================  =====================================================  ==========
name                      what                                                   equivalence
========================  =====================================================  ==========
fold-constants            onnxsim in-process (shape-derived subgraphs)           exact
maxpool-finite-pad        padded/ceil max pool → Pad(0 or edge) + MaxPool        bit-exact
bn-into-next-conv         BatchNorm before an unpadded conv → into its weights   ≤ 1e-4 rel
channels-last-island      permute → LayerNorm/Linear/GELU → permute (ConvNeXt)   ≤ 1e-4 rel
                          → NCHW ops (channel LayerNorm, 1×1 convs)
layernorm-centred (int16) LayerNorm → centred mean/var ops (no                 ≤ 1e-4 rel
                          SQUARED_DIFFERENCE: none in int16x8)
gelu-tanh                 exact GELU (Erf) → tanh form (MUL/ADD/TANH)             ≤ 4.7e-4
gelu-builtin (opt-in)     exact GELU (Erf) → Gelu → TFLite GELU int8 (LiteRT     exact fn
                          only: TFLM has no GELU kernel)
hardswish-relu6 (int16)   HardSwish, x · HardSigmoid(x) → (x/6) · Relu6(x + 3)   ≤ 1e-5 rel
                          (no int16x8 HARD_SWISH kernel; this order is one
                          TFLiteConverter does not fuse back into HARD_SWISH)
hardsigmoid-relu6         HardSigmoid → Relu6(6αx + 6β)/6 (TFLM has no           ≤ 1e-5 rel
                          RELU_0_TO_1 kernel)
div-by-constant           x / c → x · (1/c) (no float DIV island)                ≤ 1 ulp
channel-shuffle-gather    reshape/transpose/reshape shuffle → channel Gather     bit-exact
tokens-channels-last      flatten(2).transpose(1,2) ↔ channels-last reshapes     bit-exact
patches-channels-last     MobileViT unfold/fold → Reshape/Split/Concat           bit-exact
                          (v1 ``(P, N, C)`` and v2 ``(1, C, P, N)`` layouts)
groupnorm-channels-last   GroupNorm(1, C) reshape/InstanceNorm/reshape → 4-D     ≤ 1e-4 rel
                          ReduceMean over C, H, W (no flatten, no TRANSPOSE);
                          its affine → a depthwise 1×1 Conv
attention-heads           multi-head attention → per-head Slice/MatMul, Concat   ≤ 1e-5 rel
scale-into-linear         scalar Mul on slices of a Linear's output (attention   ≤ 1e-5 rel
                          q·√s, k·√s) → that Linear's W and b columns
class-token-stream        ViT residual stream → class row and patch rows as two  ≤ 1e-4 rel
                          tensors (own int8 scales; norms per part, concat)
========================  =====================================================  ==========

After the rewrites, :func:`graph.annotate_shapes` records a static shape for every tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolchain.convert.rewrites.base import Rewrite, RewriteRecord

#: every rewrite, in the order they run (names only: importing them needs onnx)
DEFAULT: tuple[str, ...] = (
    "fold-constants",
    "maxpool-finite-pad",
    "bn-into-next-conv",
    "channels-last-island",
    "gelu-tanh",
    "hardsigmoid-relu6",
    "div-by-constant",
    "channel-shuffle-gather",
    "tokens-channels-last",
    "patches-channels-last",
    "groupnorm-channels-last",
    "attention-heads",
    "scale-into-linear",
    "class-token-stream",
)
#: rewrites that are not in DEFAULT: fallbacks the strategy swaps in when onnx2tf fails
#: with the first one (``--rewrites ...,gelu-builtin,...`` asks for the GELU builtin)
FALLBACK: dict[str, str] = {"gelu-builtin": "gelu-tanh"}
#: rewrites added to every int16x8 attempt (its kernels need them), not to int8 ones
INT16: tuple[str, ...] = ("layernorm-centred", "hardswish-relu6")
#: rewrites an int8 model with int16x8 islands (mixed precision) may take: an int16
#: candidate must not contain an op without an int16x8 kernel. Empty for now; adding
#: "hardswish-relu6" is the one-line decision (its int8 cost: benchmarks/README.md,
#: peer-hswish section)
MIXED: tuple[str, ...] = ()
#: every rewrite name, in the order they run
KNOWN: tuple[str, ...] = (
    *DEFAULT[: DEFAULT.index("gelu-tanh")],
    "layernorm-centred",
    "gelu-builtin",
    *DEFAULT[DEFAULT.index("gelu-tanh") : DEFAULT.index("hardsigmoid-relu6")],
    "hardswish-relu6",
    *DEFAULT[DEFAULT.index("hardsigmoid-relu6") :],
)


def for_activations(names: Sequence[str], activations: str) -> tuple[str, ...]:
    """``names`` plus :data:`INT16` for int16x8 activations, plus :data:`MIXED` for
    ``"mixed"`` (in :data:`KNOWN` order then); ``names`` unchanged otherwise, and when no
    rewrites are asked for."""
    extra = {"int16": INT16, "mixed": MIXED}.get(activations, ())
    if not extra or not names:
        return tuple(names)
    wanted = set(names) | set(extra)
    return tuple(n for n in KNOWN if n in wanted)


__all__ = [
    "DEFAULT",
    "FALLBACK",
    "INT16",
    "KNOWN",
    "MIXED",
    "for_activations",
    "registry",
    "rewrite_onnx",
]


def registry() -> dict[str, type[Rewrite]]:
    """Rewrite name → class (imports onnx)."""
    from toolchain.convert.rewrites.attention import AttentionHeads
    from toolchain.convert.rewrites.basic import (
        BatchNormIntoNextConv,
        DivByConstant,
        FoldConstants,
        GeluBuiltin,
        GeluTanh,
        HardSigmoidRelu6,
        HardSwishRelu6,
        LayerNormCentred,
        MaxPoolFinitePad,
    )
    from toolchain.convert.rewrites.islands import ChannelsLastIsland
    from toolchain.convert.rewrites.layout import (
        ChannelPermutation,
        GroupNormChannelsLast,
        PatchesChannelsLast,
        TokensChannelsLast,
    )
    from toolchain.convert.rewrites.scale import ScaleIntoLinear
    from toolchain.convert.rewrites.tokens import ClassTokenStream

    classes: tuple[type[Rewrite], ...] = (
        FoldConstants,
        MaxPoolFinitePad,
        BatchNormIntoNextConv,
        ChannelsLastIsland,
        LayerNormCentred,
        GeluBuiltin,
        GeluTanh,
        HardSigmoidRelu6,
        HardSwishRelu6,
        DivByConstant,
        ChannelPermutation,
        TokensChannelsLast,
        PatchesChannelsLast,
        GroupNormChannelsLast,
        AttentionHeads,
        ScaleIntoLinear,
        ClassTokenStream,
    )
    return {c.name: c for c in classes}


def rewrite_onnx(data: bytes, names: Sequence[str]) -> tuple[bytes, list[RewriteRecord]]:
    """Apply the named rewrites in order; the new model bytes and one record per rewrite.

    Raises KeyError for an unknown name (callers validate names against :data:`DEFAULT`)."""
    import onnx

    from toolchain.convert.rewrites.base import apply
    from toolchain.convert.rewrites.graph import annotate_shapes

    table = registry()
    model = onnx.load_from_string(data)
    records = []
    for name in names:
        model, rec = apply(model, table[name]())
        records.append(rec)
    if not any(r.applied for r in records):
        return data, records
    annotate_shapes(model)  # onnx2tf needs a shape for every tensor (see annotate_shapes)
    return model.SerializeToString(), records
