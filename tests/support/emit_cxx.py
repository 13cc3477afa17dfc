"""Compile emitted C++ with the host g++ or arm-none-eabi-g++ (skipping when absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WARNINGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def need(compiler: str) -> str:
    """The compiler's path; skips the test (with how to install it) when it is missing."""
    path = shutil.which(compiler)
    if path is None:
        pytest.skip(f"{compiler} not installed (scripts/install-system-deps.sh installs it)")
    return path


def compile_cxx(compiler: str, out: Path, sources: list[Path], *flags: str) -> Path:
    """Compile (and link unless ``-c`` is in ``flags``); raises with the compiler's output."""
    cmd = [need(compiler), *WARNINGS, *flags, "-o", str(out), *map(str, sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out
