"""The arm64 stand-in (tests/support/arm64_device.py): image build, boot, ``--setup`` cold and
cached, and MLPerf Tiny KWS / IC through ``edgedeploy bench --target rpi4`` on it, next to the
same SSH path on this x86 host (a local sshd, target ``linux-x86_64``).

    python -m benchmarks.run arm64 [-- --runs 50 --warmup 5]

Needs root and the cached image (``make arm64-device``). The emulated latencies are QEMU's
translation speed on this x86 CPU, NOT a Raspberry Pi's. Writes
``benchmarks/results/arm64.json`` and the ``arm64-standin`` section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import README, reference_dir, say, update_readme, write_result
from tests.support import arm64_device
from tests.support.devices import Sshd
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.devices import linux_board
from toolchain.targets import load_target

MODELS = {
    "KWS DS-CNN int8": "mlperf_tiny/kws/kws_ref_model.tflite",
    "IC ResNet-8 int8": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
}


def _row(label: str, where: str, r: Any, wall: float) -> dict[str, Any]:
    s = r.summary
    assert s is not None and r.output_check is not None
    return {
        "model": label,
        "board": where,
        "runtime": r.environment.get("runtime"),
        "python": r.environment.get("python"),
        "machine": r.device.get("machine") or r.device.get("arch"),
        "median_ms": round(s.median, 3),
        "ci95_ms": [round(s.ci_low, 3), round(s.ci_high, 3)],
        "p90_ms": round(s.p90, 3),
        "first_ms": round(r.environment["first_inference_ms"], 2),
        "output_bit_exact": r.output_check.bit_exact,
        "max_abs_diff": r.output_check.max_abs_diff,
        "unit_note": r.unit_note,
        "session_wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args(argv)
    why = arm64_device.unavailable()
    if why:
        print(f"arm64 stand-in skipped (opt-in image): {why}", file=sys.stderr)
        return 0
    reference = reference_dir()
    image = arm64_device.image_dir()
    recipe = json.loads((image / "recipe.json").read_text())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgedeploy-bench-arm64-") as tmp:
        home = Path(tmp) / "home"
        (home / ".ssh").mkdir(parents=True)
        os.environ["HOME"] = str(home)
        os.environ.pop("SSH_AUTH_SOCK", None)
        pi = arm64_device.Arm64Device(Path(tmp) / "pi").start()
        try:
            (home / ".ssh/known_hosts").write_text(pi.known_hosts_line())
            boot_s = pi.start_s
            t0 = time.monotonic()
            cold = linux_board.inspect_board(
                pi.login, target=load_target("rpi4"), key=pi.user_key, setup=True, wheels=pi.wheels
            )
            cold_s = time.monotonic() - t0
            t0 = time.monotonic()
            cached = linux_board.inspect_board(
                pi.login, target=load_target("rpi4"), key=pi.user_key, setup=True, wheels=pi.wheels
            )
            cached_s = time.monotonic() - t0
            assert cold.setup and cold.setup.changed and cached.setup and not cached.setup.changed
            say(f"boot {boot_s:.2f} s, setup cold {cold_s:.1f} s, cached {cached_s:.1f} s")
            for label, rel in MODELS.items():
                opts = BenchOptions(runner="ssh", ssh_host=pi.login, ssh_key=pi.user_key,
                                    runs=args.runs, warmup=args.warmup, timeout_s=300.0)  # fmt: skip
                t0 = time.monotonic()
                r = run_bench(load_target("rpi4"), reference / rel, opts)
                rows.append(_row(label, "arm64 stand-in (qemu-user)", r, time.monotonic() - t0))
                say(f"{label} arm64: median {rows[-1]['median_ms']} ms")
        finally:
            pi.stop()
        with Sshd(Path(tmp) / "sshd") as sshd:
            with open(home / ".ssh/known_hosts", "a") as fh:
                fh.write(sshd.known_hosts_line())
            for label, rel in MODELS.items():
                opts = BenchOptions(runner="ssh", ssh_host=f"{getpass.getuser()}@127.0.0.1:{sshd.port}",
                                    ssh_key=sshd.user_key, remote_python=sys.executable,
                                    runs=args.runs, warmup=args.warmup, timeout_s=60.0)  # fmt: skip
                t0 = time.monotonic()
                r = run_bench(load_target("linux-x86_64"), reference / rel, opts)
                rows.append(_row(label, "this x86 host (local sshd)", r, time.monotonic() - t0))
                say(f"{label} host: median {rows[-1]['median_ms']} ms")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = Path("/proc/loadavg").read_text().split()[:3]
    doc = {
        "what": "arm64 stand-in (Debian arm64 under qemu-user) vs this x86 host, same SSH path",
        "when": when,
        "image": {"dir": str(image), **recipe},
        "boot_s": round(boot_s or 0.0, 2),
        "setup_cold_s": round(cold_s, 1),
        "setup_cached_s": round(cached_s, 1),
        "setup_actions": cold.setup.actions,
        "emulated": cold.info.emulated,
        "runs": args.runs,
        "warmup": args.warmup,
        "loadavg_after": load,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    write_result("arm64", doc)
    t = recipe.get("timings", {})
    build_s = sum(float(v) for v in t.values())
    lines = [
        f"Measured {when}; {os.cpu_count()} cores shared with other jobs (load average "
        f"{' '.join(load)} after the run). Image {image.name}: debian {recipe['suite']} arm64 "
        f"from {recipe['mirror']}, Python {recipe['python']}; built in {build_s:.0f} s "
        f"(debootstrap {t.get('debootstrap_s', 0):.0f} s, wheels {t.get('wheels_s', 0):.0f} s). "
        f"Boot (overlay + arm64 sshd listening): {doc['boot_s']:.2f} s. `--setup` from pushed "
        f"wheels: cold {cold_s:.1f} s, cached {cached_s:.1f} s. {args.runs} runs after "
        f"{args.warmup} warm-ups, XNNPACK and thread count: the runtime's defaults.\n",
        "| model | board | runtime | median ms (95 % CI) | p90 ms | first ms | outputs vs host LiteRT | session s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        exact = "bit-exact" if x["output_bit_exact"] else f"differs (max {x['max_abs_diff']:g})"
        lines.append(
            f"| {x['model']} | {x['board']} | {x['runtime']} (Python {x['python']}, "
            f"{x['machine']}) | {x['median_ms']:.3f} ({x['ci95_ms'][0]:.3f}–{x['ci95_ms'][1]:.3f}) "
            f"| {x['p90_ms']:.3f} | {x['first_ms']:.2f} | {exact} | {x['session_wall_s']:.1f} |"
        )
    body = "\n".join(lines) + "\n"
    if "<!-- arm64-standin:begin -->" in README.read_text():
        update_readme("arm64-standin", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
