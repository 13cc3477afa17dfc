"""Linux-board flags shared by ``edgedeploy devices --host`` and ``edgedeploy bench --setup``,
and the ``devices --host`` table (see :mod:`toolchain.devices.linux_board`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from toolchain.cli import phone_options, ui


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """``--setup``, ``--wheels``, ``--setup-as-root`` (bench and devices)."""
    g = parser.add_argument_group("Linux boards: runtime setup (ssh)")
    g.add_argument(
        "--setup",
        action="store_true",
        help="install ai-edge-litert (the host's version) into ~/.edgedeploy/venv on the board "
        "first; does nothing when it is there already",
    )
    g.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="--setup from these .whl files (copied to the board) instead of the board's own "
        "pip access to PyPI: for boards without internet",
    )
    g.add_argument(
        "--setup-as-root",
        action="store_true",
        help="allow --setup when the login is root (refused otherwise)",
    )


def setup_options(args: argparse.Namespace) -> dict[str, Any]:
    """BenchOptions keyword arguments of :func:`add_setup_arguments`."""
    out: dict[str, Any] = {}
    if getattr(args, "setup", False):
        out["setup"] = True
    if getattr(args, "wheels", None) is not None:
        out["setup_wheels"] = args.wheels
    if getattr(args, "setup_as_root", False):
        out["setup_as_root"] = True
    return out


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """``devices --host user@board`` and its SSH flags (the bench command's:
    :data:`~toolchain.cli.phone_options.SSH_FLAGS`)."""
    g = parser.add_argument_group("Linux boards (ssh)")
    phone_options.add_ssh_arguments(
        g, host_help="check this Linux board (SSH, key-based) instead of listing Android devices"
    )
    g.add_argument("--target", help="target profile to check the board against (e.g. rpi4)")
    add_setup_arguments(parser)


def host_given(args: argparse.Namespace) -> bool:
    """Whether ``devices`` was asked about a Linux board (``--host``)."""
    return bool(phone_options.ssh_options(args).get("ssh_host"))


def run_host(args: argparse.Namespace) -> int:
    """``devices --host``: describe and check the board; exit 1 when a check is an error."""
    from toolchain.devices.linux_board import inspect_board
    from toolchain.targets import load_target

    ssh = phone_options.ssh_options(args)
    target = load_target(args.target) if args.target else None
    with ui.progress() as progress:
        progress("connect", 0, 1)
        report = inspect_board(
            ssh["ssh_host"],
            target=target,
            port=ssh.get("ssh_port"),
            key=ssh.get("ssh_key"),
            known_hosts=ssh.get("known_hosts"),
            trust_new_host=bool(ssh.get("trust_new_host")),
            setup=args.setup,
            wheels=args.wheels,
            allow_root=args.setup_as_root,
        )
        progress("connect", 1, 1)
    if args.json:
        ui.console.print_json(json.dumps(report.to_dict()))
        return 0 if report.ok else 1
    info = report.info
    table = Table(title=f"{info.where}" + (f" · target {target.name}" if target else ""))
    for col in ("", "board"):
        table.add_column(col)
    mem = f"{info.mem_total_bytes / 2**30:.1f} GiB" if info.mem_total_bytes else "?"
    rows = [
        ("machine", info.machine),
        ("os", info.os),
        ("kernel", info.kernel),
        ("user", f"{info.user} (uid {info.uid})"),
        ("cpus", str(info.cpus or "?")),
        ("memory", mem),
        ("governors", ", ".join(sorted(set(info.governors.values()))) or "-"),
        ("temperature", f"{max(info.temperatures.values()):.1f} °C" if info.temperatures else "-"),
    ]
    for p in info.pythons:
        what = "missing"
        if p.version:
            what = f"Python {p.version}, numpy {p.numpy or '-'}, ai-edge-litert {p.litert or '-'}"
        rows.append((p.command, what))
    if info.emulated:
        rows.append(("emulated", info.emulated))
    for k, v in rows:
        table.add_row(k, escape(v))
    ui.console.print(table)
    if report.setup is not None:
        s = report.setup
        ui.console.print(f"setup ({s.seconds:.1f} s): " + "; ".join(s.actions))
    colour = {"ok": "green", "warn": "yellow", "error": "red"}
    for c in info.checks:
        ui.console.print(f"[{colour[c.status]}]{c.status:5}[/] {c.name}: {escape(c.message)}")
    return 0 if report.ok else 1
