"""The phone / Linux-board flags of ``edgedeploy bench`` (ADB and SSH runners); the SSH login
flags (:data:`SSH_FLAGS`) are also ``edgedeploy devices --host``'s.

The bench command calls :func:`add_phone_arguments` on its parser and merges
:func:`phone_options` into its :class:`~toolchain.bench.options.BenchOptions` keyword
arguments. Flags the bench command already defines itself (``--runs``, ``--profile-ops``...)
are skipped here, so the two stay compatible whichever is written first.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# (flags, argparse keyword arguments, BenchOptions field)
_Flag = tuple[tuple[str, ...], dict[str, Any], str]

#: The SSH login flags of every command that logs in to a Linux board (``bench``, and
#: ``devices --host``: :func:`add_ssh_arguments`), defined once.
SSH_FLAGS: tuple[_Flag, ...] = (
    (("--host",), {"metavar": "USER@HOST[:PORT]", "help": "Linux board: SSH login (key-based)"}, "ssh_host"),
    (("--ssh-key",), {"type": Path, "metavar": "PATH", "help": "Linux board: private key (default: ssh-agent, ~/.ssh/id_*)"}, "ssh_key"),
    (("--ssh-port",), {"type": int, "metavar": "PORT", "help": "Linux board: SSH port (default: ~/.ssh/config's, else 22; not together with --host HOST:PORT)"}, "ssh_port"),
    (("--known-hosts",), {"type": Path, "metavar": "FILE", "help": "Linux board: known_hosts file to check the host key against (default ~/.ssh/known_hosts)"}, "known_hosts"),
    (("--trust-new-host",), {"action": "store_true", "default": None, "help": "Linux board: accept and remember an unknown host key (a changed key is always refused)"}, "trust_new_host"),
)  # fmt: skip

_FLAGS: tuple[_Flag, ...] = (
    (("--serial",), {"help": "Android: adb serial of the device (default: the only one attached)"}, "adb_serial"),
    (("--benchmark-binary",), {"type": Path, "metavar": "PATH", "help": "Android: TFLite benchmark_model built for the device (else the Python runner is used)"}, "benchmark_binary"),
    (("--rounds",), {"type": int, "metavar": "N", "help": "Android benchmark_model: processes to run, one sample each (default 5)"}, "rounds"),
    (("--delegate",), {"choices": ("gpu", "nnapi"), "help": "Android benchmark_model: run on the GPU or NNAPI delegate"}, "delegate"),
    *SSH_FLAGS,
    (("--allow-arch-mismatch",), {"action": "store_true", "default": None, "help": "phones/boards: run even if the device's CPU architecture is not the target's (the report says so)"}, "allow_arch_mismatch"),
    (("--remote-python",), {"metavar": "PATH", "help": "interpreter on the board/phone for the Python runner (default: python3)"}, "remote_python"),
    (("--threads",), {"type": int, "metavar": "N", "help": "phones/boards: interpreter threads"}, "threads"),
    (("--xnnpack",), {"action": argparse.BooleanOptionalAction, "default": None, "help": "phones/boards: force XNNPACK on/off (default: the runtime's default)"}, "use_xnnpack"),
    (("--cpu-affinity",), {"metavar": "MASK", "help": "phones/boards: pin with taskset MASK (hex, e.g. f0 = CPUs 4-7)"}, "cpu_affinity"),
    (("--cooldown",), {"type": float, "metavar": "SECONDS", "help": "phones: pause between benchmark_model rounds"}, "cooldown_s"),
    (("--bench-arg",), {"action": "append", "metavar": "ARG", "help": "Android: extra benchmark_model flag, passed through; write --bench-arg=--flag=value (repeatable)"}, "extra_args"),
)  # fmt: skip


def add_phone_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ADB/SSH flags to ``parser`` (those it does not define already)."""
    group = parser.add_argument_group("phones (adb) and Linux boards (ssh)")
    existing = set(parser._option_string_actions)
    for flags, kwargs, field in _FLAGS:
        if not existing.intersection(flags):
            group.add_argument(*flags, dest=f"phone_{field}", **kwargs)


def add_ssh_arguments(
    group: argparse._ArgumentGroup | argparse.ArgumentParser, *, host_help: str | None = None
) -> None:
    """Add :data:`SSH_FLAGS` (``--host`` with ``host_help`` when given); read them back with
    :func:`ssh_options`."""
    for flags, kwargs, field in SSH_FLAGS:
        if host_help is not None and field == "ssh_host":
            kwargs = {**kwargs, "help": host_help}
        group.add_argument(*flags, dest=f"phone_{field}", **kwargs)


def ssh_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`SSH_FLAGS` the user set (BenchOptions field names), as :func:`phone_options`."""
    return _options(args, SSH_FLAGS)


def phone_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`BenchOptions` keyword arguments the user set with these flags."""
    return _options(args, _FLAGS)


def _options(args: argparse.Namespace, flags: tuple[_Flag, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _flags, _kwargs, field in flags:
        value = getattr(args, f"phone_{field}", None)
        if value is None:
            continue
        out[field] = tuple(value) if field == "extra_args" else value
    return out
