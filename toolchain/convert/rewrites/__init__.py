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
gelu-builtin              exact GELU (Erf) → Gelu → TFLite GELU int8             exact fn
gelu-tanh (fallback)      exact GELU (Erf) → tanh form (MUL/ADD/TANH)             ≤ 4.7e-4
div-by-constant           x / c → x · (1/c) (no float DIV island)                ≤ 1 ulp
channel-shuffle-gather    reshape/transpose/reshape shuffle → channel Gather     bit-exact
tokens-channels-last      flatten(2).transpose(1,2) ↔ channels-last reshapes     bit-exact
========================  =====================================================  ==========
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
    "gelu-builtin",
    "div-by-constant",
    "channel-shuffle-gather",
    "tokens-channels-last",
    "patches-channels-last",
    "attention-heads",
)
#: rewrites that are not in DEFAULT: fallbacks the strategy swaps in
FALLBACK: dict[str, str] = {"gelu-builtin": "gelu-tanh"}
KNOWN: tuple[str, ...] = (*DEFAULT, *FALLBACK.values())

__all__ = ["DEFAULT", "FALLBACK", "KNOWN", "registry", "rewrite_onnx"]


def registry() -> dict[str, type[Rewrite]]:
    """Rewrite name → class (imports onnx)."""
    from toolchain.convert.rewrites.attention import AttentionHeads
    from toolchain.convert.rewrites.basic import (
        BatchNormIntoNextConv,
        DivByConstant,
        FoldConstants,
        GeluBuiltin,
        GeluTanh,
        MaxPoolFinitePad,
    )
    from toolchain.convert.rewrites.islands import ChannelsLastIsland
    from toolchain.convert.rewrites.layout import (
        ChannelPermutation,
        PatchesChannelsLast,
        TokensChannelsLast,
    )

    classes: tuple[type[Rewrite], ...] = (
        FoldConstants,
        MaxPoolFinitePad,
        BatchNormIntoNextConv,
        ChannelsLastIsland,
        GeluBuiltin,
        GeluTanh,
        DivByConstant,
        ChannelPermutation,
        TokensChannelsLast,
        PatchesChannelsLast,
        AttentionHeads,
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
