"""``edgedeploy emit MODEL.tflite --out DIR``: C arrays, op resolver, arena, golden vectors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from toolchain.cli import ui
from toolchain.fsutil import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emit",
        help="write a .tflite as TFLM C sources: model array, op resolver, arena size, golden vectors",
        description="Writes <name>_model_data.h/.cc, <name>_op_resolver.h, <name>_golden.h/.cc, "
        "golden.npz and emit_report.json into DIR (all or nothing). With --target the flash and "
        "RAM estimate is checked against the board's budget (exit 4 when it does not fit).",
    )
    p.add_argument("model", help="the .tflite model")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--target", metavar="NAME", help="target profile (edgedeploy targets)")
    p.add_argument("--name", metavar="NAME", help="C symbol stem (default: the model file's stem)")
    p.add_argument("--namespace", metavar="NS", help="C++ namespace, e.g. models or a::b")
    p.add_argument("--section", metavar="S", help="linker section for the model array")
    p.add_argument(
        "--golden",
        metavar="DATA",
        help=".npy/.npz inputs for the golden vectors (TFLite or PyTorch layout; float data "
        "is quantized); default: seeded random inputs",
    )
    p.add_argument(
        "--golden-count",
        type=int,
        default=3,
        metavar="N",
        help="golden samples to keep (default 3; 0: no golden files, no LiteRT check)",
    )
    p.add_argument(
        "--arena-margin",
        default="4%",
        metavar="M",
        help="headroom over the smallest working arena: 4%%, 512 (bytes) or 4%%+256 (default 4%%)",
    )
    p.add_argument("--no-litert-check", action="store_true", help="skip the TFLM vs LiteRT check")
    p.add_argument(
        "--allow-float",
        action="store_true",
        help="emit a model that computes in float (refused by default: not integer-only)",
    )
    p.add_argument(
        "--lean",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write the model without what TFLM never reads (names go to <name>_tensors.json); "
        "default: lean, except for phone and Linux targets (LiteRT reads the signature)",
    )
    p.add_argument("--json", action="store_true", help="print emit_report.json instead of tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.emit import emit

    with ui.progress() as prog:
        result = emit(
            args.model,
            out_dir=args.out,
            name=args.name,
            target=args.target,
            namespace=args.namespace,
            section=args.section,
            golden_data=args.golden,
            golden_count=args.golden_count,
            arena_margin=args.arena_margin,
            check_litert=not args.no_litert_check,
            allow_float=args.allow_float,
            lean=args.lean,
            progress=prog,
        )
    if args.json:
        sys.stdout.write(to_json(result.report))
        return 0
    _print_summary(result)
    return 0


def _print_summary(result: Any) -> None:
    c = ui.console
    a = result.arena
    c.print(
        f"[bold]{result.name}[/]: {len(result.files)} files in {result.out_dir}\n"
        f"arena {result.arena_size:,} B = smallest working {a.minimum:,} B "
        f"(TFLM recorded {a.recorded or 0:,} B) + {result.margin}; "
        f"{result.resolver.count} ops: {', '.join(result.resolver.methods)}",
        highlight=False,
    )
    if result.lean is not None:
        lean = result.lean
        c.print(
            f"lean model: {lean.bytes_after:,} B (given {lean.bytes_before:,} B), TFLM outputs "
            f"identical; names in {result.symbols.tensor_names}",
            highlight=False,
        )
    if result.golden is not None:
        c.print(f"golden: {result.golden.source}", highlight=False)
    for cmp in result.litert:
        style = "green" if cmp.exact else "yellow"
        c.print(f"[{style}]{cmp.summary()}[/]", highlight=False)
        if cmp.histogram and not cmp.exact:
            c.print(f"  |diff| histogram: {cmp.histogram}", highlight=False)
    m = result.memory
    if m.target is None:
        return
    t = Table(title=f"memory on {m.target} (runtime estimated: {m.family})", title_justify="left")
    for col in ("", "items", "total", "budget", "fits"):
        t.add_column(col)
    for what, items, total, budget, fits in (
        ("flash", m.flash, m.flash_total, m.flash_budget, m.flash_fits),
        ("RAM", m.ram, m.ram_total, m.ram_budget, m.ram_fits),
    ):
        t.add_row(
            what,
            " + ".join(f"{i.name} {i.bytes:,}" for i in items),
            f"{total:,}",
            "-" if budget is None else f"{budget:,}",
            "[green]yes[/]" if fits else "[red]no[/]",
        )
    c.print(t)
