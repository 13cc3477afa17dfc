"""Linux-board runner over SSH, measured against a local OpenSSH server (localhost stand-in).

Starts a private sshd on 127.0.0.1 (as the emulated tests do), then benchmarks MLPerf Tiny
int8 models through the full SSH path (SFTP copy, remote_runner.py with this project's
interpreter, JSON back, host LiteRT output check) with 1 and 2 threads, XNNPACK on (the
runtime default) and off. The numbers are THIS x86 machine's, not a Raspberry Pi's.

    python -m benchmarks.run phone-ssh [-- --runs 200 --warmup 20]

Writes ``benchmarks/results/phone_ssh_localhost.json`` and the ``phone-ssh-localhost``
section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import README, reference_dir, say, update_readme, write_result
from tests.support.devices import LINUX_TARGET, Sshd
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.targets import load_target

MODELS = {
    "KWS DS-CNN int8": "mlperf_tiny/kws/kws_ref_model.tflite",
    "IC ResNet-8 int8": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)
    reference = reference_dir()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgedeploy-bench-sshd-") as tmp:
        home = Path(tmp) / "home"
        (home / ".ssh").mkdir(parents=True)
        os.environ["HOME"] = str(home)
        os.environ.pop("SSH_AUTH_SOCK", None)
        with Sshd(Path(tmp) / "sshd") as sshd:
            (home / ".ssh/known_hosts").write_text(sshd.known_hosts_line())
            for label, rel in MODELS.items():
                model = reference / rel
                for xnnpack in (None, False):
                    for threads in (1, 2):
                        opts = BenchOptions(
                            runner="ssh",
                            ssh_host=f"{getpass.getuser()}@127.0.0.1",
                            ssh_port=sshd.port,
                            ssh_key=sshd.user_key,
                            remote_python=sys.executable,
                            runs=args.runs,
                            warmup=args.warmup,
                            threads=threads,
                            use_xnnpack=xnnpack,
                            timeout_s=60.0,
                        )
                        t0 = time.monotonic()
                        r = run_bench(load_target(LINUX_TARGET), model, opts)
                        wall = time.monotonic() - t0
                        s = r.summary
                        assert s is not None and r.output_check is not None
                        rows.append(
                            {
                                "model": label,
                                "threads": threads,
                                "xnnpack": "off" if xnnpack is False else "default",
                                "median_ms": round(s.median, 4),
                                "ci95_ms": [round(s.ci_low, 4), round(s.ci_high, 4)],
                                "p90_ms": round(s.p90, 4),
                                "min_ms": round(s.min, 4),
                                "first_ms": round(r.environment["first_inference_ms"], 3),
                                "output_bit_exact": r.output_check.bit_exact,
                                "warnings": r.warnings,
                                "session_wall_s": round(wall, 2),
                            }
                        )
                        say(f"{label} threads={threads} xnnpack={rows[-1]['xnnpack']}: "
                            f"median {s.median:.4f} ms")  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    doc = {
        "what": "SSH runner (remote_runner.py over a local sshd): this x86 machine, not a Pi",
        "when": when,
        "machine": {
            "cpu": r.device.get("cpu_model"),
            "cpu_count": os.cpu_count(),
            "loadavg_after": load,
            "python": platform.python_version(),
            "runtime": r.environment.get("runtime"),
        },
        "runs": args.runs,
        "warmup": args.warmup,
        "rows": rows,
    }
    write_result("phone_ssh_localhost", doc)
    lines = [
        f"Measured {when} on this machine ({doc['machine']['cpu']}, {os.cpu_count()} cores shared "
        f"with other jobs, load average {' '.join(load)} after the run; "
        f"{doc['machine']['runtime']}), {args.runs} runs after {args.warmup} warm-ups each, "
        'milliseconds per `invoke()` measured on the "board" side.\n',
        "| model | threads | XNNPACK | median ms (95 % CI) | p90 ms | min ms | first ms | outputs vs host LiteRT | whole session s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['model']} | {x['threads']} | {x['xnnpack']} | {x['median_ms']:.3f} "
            f"({x['ci95_ms'][0]:.3f}–{x['ci95_ms'][1]:.3f}) | {x['p90_ms']:.3f} | {x['min_ms']:.3f} "
            f"| {x['first_ms']:.2f} | {'bit-exact' if x['output_bit_exact'] else 'differs'} "
            f"| {x['session_wall_s']:.1f} |"
        )
    body = "\n".join(lines) + "\n"
    if "<!-- phone-ssh-localhost:begin -->" in README.read_text():
        update_readme("phone-ssh-localhost", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
