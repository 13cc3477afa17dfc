"""Child side of the interpreter sandbox: runs TFLM / LiteRT on behalf of :mod:`.sandbox`.

Started as ``python worker.py`` (by path, so it imports only numpy and the interpreters, not
the toolchain package). It reads one JSON request per line on stdin and answers one JSON
line per request on a private copy of stdout; fd 1 itself is pointed at fd 2 so that
C-level prints cannot corrupt the protocol. Around every interpreter call fd 2 is redirected
to a temporary file, and what the C code printed there ("Failed to ..." lines) comes back in
the reply's ``log`` field instead of reaching the user's terminal.

A crash (SIGSEGV, SIGABRT) kills only this process; the parent sees EOF and reports it.

Requests (``op``):

* ``tflm_attempt`` {model, sha, arena, invoke, record} → {ok, stage, error, log, recorded}:
  build a TFLM interpreter with an ``arena``-byte arena (this allocates), optionally invoke it
  once on zero inputs; ``recorded`` is the RecordingMicroAllocator's total when ``record``.
* ``tflm_run`` {model, sha, arena, inputs, outputs} → {ok, error, log}: for every sample of
  the ``inputs`` .npz (``input_<i>`` arrays, samples along axis 0) reset the interpreter,
  set the inputs, invoke, and write ``output_<j>`` arrays to the ``outputs`` .npz.
* ``litert_run`` {model, sha, resolver, inputs, outputs} → {ok, error, log}: the same with
  ai-edge-litert; ``resolver`` is ``reference`` (BUILTIN_REF kernels) or ``optimized``
  (the default: optimized kernels and the XNNPACK delegate).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np

_models: dict[str, bytes] = {}
_LOG_LIMIT = 8000
_RECORDED = re.compile(rb"Arena allocation total (\d+) bytes")


class _Captured:
    text = ""
    raw = b""


@contextlib.contextmanager
def _capture_fd2() -> Iterator[_Captured]:
    """Redirect the C-level stderr (fd 2) to a temporary file for the duration."""
    out = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.raw = tmp.read()
            out.text = out.raw.decode("utf-8", "replace")[-_LOG_LIMIT:]


def _model(req: dict[str, Any]) -> bytes:
    sha = req["sha"]
    if sha not in _models:
        if len(_models) > 8:
            _models.clear()
        with open(req["model"], "rb") as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{req['model']} changed while it was being checked")
        _models[sha] = data
    return _models[sha]


def _tflm(req: dict[str, Any], arena: int) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(_model(req), arena_size=arena)


def _count(details: Any) -> int:
    """How many inputs/outputs: ``details(i)`` raises past the last one."""
    n = 0
    while True:
        try:
            details(n)
        except (IndexError, ValueError, RuntimeError):
            return n
        n += 1


def tflm_attempt(req: dict[str, Any]) -> dict[str, Any]:
    stage = "allocate"
    reply: dict[str, Any] = {"ok": False, "stage": stage, "error": "", "recorded": None}
    with _capture_fd2() as cap:
        try:
            interp = _tflm(req, int(req["arena"]))
            if req.get("invoke"):
                stage = "invoke"
                for i in range(_count(interp.get_input_details)):
                    d = interp.get_input_details(i)
                    interp.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
                interp.invoke()
            if req.get("record"):
                interp.print_allocations()
            reply["ok"] = True
            stage = "done"
        except (RuntimeError, ValueError, IndexError) as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
    reply["stage"] = stage
    reply["log"] = cap.text
    m = _RECORDED.search(cap.raw)
    if m:
        reply["recorded"] = int(m.group(1))
        reply["log"] = ""
    return reply


def _samples(path: str) -> tuple[list[np.ndarray], int]:
    with np.load(path, allow_pickle=False) as z:
        arrays = [z[f"input_{i}"] for i in range(len(z.files))]
    return arrays, (len(arrays[0]) if arrays else 0)


def _save(path: str, outs: list[list[np.ndarray]]) -> None:
    np.savez(path, **{f"output_{j}": np.stack(o) for j, o in enumerate(outs)})


class _Tflm:
    """The tflite-micro interpreter behind the small interface ``_run_samples`` uses."""

    def __init__(self, req: dict[str, Any]) -> None:
        self.interp = _tflm(req, int(req["arena"]))
        self.n_out = _count(self.interp.get_output_details)

    def reset(self) -> None:
        self.interp.reset()

    def set(self, i: int, arr: np.ndarray) -> None:
        self.interp.set_input(arr, i)

    def invoke(self) -> None:
        self.interp.invoke()

    def outputs(self) -> list[np.ndarray]:
        return [np.array(self.interp.get_output(j)) for j in range(self.n_out)]


class _LiteRT:
    """ai-edge-litert with ``reference`` (BUILTIN_REF) or ``optimized`` (AUTO) kernels."""

    def __init__(self, req: dict[str, Any]) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from toolchain.convert import mixed

        kind = {"reference": OpResolverType.BUILTIN_REF, "optimized": OpResolverType.AUTO}
        data = _model(req)
        if mixed.needs_litert_form(data):  # int8→int16 QUANTIZE: LiteRT runs it via float
            data = mixed.litert_form(data)
        self.interp = Interpreter(
            model_content=data,
            experimental_op_resolver_type=kind[req["resolver"]],
            num_threads=1,
        )
        self.interp.allocate_tensors()
        self.ins = self.interp.get_input_details()
        self.outs = self.interp.get_output_details()

    def reset(self) -> None:
        self.interp.reset_all_variables()

    def set(self, i: int, arr: np.ndarray) -> None:
        self.interp.set_tensor(self.ins[i]["index"], arr)

    def invoke(self) -> None:
        self.interp.invoke()

    def outputs(self) -> list[np.ndarray]:
        return [np.array(self.interp.get_tensor(d["index"])) for d in self.outs]


def _run_samples(req: dict[str, Any], runner: Any) -> dict[str, Any]:
    """Every sample of ``req['inputs']``: reset, set the inputs, invoke, collect outputs."""
    inputs, count = _samples(req["inputs"])
    with _capture_fd2() as cap:
        try:
            r = runner(req)
            outs: list[list[np.ndarray]] = []
            for k in range(count):
                r.reset()
                for i, arr in enumerate(inputs):
                    r.set(i, np.ascontiguousarray(arr[k]))
                r.invoke()
                got = r.outputs()
                outs = outs or [[] for _ in got]
                for j, o in enumerate(got):
                    outs[j].append(o)
            _save(req["outputs"], outs)
            reply: dict[str, Any] = {"ok": True, "error": ""}
        except (RuntimeError, ValueError, IndexError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    reply["log"] = cap.text
    return reply


def tflm_run(req: dict[str, Any]) -> dict[str, Any]:
    return _run_samples(req, _Tflm)


def litert_run(req: dict[str, Any]) -> dict[str, Any]:
    return _run_samples(req, _LiteRT)


OPS = {"tflm_attempt": tflm_attempt, "tflm_run": tflm_run, "litert_run": litert_run}


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints from C code go to stderr, never into the protocol
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            reply = OPS[req["op"]](req)
        except Exception:  # noqa: BLE001 (a worker bug goes back to the parent, never lost)
            reply = {"ok": False, "error": "worker error:\n" + traceback.format_exc(), "log": ""}
        reply["id"] = req.get("id")
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
