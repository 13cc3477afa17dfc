"""Host tier: what the attempts of one conversion share (toolchain/convert/reuse.py) and the
onnx2tf strict-mode memo (toolchain/convert/strictmemo.py, worker.float_model): a different
input must not hit them, a hit must give the same result."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.convert import onnx2tf_stage, reuse, strictmemo, worker
from toolchain.convert.options import QuantOptions
from toolchain.convert.rewrites.base import RewriteRecord
from toolchain.convert.strategy import Attempt, Strategy
from toolchain.errors import FidelityError

# --- the per-conversion memo ----------------------------------------------------------------


def test_shared_computes_once_per_key_and_copies_on_request() -> None:
    s = reuse.Shared()
    calls: list[str] = []

    def make(v: str) -> Any:
        calls.append(v)
        return {"v": [v]}

    a = s.get(("k", 1), lambda: make("a"))
    assert s.get(("k", 1), lambda: make("b")) is a  # a hit: not computed again
    assert s.get(("k", 2), lambda: make("c")) == {"v": ["c"]}  # another key: computed
    assert calls == ["a", "c"] and s.hits == ["k"]
    c1 = s.get(("k", 1), lambda: make("d"), copy_out=True)
    c1["v"].append("changed")  # a copy: the stored value stays
    assert s.get(("k", 1), lambda: make("e")) == {"v": ["a"]} and calls == ["a", "c"]


def test_the_memo_lives_for_one_conversion_only() -> None:
    outside = reuse.current()
    outside.get(("load",), lambda: 1)
    assert ("load",) not in reuse.current()  # nothing current: every call a fresh memo
    with reuse.attempts_share() as first:
        assert reuse.current() is first
        first.get(("load",), lambda: "model A")
        with reuse.attempts_share() as inner:  # a conversion inside another: its own
            assert reuse.current() is inner and ("load",) not in inner
        assert reuse.current() is first
    with reuse.attempts_share() as second:
        assert ("load",) not in second  # the next conversion does not see the last one's
    assert reuse.current() is not second
    outside.start_spare()  # no worker without a conversion to close it
    assert outside.take_spare() is None


def test_export_is_shared_only_for_the_same_rewrites(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A later attempt with the same rewrites gets the same bytes, written to its own ONNX
    path, and the same rewrite records; other rewrites export again."""
    from toolchain.convert import export, pipeline
    from toolchain.convert import rewrites as rw

    exports: list[Any] = []

    def fake_export(model: Any, path: Path) -> bytes:
        exports.append(model)
        data = f"onnx {len(exports)}".encode()
        path.write_bytes(data)
        return data

    def fake_rewrite(data: bytes, names: Any) -> tuple[bytes, list[Any]]:
        rec = RewriteRecord(name=names[0], applied=2) if names else None
        return data + b"+" + ",".join(names).encode(), [rec] if rec else []

    monkeypatch.setattr(export, "export_onnx", fake_export)
    monkeypatch.setattr(rw, "rewrite_onnx", fake_rewrite)
    opts = QuantOptions()
    calib = type("DS", (), {"arrays": [np.zeros((2, 1), np.float32)]})()
    shared = reuse.Shared()
    name = rw.DEFAULT[0]

    def attempt(rewrites: tuple[str, ...], **kw: Any) -> Attempt:
        return Attempt(options=opts, rewrites=rewrites, equalize=False, bias_correction=False,
                       **kw)  # fmt: skip

    first = object()
    reloads: list[object] = []

    def reload() -> object:
        reloads.append(object())
        return reloads[-1]

    model = (first, reload)
    a1, a2, a3 = attempt((name,)), attempt((name,), weight_rounding="gptq"), attempt(())
    p1, p2, p3 = tmp_path / "1.onnx", tmp_path / "2.onnx", tmp_path / "3.onnx"
    d1 = pipeline._export_shared(shared, a1, model, calib, p1, opts)
    d2 = pipeline._export_shared(shared, a2, model, calib, p2, opts)
    assert d1 == d2 == p2.read_bytes() == f"onnx 1+{name}".encode() and len(exports) == 1
    assert a2.rewrite_records == a1.rewrite_records and a2.rewrite_records
    a2.rewrite_records[0]["applied"] = "changed"  # each attempt its own copy
    assert a1.rewrite_records[0]["applied"] == 2
    # other rewrites (none here): the same export, rewritten its own way, in its own file
    d3 = pipeline._export_shared(shared, a3, model, calib, p3, opts)
    assert d3 == b"onnx 1" == p3.read_bytes() and len(exports) == 1
    d4 = pipeline._export_shared(shared, a1, model, calib, p1, QuantOptions(per_channel=False))
    assert d4 == f"onnx 2+{name}".encode() and len(exports) == 2  # an option techniques read
    # the exporter changes a TorchScript module: only the first export uses the loaded one
    assert exports[0] is first and exports[1:] == reloads and len(reloads) == 1


# --- the strict-mode memo -------------------------------------------------------------------


def _meta(names: Any = None) -> dict[str, Any]:
    return {
        "onnx2tf_strict_mode": "on",
        "onnx2tf_strict_fallback": [{"strict_mode": "off", "error": "max rel 0.0225"}],
        "onnx2tf_strict_names": names or {"uids": [[["", "tf.math.add"], 3]], "observed": ["a"]},
    }


def test_strict_memo_is_keyed_by_graph_options_and_data(tmp_path: Path) -> None:
    strictmemo.forget()
    calib = [np.ones((4, 3, 8, 8), np.float32)]
    k = strictmemo.key(b"graph", {"not_use_onnxsim": True}, calib)
    others = [
        strictmemo.key(b"graph2", {"not_use_onnxsim": True}, calib),
        strictmemo.key(b"graph", {}, calib),
        strictmemo.key(b"graph", {"not_use_onnxsim": True}, [calib[0] * 2]),
    ]
    assert len({k, *others}) == 4
    assert strictmemo.lookup(k, tmp_path) is None
    # only a strict-off failure with strict on working is remembered
    assert not strictmemo.record(k, {**_meta(), "onnx2tf_strict_mode": "off"}, tmp_path)
    assert not strictmemo.record(k, {**_meta(), "onnx2tf_strict_fallback": []}, tmp_path)
    assert strictmemo.lookup(k, tmp_path) is None
    assert strictmemo.record(k, _meta(), tmp_path)
    got = strictmemo.lookup(k, tmp_path)
    assert got is not None and got["fallback"] == _meta()["onnx2tf_strict_fallback"]
    assert all(strictmemo.lookup(o, tmp_path) is None for o in others)
    # across processes: from the cache folder alone
    strictmemo.forget()
    assert strictmemo.lookup(k) is None
    assert strictmemo.lookup(k, tmp_path) == got
    strictmemo.forget()
    (tmp_path / strictmemo.DIRNAME / f"{k}.json").write_text("{broken")
    assert strictmemo.lookup(k, tmp_path) is None  # unreadable: as if absent
    (tmp_path / strictmemo.DIRNAME / f"{k}.json").write_text(
        json.dumps({"key": "another", "fallback": got["fallback"], "names": got["names"]})
    )
    assert strictmemo.lookup(k, tmp_path) is None  # a file that is not this key's
    strictmemo.forget()


class _FakeOnnx2tf:
    """onnx2tf whose strict-off model fails the float check (as ConvNeXt's does)."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def run(self, copy: Path, **kw: Any) -> dict[str, Any]:
        strict = not kw["disable_strict_mode"]
        self.calls.append(strict)
        from tf_keras.src import backend

        backend.unique_object_name("tf.math.add", zero_based=True, avoid_observed_names=True)
        return {"strict": strict}

    def check(self, model: dict[str, Any], *a: Any) -> float:
        return 1e-7 if model["strict"] else 0.0225


def _float_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, known: Any
) -> tuple[list[bool], Any, dict[str, Any]]:
    fake = _FakeOnnx2tf()
    monkeypatch.setattr(onnx2tf_stage, "run_onnx2tf", fake.run)
    monkeypatch.setattr(onnx2tf_stage, "float_check", fake.check)
    monkeypatch.setattr(onnx2tf_stage, "io_layouts", lambda *a: ([(0, 2, 3, 1)], [(0, 1)]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"x")
    job: dict[str, Any] = {"onnx": str(tmp_path / "m.onnx"), "onnx2tf": {},
                           "onnx2tf_strict_known": known,
                           "inputs": [{"name": "x", "torch_shape": [1]}],
                           "outputs": [{"name": "y", "torch_shape": [1]}]}  # fmt: skip
    _, tried = worker.float_model(
        job, tmp_path, [np.zeros((2, 3, 4, 4), np.float32)], io.StringIO(), onnx2tf_stage
    )
    return fake.calls, tried, job


def test_a_known_strict_failure_skips_the_strict_off_run_with_the_same_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The memo's hit runs onnx2tf once (strict on), reports the same fallback, and leaves
    tf_keras's layer names where the skipped run left them (the .tflite's tensor names)."""
    from tf_keras.src import backend

    backend.clear_session()
    calls, tried, job = _float_model(monkeypatch, tmp_path, None)
    assert calls == [False, True] and tried[0]["strict_mode"] == "off"
    names = job["_strict_names"]
    next_name = backend.unique_object_name("tf.math.add", zero_based=True)
    backend.clear_session()  # a fresh worker process
    known = {"fallback": tried, "names": json.loads(json.dumps(names))}
    calls2, tried2, _ = _float_model(monkeypatch, tmp_path, known)
    assert calls2 == [True] and tried2 == tried
    assert backend.unique_object_name("tf.math.add", zero_based=True) == next_name
    backend.clear_session()
    # an explicit strict-mode option is run as given, whatever the memo says
    monkeypatch.setattr(worker, "_strict_known", worker._strict_known)
    assert worker._strict_known({"onnx2tf_strict_known": known}, {"disable_strict_mode": 1}) is None
    assert worker._strict_known({"onnx2tf_strict_known": None}, {}) is None


# --- end to end: a gated conversion's attempts share, and give what a direct one gives --


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c1(x)).mean((2, 3)))


_SAME = ("tflite_sha256", "fidelity", "layers", "accuracy", "export_max_abs_err", "ops")


@pytest.mark.slow  # three small conversions: ~20 s idle, ~40 s on a loaded machine
def test_gated_attempts_share_work_and_match_a_direct_conversion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from toolchain import modelsrc
    from toolchain.convert import convert, export, pipeline

    counts = {"load": 0, "export": 0, "reference": 0}

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            counts[name] += 1
            return fn(*a, **kw)

        return wrapped

    monkeypatch.setattr(modelsrc, "load_model", spy("load", modelsrc.load_model))
    monkeypatch.setattr(export, "export_onnx", spy("export", export.export_onnx))
    monkeypatch.setattr(pipeline, "_torch_outputs", spy("reference", pipeline._torch_outputs))
    from toolchain.convert import tfproc

    workers: list[Any] = []

    class Spied(tfproc.TFWorker):
        def __init__(self, workdir: Path) -> None:
            super().__init__(workdir)
            workers.append(self)

    monkeypatch.setattr(tfproc, "TFWorker", Spied)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    val = rng.standard_normal((24, 3, 8, 8)).astype(np.float32)
    model = _Net().eval()
    kw: dict[str, Any] = {"calib": calib, "val": val, "input_shapes": [(1, 3, 8, 8)]}
    gated = Strategy(rewrites=(), fallback=False, int16_fallback=False, mixed_fallback=False)
    with pytest.raises(FidelityError):  # both attempts miss: each stays in the cache
        convert(model, out_dir=tmp_path / "gated", strategy=gated, min_sqnr=200.0,
                cache_dir=tmp_path / "cache", **kw)  # fmt: skip
    assert counts == {"load": 1, "export": 1, "reference": 1}  # two attempts, once each
    # each attempt that missed started the next one's worker early; the last one unused,
    # and every worker process has ended when convert returns
    assert len(workers) == 3 and all(w.proc.poll() is not None for w in workers)
    entries = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("report.json")]
    by_rounding = {e["conversion"]["weight_rounding"]: e for e in entries}
    assert sorted(by_rounding) == ["gptq", "none"]
    direct_res = convert(model, out_dir=tmp_path / "direct", cache=False,
                         strategy=Strategy(rewrites=(), fallback=False, weight_rounding="gptq",
                                           rounding_fallback=False, int16_fallback=False),
                         **kw)  # fmt: skip
    direct = direct_res.report
    shared = by_rounding["gptq"]
    assert shared["conversion"]["attempt"].startswith("gptq")  # it ran as the 2nd attempt
    for k in _SAME:
        assert shared[k] == direct[k], k

    # the per-layer table's int8 intermediates (dequantized into preallocated rows) are the
    # values the per-sample arrays concatenated gave
    from toolchain.artifacts import TensorSpec
    from toolchain.convert import validate

    data = direct_res.tflite_path.read_bytes()
    ins = tuple(TensorSpec.from_dict(d) for d in direct["inputs"])
    samples = [(val[i : i + 1],) for i in range(5)]
    new = validate.tflite_intermediates(data, samples, ins)
    old = _intermediates_concatenated(data, samples, ins)
    assert list(new) == list(old) and len(new) >= 3
    for t in old:
        assert new[t].dtype == old[t].dtype and np.array_equal(new[t], old[t]), t


def _intermediates_concatenated(data: bytes, samples: Any, ins: Any) -> dict[int, np.ndarray]:
    """validate.tflite_intermediates as it was (per-sample arrays, concatenated)."""
    from toolchain.convert.runtime import make_interpreter
    from toolchain.tflite_model import TFLiteModel

    model = TFLiteModel.from_bytes(data)
    interp = make_interpreter(data, preserve_all_tensors=True)
    det = interp.get_input_details()
    wanted = {t for op in model.main.operators for t in op.outputs
              if model.main.tensors[t].scale is not None}  # fmt: skip
    got: dict[int, list[np.ndarray]] = {t: [] for t in wanted}
    for sample in samples:
        for spec, arr in zip(ins, sample, strict=True):
            interp.set_tensor(det[spec.tflite_index]["index"], spec.to_tflite(arr))
        interp.invoke()
        for t in wanted:
            info = model.main.tensors[t]
            q = interp.get_tensor(t).astype(np.float32)
            got[t].append((q - np.float32(info.zero_point or 0)) * np.float32(info.scale or 1.0))
    return {t: np.concatenate([a[None] if a.ndim == 0 else a for a in v]) for t, v in got.items()}
