"""MobileViT v2's layout classes (issue 15), host tier: a small block built here in torch
like timm's ``MobileVitV2Block`` (one-group GroupNorms, the ``(B, C, P, N)`` patch
unfold/fold, linear attention with a softmax over the tokens).

Fast: the ONNX rewrites remove the 6-D patch transposes and the flattening GroupNorms and
the rewritten model computes what the TorchScript model does (onnxruntime). One real
conversion (TF worker, 32 px) gives an int8 graph without a TRANSPOSE. The 1.5 MB peer
model itself is measured by ``benchmarks.run peer-suite`` (needs ``../shared``)."""

from __future__ import annotations

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
from toolchain.convert import rewrites


class LinearAttention(nn.Module):
    """timm's ``LinearSelfAttention``: one query channel, softmax over the tokens."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.qkv_proj = nn.Conv2d(c, 1 + 2 * c, 1)
        self.out_proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split([1, self.c, self.c], dim=1)
        ctx = (k * F.softmax(q, dim=-1)).sum(dim=-1, keepdim=True)
        return self.out_proj(F.relu(v) * ctx.expand_as(v))


class TransformerBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.GroupNorm(1, c), LinearAttention(c)
        self.norm2 = nn.GroupNorm(1, c)
        self.mlp = nn.Sequential(nn.Conv2d(c, 2 * c, 1), nn.SiLU(), nn.Conv2d(2 * c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTv2Block(nn.Module):
    """conv → unfold into ``(B, C, P, N)`` → transformer → GroupNorm → fold → conv."""

    def __init__(self, cin: int, c: int, depth: int = 2) -> None:
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin),
                                nn.BatchNorm2d(cin), nn.SiLU())  # fmt: skip
        self.conv_1x1 = nn.Conv2d(cin, c, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerBlock(c) for _ in range(depth)])
        self.norm = nn.GroupNorm(1, c)
        self.conv_proj = nn.Sequential(nn.Conv2d(c, cin, 1, bias=False), nn.BatchNorm2d(cin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_1x1(self.dw(x))
        b, c, h, w = x.shape
        nh, nw = h // 2, w // 2
        x = x.reshape(b, c, nh, 2, nw, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c, -1, nh * nw)
        x = self.norm(self.transformer(x))
        x = x.reshape(b, c, 2, 2, nh, nw).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
        return self.conv_proj(x)


class Net(nn.Module):
    def __init__(self, c: int = 24) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.SiLU())
        self.block = MobileViTv2Block(8, c)  # at 32 px: (1, c, 4, 64) patch tensors
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def _net(c: int = 24) -> nn.Module:
    torch.manual_seed(0)
    net = Net(c).eval()
    with torch.no_grad():  # non-trivial norm statistics and affine parameters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


def _onnx(model: nn.Module, x: torch.Tensor) -> bytes:
    return onnx_bytes(model, x, input_names=["x"])


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("c", [24, 64])  # 64: C = N, where onnx2tf's shape pairing is ambiguous
def test_patches_and_groupnorms_are_rewritten_exactly(c: int) -> None:
    net = _net(c)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    data = _onnx(net, x)
    before = _ops(data)
    assert before["InstanceNormalization"] == 5 and before["Transpose"] == 2
    new, recs = rewrites.rewrite_onnx(data, rewrites.DEFAULT)
    rec = {r.name: r for r in recs}
    patches, norms = rec["patches-channels-last"], rec["groupnorm-channels-last"]
    assert patches.applied == 2 and patches.max_rel_err == 0.0  # values moved, bit-exact
    assert any("unfold-cpn 2x2" in d for d in patches.details)
    assert any("fold-cpn 2x2" in d for d in patches.details)
    assert norms.applied == 5 and norms.max_rel_err is not None and norms.max_rel_err < 1e-5
    after = _ops(new)
    assert "InstanceNormalization" not in after
    # each affine (Mul, Add by (C, 1, 1) constants) became one depthwise 1x1 Conv
    assert after["Conv"] == before["Conv"] + 5
    # the 6-D patch transposes are gone; the 4-D ones left are NCHW <-> NHWC
    perms = [list(n.attribute[0].ints) for n in onnx.load_from_string(new).graph.node
             if n.op_type == "Transpose"]  # fmt: skip
    assert perms and all(p in ([0, 3, 1, 2], [0, 2, 3, 1]) for p in perms)
    # exact in float against the PyTorch model (not only against the ONNX model before)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(_run(new, x.numpy()), want, rtol=1e-5, atol=1e-5)


def test_groupnorm_with_more_groups_is_left_alone() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8)).eval()
    data = _onnx(net, torch.randn(1, 3, 6, 6))
    new, recs = rewrites.rewrite_onnx(data, ["fold-constants", "groupnorm-channels-last"])
    assert next(r for r in recs if r.name == "groupnorm-channels-last").applied == 0
    assert _ops(new)["InstanceNormalization"] == 1


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from toolchain.convert import convert

    calib = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    out: Path = tmp_path_factory.mktemp("mvit2")
    return convert(_net(64), calib=calib, out_dir=out, cache=False, input_shapes=[[1, 3, 32, 32]])


def test_mobilevit_v2_block_converts_without_a_transpose(converted: Any) -> None:
    rep = converted.report
    lint = rep["lint"]
    assert not lint["problems"]
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == 0
    assert {"patches-channels-last", "groupnorm-channels-last"} <= set(
        rep["conversion"]["rewrites_applied"]
    )
    # onnx2tf's float model is the ONNX model's function (no layout mix-up in the patches)
    assert rep["onnx2tf_max_rel_err"] <= 1e-4
    assert rep["fold_check"].startswith("bit-exact")  # the mean transposes, dropped exactly
    assert rep["ops"]["MEAN"] >= 10 and rep["ops"]["RSQRT"] == 5
    assert rep["ops"]["DEPTHWISE_CONV_2D"] == 1 + 5  # the block's own and the 5 affines
    assert rep["fidelity"]["output"]["sqnr_db"] >= 20.0


def test_groupnorms_inside_an_unrewritten_patch_region_are_left_alone() -> None:
    """Without the patch rewrite the region stays NCHW inside onnx2tf, where a 4-D mean
    came out wrong (7.5 % off on the peer model): the norms keep their flatten form."""
    data = _onnx(_net(), torch.randn(1, 3, 32, 32))
    new, recs = rewrites.rewrite_onnx(data, ["fold-constants", "groupnorm-channels-last"])
    assert next(r for r in recs if r.name == "groupnorm-channels-last").applied == 0
    assert _ops(new)["InstanceNormalization"] == 5
