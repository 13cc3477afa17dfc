"""Host tier (fast, no TensorFlow): onnx2tf runs with its strict mode off first and again
with strict mode on when that model fails the float check or onnx2tf raises
(toolchain/convert/worker.py ``float_model``); the report records which one was used."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from toolchain.convert import onnx2tf_stage, worker


class _Fake:
    """Stands in for onnx2tf (what it was called with) and for the float check (a layout
    mistake when strict mode is off, as onnx2tf can make without its validation pass)."""

    def __init__(self, off_err: float = 0.0, off_raises: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.off_err, self.off_raises = off_err, off_raises

    def run(self, copy: Path, **kw: Any) -> dict[str, Any]:
        self.calls.append(kw)
        if kw["disable_strict_mode"] and self.off_raises:
            raise onnx2tf_stage.Onnx2TfFailed("onnx2tf exited with status 1")
        return {"strict": not kw["disable_strict_mode"]}

    def check(self, model: dict[str, Any], *a: Any) -> float:
        return 1e-7 if model["strict"] else self.off_err


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: _Fake, options: dict[str, Any]
) -> tuple[Any, list[Any], list[str]]:
    monkeypatch.setattr(onnx2tf_stage, "run_onnx2tf", fake.run)
    monkeypatch.setattr(onnx2tf_stage, "float_check", fake.check)
    monkeypatch.setattr(onnx2tf_stage, "io_layouts", lambda *a: ([(0, 2, 3, 1)], [(0, 1)]))
    monkeypatch.chdir(tmp_path)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read by the fakes")
    job = {"onnx": str(onnx), "onnx2tf": options, "inputs": [{"name": "x", "torch_shape": [1]}],
           "outputs": [{"name": "y", "torch_shape": [1]}]}  # fmt: skip
    proto = io.StringIO()
    calib = [np.zeros((2, 3, 4, 4), np.float32)]
    got, tried = worker.float_model(job, tmp_path, calib, proto, onnx2tf_stage)
    events = [json.loads(line)["name"] for line in proto.getvalue().splitlines()]
    return got, tried, events


def test_strict_mode_off_when_the_float_model_is_right(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _Fake(off_err=2e-6)
    (_, _, _, err, strict), tried, events = _run(monkeypatch, tmp_path, fake, {"a": 1})
    assert fake.calls == [{"a": 1, "disable_strict_mode": True}]
    assert strict is False and err == 2e-6 and tried == [] and events == ["onnx2tf"]


@pytest.mark.parametrize("off_err, off_raises", [(0.3, False), (float("inf"), False), (0, True)])
def test_strict_mode_on_when_the_fast_run_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, off_err: float, off_raises: bool
) -> None:
    fake = _Fake(off_err=off_err, off_raises=off_raises)
    (_, _, _, err, strict), tried, events = _run(monkeypatch, tmp_path, fake, {"a": 1})
    assert [c["disable_strict_mode"] for c in fake.calls] == [True, False]
    assert all(c["a"] == 1 for c in fake.calls)
    assert strict is True and err == 1e-7
    assert len(tried) == 1 and tried[0]["strict_mode"] == "off"
    assert ("computes something else" in tried[0]["error"]) != off_raises
    assert events == ["onnx2tf", "onnx2tf"]  # the strict run gets its own time limit


def test_strict_mode_failing_too_is_the_stage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _Fake(off_err=0.3)
    monkeypatch.setattr(_Fake, "check", lambda self, model, *a: 0.5)
    with pytest.raises(worker._StageError, match="computes something else"):
        _run(monkeypatch, tmp_path, fake, {})
    assert len(fake.calls) == 2


def test_an_explicit_strict_option_is_run_once_as_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _Fake(off_err=0.3)
    with pytest.raises(worker._StageError):
        _run(monkeypatch, tmp_path, fake, {"disable_strict_mode": True})
    assert fake.calls == [{"disable_strict_mode": True}]
    fake = _Fake()
    (_, _, _, _, strict), tried, _ = _run(monkeypatch, tmp_path, fake, {"disable_strict_mode": 0})
    assert fake.calls == [{"disable_strict_mode": False}] and strict and tried == []
