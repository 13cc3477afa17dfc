"""Converter coverage of mobile-architecture failure classes (issue 8), host tier.

Fast tests (no TensorFlow): every ONNX rewrite on a small exported model (structure gone,
onnxruntime equivalence), a broken rewrite is undone, cross-layer equalization is exact,
bias correction, the fallback order of the strategy. Two real conversions (TF worker, small
inputs) prove the classes now give clean int8 graphs with an SQNR floor.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.onnx_export import onnx_bytes
from tests.support.onnx_export import op_counts as _ops
from toolchain.convert import equalize, rewrites, strategy
from toolchain.convert.options import QuantOptions
from toolchain.convert.rewrites.base import Rewrite, apply
from toolchain.convert.rewrites.graph import Graph
from toolchain.errors import FidelityError, Onnx2TfError, QuantizationError, UsageError
from toolchain.zoo import mobile


def _onnx(model: nn.Module, *shape: int) -> bytes:
    return onnx_bytes(model.eval(), torch.randn(*shape))


def _rewrite(data: bytes, *names: str) -> tuple[bytes, dict[str, Any]]:
    new, recs = rewrites.rewrite_onnx(data, ["fold-constants", *names])
    return new, {r.name: r for r in recs}


class _Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(F.relu(self.conv(x)), 3, 2, 1)  # after ReLU: zero pad
        b = F.max_pool2d(self.conv(x), 3, 2, 1)  # may be negative: edge pad
        c = F.max_pool2d(self.conv(x), 3, 2, ceil_mode=True)  # ceil mode
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1)], 1)


def test_maxpool_padding_becomes_finite_and_exact() -> None:
    new, recs = _rewrite(_onnx(_Pools(), 1, 3, 14, 14), "maxpool-finite-pad")
    rec = recs["maxpool-finite-pad"]
    assert rec.applied == 3 and rec.max_rel_err == 0.0
    assert any("with 0" in d for d in rec.details) and any("edge" in d for d in rec.details)
    # the ceil-mode pool's one extra column is TFLite's SAME padding: no Pad node for it
    assert any("SAME" in d for d in rec.details)
    nodes = onnx.load_from_string(new).graph.node
    assert sum(n.op_type == "Pad" for n in nodes) == 2
    for node in nodes:
        if node.op_type == "MaxPool":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert not any(attrs.get("pads", [])) and not attrs.get("ceil_mode", 0)


def test_exact_gelu_becomes_one_gelu_node() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU(), nn.Conv2d(4, 4, 1), nn.GELU())
    data = _onnx(model, 1, 3, 8, 8)
    assert _ops(data)["Erf"] == 2
    new, recs = _rewrite(data, "gelu-builtin")
    ops = _ops(new)
    assert ops["Erf"] == 0 and ops["Gelu"] == 2
    assert recs["gelu-builtin"].max_rel_err is not None and recs["gelu-builtin"].max_rel_err < 1e-5
    # the tanh approximation is not an exact GELU: it is left alone
    tanh = _onnx(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU("tanh")), 1, 3, 8, 8)
    assert _rewrite(tanh, "gelu-builtin")[1]["gelu-builtin"].applied == 0


def test_gelu_tanh_fallback_is_a_close_approximation() -> None:
    data = _onnx(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU()), 1, 3, 8, 8)
    new, recs = _rewrite(data, "gelu-tanh")
    ops = _ops(new)
    # written as x * sigmoid(x * (2k + 2ka x^2)): no x^3 tensor, no Tanh
    assert ops["Erf"] == 0 and ops["Sigmoid"] == 1 and ops["Tanh"] == 0 and "Pow" not in ops
    err = recs["gelu-tanh"].max_rel_err
    assert err is not None and 0 < err < 1e-3
    assert "approximation" in recs["gelu-tanh"].exact


def test_attention_division_becomes_a_multiply_and_tokens_stay_channels_last() -> None:
    model = mobile.ConvAttention(dim=16).eval()
    data = _onnx(model, 1, 3, 32, 32)
    new, recs = _rewrite(data, "div-by-constant", "tokens-channels-last")
    assert _ops(data)["Div"] == 2 and _ops(new)["Div"] == 0
    assert recs["div-by-constant"].applied == 2
    assert recs["tokens-channels-last"].applied == 2  # to tokens and back
    g = Graph(onnx.load_from_string(new))
    perms = [list(n.attribute[0].ints) for n in g.nodes if n.op_type == "Transpose"]
    assert [0, 2, 3, 1] in perms and [0, 3, 1, 2] in perms


def test_channel_shuffle_becomes_a_gather() -> None:
    class Shuffle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return mobile.channel_shuffle(x, 4)

    data = _onnx(Shuffle(), 1, 8, 5, 5)
    new, recs = _rewrite(data, "channel-shuffle-gather")
    assert recs["channel-shuffle-gather"].applied == 1
    ops = _ops(new)
    assert ops["Transpose"] == 0 and ops["Gather"] == 1


def test_shape_derived_positional_embedding_folds() -> None:
    data = _onnx(mobile.ShapePosEmbed(dim=16), 1, 3, 32, 32)
    assert _ops(data)["Shape"] >= 1
    new, recs = _rewrite(data)
    ops = _ops(new)
    assert recs["fold-constants"].applied == 1
    assert not {"Shape", "Range", "Sin", "Cos", "ConstantOfShape"} & set(ops)


def _transposes(data: bytes) -> list[list[int]]:
    g = Graph(onnx.load_from_string(data))
    return [list(n.attribute[0].ints) for n in g.nodes if n.op_type == "Transpose"]


def test_attention_heads_become_slices_and_one_concat() -> None:
    data = _onnx(mobile.ConvAttention(dim=16).eval(), 1, 3, 32, 32)
    assert any(len(p) == 5 for p in _transposes(data))  # the head split
    new, recs = _rewrite(data, "div-by-constant", "tokens-channels-last", "attention-heads")
    rec = recs["attention-heads"]
    assert rec.applied == 2 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-5
    assert "2 heads of 8" in rec.details[0]
    # left: the tokens' NCHW<->NHWC pair (free in onnx2tf) and one k^T per head, which
    # TFLiteConverter folds into BATCH_MATMUL(adj_y)
    assert all(p in ([0, 2, 3, 1], [0, 3, 1, 2], [0, 2, 1]) for p in _transposes(new))
    ops = _ops(new)
    assert ops["Slice"] == 2 * 2 * 3 and ops["Concat"] == 2 and ops["Softmax"] == 4
    assert "Gather" not in ops


class _SdpaAttention(nn.Module):
    """timm's ViT attention: qkv.reshape.permute, unbind (Split + Squeeze in ONNX) and
    F.scaled_dot_product_attention (exported with q and kᵀ each scaled by √scale)."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


def test_sdpa_attention_with_unbind_becomes_per_head_slices() -> None:
    data = _onnx(_SdpaAttention(), 1, 9, 16)
    assert "Split" in _ops(data) and any(len(p) == 5 for p in _transposes(data))
    new, recs = _rewrite(data, "attention-heads")
    rec = recs["attention-heads"]
    assert rec.applied == 1 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-5
    assert all(p == [0, 2, 1] for p in _transposes(new))  # only each head's k^T
    ops = _ops(new)
    assert ops["Slice"] == 2 * 3 and ops["Softmax"] == 2 and "Split" not in ops


def test_hardsigmoid_becomes_relu6_and_a_scale() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Hardsigmoid(), nn.Conv2d(4, 4, 1))
    data = _onnx(model, 1, 3, 8, 8)
    assert _ops(data)["HardSigmoid"] == 1
    new, recs = _rewrite(data, "hardsigmoid-relu6")
    rec = recs["hardsigmoid-relu6"]
    assert rec.applied == 1 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-5
    ops = _ops(new)
    assert "HardSigmoid" not in ops and ops["Clip"] == 1


def test_layernorm_centred_has_no_squared_difference() -> None:
    """int16x8 LiteRT has no SQUARED_DIFFERENCE, which onnx2tf's LayerNorm lowering uses."""
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    data = _onnx(model, 1, 5, 8)
    assert _ops(data)["LayerNormalization"] == 1
    new, recs = _rewrite(data, "layernorm-centred")
    rec = recs["layernorm-centred"]
    assert rec.applied == 1 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-4
    ops = _ops(new)
    assert "LayerNormalization" not in ops and ops["ReduceMean"] == 2 and ops["Sub"] == 1
    assert rewrites.for_activations(rewrites.DEFAULT, "int8") == rewrites.DEFAULT
    assert "layernorm-centred" in rewrites.for_activations(rewrites.DEFAULT, "int16")
    assert rewrites.for_activations((), "int16") == ()  # --plain stays plain


def test_patch_unfold_and_fold_become_reshape_split_concat() -> None:
    block = mobile.MobileViTBlock(8, 16, depth=1).eval()
    data = _onnx(block, 1, 8, 8, 8)
    assert any(len(p) == 6 for p in _transposes(data))  # permute(0, 3, 5, 2, 4, 1)
    new, recs = _rewrite(data, "patches-channels-last")
    rec = recs["patches-channels-last"]
    assert rec.applied == 2 and rec.max_rel_err == 0.0
    assert any("unfold 2x2" in d for d in rec.details) and any("fold 2x2" in d for d in rec.details)
    assert not any(len(p) == 6 for p in _transposes(new))  # (the attention's are left)
    assert _ops(new)["Split"] >= 3


def test_convnext_block_becomes_nchw_ops() -> None:
    data = _onnx(nn.Sequential(mobile.ConvNeXtBlock(8), mobile.ConvNeXtBlock(8)), 1, 8, 6, 6)
    assert len(_transposes(data)) == 4 and _ops(data)["LayerNormalization"] == 2
    new, recs = _rewrite(data, "channels-last-island", "gelu-builtin")
    rec = recs["channels-last-island"]
    assert rec.applied == 2 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-4
    ops = _ops(new)
    assert not _transposes(new) and "LayerNormalization" not in ops and "MatMul" not in ops
    assert ops["Conv"] == 2 + 4 and ops["Gelu"] == 2  # two dw 7x7, four 1x1 (the Linears)


def test_island_with_an_outside_reader_is_left_alone() -> None:
    class Leak(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = F.relu(x.permute(0, 2, 3, 1))
            return y.permute(0, 3, 1, 2), y.sum(-1)  # y is also read channels-last

    new, recs = _rewrite(_onnx(Leak(), 1, 4, 3, 3), "channels-last-island")
    assert recs["channels-last-island"].applied == 0


def test_batchnorm_before_an_unpadded_conv_is_folded() -> None:
    class Down(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn1, self.c1 = nn.BatchNorm2d(4), nn.Conv2d(4, 6, 2, 2)
            self.bn2, self.c2 = nn.BatchNorm2d(6), nn.Conv2d(6, 6, 3, padding=1, groups=3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c2(self.bn2(F.relu(self.c1(self.bn1(x)))))

    m = mobile.realistic(Down(), 8, seed=0)
    new, recs = _rewrite(_onnx(m, 1, 4, 8, 8), "bn-into-next-conv")
    rec = recs["bn-into-next-conv"]
    assert rec.applied == 1 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-4
    # the BatchNorm before the padded conv stays (the padded border would see its shift)
    assert _ops(new)["BatchNormalization"] == 1


def test_a_rewrite_that_changes_the_model_is_undone() -> None:
    class Wrong(Rewrite):
        name = "wrong"

        def requires(self, g: Graph) -> list[Any]:
            return [n for n in g.nodes if n.op_type == "Relu"]

        def call(self, g: Graph, matches: list[Any]) -> list[str]:
            for n in matches:
                n.op_type = "Sigmoid"
            return ["relu -> sigmoid"]

    model = onnx.load_from_string(_onnx(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()), 1, 3, 4, 4))
    out, rec = apply(model, Wrong())
    assert out is model and rec.applied == 0
    assert rec.rejected is not None and "differ" in rec.rejected


def test_unknown_rewrite_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown rewrite"):
        strategy.Strategy(rewrites=("no-such-rewrite",))


# --- PyTorch techniques ----------------------------------------------------------------


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(F.relu(self.dw(F.relu(self.bn(self.c1(x))))))


def _unbalanced() -> nn.Module:
    torch.manual_seed(0)
    m = _Pair().eval()
    with torch.no_grad():
        m.c1.weight.mul_(torch.logspace(-2, 1, 8).view(8, 1, 1, 1))  # ranges over 3 decades
    return m


def test_cross_layer_equalization_is_exact_and_balances_ranges() -> None:
    m = _unbalanced()
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    gm, rec = equalize.apply(m, [x], equalize=True, bias_correction=False)
    assert rec["equalize"]["pairs"] == 2 and rec["equalize"]["max_rel_err"] < 1e-4
    with torch.no_grad():
        ref, got = m(torch.from_numpy(x)), gm(torch.from_numpy(x))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    convs = [mod for mod in gm.modules() if isinstance(mod, nn.Conv2d)]
    r1 = convs[0].weight.abs().flatten(1).amax(1)
    spread_before = float(
        m.c1.weight.abs().flatten(1).amax(1).max() / m.c1.weight.abs().flatten(1).amax(1).min()
    )
    assert float(r1.max() / r1.min()) < spread_before / 10


def test_bias_correction_removes_the_mean_shift_of_int8_weights() -> None:
    m = _unbalanced()
    x = np.abs(np.random.default_rng(1).standard_normal((16, 3, 8, 8))).astype(np.float32)
    gm, rec = equalize.apply(m, [x], equalize=False, bias_correction=True)
    assert rec["bias_correction"]["layers"] == 3

    def quantized(model: nn.Module) -> nn.Module:
        q = copy.deepcopy(model)
        with torch.no_grad():
            for mod in q.modules():
                if isinstance(mod, nn.Conv2d):
                    s = mod.weight.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 127
                    mod.weight.copy_(torch.round(mod.weight / s) * s)
        return q

    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = m(xt)
        plain_shift = (quantized(m)(xt) - ref).mean((0, 2, 3)).abs().sum()
        corrected_shift = (quantized(gm)(xt) - ref).mean((0, 2, 3)).abs().sum()
    assert corrected_shift < plain_shift


def test_mse_range_trades_rounding_against_clipping() -> None:
    from toolchain.convert.calibrate import _best_range

    def best(values: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
        hist, _ = np.histogram(values, bins=2048, range=(lo, hi))
        found = _best_range(hist.astype(float), lo, hi)
        assert found is not None
        return found

    rng = np.random.default_rng(0)
    bulk = rng.standard_normal(100_000)
    # two stray values at ±6.5: clipping them costs less than the coarser step for all
    lo, hi = best(np.concatenate([bulk, [6.5, -6.5]]), -6.5, 6.5)
    assert -6.0 < lo < -3.5 and 3.5 < hi < 6.0
    # a ReLU output keeps zero as its lower end
    lo, hi = best(np.abs(np.concatenate([bulk, [6.5]])), 0.0, 6.5)
    assert lo == 0.0 and 3.5 < hi < 6.0
    # many large values are worth their range: it is kept
    lo, hi = best(rng.uniform(-1, 1, 100_000), -1.0, 1.0)
    assert lo < -0.95 and hi > 0.95


def test_unknown_calibration_range_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="calibration range 'p99' is not known"):
        strategy.Strategy(calibration_range="p99")


# --- strategy: attempts and fallbacks ----------------------------------------------------


def test_int16_options_follow_the_io_types() -> None:
    assert strategy.int16_options(QuantOptions()).io_input == "int16"
    f = strategy.int16_options(QuantOptions(input_dtype="float32"))
    assert f is not None and f.io_input == "float32" and f.io_output == "int16"
    assert strategy.int16_options(QuantOptions(input_dtype="uint8")) is None


def test_fallbacks_are_tried_in_order_and_reported() -> None:
    seen: list[strategy.Attempt] = []

    def once(att: strategy.Attempt) -> str:
        seen.append(att)
        if len(seen) == 1:
            raise Onnx2TfError("onnx2tf failed at /blocks/attn/MatMul")
        if att.options.activations in ("int8", "mixed"):
            raise FidelityError("SQNR 25 dB below 30")
        return "ok"

    assert strategy.run(strategy.Strategy(), QuantOptions(), 30.0, once) == "ok"
    assert seen[0].onnx2tf == {"not_use_onnxsim": True}
    assert seen[1].onnx2tf.get("enable_batchmatmul_unfold") is True
    # a missed gate: gptq weight rounding first (still int8), then mixed precision (int16
    # islands, keeping the rounding), then int16x8 everywhere
    assert seen[2].options.activations == "int8" and seen[2].weight_rounding == "gptq"
    assert seen[3].options.activations == "mixed" and seen[3].weight_rounding == "gptq"
    assert seen[4].options.activations == "int16" and "int16" in seen[4].why
    # the mixed attempt has the int16x8 attempt's interface (int16 I/O, not int8)
    assert seen[3].options.io_input == seen[4].options.io_input == "int16"
    # the int16x8 attempt gets the rewrites its kernels need; the int8 ones did not
    assert "layernorm-centred" in seen[4].rewrites and "layernorm-centred" not in seen[0].rewrites
    assert [f["attempt"] for f in seen[4].failed_before] == [a.why for a in seen[:4]]
    # asked for the GELU builtin: its tanh form is tried first, then the onnx2tf options
    builtin = tuple("gelu-builtin" if n == "gelu-tanh" else n for n in rewrites.DEFAULT)
    tried = strategy.attempts(strategy.Strategy(rewrites=builtin), QuantOptions())
    assert tried[1].rewrites == rewrites.DEFAULT and tried[1].onnx2tf == tried[0].onnx2tf
    assert [a.onnx2tf for a in tried[2:]] == [
        {"not_use_onnxsim": True, **alt} for alt in strategy.ONNX2TF_ALTERNATIVES
    ]


def test_a_missed_accuracy_drop_falls_back_to_int16_and_says_what_int8_measured() -> None:
    seen: list[strategy.Attempt] = []

    def once(att: strategy.Attempt) -> str:
        seen.append(att)
        if att.options.activations in ("int8", "mixed"):
            exc = FidelityError("int8 accuracy 37.40% is 18.20 points below float (55.60%), "
                                "more than --max-accuracy-drop 0.5")  # fmt: skip
            exc.measured = {"tflite_bytes": 1000, "arena_bytes": 64, "accuracy_drop": 18.2}
            raise exc
        return "ok"

    # only --max-accuracy-drop given (no --min-sqnr): int16x8 is still tried
    assert strategy.run(strategy.Strategy(), QuantOptions(), None, once, 0.5) == "ok"
    assert seen[-1].options.activations == "int16"
    assert "--max-accuracy-drop" in seen[-1].why
    assert seen[-1].record()["precision_fallback"]["tflite_bytes"] == 1000
    # without a threshold a FidelityError cannot happen; without the rounding and int16
    # fallbacks it stays
    seen.clear()
    with pytest.raises(FidelityError):
        strategy.run(strategy.Strategy(int16_fallback=False, rounding_fallback=False,
                                       mixed_fallback=False),
                     QuantOptions(), None, once, 0.5)  # fmt: skip
    assert len(seen) == 1


def test_when_nothing_works_the_first_error_names_the_layer() -> None:
    def onnx2tf_fails(att: strategy.Attempt) -> str:
        raise Onnx2TfError("onnx2tf failed at /blocks/0/attn/MatMul (PyTorch blocks.0.attn)")

    with pytest.raises(Onnx2TfError, match=r"blocks\.0\.attn[\s\S]*also tried"):
        strategy.run(strategy.Strategy(), QuantOptions(), None, onnx2tf_fails)
    with pytest.raises(Onnx2TfError) as info:
        strategy.run(strategy.Strategy.plain(), QuantOptions(), None, onnx2tf_fails)
    assert "also tried" not in str(info.value)

    calls: list[strategy.Attempt] = []

    def no_kernel(att: strategy.Attempt) -> str:  # other onnx2tf options cannot help
        calls.append(att)
        raise QuantizationError("no int8 TFLite kernel for Erf at /act/Erf (PyTorch act)")

    with pytest.raises(QuantizationError, match="Erf at /act/Erf"):
        strategy.run(strategy.Strategy(), QuantOptions(), None, no_kernel)
    assert len(calls) == 1


# --- real conversions ----------------------------------------------------------------------


class CnnClasses(nn.Module):
    """Padded max-pool stem, exact GELU, channel shuffle + split, unequal SplitV, ghost
    slice/concat, hardswish + SE: the CNN failure classes in one 32 px net."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = mobile.conv_bn(3, 16, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.shuffle = mobile.ShuffleUnit(16, 16, 1)
        self.gelu = mobile.conv_bn(16, 24, 3, 1, act=nn.GELU)
        self.ghost = mobile.GhostModule(24, 24)
        self.res2 = mobile.Res2Block(24, (4, 8, 12))
        self.se = mobile.InvertedResidual(24, 24, 3, 1, 2, nn.Hardswish, se=True)
        self.head = mobile.Head(24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(self.pool(self.stem(x)))
        return self.head(self.se(self.res2(self.ghost(self.gelu(x)))))


class AttentionClasses(nn.Module):
    """Tokens from a conv map, shape-derived positional embedding, MHSA (the 1/sqrt(d) DIV,
    MatMul, softmax, LayerNorm), back to a map."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = mobile.ShapePosEmbed(dim=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos(x)


class TransformerClasses(nn.Module):
    """MobileViT unfold/fold with multi-head attention, a ConvNeXt block (channels-last
    LayerNorm -> Linear -> exact GELU -> Linear), a BatchNorm before an unpadded conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = mobile.conv_bn(3, 16, 3, 2)
        self.vit = mobile.MobileViTBlock(16, 32, depth=1)
        self.down = mobile.conv_bn(16, 32, 3, 2)
        self.cnx = mobile.ConvNeXtBlock(32)
        self.bn = nn.BatchNorm2d(32)
        self.patchify = nn.Conv2d(32, 48, 2, 2)
        self.head = mobile.Head(48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cnx(self.down(self.vit(self.stem(x))))
        return self.head(self.patchify(self.bn(x)))


def _convert(tmp: Path, model: nn.Module, **kw: Any) -> Any:
    from toolchain.convert import convert

    # Fidelity on the calibration images themselves: what the conversion costs. (On
    # held-out images, 48 calibration samples leave clipping that dominates: see
    # docs/convert-coverage.md and the benchmark, which measures held-out data.)
    model = mobile.realistic(model, 32, seed=3)
    calib = mobile.image_batch(48, 32, seed=100).numpy()
    return convert(model, calib=calib, out_dir=tmp, cache=False, **kw)


@pytest.fixture(scope="session")
def cnn_result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _convert(tmp_path_factory.mktemp("cnn"), CnnClasses())


@pytest.fixture(scope="session")
def attention_result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _convert(tmp_path_factory.mktemp("att"), AttentionClasses())


@pytest.fixture(scope="session")
def transformer_result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _convert(tmp_path_factory.mktemp("vit"), TransformerClasses())


def test_cnn_classes_convert_to_a_clean_int8_graph(cnn_result: Any) -> None:
    rep = cnn_result.report
    lint = rep["lint"]
    assert not lint["problems"]
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == lint["PADV2"] == 0
    # GELU in its tanh form (TFLM has no GELU kernel), channel shuffle as a GATHER
    assert rep["ops"].get("LOGISTIC", 0) >= 1 and rep["ops"].get("GATHER", 0) >= 1
    assert "TANH" not in rep["ops"] and "GELU" not in rep["ops"]
    conv = rep["conversion"]
    assert {"maxpool-finite-pad", "gelu-tanh", "channel-shuffle-gather"} <= set(
        conv["rewrites_applied"]
    )
    assert conv["frontend"] == "onnx2tf" and conv["activations"] == "int8"
    assert rep["fidelity"]["output"]["sqnr_db"] >= 30.0


def test_attention_classes_convert_without_float_islands(attention_result: Any) -> None:
    rep = attention_result.report
    lint = rep["lint"]
    assert not lint["problems"]  # no float DIV, no float op at all
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == 0
    assert "DIV" not in rep["ops"] and rep["ops"]["BATCH_MATMUL"] == 2 * 2  # 2 heads
    assert {"fold-constants", "div-by-constant", "tokens-channels-last", "attention-heads"} <= set(
        rep["conversion"]["rewrites_applied"]
    )
    assert rep["fidelity"]["output"]["sqnr_db"] >= 30.0
    assert rep["onnx2tf_max_rel_err"] <= 1e-4


def test_transformer_classes_convert_without_layout_transposes(transformer_result: Any) -> None:
    rep = transformer_result.report
    lint = rep["lint"]
    assert not lint["problems"]
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == 0
    conv = rep["conversion"]
    assert {"patches-channels-last", "attention-heads", "channels-last-island",
            "bn-into-next-conv"} <= set(conv["rewrites_applied"])  # fmt: skip
    assert "gelu-tanh" in conv["rewrites_applied"] and "GELU" not in rep["ops"]
    assert conv["attempt"] == "primary" and rep["onnx2tf_max_rel_err"] <= 1e-4
    # TFLM runs it (STRIDED_SLICE, BATCH_MATMUL with adj_y, CONCATENATION, RSQRT, MEAN...)
    from toolchain.emit.arena import search_arena

    assert search_arena(transformer_result.tflite_path).minimum > 0
    # measured 29.9 dB: the ConvNeXt block's linear activations are what int8 handles worst
    # (docs/convert-coverage.md); the int16x8 fallback is the answer to a --min-sqnr above
    assert rep["fidelity"]["output"]["sqnr_db"] >= 27.0


def test_onnx2tf_layout_mixups_are_caught(tmp_path: Path) -> None:
    """onnx2tf turns conv -> permute -> LayerNorm -> permute back -> conv into a model that
    computes something else (-0.2 dB) when C equals W; the float check refuses it instead
    of quantizing it."""

    class Sandwich(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.norm, self.c2 = (
                nn.Conv2d(3, 32, 3, padding=1),  # as many channels as pixels per row
                nn.LayerNorm(32),
                nn.Conv2d(32, 4, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c2(self.norm(self.c1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    plain = strategy.Strategy(rewrites=("fold-constants",), fallback=False, int16_fallback=False)
    with pytest.raises(Onnx2TfError, match="computes something else than the ONNX model"):
        _convert(tmp_path / "plain", Sandwich(), strategy=plain)
    # the default strategy rewrites the island into NCHW ops, which onnx2tf gets right
    rep = _convert(tmp_path / "default", Sandwich()).report
    assert "channels-last-island" in rep["conversion"]["rewrites_applied"]
    assert rep["lint"]["TRANSPOSE"] == 0 and rep["onnx2tf_max_rel_err"] <= 1e-4
