"""``edgedeploy devices``: the Android devices adb sees, with model, SoC, ABI and version;
with ``--host user@board``, one Linux board over SSH checked against a target
(:mod:`toolchain.cli.board`)."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from toolchain.cli import board, ui
from toolchain.devices import adb


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices",
        help="list Android devices (adb): serial, state, model, SoC, ABI, Android version; "
        "or check a Linux board (--host user@pi --target rpi4 [--setup])",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    board.add_host_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if board.host_given(args):
        return board.run_host(args)
    found = adb.describe_all()
    if args.json:
        ui.console.print_json(json.dumps([d.to_dict() for d in found]))
        return 0
    if not found:
        ui.console.print(
            "no Android devices (connect one with USB debugging on, or `adb connect HOST:PORT`)"
        )
        return 0
    table = Table(title="Android devices (adb)")
    for col in ("serial", "state", "model", "SoC", "ABI", "Android"):
        table.add_column(col, no_wrap=True)
    for d in found:
        version = f"{d.android_version} (SDK {d.sdk})" if d.android_version else ""
        table.add_row(d.serial, d.state, d.model, d.soc, ",".join(d.abilist) or d.abi, version)
    ui.console.print(table)
    return 0
