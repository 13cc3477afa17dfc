"""``edgedeploy bench``: measure a model on a device → ``OUT/bench_report.json``.

Runner families add their flags through :data:`FLAG_GROUPS`: each entry is a pair of
functions, ``add(parser)`` and ``options(args) -> dict`` (BenchOptions keyword arguments); one
line per family.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rich.table import Table

from toolchain.bench import BIT_EXACT_RUNNERS, RUNNERS, run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.cli import board, phone_options, ui
from toolchain.fsutil import check_output_path, staged_outputs
from toolchain.targets import load_target

EXIT_OUTPUT_MISMATCH = 3


def add_mcu_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("microcontrollers (serial, qemu, host-tflm)")
    g.add_argument("--port", help="serial URL: /dev/ttyACM0, socket://host:port, rfc2217://...")
    g.add_argument("--firmware", type=Path, metavar="ELF", help="firmware image (QEMU, --flash)")
    g.add_argument(
        "--flash", action="store_true", help="flash --firmware with the profile's command first"
    )


def mcu_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"port": args.port, "firmware": args.firmware, "flash": args.flash}
    return {k: v for k, v in out.items() if v is not None}


#: (add-flags function, options function) per runner family
FLAG_GROUPS = (
    (add_mcu_arguments, mcu_options),
    (phone_options.add_phone_arguments, phone_options.phone_options),
    (board.add_setup_arguments, board.setup_options),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure latency, memory and outputs on a device (board, QEMU, host TFLM, phone, Pi)",
    )
    p.add_argument("--target", required=True, help="target profile name or .toml path")
    p.add_argument("--model", required=True, type=Path, help="the .tflite model")
    p.add_argument("--out", required=True, type=Path, help="directory for bench_report.json")
    p.add_argument("--runner", choices=sorted(RUNNERS), help="override the target's transport kind")
    p.add_argument(
        "--runs", type=int, default=None, help="measured inferences (default: profile's)"
    )
    p.add_argument("--warmup", type=int, default=None, help="unmeasured inferences first")
    p.add_argument("--golden", type=Path, help="golden.npz (input_<i>) from the emit stage")
    p.add_argument("--profile-ops", action="store_true", help="per-operator timing where optional")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for one device operation")
    for add, _ in FLAG_GROUPS:
        add(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace, benchmark: dict[str, Any]) -> dict[str, Any]:
    """BenchOptions keyword arguments from the command line and the profile's [benchmark]."""
    kw: dict[str, Any] = {
        "runs": args.runs if args.runs is not None else int(benchmark.get("runs", 20)),
        "warmup": args.warmup if args.warmup is not None else int(benchmark.get("warmup", 2)),
        "runner": args.runner,
        "golden": args.golden,
        "profile_ops": args.profile_ops,
        "timeout_s": args.timeout,
    }
    for _, options in FLAG_GROUPS:
        kw.update(options(args))
    return kw


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    kw = options_from_args(args, dict(target.raw.get("benchmark", {})))
    options = BenchOptions(**kw)  # bad values fail here, before any device is touched
    check_output_path(args.out, option="--out")
    with ui.progress() as progress, staged_outputs(args.out) as stage:
        result = run_bench(target, args.model, dataclasses.replace(options, progress=progress))
        result.write(stage / "bench_report.json")
    print_summary(result, args.out / "bench_report.json")
    check = result.output_check
    if check is not None and not check.bit_exact and result.runner in BIT_EXACT_RUNNERS:
        ui.console_err.print(
            "[bold red]output mismatch[/]: the device's outputs are not bit-identical to the "
            "host TFLM interpreter's (exit code 3)"
        )
        return EXIT_OUTPUT_MISMATCH
    return 0


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def print_summary(result: BenchResult, path: Path) -> None:
    s = result.summary
    table = Table(title=f"{result.runner} · {result.target} · {Path(result.model).name}")
    for col in ("unit", "runs", "median", "p90", "mean ± std", "min / max", "median CI"):
        table.add_column(col, no_wrap=True)
    if s is not None:
        table.add_row(
            s.unit,
            str(result.runs)
            if result.runs_per_sample == 1
            else f"{result.runs} ({s.n}×{result.runs_per_sample})",
            _num(s.median),
            _num(s.p90),
            f"{_num(s.mean)} ± {_num(s.std)}",
            f"{_num(s.min)} / {_num(s.max)}",
            f"[{_num(s.ci_low)}, {_num(s.ci_high)}] ({s.ci_level:.0%})",
        )
    ui.console.print(table)
    if result.unit_note:
        ui.console.print(f"[dim]unit: {result.unit_note}[/]")
    mem = {k: v for k, v in result.memory.items() if k.endswith("_bytes") and v is not None}
    if mem:
        ui.console.print("memory: " + ", ".join(f"{k} {v:,}" for k, v in mem.items()))
    c = result.output_check
    if c is not None:
        verdict = "[green]bit-identical[/]" if c.bit_exact else f"[red]{c.mismatches} mismatches[/]"
        ui.console.print(
            f"outputs vs {c.reference}: {verdict} ({c.compared_values} values, "
            f"max |diff| {c.max_abs_diff:g})"
        )
    if result.per_op:
        ops = Table(title="per operator (per inference)")
        for col in ("#", "op", result.unit, "share"):
            ops.add_column(col)
        for op in sorted(result.per_op, key=lambda o: -o.per_inference)[:15]:
            share = f"{op.share:.1%}" if op.share is not None else "-"
            ops.add_row(str(op.index), op.name, _num(op.per_inference), share)
        ui.console.print(ops)
    for w in result.warnings:
        ui.console.print(f"[yellow]warning[/]: {w}")
    ui.console.print(f"report: {path}")
