"""A stand-in for TFLite's ``benchmark_model`` on the ADB test peer (a test double).

It accepts the real tool's flags, really runs the model with this machine's LiteRT
interpreter (ai_edge_litert: real inferences, real timings) and prints its results in the
real tool's format (see ``tests/data/benchmark_model/``): parameter lines, the two statistics
lines, ``Inference timings in us: ...``, the memory line and, with
``--enable_op_profiling=true``, the op tables. Per-op times are *not* measured (LiteRT's
Python API has no op profiler): each operator of the model gets an equal share of the
measured mean, so only the table's shape and names are meaningful.

A model the interpreter rejects gives the real tool's error lines and exit code 1. Test hooks
(never in the real tool): ``--edgedeploy_test_sleep=S`` sleeps S seconds before running,
``--edgedeploy_test_kill=1`` kills itself with SIGKILL.

Started on the peer through a small native launcher (see ``tests/support/devices.py``),
because the runner checks that the binary is an ELF executable for the device's ABI.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            print(f"ERROR: Unrecognized flag or missing value: {a}")
            sys.exit(1)
        k, _, v = a[2:].partition("=")
        out[k] = v
    return out


def _stat_line(xs: list[int]) -> str:
    if not xs:
        return "count=0"
    if min(xs) == max(xs):
        return f"count={len(xs)} curr={xs[-1]}" + ("(all same)" if len(xs) > 1 else "")
    mean = sum(xs) / len(xs)
    std = int((sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5)
    return f"count={len(xs)} first={xs[0]} curr={xs[-1]} min={min(xs)} max={max(xs)} avg={mean:g} std={std}"


def main() -> int:
    f = _flags(sys.argv[1:])
    print("STARTING!")
    print("Log parameter values verbosely: [0]")
    names = {
        "num_runs": "Min num runs",
        "num_threads": "Num threads",
        "warmup_runs": "Min warmup runs",
        "graph": "Graph",
        "enable_op_profiling": "Enable op profiling",
        "use_xnnpack": "Use xnnpack",
        "use_gpu": "Use gpu",
        "use_nnapi": "Use NNAPI",
    }
    for k, label in names.items():
        if k in f:
            v = f[k]
            print(f"{label}: [{ {'true': '1', 'false': '0'}.get(v, v) }]")
    if float(f.get("edgedeploy_test_sleep", "0")) > 0:
        time.sleep(float(f["edgedeploy_test_sleep"]))
    if f.get("edgedeploy_test_kill") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    graph = f.get("graph", "")
    if not os.path.isfile(graph):
        print(f"ERROR: Failed to mmap model {graph}")
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, object] = {"model_path": graph}
    if "num_threads" in f:
        kwargs["num_threads"] = int(f["num_threads"])
    if f.get("use_xnnpack") == "false":
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    print(f"Loaded model {graph}")
    t0 = time.perf_counter_ns()
    try:
        interp = Interpreter(**kwargs)  # type: ignore[arg-type]
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        print(f"ERROR: {str(exc).strip()}")
        print("ERROR: Failed to allocate tensors!")
        print("Benchmarking failed.")
        return 1
    init_us = (time.perf_counter_ns() - t0) // 1000
    print(f"The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    print(f"Initialized session in {init_us / 1e3:g}ms.")
    rng = np.random.default_rng()
    details = interp.get_input_details()

    def run(n: int) -> list[int]:
        out = []
        for _ in range(n):
            for d in details:
                if np.issubdtype(d["dtype"], np.integer):
                    info = np.iinfo(d["dtype"])
                    arr = rng.integers(info.min, info.max, size=d["shape"], endpoint=True)
                else:
                    arr = rng.standard_normal(d["shape"])
                interp.set_tensor(d["index"], arr.astype(d["dtype"]))
            s = time.perf_counter_ns()
            interp.invoke()
            out.append((time.perf_counter_ns() - s) // 1000)
        return out

    warm_n, runs_n = int(f.get("warmup_runs", "1")), int(f.get("num_runs", "50"))
    print(
        f"Running benchmark for at least {warm_n} iterations and at least 0 seconds but terminate if exceeding 150 seconds."
    )
    warm = run(warm_n)
    print(_stat_line(warm) + "\n")
    print(
        f"Running benchmark for at least {runs_n} iterations and at least 0 seconds but terminate if exceeding 150 seconds."
    )
    regular = run(runs_n)
    print(_stat_line(regular) + "\n")
    avg = sum(regular) / len(regular)
    first = warm[0] if warm else regular[0]
    wavg = sum(warm) / len(warm) if warm else float("nan")
    print(
        f"Inference timings in us: Init: {init_us}, First inference: {first}, Warmup (avg): {wavg:g}, Inference (avg): {avg:g}"
    )
    print("Memory footprint delta from the start of the tool (MB): init=1.5 overall=2.25")
    if f.get("enable_op_profiling") == "true":
        ops = interp._get_ops_details()
        share = avg / 1000.0 / max(1, len(ops))
        hdr = "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]"
        print("Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        print(hdr)
        for i, op in enumerate(ops):
            pct = 100.0 / len(ops)
            print(
                f"\t{op['op_name']:>24}\t{i * share:17.3f}\t{share:9.3f}\t{share:9.3f}\t{pct:7.3f}%\t"
                f"{pct * (i + 1):7.3f}%\t{0:10.3f}\t{1:9d}\t[op{i}]:{i}"
            )
        print(f"\nNumber of nodes executed: {len(ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
