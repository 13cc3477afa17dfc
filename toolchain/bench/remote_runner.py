#!/usr/bin/env python3
"""edgedeploy's remote runner: time a .tflite model on *this* machine, print one JSON object.

Copied to a Raspberry Pi / Linux board (SSH) or a phone with Python (ADB, e.g. Termux) and run
there, so it must stay standalone: only the standard library, numpy, and one TFLite
interpreter, tried in this order: ``ai_edge_litert``, ``tflite_runtime``, ``tensorflow.lite``.
Nothing from the edgedeploy package is imported.

Usage::

    python3 remote_runner.py --model M.tflite --inputs in.npz --runs 50 --warmup 5 \\
        [--threads 4] [--xnnpack auto|on|off] [--progress-every 0.5]

``in.npz`` holds one array per model input (``input_0``, ``input_1``, ... in the order of
``get_input_details()``), with the input's exact shape and dtype. The JSON on stdout has
``ok``, ``runtime``, ``samples_ms`` (one per timed ``invoke()``, warm-ups excluded),
``first_ms`` (the first, cold inference), ``outputs`` (raw bytes of every output after one
inference on the given inputs, base64, with dtype and shape), ``device`` (CPU model,
governors, temperatures ``before`` and ``after`` the timed loop) and ``config``.
With ``--progress-every S`` (> 0) a line ``EDP-PROGRESS done total`` goes to stderr at most
every ``S`` seconds during the warm-up and timed loop (``done`` of ``total = warmup + runs``
inferences; written between inferences, outside the timed region).
On failure: ``{"ok": false, "kind": ..., "error": ...}`` and exit code 2 (bad arguments),
3 (no interpreter), 4 (the interpreter rejected the model), 5 (inference failed).
"""

import argparse
import base64
import glob
import json
import os
import platform
import sys
import time

EXIT_USAGE, EXIT_NO_RUNTIME, EXIT_MODEL, EXIT_INVOKE = 2, 3, 4, 5
PROGRESS_PREFIX = "EDP-PROGRESS"


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_model():
    """The board's model (device tree), else the CPU name from /proc/cpuinfo."""
    model = _read("/proc/device-tree/model")
    if model:
        return model
    info = _read("/proc/cpuinfo") or ""
    for key in ("Model", "model name", "Hardware", "Processor", "cpu model"):
        for line in info.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return platform.processor() or platform.machine()


def governors():
    out = {}
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        value = _read(path)
        if value:
            out[path.split("/")[5]] = value
    return out


def temperatures():
    """Thermal zones: {"<type> (zoneN)": degrees C}."""
    out = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = _read(os.path.join(zone, "temp"))
        try:
            milli = float(raw) if raw is not None else None
        except ValueError:
            milli = None
        if milli is None:
            continue
        kind = _read(os.path.join(zone, "type")) or "zone"
        out[kind + " (" + os.path.basename(zone) + ")"] = round(milli / 1000.0, 1)
    return out


def load_interpreter_class():
    """(Interpreter class, OpResolverType or None, "name version") of the first runtime found."""
    errors = []
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as mod

        version = getattr(ai_edge_litert, "__version__", "?")
        return mod.Interpreter, getattr(mod, "OpResolverType", None), "ai_edge_litert " + version
    except ImportError as exc:
        errors.append("ai_edge_litert: " + str(exc))
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as mod

        version = getattr(tflite_runtime, "__version__", "?")
        return mod.Interpreter, getattr(mod, "OpResolverType", None), "tflite_runtime " + version
    except ImportError as exc:
        errors.append("tflite_runtime: " + str(exc))
    try:
        import tensorflow as tf

        resolver = getattr(tf.lite.experimental, "OpResolverType", None)
        return tf.lite.Interpreter, resolver, "tensorflow.lite " + tf.__version__
    except ImportError as exc:
        errors.append("tensorflow: " + str(exc))
    raise ImportError("; ".join(errors))


def fail(kind, message, code):
    json.dump({"ok": False, "kind": kind, "error": message}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    sys.exit(code)


def main(argv=None):
    ap = argparse.ArgumentParser(description="time a .tflite model here; print JSON")
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help=".npz with input_0, input_1, ...")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--xnnpack", choices=("auto", "on", "off"), default="auto")
    ap.add_argument(
        "--progress-every",
        type=float,
        default=0.0,
        help="seconds between EDP-PROGRESS lines on stderr (0: none)",
    )
    args = ap.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        fail("usage", "runs must be >= 1, warmup >= 0, threads >= 1", EXIT_USAGE)

    try:
        import numpy as np
    except ImportError as exc:
        fail("no_runtime", "numpy is not installed: " + str(exc), EXIT_NO_RUNTIME)
    try:
        interpreter_cls, resolver, runtime = load_interpreter_class()
    except ImportError as exc:
        fail(
            "no_runtime",
            "no TFLite interpreter (pip install ai-edge-litert or tflite-runtime): " + str(exc),
            EXIT_NO_RUNTIME,
        )

    kwargs = {"model_path": args.model}
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    if args.xnnpack == "off":
        if resolver is None:
            fail("usage", runtime + " cannot disable XNNPACK", EXIT_USAGE)
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = interpreter_cls(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError, OSError) as exc:
        fail("model_rejected", str(exc).strip(), EXIT_MODEL)

    try:
        with np.load(args.inputs, allow_pickle=False) as npz:
            arrays = [npz[f"input_{i}"] for i in range(len(npz.files))]
    except (OSError, ValueError, KeyError) as exc:
        fail("usage", "cannot read inputs " + args.inputs + ": " + str(exc), EXIT_USAGE)
    details = interp.get_input_details()
    if len(arrays) != len(details):
        fail("usage", f"{len(arrays)} input arrays for {len(details)} model inputs", EXIT_USAGE)
    for arr, d in zip(arrays, details):  # noqa: B905 (runs on Python < 3.10)
        if tuple(arr.shape) != tuple(d["shape"]) or arr.dtype != d["dtype"]:
            fail(
                "usage",
                f"input {d['name']} wants {list(d['shape'])} {d['dtype'].__name__}, "
                f"got {list(arr.shape)} {arr.dtype}",
                EXIT_USAGE,
            )

    def run_once():
        for arr, d in zip(arrays, details):  # noqa: B905 (runs on Python < 3.10)
            interp.set_tensor(d["index"], arr)
        t0 = time.perf_counter_ns()
        interp.invoke()
        return (time.perf_counter_ns() - t0) / 1e6

    device = {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "governors": governors(),
        "temperatures_before": temperatures(),
    }
    try:
        first_ms = run_once()
        outputs = []
        for d in interp.get_output_details():
            value = np.ascontiguousarray(interp.get_tensor(d["index"]))
            outputs.append(
                {
                    "name": d["name"],
                    "dtype": value.dtype.str,
                    "shape": list(value.shape),
                    "data": base64.b64encode(value.tobytes()).decode("ascii"),
                }
            )
        total = args.warmup + args.runs
        every = args.progress_every
        last = time.monotonic()

        def report(done):
            # between inferences only: the timed region (run_once) never includes this
            nonlocal last
            if every > 0 and time.monotonic() - last >= every:
                last = time.monotonic()
                sys.stderr.write(f"{PROGRESS_PREFIX} {done} {total}\n")
                sys.stderr.flush()

        for i in range(args.warmup):
            run_once()
            report(i + 1)
        samples = []
        for i in range(args.runs):
            samples.append(run_once())
            report(args.warmup + i + 1)
    except (ValueError, RuntimeError) as exc:
        fail("invoke_failed", str(exc).strip(), EXIT_INVOKE)
    device["temperatures_after"] = temperatures()
    device["governors_after"] = governors()

    result = {
        "ok": True,
        "runtime": runtime,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "config": {
            "threads": args.threads,
            "xnnpack": args.xnnpack,
            "runs": args.runs,
            "warmup": args.warmup,
        },
        "first_ms": first_ms,
        "samples_ms": samples,
        "outputs": outputs,
        "device": device,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
