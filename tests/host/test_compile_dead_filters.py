"""VWW's dead filters: every intermediate tensor stays bit-exact when they are dropped.

971 of the 2,738 convolution filters of the MLPerf Tiny VWW model are all zero; with the fast
kernels the compiler drops them (edc_conv_fast_live_s8, toolchain/compile/select.py) and
writes their constant outputs instead. The model's two int8 outputs say little (they
saturate), so this test makes every CONV_2D / DEPTHWISE_CONV_2D output a graph output and
compares them all, fast kernels against the reference-order kernels (which
tests/host/test_compile_kernels.py checks bit-exact with TFLM), on noise and smooth images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolchain.compile import CompiledModel, inplace, lower, select
from toolchain.compile import hostrun as compiled
from toolchain.compile.cwriter import CWriter, kernel_dir, kernel_files
from toolchain.compile.planner import check, plan
from toolchain.tflite_model import TFLiteModel

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")

VWW = "mlperf_tiny/vww/vww_96_int8.tflite"


def _inputs(shape: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    xs = []
    for i in range(4):
        if i % 2:  # smooth rows, so that the activations are not all saturated
            steps = rng.integers(-3, 4, size=shape)
            xs.append(np.clip(np.cumsum(steps, axis=2) - 64, -128, 127).astype(np.int8))
        else:
            xs.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
    return xs


def _run_all_conv_outputs(model: TFLiteModel, kernels: str, out: Path) -> tuple[list, set]:
    g = select.specialize(lower.lower(model), kernels=kernels)
    g.outputs = tuple(op.outputs[0] for op in g.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    inplace.apply(g)
    p = plan(g)
    check(g, p)
    out.mkdir(parents=True)
    name = f"vww_{kernels}"
    for fname, text in CWriter(g, p, name, "vww").files().items():
        (out / fname).write_text(text)
    for fname in kernel_files(g):
        (out / fname).write_bytes((kernel_dir() / fname).read_bytes())
    cm = CompiledModel(
        name=name, out_dir=out, header=out / f"{name}.h",
        sources=tuple(sorted(out.glob("*.c"))), arena_bytes=p.arena_bytes, n_ops=len(g.ops),
        ops=(), model_sha256="", plan={},
    )  # fmt: skip
    run = compiled.Runner(compiled.build([cm], out / "lib.so"), name)
    specs = [(tuple(g.tensors[t].shape), np.dtype(np.int8)) for t in g.outputs]
    shape = tuple(g.tensors[g.inputs[0]].shape)
    return [run([x], specs) for x in _inputs(shape)], {op.func for op in g.ops}


def test_vww_dead_filters_bit_exact_per_layer(reference_dir: Path, tmp_path: Path) -> None:
    path = reference_dir / VWW
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    model = TFLiteModel.from_file(path)
    fast, fast_funcs = _run_all_conv_outputs(model, "fast", tmp_path / "fast")
    ref, _ = _run_all_conv_outputs(model, "ref", tmp_path / "ref")
    assert "edc_conv_fast_live_s8" in fast_funcs
    compared = 0
    for ys_fast, ys_ref in zip(fast, ref, strict=True):
        assert len(ys_fast) == 27  # 14 convolutions, 13 depthwise
        for k, (a, b) in enumerate(zip(ys_fast, ys_ref, strict=True)):
            assert np.array_equal(a, b), f"tensor {k}: {int((a != b).sum())} values differ"
            compared += a.size
    assert compared > 900_000
