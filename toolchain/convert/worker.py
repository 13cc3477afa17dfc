"""The TF worker process: ``python -m toolchain.convert.worker`` (started by :mod:`tfproc`).

It imports TensorFlow and onnx2tf once, while the parent is still loading and exporting the
PyTorch model, then waits for one job on stdin (a JSON line), runs onnx2tf and the int8
quantization, checks that LiteRT can load and run the result, and exits.

Protocol: JSON lines on the original stdout (file descriptor 1 is redirected to stderr, the
log file, so that TF's and onnx2tf's prints cannot corrupt it)::

    {"event": "ready", "import_s": 3.1}
    {"event": "stage", "name": "onnx2tf"}            # a stage starts
    {"event": "progress", "stage": "calibrate", "done": 10, "total": 200}
    {"event": "done", "meta": {...}}                  # or
    {"event": "error", "stage": "onnx2tf", "message": "...", "ops": [...], "layers": [...]}
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO


def _send(proto: TextIO, **msg: Any) -> None:
    proto.write(json.dumps(msg) + "\n")
    proto.flush()


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # everything else printed goes to the log
    sys.stdout = sys.stderr
    t0 = time.perf_counter()
    try:
        import numpy as np
        import onnx2tf  # noqa: F401
        import tensorflow as tf  # noqa: F401 - the import is the point: pay for it early
    except Exception as exc:  # noqa: BLE001 - a broken environment: tell the parent
        _send(proto, event="error", stage="import", message=f"{type(exc).__name__}: {exc}")
        return 1
    _send(proto, event="ready", import_s=round(time.perf_counter() - t0, 3))
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the parent needed nothing after all (cache hit)
    job = json.loads(line)
    try:
        meta = run_job(job, proto, np)
    except _StageError as exc:
        _send(
            proto, event="error", stage=exc.stage, message=str(exc), ops=exc.ops, layers=exc.layers
        )
        return 1
    _send(proto, event="done", meta=meta)
    return 0


class _StageError(Exception):
    def __init__(
        self,
        stage: str,
        message: str,
        ops: list[str] | None = None,
        layers: list[str] | None = None,
    ):
        super().__init__(message)
        self.stage = stage
        self.ops = ops or []
        self.layers = layers or []


def _onnx2tf(
    job: dict[str, Any],
    work: Path,
    calib: list[Any],
    proto: TextIO,
    onnx2tf_stage: Any,
    *,
    strict: bool,
    extra: dict[str, Any],
) -> tuple[Any, list[tuple[int, ...]], list[tuple[int, ...]], float, bool]:
    """onnx2tf once (strict mode on or off) and the float check of its model; a failure of
    either is a _StageError. Returns (model, input perms, output perms, float error, strict)."""
    _send(proto, event="stage", name="onnx2tf")  # (re)starts the stage's time limit
    copy = onnx2tf_stage.prepare_workdir(Path(job["onnx"]), work / "onnx2tf")
    os.chdir(copy.parent)
    try:
        keras_model = onnx2tf_stage.run_onnx2tf(
            copy, **{**extra, "disable_strict_mode": not strict}
        )
        in_perms, out_perms = onnx2tf_stage.io_layouts(
            keras_model,
            [(i["name"], i["torch_shape"]) for i in job["inputs"]],
            [(o["name"], o["torch_shape"]) for o in job["outputs"]],
        )
    except Exception as exc:  # onnx2tf's failures come in every type
        traceback.print_exc()
        raise _StageError("onnx2tf", f"{type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(work)
    try:
        float_err = onnx2tf_stage.float_check(
            keras_model, Path(job["onnx"]), calib, in_perms, out_perms
        )
    except Exception as exc:  # the check itself could not run: say so, do not guess
        traceback.print_exc()
        raise _StageError("onnx2tf", f"checking onnx2tf's float model failed: {exc}") from exc
    if not float_err <= onnx2tf_stage.FLOAT_TOLERANCE:
        raise _StageError(
            "onnx2tf",
            f"onnx2tf's float model computes something else than the ONNX model (max "
            f"relative difference {float_err:.3g} on {onnx2tf_stage.FLOAT_SAMPLES} calibration "
            "samples): onnx2tf mistook a tensor layout",
        )
    return keras_model, in_perms, out_perms, float_err, strict


def float_model(
    job: dict[str, Any], work: Path, calib: list[Any], proto: TextIO, onnx2tf_stage: Any
) -> tuple[tuple[Any, list[tuple[int, ...]], list[tuple[int, ...]], float, bool], list[Any]]:
    """onnx2tf's float model, checked against the ONNX model: first with onnx2tf's strict
    mode off (its per-node validation inference takes most of its time), and again with
    strict mode on when that run raised or its float model failed the check. Options in
    ``job["onnx2tf"]`` that set ``disable_strict_mode`` are taken as given (one run).

    Returns ((model, input perms, output perms, float error, strict mode used), what the
    strict-off run said when it failed: ``[{"strict_mode": "off", "error": ...}]`` or [])."""
    extra = dict(job.get("onnx2tf", {}))
    tried: list[dict[str, str]] = []
    known = _strict_known(job, extra)
    if known is not None:  # this graph's strict-off run failed before: skip to strict on
        _keras_names_apply(job["onnx2tf_strict_known"].get("names"))
        return _onnx2tf(job, work, calib, proto, onnx2tf_stage, strict=True, extra=extra), known
    if "disable_strict_mode" not in extra:
        names_before = _keras_names()
        try:
            return _onnx2tf(job, work, calib, proto, onnx2tf_stage, strict=False, extra=extra), []
        except _StageError as exc:
            log_line = f"onnx2tf with strict mode off failed ({exc}); again with strict mode on"
            print(log_line, file=sys.stderr)
            tried.append({"strict_mode": "off", "error": str(exc)[:300]})
            job["_strict_names"] = _keras_names_delta(names_before, _keras_names())
    strict = not extra.pop("disable_strict_mode", False)
    return _onnx2tf(job, work, calib, proto, onnx2tf_stage, strict=strict, extra=extra), tried


def _strict_known(job: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, str]] | None:
    """What the strict-off run said when it failed for this very graph before (the parent's
    memo, :mod:`toolchain.convert.strictmemo`, keyed by the ONNX bytes, the onnx2tf options,
    the calibration data of the float check and the code): the strict-off run is skipped
    and the report records the same fallback. None: run as usual."""
    known = job.get("onnx2tf_strict_known")
    if not known or not known.get("fallback") or "disable_strict_mode" in extra:
        return None
    return [{"strict_mode": str(k["strict_mode"]), "error": str(k["error"])}
            for k in known["fallback"]]  # fmt: skip


def _keras_names() -> tuple[dict[str, int], set[str]]:
    """tf_keras's layer-name state (per-prefix counters, names taken): the names of the
    layers onnx2tf makes, and so the .tflite's tensor names, depend on what ran before."""
    from tf_keras.src import backend

    return dict(backend.get_default_graph_uid_map()), set(backend.OBSERVED_NAMES)


def _keras_names_delta(
    before: tuple[dict[str, int], set[str]], after: tuple[dict[str, int], set[str]]
) -> dict[str, Any]:
    """What a run added to the layer-name state (JSON-able, for the strict-mode memo):
    ``uids`` a list of [key, increment], a key a name or a list (tf_keras keys its counters
    by ``(namespace, name)`` tuples)."""
    return {
        "uids": [[list(k) if isinstance(k, tuple) else k, v - before[0].get(k, 0)]
                 for k, v in after[0].items() if v != before[0].get(k, 0)],
        "observed": sorted(after[1] - before[1]),
    }  # fmt: skip


def _keras_names_apply(delta: dict[str, Any] | None) -> None:
    """Advance the layer-name state as the skipped strict-off run did, so the strict-on
    model gets the tensor names (and the .tflite the bytes) it gets after that run."""
    if not delta:
        return
    from tf_keras.src import backend

    uids = backend.get_default_graph_uid_map()
    for k, v in delta.get("uids", []):
        uids[tuple(k) if isinstance(k, list) else k] += int(v)
    backend.OBSERVED_NAMES.update(str(n) for n in delta.get("observed", []))


def run_job(job: dict[str, Any], proto: TextIO, np: Any) -> dict[str, Any]:
    from toolchain.convert import onnx2tf_stage, quantize
    from toolchain.convert.options import QuantOptions

    options = QuantOptions(**job["options"])
    work = Path(job["workdir"])
    timings: dict[str, float] = {}

    t = time.perf_counter()
    with np.load(job["calib"]) as z:
        calib = [z[i["name"]] for i in job["inputs"]]
    converted, strict_tried = float_model(job, work, calib, proto, onnx2tf_stage)
    keras_model, in_perms, out_perms, float_err, strict_used = converted
    timings["onnx2tf"] = time.perf_counter() - t

    _send(proto, event="stage", name="quantize")
    t = time.perf_counter()
    step = max(1, int(calib[0].shape[0]) // 20)

    def on_sample(i: int, n: int) -> None:
        if i % step == 0 or i == n - 1:
            _send(proto, event="progress", stage="calibrate", done=i + 1, total=n)

    try:
        data = quantize.quantize(
            keras_model, calib, in_perms, options, on_sample=on_sample,
            range_margin=float(job.get("range_margin", 0.0)),
            range_method=str(job.get("range_method", "minmax")),
        )  # fmt: skip
    except quantize.QuantizeFailed as exc:
        traceback.print_exc()
        raise _StageError("quantize", str(exc), exc.ops, exc.layers) from exc
    except Exception as exc:  # TF raises many kinds
        traceback.print_exc()
        raise _StageError("quantize", f"{type(exc).__name__}: {exc}") from exc
    timings["quantize"] = time.perf_counter() - t
    mixed16 = _int16_for_mixed(job, keras_model, calib, in_perms, options, proto, timings)

    # Load and run it once here: a model LiteRT cannot allocate can abort the process
    # (SIGABRT), and it had better be this one.
    _send(proto, event="stage", name="check")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_content=data)
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        interp.invoke()
    except Exception as exc:  # LiteRT's RuntimeError/ValueError on a broken model
        traceback.print_exc()
        raise _StageError("check", f"LiteRT cannot run the int8 model: {exc}") from exc
    in_order = [int(d["index"]) for d in interp.get_input_details()]
    out_order = [int(d["index"]) for d in interp.get_output_details()]
    sig = interp._get_full_signature_list().get("serving_default", {})
    keras_in, keras_out = list(keras_model.input_names), list(keras_model.output_names)

    def position(kind: str, k: int, names: list[str], order: list[int]) -> int:
        idx = sig.get(kind, {}).get(names[k])
        if idx is None and len(names) == 1 == len(order):
            return 0  # no SignatureDef (seen with MobileNetV4-style nets): one tensor anyway
        if idx is None:
            raise _StageError("quantize", f"no signature entry for {kind[:-1]} {names[k]!r}")
        return order.index(int(idx))

    out = Path(job["out"])
    out.write_bytes(data)
    return {
        "inputs": [
            {"tflite_index": position("inputs", k, keras_in, in_order), "perm": list(p)}
            for k, p in enumerate(in_perms)
        ],
        "outputs": [
            {"tflite_index": position("outputs", k, keras_out, out_order), "perm": list(p)}
            for k, p in enumerate(out_perms)
        ],
        "timings": timings,
        "onnx2tf_max_rel_err": float(f"{float_err:.3g}"),
        "onnx2tf_strict_mode": "on" if strict_used else "off",
        "onnx2tf_strict_fallback": strict_tried,
        **({"onnx2tf_strict_names": job["_strict_names"]} if "_strict_names" in job else {}),
        **({"mixed_int16": mixed16} if mixed16 is not None else {}),
    }


def _int16_for_mixed(
    job: dict[str, Any],
    keras_model: Any,
    calib: list[Any],
    in_perms: list[tuple[int, ...]],
    options: Any,
    proto: TextIO,
    timings: dict[str, float],
) -> dict[str, Any] | None:
    """Mixed precision (``activations="mixed"``): the same float model quantized a second
    time with int16 activations (ops without a 16x8 kernel stay float there: they are never
    int16 candidates), written to ``job["out16"]``. Returns what happened (None when the
    attempt is not mixed); a failure is recorded, not raised: the int8 model stands."""
    if options.activations != "mixed" or not job.get("out16"):
        return None
    from dataclasses import replace

    from toolchain.convert import quantize

    _send(proto, event="stage", name="quantize")  # its own time limit
    t = time.perf_counter()
    opts16 = replace(
        options,
        activations="int16",
        input_dtype="float32" if options.io_input == "float32" else "int16",
        output_dtype="float32" if options.io_output == "float32" else "int16",
    )
    try:
        data16 = quantize.quantize(keras_model, calib, in_perms, opts16, float_fallback=True)
    except Exception as exc:  # noqa: BLE001 - recorded: mixed precision then has no int16 ops
        traceback.print_exc()
        timings["quantize int16"] = time.perf_counter() - t
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    Path(job["out16"]).write_bytes(data16)
    timings["quantize int16"] = time.perf_counter() - t
    return {"path": job["out16"]}


if __name__ == "__main__":
    sys.exit(main())
