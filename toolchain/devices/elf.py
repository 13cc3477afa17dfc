"""Check that a native binary can run on a device before pushing it (ELF header only).

Only the identification bytes and ``e_type``/``e_machine`` are read; nothing is executed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import InputFileError

#: e_machine values of the ABIs phones and boards use.
MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
#: Android ABI names (ro.product.cpu.abilist) and Linux ``uname -m`` names → e_machine.
ABI_MACHINE = {
    "arm64-v8a": 183,
    "aarch64": 183,
    "arm64": 183,
    "armeabi-v7a": 40,
    "armeabi": 40,
    "armv7l": 40,
    "armv6l": 40,
    "x86_64": 62,
    "x86": 3,
    "i686": 3,
    "riscv64": 243,
}
ET_EXEC, ET_DYN = 2, 3


@dataclass(frozen=True)
class ElfInfo:
    bits: int  # 32 or 64
    machine: int  # e_machine
    elf_type: int  # e_type

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"e_machine {self.machine}")


def read_elf(path: Path) -> ElfInfo:
    """Parse the ELF header of ``path``. Raises :class:`InputFileError` if it is not ELF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise InputFileError(
            f"{path} is not a native executable (no ELF header)",
            hint="give the benchmark_model binary built for the device "
            "(e.g. bazel build -c opt --config=android_arm64 "
            "//tensorflow/lite/tools/benchmark:benchmark_model)",
        )
    bits = {1: 32, 2: 64}.get(head[4], 0)
    endian = "<" if head[5] == 1 else ">"
    elf_type, machine = struct.unpack(endian + "HH", head[16:20])
    return ElfInfo(bits=bits, machine=machine, elf_type=elf_type)


def check_executable_for(path: Path, abis: list[str]) -> ElfInfo:
    """Check that ``path`` is an executable ELF for one of the device's ``abis``.

    ``abis`` are Android ABI names (``arm64-v8a``) or ``uname -m`` names (``aarch64``); the
    first one is the device's primary ABI. Raises :class:`InputFileError` naming the binary's
    and the device's architecture when they differ, or when the file is an object file or
    core dump rather than a program.
    """
    info = read_elf(path)
    if info.elf_type not in (ET_EXEC, ET_DYN):
        raise InputFileError(
            f"{path} is an ELF file but not an executable (e_type {info.elf_type})",
            hint="give the linked benchmark_model program, not an object file or library",
        )
    wanted = {ABI_MACHINE[a] for a in abis if a in ABI_MACHINE}
    if wanted and info.machine not in wanted:
        raise InputFileError(
            f"{path} is built for {info.machine_name} ({info.bits}-bit) but the device runs "
            + ", ".join(abis),
            hint=f"build or download benchmark_model for {abis[0]}",
        )
    return info
