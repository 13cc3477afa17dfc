"""``edgedeploy inspect FILE.tflite``: tensors, operators, sizes and quantization."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from toolchain.cli import ui
from toolchain.fsutil import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="show tensors, operators, sizes and quantization of a .tflite file"
    )
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-tensors", action="store_true", help="leave out the table of all tensors")
    p.set_defaults(func=run)


def _quant(q: dict[str, Any] | None) -> str:
    if q is None:
        return "-"
    if q.get("per_channel"):
        return (
            f"per-channel axis {q['axis']} ×{q['channels']}: "
            f"scale {q['scale_min']:.3g}…{q['scale_max']:.3g}, zp {q['zero_points'][:3]}"
        )
    return f"scale {q['scale']:.6g}, zp {q['zero_point']}"


def _tensor_table(title: str, tensors: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("#", "name", "shape", "dtype", "bytes", "quantization"):
        table.add_column(col, overflow="fold")
    for t in tensors:
        table.add_row(
            str(t["index"]),
            t["name"],
            "×".join(map(str, t["shape"])) or "scalar",
            t["dtype"] + (" const" if t["constant"] else ""),
            f"{t['bytes']:,}",
            _quant(t["quantization"]),
        )
    return table


def run(args: argparse.Namespace) -> int:
    from toolchain.tflite_inspect import describe  # imported here: keep CLI start-up light
    from toolchain.tflite_model import TFLiteModel

    info = describe(TFLiteModel.from_file(args.model))
    if args.no_tensors:
        for sg in info["subgraphs"]:
            sg.pop("tensors")
    if args.json:
        sys.stdout.write(to_json(info))
        return 0
    c = ui.console
    c.print(f"[bold]{info['file']}[/]  {info['bytes']:,} bytes  sha256 {info['sha256'][:16]}…")
    c.print(
        f"weights {info['weight_bytes']:,} bytes; schema v{info['schema_version']}; "
        f"{'integer-only' if info['integer_only'] else '[yellow]not integer-only[/]'}"
        + (f"; description {info['description']!r}" if info["description"] else ""),
        highlight=False,
    )
    budget = Table(title="bytes of the file", title_justify="left")
    for col in ("part", "bytes", "share"):
        budget.add_column(col, justify="left" if col == "part" else "right")
    for part, n in info["budget"].items():
        budget.add_row(part.replace("_", " "), f"{n:,}", f"{100 * n / max(info['bytes'], 1):.1f} %")
    c.print(budget)
    ops = Table(title="operators", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for name, n in info["ops"].items():
        ops.add_row(name, str(n))
    c.print(ops)
    c.print(
        "layout/requantize ops: " + ", ".join(f"{k} {v}" for k, v in info["counts"].items()),
        highlight=False,
    )
    for p in info["problems"]:
        c.print(f"[yellow]{p}[/]", highlight=False)
    for sg in info["subgraphs"]:
        prefix = f"subgraph {sg['index']}" + (f" {sg['name']}" if sg["name"] else "")
        c.print(_tensor_table(f"{prefix}: inputs", sg["inputs"]))
        c.print(_tensor_table(f"{prefix}: outputs", sg["outputs"]))
        c.print(
            f"{prefix}: {len(sg['operators'])} operators, "
            f"{sg['activation_bytes_total']:,} bytes of non-constant tensors (before arena reuse)",
            highlight=False,
        )
        if "tensors" in sg:
            c.print(_tensor_table(f"{prefix}: tensors", sg["tensors"]))
    return 0
