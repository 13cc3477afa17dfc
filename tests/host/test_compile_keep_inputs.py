"""``compile_model(keep_inputs=True)``: the planner places nothing over the graph inputs, so the
benchmark firmware receives them straight into the arena and invokes many times without a
shadow copy (toolchain/compile/planner.py, firmware_templates/common/edp/edp_device.c).

VWW is the hard case: its split block keeps the 27,648 B input alive only through the first
layers, and the free plan reuses those bytes right after. Kept, the input raises every later
operator's live bytes, so the planner splits two blocks (0..3 and 4..7); the input must come
out of every invoke untouched and the outputs stay bit-exact, invoke after invoke."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REFERENCE
from toolchain.compile import compile_model, hostrun, lower_and_plan
from toolchain.compile.planner import buffers

VWW = REFERENCE / "mlperf_tiny" / "vww" / "vww_96_int8.tflite"
KWS = REFERENCE / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"


def _need(p: Path) -> None:
    if not p.is_file():
        pytest.skip(f"{p} is not there (../shared/reference)")


@pytest.mark.parametrize("path", [VWW, KWS], ids=["vww", "kws"])
def test_kept_inputs_overlap_nothing_and_cost_at_most_their_size(path: Path) -> None:
    _need(path)
    g0, free = lower_and_plan(path, target="mps2-an386")
    g, kept = lower_and_plan(path, target="mps2-an386", keep_inputs=True)
    assert g.keep_inputs and not g0.keep_inputs
    roots = {g.storage(t) for t in g.inputs}
    in_bytes = sum(g.tensors[s].nbytes for s in roots)
    bufs = buffers(g)
    for s in roots:
        lo, hi = kept.offsets[s], kept.offsets[s] + g.tensors[s].nbytes
        for b in bufs:
            if b.tensor in roots:
                continue
            o = kept.offsets[b.tensor]
            assert o + b.size <= lo or o >= hi, (b, lo, hi)  # no one, ever, over the input
    assert free.arena_bytes < kept.arena_bytes <= free.arena_bytes + in_bytes + 16
    if path == VWW:  # the free plan reuses the input's bytes: keeping it costs arena
        g0_in = {g0.storage(t) for t in g0.inputs}
        b0 = {b.tensor: b for b in buffers(g0)}
        assert all(b0[s].last < len(g0.ops) - 1 for s in g0_in)
        # two split blocks; one (ops 0..7, the best single block) needed 60,384 B
        assert [sp.ops for sp in g.splits()] == [(0, 1, 2, 3), (4, 5, 6, 7)]
        assert kept.arena_bytes <= 50_000 and kept.split["more"]


def test_vww_kept_input_survives_repeated_invokes_bit_exact(tmp_path: Path) -> None:
    _need(VWW)
    if not hostrun.have_gcc():
        pytest.skip("needs gcc")
    kept = compile_model(VWW, out_dir=tmp_path / "k", name="vk", keep_inputs=True)
    free = compile_model(VWW, out_dir=tmp_path / "f", name="vf")
    assert "#define VK_INPUTS_KEPT 1" in kept.header.read_text()
    assert "#define VF_INPUTS_KEPT 0" in free.header.read_text()
    lib = hostrun.build([kept, free], tmp_path / "lib.so")
    x = np.random.default_rng(5).integers(-128, 128, size=(1, 96, 96, 3), dtype=np.int8)
    want = hostrun.Runner(lib, "vf")([x], [((1, 2), np.int8)])[0]
    hostrun.Runner(lib, "vk")  # init; sets the pointer return types
    ctypes.memmove(lib.vk_input(0), x.tobytes(), x.nbytes)  # written once
    for _ in range(3):
        assert lib.vk_invoke() == 0
        got = ctypes.string_at(lib.vk_output(0), 2)
        assert got == want.tobytes()
        assert ctypes.string_at(lib.vk_input(0), x.nbytes) == x.tobytes()
    # the free plan really overwrites its input: without keep_inputs a second invoke on the
    # same arena would read garbage, which is why the firmware asks for kept inputs
    ctypes.memmove(lib.vf_input(0), x.tobytes(), x.nbytes)
    assert lib.vf_invoke() == 0
    assert ctypes.string_at(lib.vf_input(0), x.nbytes) != x.tobytes()
