"""Host tier: per-layer mixed precision (toolchain/convert/mixed.py).

A small net whose int8 error comes from one activation (the first conv's output has one
channel 40x larger than the others, so its per-tensor int8 step is coarse for the rest) is
converted once through the real pipeline with ``activations="mixed"`` (the TF worker
quantizes it twice: int8 and int16x8). The two models the pipeline spliced are kept and
checked: splicing nothing is the int8 model bit for bit; splicing every pairable operator
is close to the int16x8 model; one island gets exactly its edge QUANTIZE ops; the chosen
model is more accurate than int8 on held-out data within the bytes budget; the compiled
runtime runs it bit-exact with the tflite-micro interpreter; bad input is one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.convert import convert, mixed
from toolchain.convert.options import QuantOptions
from toolchain.convert.runtime import run_tflite
from toolchain.errors import ConversionError, UsageError
from toolchain.tflite_model import TFLiteModel


class OutlierNet(nn.Module):
    """conv (one output channel 40x the others) → ReLU → conv → ReLU → conv → mean → FC."""

    def __init__(self) -> None:
        super().__init__()
        self.example_inputs = (torch.zeros(1, 3, 16, 16),)
        g = torch.Generator().manual_seed(3)
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            self.c1.weight[0].mul_(40.0)
            self.c1.bias[0].mul_(40.0)
            self.c2.weight[:, 0].div_(40.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.relu(self.c3(y)).mean((2, 3)))


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real mixed conversion; the int8 and int16x8 models it spliced are kept."""
    kept: dict[str, Any] = {}
    original = mixed.choose

    def keep(int8: bytes, int16: bytes, xs: Any, ref: Any, **kw: Any) -> Any:
        kept.update(int8=int8, int16=int16, xs=xs, ref=ref, **kw)
        return original(int8, int16, xs, ref, **kw)

    out = tmp_path_factory.mktemp("mixed")
    mixed.choose = keep  # type: ignore[assignment]
    try:
        res = convert(OutlierNet().eval(), calib=_data(48, 1), val=_data(64, 2), cache=False,
                      out_dir=out / "m", options=QuantOptions(activations="mixed"))  # fmt: skip
    finally:
        mixed.choose = original  # type: ignore[assignment]
    kept["result"] = res
    return kept


def _run(data: bytes, c: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return run_tflite(data, [x], input_specs=c["input_specs"], output_specs=c["output_specs"])[0]


def _db(ref: np.ndarray, got: np.ndarray) -> float:
    return mixed._db(mixed._error([ref], [got]))


def test_splice_nothing_all_and_one_island(converted: dict[str, Any]) -> None:
    c = converted
    i8, i16 = c["int8"], c["int16"]
    x = _data(16, 5)
    ms = mixed._Models(i8, i16)
    n_ops = len(ms.g8.operators)
    assert len(ms.pairing.ops) == n_ops and len(ms.pairing.candidates) >= 4
    # nothing chosen: the int8 model, bit for bit
    none = mixed.splice(i8, i16, [])
    assert np.array_equal(_run(none, c, x), _run(i8, c, x))
    # everything chosen: one QUANTIZE in (int8 input) and one out (int8 output); close to
    # the int16x8 model (which also has int16 I/O: the int8 input rounding stays here)
    every = mixed.splice(i8, i16, set(ms.pairing.ops))
    ops = TFLiteModel.from_bytes(every).op_histogram()
    assert ops.get("QUANTIZE") == 2, ops
    from toolchain.convert.runtime import make_interpreter

    it = make_interpreter(i16)
    di, do = it.get_input_details()[0], it.get_output_details()[0]
    outs16 = []
    for k in range(len(x)):
        s, z = di["quantization"]
        xi = np.transpose(x[k : k + 1], (0, 2, 3, 1))
        it.set_tensor(di["index"], np.clip(np.round(xi / s) + z, -32768, 32767).astype(np.int16))
        it.invoke()
        s2, z2 = do["quantization"]
        outs16.append((it.get_tensor(do["index"]).astype(np.float32) - z2) * s2)
    y16 = np.concatenate(outs16)
    y_all, y8 = _run(every, c, x), _run(i8, c, x)
    assert _db(y16, y_all) > _db(y16, y8) + 6.0
    assert _db(y16, y_all) > 20.0  # the int8 input and output roundings stay
    # one island (a tensor in the middle): its producer and consumers int16, a QUANTIZE at
    # each edge: int8 activation inputs into the island, and its outputs back to int8
    t = ms.pairing.candidates[len(ms.pairing.candidates) // 2]
    island = ms.ops_of([t])
    ins_from_outside = {
        int(a)
        for i in island
        for a in ms.g8.operators[i].inputs
        if a >= 0
        and not mixed._is_const(ms.m8, ms.g8.tensors[a])
        and ms.prod8.get(int(a)) not in island
    }
    outs_to_outside = {
        int(o)
        for i in island
        for o in ms.g8.operators[i].outputs
        if int(o) in set(ms.g8.outputs) or any(u not in island for u in ms.users.get(int(o), []))
    }
    one, info = ms.splice(island)
    hist = TFLiteModel.from_bytes(one).op_histogram()
    assert info.quantize_added == len(ins_from_outside) + len(outs_to_outside) == hist["QUANTIZE"]
    assert info.int16_ops == len(island) and sum(hist.values()) == n_ops + info.quantize_added


def test_chosen_model_beats_int8_within_budget(converted: dict[str, Any]) -> None:
    c = converted
    rep = c["result"].report
    rec = rep["conversion"]["mixed_precision"]
    assert rep["conversion"]["activations"] == "mixed"
    assert rec["used"] and rec["int16_tensors"] >= 1 and rec["quantize_added"] >= 1
    assert rec["sqnr_after_db"] > rec["sqnr_before_db"] + 3.0
    assert 0 < rec["extra_bytes_pct"] <= 10.0 and rec["bytes"] == rep["tflite_bytes"]
    assert rec["arena"] and rec["arena_int8"] and rec["seconds"]["total"] < 60
    # held-out data (not what it was chosen on): better than the int8 model
    data = c["result"].tflite_path.read_bytes()
    x = _data(64, 2)
    ref = OutlierNet().eval()(torch.from_numpy(x)).detach().numpy()
    assert _db(ref, _run(data, c, x)) > _db(ref, _run(c["int8"], c, x)) + 3.0
    # the model is int8 at its edges (same I/O as the int8 model)
    m = TFLiteModel.from_bytes(data)
    assert [t.dtype for t in m.inputs] == ["int8"] and [t.dtype for t in m.outputs] == ["int8"]
    assert rep["lint"]["DEQUANTIZE"] == 0 and not rep["lint"]["problems"]


def test_compiled_runtime_runs_the_mixed_model_bit_exact(
    converted: dict[str, Any], tmp_path: Path
) -> None:
    from benchmarks import compile_suite
    from toolchain.compile import hostrun

    if not hostrun.have_gcc():
        pytest.skip("needs the host gcc")
    path = converted["result"].tflite_path
    row = compile_suite.check_model(path, "mixed", tmp_path, inputs=3)
    assert row["compiled"], row.get("error")
    assert row["ops"].get("QUANTIZE", 0) >= 1
    assert row["runs"] == 5 and row["mismatches"] == 0 and row["bit_exact"], row


def test_bad_input_is_one_clear_error(converted: dict[str, Any]) -> None:
    c = converted
    i8, i16 = c["int8"], c["int16"]
    with pytest.raises(ConversionError, match="not a .tflite"):
        mixed.splice(b"not a model" * 8, i16, [])
    with pytest.raises(UsageError, match="no int16x8 twin"):
        mixed.splice(i8, i16, [10_000])
    kw = {"input_specs": c["input_specs"], "output_specs": c["output_specs"]}
    with pytest.raises(UsageError, match="budget"):
        mixed.choose(i8, i16, c["xs"], c["ref"], budget=-0.1, **kw)
    with pytest.raises(UsageError, match="cannot measure"):
        mixed.choose(i8, i16, c["xs"], c["ref"], measure="loudness", **kw)
    plain = mixed.choose(i8, i16, c["xs"], c["ref"], measure="plain", target_sqnr=99.0, **kw)
    assert plain.record["sqnr_measure"].startswith("plain")
    assert plain.record["sqnr_after_db"] > plain.record["sqnr_before_db"]
    with pytest.raises(UsageError, match="activations 'int4'"):
        QuantOptions(activations="int4")
    with pytest.raises(UsageError, match="budget"):
        QuantOptions(activations="mixed", mixed_budget=-1.0)
    with pytest.raises(UsageError, match="does not go with mixed"):
        QuantOptions(activations="mixed", input_dtype="uint16")
    with pytest.raises(ConversionError, match="int16 graph inputs"):  # int8 twin: no int16 I/O
        mixed.splice(i8, i8, [], io16=(True, False))
    # two int8 models do not pair (no int16 twin): nothing is spliced, the int8 model stands
    res = mixed.choose(i8, i8, c["xs"], c["ref"], **kw)
    assert res.data == i8 and not res.record["used"] and res.record["candidates"] == 0
    # a zero budget: no island fits
    res = mixed.choose(i8, i16, c["xs"], c["ref"], budget=0.0, target_sqnr=99.0, **kw)
    assert res.data == i8 and not res.record["used"]


def test_cli_flags_reach_the_options_and_the_summary_says_what_it_cost(
    monkeypatch: pytest.MonkeyPatch, converted: dict[str, Any]
) -> None:
    import argparse

    import toolchain.convert as tc
    from toolchain.cli import convert as cli

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake(model: Any, **kw: Any) -> Any:
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(tc, "convert", fake)
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    base = ["convert", "m.pt", "--calib", "c.npy", "--out", "o", "--activations", "mixed"]
    args = p.parse_args([*base, "--mixed-target-sqnr", "27", "--mixed-budget", "0.05",
                         "--no-mixed-fallback"])  # fmt: skip
    with pytest.raises(Stop):
        cli.run(args)
    opts = seen["options"]
    assert (opts.activations, opts.mixed_target_sqnr, opts.mixed_budget) == ("mixed", 27.0, 0.05)
    assert seen["strategy"].mixed_fallback is False and opts.io_input == "int8"
    with pytest.raises(UsageError, match="budget"):
        cli.run(p.parse_args([*base, "--mixed-budget", "-0.5"]))
    line = cli._mixed_line(converted["result"].report["conversion"]["mixed_precision"])
    assert line.startswith("mixed precision: ") and "int16 tensors" in line and "%" in line


def test_emit_writes_the_mixed_model(converted: dict[str, Any], tmp_path: Path) -> None:
    from toolchain.emit.stage import emit

    res = emit(converted["result"].tflite_path, out_dir=tmp_path / "e", golden_count=2)
    rep = res.report
    assert (tmp_path / "e" / "emit_report.json").is_file()
    assert rep["lean"]["tflm_outputs_identical"] is True
    # LiteRT runs the int8→int16 QUANTIZE through float: at most 1 LSB from TFLM
    for chk in rep["litert_check"]:
        assert chk["status"] in ("exact", "mismatch") and chk["max_abs_diff"] <= 1.0, chk


def test_int16x8_models_lose_only_their_calibration_stats(converted: dict[str, Any]) -> None:
    """TFLiteConverter leaves calibration min/max in int16x8 models (the int8 path does
    not); runtimes never read them: dropped, the outputs stay the same."""
    from toolchain.convert import flatbuf
    from toolchain.convert.runtime import make_interpreter

    i16 = converted["int16"]

    def stats(data: bytes) -> int:
        m = flatbuf.unpack(data)
        return sum(
            len(t.quantization.min)
            for t in m.subgraphs[0].tensors
            if t.quantization is not None and t.quantization.min is not None
        )

    stripped = mixed.strip_calibration_stats(i16)
    assert stats(i16) > 0 and stats(stripped) == 0 and len(stripped) < len(i16)
    assert mixed.strip_calibration_stats(converted["int8"]) == converted["int8"]
    outs = []
    for data in (i16, stripped):
        it = make_interpreter(data)
        di, do = it.get_input_details()[0], it.get_output_details()[0]
        it.set_tensor(di["index"], np.full(di["shape"], 1234, dtype=np.int16))
        it.invoke()
        outs.append(it.get_tensor(do["index"]).copy())
    assert np.array_equal(outs[0], outs[1])


def test_int16_graph_io(converted: dict[str, Any], tmp_path: Path) -> None:
    """``io16``: the graph input/output become the int16x8 model's int16 tensors; int8
    readers of the input get a QUANTIZE int16→int8, an int8 producer of the output a
    QUANTIZE int8→int16; the compiled runtime runs it bit-exact with TFLM."""
    from dataclasses import replace

    from benchmarks import compile_suite
    from toolchain.compile import hostrun
    from toolchain.convert.strategy import int16_options, mixed_options

    c = converted
    i8, i16 = c["int8"], c["int16"]
    t16 = TFLiteModel.from_bytes(i16)
    io = (True, True)
    x = _data(16, 5)

    def specs(data: bytes) -> tuple[list[Any], list[Any]]:
        return mixed._io_specs(data, c["input_specs"], c["output_specs"])

    def run(data: bytes) -> np.ndarray:
        ins, outs = specs(data)
        return run_tflite(data, [x], input_specs=ins, output_specs=outs)[0]

    none = mixed.splice(i8, i16, [], io16=io)
    m = TFLiteModel.from_bytes(none)
    assert [t.dtype for t in m.inputs] == ["int16"] and [t.dtype for t in m.outputs] == ["int16"]
    assert (m.inputs[0].scale, m.outputs[0].scale) == (t16.inputs[0].scale, t16.outputs[0].scale)
    assert m.op_histogram()["QUANTIZE"] == 2  # int16 -> int8 in, int8 -> int16 out
    # nothing int16 inside: as accurate as the int8 model (the input is rounded twice,
    # int16 then int8: not bit for bit)
    ref = OutlierNet().eval()(torch.from_numpy(x)).detach().numpy()
    ref8 = _run(i8, c, x)
    assert abs(_db(ref, run(none)) - _db(ref, ref8)) < 1.0
    # every op int16: no QUANTIZE left; the islands read the input and write the output
    ms = mixed._Models(i8, i16, io)
    every = mixed.splice(i8, i16, set(ms.pairing.ops), io16=io)
    assert "QUANTIZE" not in TFLiteModel.from_bytes(every).op_histogram()
    assert np.array_equal(run(every), run(i16))  # the int16x8 model, output for output
    # choose with int16 I/O: the chosen model keeps it and beats int8-everywhere
    kw = {"input_specs": c["input_specs"], "output_specs": c["output_specs"]}
    res = mixed.choose(i8, i16, c["xs"], c["ref"], io16=io, **kw)
    m = TFLiteModel.from_bytes(res.data)
    assert [t.dtype for t in m.inputs] == ["int16"] and [t.dtype for t in m.outputs] == ["int16"]
    assert _db(ref, run(res.data)) > _db(ref, ref8) + 3.0
    # the strategy's mixed attempt has the int16x8 attempt's interface
    o = QuantOptions()
    assert (mixed_options(o).io_input, mixed_options(o).io_output) == ("int16", "int16")
    f = replace(o, input_dtype="float32")
    assert (mixed_options(f).io_input, mixed_options(f).io_output) == ("float32", "int16")
    o16 = int16_options(mixed_options(o))
    assert o16 is not None and (o16.activations, o16.io_input) == ("int16", "int16")
    if not hostrun.have_gcc():
        pytest.skip("needs the host gcc")
    for name, data in (("none", none), ("chosen", res.data)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        row = compile_suite.check_model(path, name, tmp_path / name, inputs=2)
        assert row["compiled"], row.get("error")
        assert row["mismatches"] == 0 and row["bit_exact"], row


def test_operators_litert_cannot_run_in_int16_stay_int8(
    converted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every measurement runs in LiteRT, which lacks some int16 kernels TFLM has (its
    SQUARED_DIFFERENCE: timm's ViT). The probe takes such an operator's candidates out;
    any other failure is one ConversionError."""
    from toolchain.convert import runtime

    c = converted
    original = runtime.run_tflite
    calls = {"n": 0}

    def no_int16_conv(data: bytes, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        sg = TFLiteModel.from_bytes(data).main
        if any(op.name == "CONV_2D" and sg.tensors[op.inputs[0]].dtype == "int16"
               for op in sg.operators):  # fmt: skip
            raise RuntimeError("Node number 1 (CONV_2D) failed to invoke.")
        return original(data, *a, **kw)

    ms = mixed._Models(c["int8"], c["int16"])
    before = len(ms.pairing.candidates)
    monkeypatch.setattr(runtime, "run_tflite", no_int16_conv)
    dropped = mixed._drop_what_litert_cannot_run(ms, c["xs"], c["input_specs"], c["output_specs"])
    assert set(dropped) == {"CONV_2D"} and 0 < dropped["CONV_2D"] <= before
    assert len(ms.pairing.candidates) == before - dropped["CONV_2D"]
    convs = {
        i for i, op in enumerate(ms.g8.operators) if mixed.flatbuf.op_name(ms.m8, op) == "CONV_2D"
    }
    for t in ms.pairing.candidates:
        assert ms.prod8[t] not in convs and not convs & set(ms.users.get(t, []))

    def broken(data: bytes, *a: Any, **kw: Any) -> Any:
        raise RuntimeError("something else went wrong")

    monkeypatch.setattr(runtime, "run_tflite", broken)
    with pytest.raises(ConversionError, match="LiteRT cannot run the spliced model"):
        mixed._drop_what_litert_cannot_run(
            mixed._Models(c["int8"], c["int16"]), c["xs"], c["input_specs"], c["output_specs"]
        )


def test_a_failed_mixed_attempt_goes_on_to_int16x8() -> None:
    from toolchain.convert.strategy import Attempt, Strategy, run
    from toolchain.errors import FidelityError

    seen: list[str] = []

    def once(att: Attempt) -> str:
        seen.append(att.options.activations)
        if att.options.activations == "int8":
            exc = FidelityError("output 'y': SQNR 20.00 dB is below --min-sqnr 30 dB")
            exc.measured = {"sqnr_db": 20.0, "tflite_bytes": 100}
            raise exc
        if att.options.activations == "mixed":
            raise ConversionError("mixed precision: LiteRT cannot run the spliced model: x")
        return "ok"

    assert run(Strategy(fallback=False), QuantOptions(), 30.0, once) == "ok"
    assert seen == ["int8", "mixed", "int16"]
    seen.clear()
    # nothing after it: the gate's error, with what the mixed attempt said
    with pytest.raises(FidelityError, match="ConversionError: mixed precision: LiteRT"):
        run(Strategy(fallback=False, int16_fallback=False), QuantOptions(), 30.0, once)
    assert seen == ["int8", "mixed"]


def test_a_mixed_conversions_cache_key_holds_the_gate_it_aims_at() -> None:
    """Mixed precision aims at ``--min-sqnr`` + a margin: a run with another gate must not
    get the model chosen for the first one from the cache."""
    from toolchain.convert import pipeline

    m = QuantOptions(activations="mixed")
    assert pipeline._mixed_key(m, 25.0) != pipeline._mixed_key(m, 30.0)
    assert pipeline._mixed_key(m, None) == {"mixed_target": [mixed.DEFAULT_TARGET_SQNR,
                                                             "input-dependent"]}  # fmt: skip
    fixed = QuantOptions(activations="mixed", mixed_target_sqnr=28.0)
    assert pipeline._mixed_key(fixed, 25.0) == pipeline._mixed_key(fixed, 30.0)
    assert pipeline._mixed_key(QuantOptions(), 25.0) == {}  # int8 keys stay what they were
