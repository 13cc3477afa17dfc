"""``edgedeploy targets``: list the target profiles with their budgets."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from toolchain import targets as targets_lib
from toolchain.cli import ui
from toolchain.errors import TargetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list target profiles (boards, emulators, phones, Pis)")
    p.add_argument("name", nargs="?", help="show one profile in full")
    p.add_argument("--kind", choices=targets_lib.KINDS, help="only this kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _kib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024 / 1024:.0f} MiB" if n >= 4 * 1024 * 1024 else f"{n / 1024:.0f} KiB"


def run(args: argparse.Namespace) -> int:
    if args.name:
        t = targets_lib.load_target(args.name)
        ui.console.print_json(json.dumps(t.to_dict(), default=str))
        return 0
    found, broken = targets_lib.scan_targets(args.kind)
    if args.json:
        ui.console.print_json(json.dumps([t.to_dict() for t in found], default=str))
        return _report_broken(broken)
    table = Table(title="edgedeploy targets")
    for col in ("name", "kind", "cpu", "clock", "flash", "RAM", "transport"):
        table.add_column(col, no_wrap=True)
    table.add_column("description")
    for t in found:
        cpu = t.cpu.core + (f" +{t.cpu.fpu}" if t.cpu.fpu not in ("none", "auto") else "")
        clock = f"{t.cpu.clock_hz / 1e6:g} MHz" if t.cpu.clock_hz else "-"
        transport = t.transport.kind + (
            f" ({t.transport.qemu_machine})" if t.transport.qemu_machine else ""
        )
        table.add_row(
            t.name,
            t.kind,
            cpu,
            clock,
            _kib(t.memory.flash_bytes),
            _kib(t.memory.ram_bytes),
            transport,
            t.description,
        )
    ui.console.print(table)
    return _report_broken(broken)


def _report_broken(broken: list[TargetError]) -> int:
    """Each unreadable profile as an error line (after the list of the good ones); exit 1."""
    for exc in broken:
        ui.error(exc)
    return 1 if broken else 0
