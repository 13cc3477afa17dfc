"""Build a rendered firmware project with arm-none-eabi-gcc, and measure the linked image.

The build runs the project's own ``Makefile`` (the same one a user runs by hand), so the
flags are the target's (``Target.cpu.gcc_flags()``), ``-Os``, ``--gc-sections`` and
newlib-nano. Flash and RAM use come from the linked ELF's section headers
(``arm-none-eabi-objdump -h``): flash is every loaded section whose load address lies in the
flash region (code, read-only data with the model, init arrays, the initial values of
``.data``); RAM is every allocated section in the RAM region (``.data``, ``.bss`` with the
arena, the reserved heap and stack). Both are compared with the target's budget.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toolchain.errors import (
    BudgetError,
    FirmwareError,
    InputFileError,
    ToolchainMissingError,
    UsageError,
)
from toolchain.targets import Target

log = logging.getLogger(__name__)

GCC = "arm-none-eabi-gcc"
OBJDUMP = "arm-none-eabi-objdump"
DEFAULT_BUILD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class MemoryUse:
    """Bytes of flash and RAM the linked image takes, against the target's budget."""

    flash_used: int
    ram_used: int
    flash_budget: int | None
    ram_budget: int
    sections: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return (self.flash_budget is None or self.flash_used <= self.flash_budget) and (
            self.ram_used <= self.ram_budget
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "flash_used_bytes": self.flash_used,
            "flash_budget_bytes": self.flash_budget,
            "ram_used_bytes": self.ram_used,
            "ram_budget_bytes": self.ram_budget,
            "sections": self.sections,
        }


@dataclass(frozen=True)
class FirmwareBuild:
    """A built firmware image."""

    project: Path
    fw: str
    elf: Path
    bin: Path
    hex: Path
    map: Path
    memory: MemoryUse
    warnings: tuple[str, ...] = ()

    def relocated(self, project: Path) -> FirmwareBuild:
        def move(p: Path) -> Path:
            return project / p.relative_to(self.project)

        return replace(
            self,
            project=project,
            elf=move(self.elf),
            bin=move(self.bin),
            hex=move(self.hex),
            map=move(self.map),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fw": self.fw,
            "elf": str(self.elf),
            "bin": str(self.bin),
            "hex": str(self.hex),
            "map": str(self.map),
            "memory": self.memory.to_dict(),
            "warnings": list(self.warnings),
        }


def require_tool(name: str, why: str) -> str:
    """The full path of program ``name``; raises :class:`ToolchainMissingError` if absent."""
    path = shutil.which(name)
    if path is None:
        raise ToolchainMissingError(
            f"{name} not found on PATH: it is needed to {why}",
            hint="install the Arm GNU toolchain and make "
            "(Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            "libstdc++-arm-none-eabi-newlib make; or scripts/install-system-deps.sh)",
        )
    return path


def build_project(
    project: str | os.PathLike[str],
    target: Target,
    *,
    fw: str,
    jobs: int = 2,
    timeout_s: float = DEFAULT_BUILD_TIMEOUT_S,
    build_dir: str = "build",
    make_args: tuple[str, ...] = (),
) -> FirmwareBuild:
    """Run ``make FW=<fw>`` in ``project`` and measure the image against ``target``'s budget.
    The image lands in ``<project>/<build_dir>/<fw>/firmware.{elf,bin,hex,map}``;
    ``make_args`` are passed on (e.g. ``EXTRA_CFLAGS=...``).

    Raises :class:`ToolchainMissingError` (no arm-none-eabi-gcc or make),
    :class:`BudgetError` (the image does not fit; the image is removed),
    :class:`FirmwareError` (compile/link errors, with the compiler's message; a timeout).
    """
    pdir = Path(project)
    require_tool(GCC, "build the firmware")
    make = require_tool("make", "build the firmware")
    if fw not in ("compiled", "tflm", "selftest"):
        raise UsageError(f"unknown firmware {fw!r}", hint="compiled, tflm or selftest")
    if not (pdir / "Makefile").is_file():
        raise InputFileError(
            f"{pdir} is not a firmware project (no Makefile)",
            hint="render one with: edgedeploy firmware --target NAME ...",
        )
    cmd = [make, "-C", str(pdir), f"FW={fw}", f"BUILD={build_dir}", f"-j{max(1, jobs)}"]
    cmd += make_args
    log.info("building %s firmware: %s", fw, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(
            f"building the firmware took longer than {timeout_s:.0f} s; stopped",
            hint="build it by hand with make -C to see where it stalls",
        ) from exc
    out_dir = pdir / build_dir / fw
    if proc.returncode != 0:
        _raise_build_error(proc.stdout + proc.stderr, target, out_dir)
    elf = out_dir / "firmware.elf"
    if not elf.is_file():
        raise FirmwareError(f"make succeeded but wrote no {elf}")
    memory = image_memory(elf, target)
    if not memory.fits:
        for name in ("firmware.elf", "firmware.bin", "firmware.hex"):
            (out_dir / name).unlink(missing_ok=True)
        raise BudgetError(_budget_message(memory, target), hint=_BUDGET_HINT)
    log.info("firmware %s: flash %d B, RAM %d B", elf, memory.flash_used, memory.ram_used)
    warnings = tuple(
        dict.fromkeys(
            ln.split("warning:", 1)[1].strip()
            for ln in (proc.stdout + proc.stderr).splitlines()
            if "warning:" in ln
        )
    )
    for w in warnings:
        log.warning("firmware build: %s", w)
    return FirmwareBuild(
        project=pdir,
        fw=fw,
        elf=elf,
        bin=out_dir / "firmware.bin",
        hex=out_dir / "firmware.hex",
        map=out_dir / "firmware.map",
        memory=memory,
        warnings=warnings,
    )


_BUDGET_HINT = (
    "prune or shrink the model, lower stack/heap in the target profile, or choose a bigger target"
)
_OVERFLOW_RE = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def _raise_build_error(log_text: str, target: Target, out_dir: Path) -> None:
    for name in ("firmware.elf", "firmware.bin", "firmware.hex"):
        (out_dir / name).unlink(missing_ok=True)
    over = _OVERFLOW_RE.findall(log_text)
    if over:
        parts = ", ".join(f"{region} by {int(n):,} B" for region, n in over)
        mem = target.memory
        raise BudgetError(
            f"the firmware does not fit {target.name}: {parts} "
            f"(flash {mem.flash_bytes or 0:,} B, RAM {mem.ram_bytes:,} B, "
            f"of which stack {mem.stack_bytes:,} B and heap {mem.heap_bytes:,} B)",
            hint=_BUDGET_HINT,
        )
    lines = [ln for ln in log_text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "undefined reference" in ln]
    tail = "\n".join((errors or lines)[-15:])
    hint = None
    if "TFLM_LIB" in log_text:
        hint = "pass --tflm-lib and --tflm-include (docs/tflm-library.md)"
    elif "VFP register arguments" in log_text:
        hint = "the TFLM library's float ABI differs from the target's (docs/tflm-library.md)"
    raise FirmwareError(f"the firmware build failed:\n{tail}", hint=hint)


_OBJDUMP_RE = re.compile(
    r"^\s*\d+\s+(?P<name>\S+)\s+(?P<size>[0-9a-fA-F]+)\s+(?P<vma>[0-9a-fA-F]+)\s+"
    r"(?P<lma>[0-9a-fA-F]+)\s+\S+\s+\S+\s*\n\s+(?P<flags>.*)$",
    re.MULTILINE,
)


def image_memory(elf: str | os.PathLike[str], target: Target) -> MemoryUse:
    """Flash and RAM use of a linked image (see the module docstring)."""
    exe = require_tool(OBJDUMP, "measure the firmware image")
    proc = subprocess.run(
        [exe, "-h", str(elf)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise FirmwareError(f"{elf}: cannot read section headers: {proc.stderr.strip()[:300]}")
    mem = target.memory
    flash_lo, ram_lo = mem.flash_origin, mem.ram_origin
    flash_hi = flash_lo + (mem.flash_bytes or 0)
    ram_hi = ram_lo + mem.ram_bytes
    flash = ram = 0
    sections: dict[str, dict[str, int]] = {}
    for m in _OBJDUMP_RE.finditer(proc.stdout):
        flags = m.group("flags")
        if "ALLOC" not in flags:
            continue
        size, vma, lma = (int(m.group(k), 16) for k in ("size", "vma", "lma"))
        entry = {"size": size, "vma": vma, "lma": lma}
        if "LOAD" in flags and flash_lo <= lma < flash_hi:
            flash += size
            entry["flash"] = size
        if ram_lo <= vma < ram_hi:
            ram += size
            entry["ram"] = size
        sections[m.group("name")] = entry
    if not sections:
        raise FirmwareError(f"{elf}: no allocated sections found; is it a linked ELF?")
    return MemoryUse(
        flash_used=flash,
        ram_used=ram,
        flash_budget=mem.flash_bytes,
        ram_budget=mem.ram_bytes,
        sections=sections,
    )


def _budget_message(m: MemoryUse, target: Target) -> str:
    parts = []
    if m.flash_budget is not None and m.flash_used > m.flash_budget:
        parts.append(f"flash {m.flash_used:,} B > {m.flash_budget:,} B")
    if m.ram_used > m.ram_budget:
        parts.append(f"RAM {m.ram_used:,} B > {m.ram_budget:,} B")
    return f"the firmware image does not fit {target.name}: " + ", ".join(parts)
