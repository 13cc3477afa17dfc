"""Data-free quantization techniques in PyTorch, before export (Nagel et al., ICCV 2019).

* **Cross-layer equalization (CLE)**: for a conv pair ``conv1 → act → conv2`` with a
  positive-homogeneous ``act`` (ReLU, identity), scale output channel ``i`` of ``conv1`` by
  ``1/s_i`` and input channel ``i`` of ``conv2`` by ``s_i`` with
  ``s_i = sqrt(r1_i / r2_i)`` (``r`` = the channel's weight range), so both weights' channel
  ranges become ``sqrt(r1_i·r2_i)``: exact in float, better conditioned for int8 weights
  and activations. ReLU6/hardswish pairs are left alone (not homogeneous: not exact).
* **Bias correction** (empirical): the int8 weight rounding error ``ΔW`` shifts a layer's
  mean output by ``ΔW·E[x]``; subtract it from the bias, with ``E[x]`` measured on the
  calibration data. Changes the float model on purpose (by the expected int8 error).

BatchNorm is folded into the preceding conv first (``torch.fx``); a model that torch.fx
cannot trace is left as it is and the record says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

log = logging.getLogger(__name__)

#: activations through which CLE is exact (f(s·x) = s·f(x) for s > 0)
_HOMOGENEOUS_MODULES = (nn.ReLU, nn.Identity, nn.LeakyReLU)
_HOMOGENEOUS_FUNCTIONS = (F.relu, torch.relu)
CLE_ITERATIONS = 4
BIAS_SAMPLES = 32
EXACT_TOLERANCE = 1e-4


def apply(
    module: nn.Module,
    calib: Sequence[np.ndarray],
    *,
    equalize: bool,
    bias_correction: bool,
    per_channel: bool = True,
    per_channel_dense: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The transformed module (or ``module`` itself when nothing applied) and a record.

    ``per_channel`` / ``per_channel_dense``: how the converter will quantize conv and
    Linear weights (bias correction models that rounding)."""
    rec: dict[str, Any] = {"equalize": None, "bias_correction": None}
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx refuses shape-dependent Python code
        reason = f"not applied: torch.fx cannot trace the model ({type(exc).__name__})"
        rec.update(equalize=reason if equalize else None,
                   bias_correction=reason if bias_correction else None)  # fmt: skip
        return module, rec
    from torch.fx.experimental.optimization import fuse

    gm = cast(fx.GraphModule, fuse(gm, inplace=False))
    xs = [torch.from_numpy(np.asarray(a[:BIAS_SAMPLES], dtype=np.float32)) for a in calib]
    with torch.no_grad():
        ref = _outputs(module, xs)
    if equalize:
        pairs = _pairs(gm)
        for _ in range(CLE_ITERATIONS):
            for c1, c2 in pairs:
                _equalize_pair(c1, c2)
        with torch.no_grad():
            err = _rel_err(ref, _outputs(gm, xs))
        rec["equalize"] = {"pairs": len(pairs), "max_rel_err": float(f"{err:.3g}")}
        if err > EXACT_TOLERANCE:
            raise RuntimeError(f"cross-layer equalization changed the outputs by {err:.3g}")
    if bias_correction:
        rec["bias_correction"] = {"layers": _bias_correct(gm, xs, per_channel, per_channel_dense)}
    return gm, rec


def _outputs(m: nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    out = m(*xs)
    return list(out) if isinstance(out, tuple | list) else [out]


def _rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(
        float((x - y).abs().max() / x.abs().max().clamp_min(1e-6))
        for x, y in zip(a, b, strict=True)
    )


def _is_depthwise(c: nn.Conv2d) -> bool:
    return c.groups == c.in_channels == c.out_channels


def _pairs(gm: fx.GraphModule) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
    mods = dict(gm.named_modules())

    def conv(n: fx.Node) -> nn.Conv2d | None:
        m = mods.get(str(n.target)) if n.op == "call_module" else None
        if isinstance(m, nn.Conv2d) and (m.groups == 1 or _is_depthwise(m)):
            return m
        return None

    def homogeneous(n: fx.Node) -> bool:
        if n.op == "call_module":
            m = mods.get(str(n.target))
            return isinstance(m, _HOMOGENEOUS_MODULES) and not (
                isinstance(m, nn.LeakyReLU) and m.negative_slope < 0
            )
        return n.op == "call_function" and n.target in _HOMOGENEOUS_FUNCTIONS

    pairs = []
    for n in gm.graph.nodes:
        c1 = conv(n)
        if c1 is None:
            continue
        cur = n
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            c2 = conv(nxt)
            if c2 is not None:
                if c2.in_channels == c1.out_channels:
                    pairs.append((c1, c2))
                break
            if not homogeneous(nxt):
                break
            cur = nxt
    return pairs


@torch.no_grad()
def _equalize_pair(c1: nn.Conv2d, c2: nn.Conv2d) -> None:
    w1, w2 = c1.weight, c2.weight
    r1 = w1.abs().flatten(1).amax(1)  # per output channel of conv1
    if _is_depthwise(c2):
        r2 = w2.abs().flatten(1).amax(1)
    else:
        r2 = w2.abs().transpose(0, 1).flatten(1).amax(1)  # per input channel of conv2
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / r2.clamp_min(1e-12)), torch.ones_like(r1))
    w1.div_(s.view(-1, *([1] * (w1.dim() - 1))))
    if c1.bias is not None:
        c1.bias.div_(s)
    if _is_depthwise(c2):
        w2.mul_(s.view(-1, *([1] * (w2.dim() - 1))))
    else:
        w2.mul_(s.view(1, -1, *([1] * (w2.dim() - 2))))


@torch.no_grad()
def _bias_correct(
    gm: fx.GraphModule, xs: list[torch.Tensor], per_channel: bool, per_channel_dense: bool
) -> int:
    layers = [m for m in gm.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    means: dict[int, torch.Tensor] = {}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], _out: Any) -> None:
        x = inp[0]
        dims = [0, *range(2, x.dim())] if isinstance(m, nn.Conv2d) else list(range(x.dim() - 1))
        means[id(m)] = x.mean(dim=dims)

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        gm(*xs)
    finally:
        for h in handles:
            h.remove()
    done = 0
    for m in layers:
        mu = means.get(id(m))
        if mu is None:
            continue
        w = m.weight
        pc = per_channel and (per_channel_dense or isinstance(m, nn.Conv2d))
        flat = w.abs().flatten(1).amax(1) if pc else w.abs().max().expand(w.shape[0])
        scale = (flat / 127.0).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1)))
        dw = torch.clamp(torch.round(w / scale), -127, 127) * scale - w
        if isinstance(m, nn.Conv2d):
            g = m.groups
            cin_g = w.shape[1]
            mu_g = mu.view(g, cin_g)  # (groups, in per group)
            out_g = w.shape[0] // g
            shift = torch.einsum("gock,gc->go", dw.sum((2, 3)).view(g, out_g, cin_g, 1), mu_g)
            shift = shift.reshape(-1)
        else:
            shift = dw @ mu
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(w.shape[0]))
        m.bias.sub_(shift)
        done += 1
    return done
