"""The ``class-token-stream`` rewrite (issue 15): a ViT's class row carried apart from the
patch rows, so int8 gives it its own scale.

A tiny ViT built here has the peer suite's ViT problem: the class token (plus its position
embedding) is ~100× smaller than the patch tokens, and only its row reaches the head.
Fast checks: the rewrite finds the stream, is exact in onnxruntime against PyTorch, keeps
every other graph alone. One real int8 conversion pair (TF worker, 32 px): the rewrite
lifts the logits' SQNR by more than 10 dB.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tests.support.onnx_export import onnx_bytes
from toolchain.convert import rewrites
from toolchain.convert.rewrites.graph import Graph
from toolchain.convert.rewrites.scale import ScaleIntoLinear
from toolchain.convert.rewrites.tokens import ClassTokenStream
from toolchain.zoo import mobile

SIZE = 32


class _Attention(nn.Module):
    """timm's ViT attention: one qkv Linear, heads by reshape/permute/unbind, SDPA."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """16 patches (8 px) of a 32 px image, a tiny class token, 2 blocks, head on row 0."""

    def __init__(self, dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.patch = nn.Conv2d(3, dim, 8, 8)
        with torch.no_grad():
            self.patch.weight.mul_(20.0)  # patch tokens ~±30, like the peer ViT's ±96
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim, generator=g))
        self.pos = nn.Parameter(0.02 * torch.randn(1, 1 + (SIZE // 8) ** 2, dim, generator=g))
        self.blocks = nn.Sequential(*[_Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return TinyViT().eval()


def _onnx(model: nn.Module) -> bytes:
    return onnx_bytes(model, torch.randn(1, 3, SIZE, SIZE))


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def exported() -> tuple[nn.Module, bytes, bytes, dict[str, Any]]:
    model = _model()
    data = _onnx(model)
    before, _ = rewrites.rewrite_onnx(
        data, rewrites.DEFAULT[: rewrites.DEFAULT.index("class-token-stream")]
    )
    after, recs = rewrites.rewrite_onnx(before, ["class-token-stream"])
    return model, before, after, {r.name: r for r in recs}


def test_rewrite_splits_the_class_row_exactly(exported: Any) -> None:
    model, before, after, recs = exported
    rec = recs["class-token-stream"]
    assert rec.applied == 1 and rec.rejected is None
    assert "4 residual adds and 5 norms" in rec.details[0]
    assert rec.max_rel_err is not None and rec.max_rel_err <= 1e-4
    ops_b = Counter(n.op_type for n in onnx.load_from_string(before).graph.node)
    ops_a = Counter(n.op_type for n in onnx.load_from_string(after).graph.node)
    # the first norm's class row is a constant (folded); the last norm feeds the head only
    # through row 0 (its patch part is dropped): 5 norms -> 4 class + 4 patch norms
    assert ops_b["LayerNormalization"] == 5 and ops_a["LayerNormalization"] == 8
    assert ops_a["Gather"] == ops_b["Gather"] - 1  # the head reads the class norm directly
    # exact on images (not only on the rewrite's random check inputs): against the model
    # before it, and against PyTorch (gelu-tanh, before it, is within 4.7e-4)
    x = mobile.image_batch(8, SIZE, seed=5).numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got, prev = _run(after, x), _run(before, x)
    assert np.max(np.abs(got - prev)) <= 1e-5 * np.max(np.abs(prev))
    assert np.max(np.abs(got - ref)) <= 1e-3 * np.max(np.abs(ref))
    # the stream no longer holds row 0: no Add of the (1, 17, 32) shape is left
    g = Graph(onnx.load_from_string(after))
    full = [n for n in g.nodes if n.op_type == "Add" and g.shape(n.output[0]) == (1, 17, 32)]
    assert len(full) <= 4  # the 4 branch biases (attention out-proj, fc2); no residual Add


def test_rewrite_leaves_graphs_without_a_class_token_alone() -> None:
    class NoCls(TinyViT):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # mean-pooled patch tokens
            t = self.patch(x).flatten(2).transpose(1, 2) + self.pos[:, 1:]
            return self.head(self.norm(self.blocks(t)).mean(1))

    torch.manual_seed(0)
    data, _ = rewrites.rewrite_onnx(_onnx(NoCls().eval()), ["fold-constants"])
    assert ClassTokenStream().requires(Graph(onnx.load_from_string(data))) == []
    # the transformer suite models (no class token) do not match either
    data, _ = rewrites.rewrite_onnx(_onnx(mobile.ConvAttention().eval()), ["fold-constants"])
    assert ClassTokenStream().requires(Graph(onnx.load_from_string(data))) == []


def test_attention_scale_folds_into_the_qkv_weights() -> None:
    """SDPA's ``q·√s`` and ``kᵀ·√s`` (a Mul per head slice after ``attention-heads``) go
    into the qkv Linear's columns: no Mul left outside the GELUs, the same outputs."""
    model = _model()
    upto = rewrites.DEFAULT[: rewrites.DEFAULT.index("scale-into-linear")]
    before, _ = rewrites.rewrite_onnx(_onnx(model), upto)
    after, recs = rewrites.rewrite_onnx(before, ["scale-into-linear"])
    rec = recs[0]
    assert rec.applied == 2 and rec.rejected is None  # one qkv Linear per block
    assert all("4 scaled slices" in d for d in rec.details)  # q and k of 2 heads
    mul_b = Counter(n.op_type for n in onnx.load_from_string(before).graph.node)["Mul"]
    mul_a = Counter(n.op_type for n in onnx.load_from_string(after).graph.node)["Mul"]
    assert mul_b - mul_a == 8
    x = mobile.image_batch(8, SIZE, seed=6).numpy()
    prev, got = _run(before, x), _run(after, x)
    assert np.max(np.abs(got - prev)) <= 1e-5 * np.max(np.abs(prev))
    # a column read with two scales is left alone
    g = Graph(onnx.load_from_string(before))
    assert ScaleIntoLinear().requires(g)
    slices = [n for n in g.model.graph.node if n.op_type == "Slice"]
    v0 = next(n for n in slices if "v0" in n.name)  # the first block's head-0 v slice
    k0 = next(n for n in slices if "k0" in n.name and n.input[0] == v0.input[0])
    v0.input[1] = k0.input[1]  # v now starts at k's columns: read unscaled and scaled
    g.refresh()
    assert len(ScaleIntoLinear().requires(g)) == 1  # only the other block


def test_int8_class_row_keeps_its_precision(tmp_path: Path) -> None:
    """Real conversions without and with the rewrite: SQNR of the logits' input-dependent
    part (the class row is nearly all of what the head reads)."""
    from toolchain.convert import convert
    from toolchain.convert.strategy import Strategy

    model = _model()
    calib = mobile.image_batch(32, SIZE, seed=100).numpy()
    val = mobile.image_batch(64, SIZE, seed=200).numpy()
    without = tuple(n for n in rewrites.DEFAULT if n != "class-token-stream")
    res = {}
    for tag, names in (("before", without), ("after", rewrites.DEFAULT)):
        r = convert(model, calib=calib, val=val, out_dir=tmp_path / tag, cache=False,
                    input_shapes=[[1, 3, SIZE, SIZE]],
                    strategy=Strategy(rewrites=names, fallback=False,
                                      int16_fallback=False))  # fmt: skip
        res[tag] = r.report
    after = res["after"]
    assert "class-token-stream" in after["conversion"]["rewrites_applied"]
    assert "class-token-stream" not in res["before"]["conversion"]["rewrites_applied"]
    lint = after["lint"]
    assert not lint["problems"]
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == 0
    s_before = res["before"]["fidelity"]["output"]["sqnr_input_dependent_db"]
    s_after = after["fidelity"]["output"]["sqnr_input_dependent_db"]
    print(f"class-token-stream: input-dependent SQNR {s_before} -> {s_after} dB")
    assert s_after >= s_before + 10.0, (s_before, s_after)
    assert s_after >= 20.0
