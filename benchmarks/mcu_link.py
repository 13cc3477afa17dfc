"""MCU benchmark path without a board: the host-TFLM device over a real pty (EDP end to end)
for the MLPerf Tiny int8 models, the link's own cost, and fuzzing throughput of the C
protocol library.

    .venv/bin/python -m benchmarks.run mcu -- [--runs 50] [--warmup 5] [--fuzz-seconds 60]

The latencies are HOST timings (the tflite-micro Python interpreter on this machine's CPU),
not a microcontroller's: they show the benchmark path works and what it costs, nothing more.
Writes ``benchmarks/results/mcu_link.json`` and the ``mcu`` section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import README, RESULTS, reference_dir, say, update_readme, write_result
from toolchain.bench import run_bench
from toolchain.bench.mcu import cpu_name
from toolchain.bench.options import BenchOptions
from toolchain.devices.host_tflm import HostTflmProcess
from toolchain.protocol import DeviceClient
from toolchain.targets import load_target
from toolchain.transports.serial_port import SerialTransport

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "KWS DS-CNN": "mlperf_tiny/kws/kws_ref_model.tflite",
    "IC ResNet-8": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "VWW MobileNetV1 0.25": "mlperf_tiny/vww/vww_96_int8.tflite",
    "AD FC autoencoder": "mlperf_tiny/ad/ad01_int8.tflite",
}


def bench_models(ref: Path, runs: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    target = load_target("host-tflm")
    for name, rel in MODELS.items():
        say(f"host-tflm: {name} ({runs} runs)")
        t0 = time.monotonic()
        r = run_bench(target, ref / rel, BenchOptions(runs=runs, warmup=warmup, timeout_s=120))
        s, check = r.summary, r.output_check
        if s is None or check is None:
            raise SystemExit(f"{name}: the benchmark returned no summary/output check")
        rows.append(
            {
                "model": name,
                "file": rel,
                "unit": r.unit,
                "median": round(s.median, 1),
                "p90": round(s.p90, 1),
                "ci": [round(s.ci_low, 1), round(s.ci_high, 1)],
                "runs": s.n,
                "arena_used_bytes": r.memory["arena_used_bytes"],
                "bit_exact": check.bit_exact,
                "compared_values": check.compared_values,
                "wall_s": round(time.monotonic() - t0, 1),
            }
        )
    return rows


def bench_link(ref: Path, repeats: int = 200) -> dict[str, Any]:
    """Round trips of ECHO over the pty, and upload/readback throughput."""
    model = ref / MODELS["VWW MobileNetV1 0.25"]
    with HostTflmProcess(model) as dev, SerialTransport(dev.port) as link:
        client = DeviceClient(link, timeout_s=2.0)
        client.resync()
        h = client.hello()
        out: dict[str, Any] = {"max_payload": h.max_payload}
        for size in (0, h.max_payload):
            payload = os.urandom(size)
            t0 = time.perf_counter()
            for _ in range(repeats):
                client.echo(payload)
            out[f"echo_{size}B_us"] = round((time.perf_counter() - t0) / repeats * 1e6, 1)
        data = os.urandom(client.tensor_info(0).nbytes)
        t0 = time.perf_counter()
        client.upload_input(0, data)
        dt = time.perf_counter() - t0
        out["upload_bytes"] = len(data)
        out["upload_MB_per_s"] = round(len(data) / dt / 1e6, 2)
    return out


def bench_fuzz(seconds: int) -> dict[str, Any]:
    edp, cdir = ROOT / "firmware_templates/common/edp", ROOT / "tests/c"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp, "fuzz_edp")
        srcs = [cdir / "fuzz_edp.c", cdir / "edp_fake.c", edp / "edp.c", edp / "edp_device.c"]
        subprocess.run(
            ["clang-14", "-std=c99", "-O1", "-g", f"-I{edp}", f"-I{cdir}", "-DEDP_MAX_RUNS=64u",
             "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
             *map(str, srcs), "-o", str(exe)],
            check=True,
        )  # fmt: skip
        corpus = Path(tmp, "corpus")
        corpus.mkdir()
        proc = subprocess.run(
            [str(exe), f"-max_total_time={seconds}", "-print_final_stats=1", str(corpus)],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    stats = dict(re.findall(r"stat::(\w+):\s*(\d+)", proc.stderr))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    return {
        "seconds": seconds,
        "exit_code": proc.returncode,
        "executions": int(stats.get("number_of_executed_units", 0)),
        "exec_per_s": int(stats.get("average_exec_per_sec", 0)),
        "corpus_units": int(stats.get("new_units_added", 0)),
        "coverage_edges": int(cov[-1][0]) if cov else 0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--fuzz-seconds", type=int, default=60)
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite the README section from the JSON"
    )
    args = ap.parse_args(argv)
    if args.render_only:
        result = json.loads((RESULTS / "mcu_link.json").read_text())
    else:
        ref = reference_dir()
        result = {
            "machine": {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d"),
            },
            "runs": args.runs,
            "warmup": args.warmup,
            "host_tflm": bench_models(ref, args.runs, args.warmup),
            "link": bench_link(ref),
            "fuzz": bench_fuzz(args.fuzz_seconds) if args.fuzz_seconds > 0 else {},
        }
        write_result("mcu_link", result)
    lines = [
        "Host-TFLM device over a pty (`edgedeploy bench --target host-tflm`): HOST timings of "
        "the tflite-micro Python interpreter, not MCU latencies. Measured "
        f"{result['machine'].get('date', '')} on {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores, shared with other jobs), "
        f"{result.get('runs')} runs after {result.get('warmup')} warm-ups; outputs compared "
        "with the host interpreter.\n",
        "| model | median µs | p90 µs | 95% CI of median | arena used B | outputs | bench wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["host_tflm"]:
        lines.append(
            f"| {r['model']} | {r['median']:,.0f} | {r['p90']:,.0f} | "
            f"{r['ci'][0]:,.0f}–{r['ci'][1]:,.0f} | {r['arena_used_bytes']:,} | "
            f"{'bit-identical' if r['bit_exact'] else 'MISMATCH'} ({r['compared_values']}) | "
            f"{r['wall_s']} |"
        )
    link = result["link"]
    full = link[f"echo_{link['max_payload']}B_us"]
    lines += [
        "",
        f"EDP link over the pty: ECHO round trip {link['echo_0B_us']} µs empty, {full} µs with "
        f"{link['max_payload']} B; input upload ({link['upload_bytes']:,} B, CRC-checked "
        f"chunks) {link['upload_MB_per_s']} MB/s.",
    ]
    fz = result["fuzz"]
    if fz:
        lines.append(
            f"libFuzzer (clang-14, ASan+UBSan) on the C protocol library: {fz['executions']:,} "
            f"executions in {fz['seconds']} s ({fz['exec_per_s']:,}/s), {fz['coverage_edges']} "
            f"coverage edges, exit code {fz['exit_code']}."
        )
    if README.exists():
        update_readme("mcu", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["bit_exact"] for r in result["host_tflm"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
