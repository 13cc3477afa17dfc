"""``make bench`` = ``python -m benchmarks.run [NAME ...] [-- OPTIONS]``.

Runs the named benchmarks (all when none is named), each writing
``benchmarks/results/<result>.json`` and its section of ``benchmarks/README.md``.
Options after ``--`` go to the benchmark (when exactly one is named), e.g.
``python -m benchmarks.run convert -- --cases ic,kws --repeats 1``.
"""

from __future__ import annotations

import importlib
import sys

#: benchmark name → module with ``main(argv) -> int``; the order ``make bench`` runs them in.
BENCHMARKS: dict[str, str] = {
    "convert": "benchmarks.convert_mlperf",
    "emit": "benchmarks.emit_bench",
    "phone-ssh": "benchmarks.phone_ssh",
    "mcu": "benchmarks.mcu_link",
    "arch-suite": "benchmarks.arch_suite",
    "peer-suite": "benchmarks.peer_suite",
    "peer-weights": "benchmarks.peer_weights",
    "prune": "benchmarks.prune_mlperf",
    "qemu": "benchmarks.qemu_firmware",
    "demo": "benchmarks.demo_bench",
    "compile": "benchmarks.compile_bench",
    "compiled": "benchmarks.compiled_qemu",
    "patch": "benchmarks.compiled_patch",
    "compile-suite": "benchmarks.compile_suite",
    "cmsisnn": "benchmarks.cmsisnn_qemu",
    "sweep": "benchmarks.sweep_bench",
    "lean": "benchmarks.lean_bench",
    "arm64": "benchmarks.arm64_standin",
    "convert-speed": "benchmarks.convert_speed",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1 :]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__ + "\nbenchmarks: " + ", ".join(BENCHMARKS))
        return 0
    names = args or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if extra and len(names) != 1:
        print("options after -- need exactly one benchmark name", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        status = max(status, importlib.import_module(BENCHMARKS[name]).main(extra or []))
    return status


if __name__ == "__main__":
    sys.exit(main())
