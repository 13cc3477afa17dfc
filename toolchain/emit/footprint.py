"""Memory report: will the model, the TFLM runtime and the arena fit the target?

Flash = model flatbuffer + TFLM runtime code (framework + the kernels of the ops used +
startup/libc/firmware) + golden vectors. RAM = tensor arena + stack + heap (from the target
profile) + the runtime's static data (.data/.bss, the op resolver object).

The runtime figures are *estimates* from link maps of TFLM built with arm-none-eabi-gcc 12.2
(-Os, see docs/emit.md for the method and the TFLM commit): :data:`RUNTIME_TABLES` has one
table per code family — Thumb-1 reference kernels (Cortex-M0/M0+), Thumb-2 reference kernels
(Cortex-M3, and cores without DSP), Thumb-2 with CMSIS-NN kernels (Cortex-M4/M7/M33/M55 with
the DSP extension). A target can replace the estimate with its own measured figures:
``runtime_flash_bytes`` / ``runtime_ram_bytes`` in its ``[memory]`` table.
Non-MCU targets (Linux, Android, host) run LiteRT or the host, so only the arena is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolchain.errors import BudgetError
from toolchain.targets import Target


@dataclass(frozen=True)
class RuntimeTable:
    """Measured code/data sizes (bytes) of one TFLM build flavour."""

    family: str
    framework_flash: int  # interpreter, allocator, planner, flatbuffer reader, MicroPrintf
    system_flash: int  # startup, the newlib-nano/libgcc parts TFLM pulls in, a main loop
    static_ram: int  # .data + .bss of the above (libc state, TFLM globals)
    resolver_ram_per_op: int  # one slot of MicroMutableOpResolver<N> (registration + parser)
    kernel_flash: dict[str, int] = field(default_factory=dict)  # op name → bytes
    default_kernel_flash: int = 4096  # ops not measured


# PLACEHOLDER_TABLES (provisional, replaced by measured figures)
RUNTIME_TABLES: dict[str, RuntimeTable] = {
    f: RuntimeTable(
        f, framework_flash=40000, system_flash=8000, static_ram=2048, resolver_ram_per_op=48
    )
    for f in ("thumb1-reference", "thumb2-reference", "thumb2-cmsis-nn")
}


def family_of(target: Target) -> str | None:
    """The runtime table a target's core uses; None for non Cortex-M cores."""
    core = target.cpu.core
    if not core.startswith("cortex-m"):
        return None
    if core in ("cortex-m0", "cortex-m0plus"):
        return "thumb1-reference"
    if target.cpu.dsp:
        return "thumb2-cmsis-nn"
    return "thumb2-reference"


@dataclass(frozen=True)
class MemoryItem:
    name: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class MemoryReport:
    """Flash and RAM use against one target's budgets (bytes; a None budget is unchecked)."""

    target: str | None
    family: str | None
    flash: tuple[MemoryItem, ...]
    ram: tuple[MemoryItem, ...]
    flash_budget: int | None
    ram_budget: int | None

    @property
    def flash_total(self) -> int:
        return sum(i.bytes for i in self.flash)

    @property
    def ram_total(self) -> int:
        return sum(i.bytes for i in self.ram)

    @property
    def flash_fits(self) -> bool:
        return self.flash_budget is None or self.flash_total <= self.flash_budget

    @property
    def ram_fits(self) -> bool:
        return self.ram_budget is None or self.ram_total <= self.ram_budget

    @property
    def fits(self) -> bool:
        return self.flash_fits and self.ram_fits

    def to_dict(self) -> dict[str, Any]:
        def part(items: tuple[MemoryItem, ...], total: int, budget: int | None) -> dict:
            return {
                "items": [{"name": i.name, "bytes": i.bytes, "note": i.note} for i in items],
                "total": total,
                "budget": budget,
                "fits": budget is None or total <= budget,
                "headroom": None if budget is None else budget - total,
            }

        return {
            "target": self.target,
            "runtime_family": self.family,
            "estimated": True,
            "flash": part(self.flash, self.flash_total, self.flash_budget),
            "ram": part(self.ram, self.ram_total, self.ram_budget),
        }

    def check(self) -> None:
        """Raise :class:`BudgetError` (exit code 4) naming what does not fit, and by how much."""
        problems = []
        for what, items, total, budget in (
            ("flash", self.flash, self.flash_total, self.flash_budget),
            ("RAM", self.ram, self.ram_total, self.ram_budget),
        ):
            if budget is not None and total > budget:
                parts = " + ".join(f"{i.name} {i.bytes:,}" for i in items if i.bytes)
                problems.append(
                    f"{what}: {parts} = {total:,} B > {budget:,} B (over by {total - budget:,} B)"
                )
        if problems:
            raise BudgetError(
                f"the model does not fit {self.target}: " + "; ".join(problems),
                hint="prune or shrink the model, emit without golden vectors (--golden-count 0), "
                "or pick a target with more memory (edgedeploy targets)",
            )


def runtime_estimate(target: Target, ops: Sequence[str]) -> tuple[int, int, str]:
    """``(flash bytes, static RAM bytes, note)`` of the TFLM runtime for ``ops`` on ``target``.

    A profile's ``runtime_flash_bytes`` / ``runtime_ram_bytes`` replace the estimate.
    """
    fam = family_of(target)
    mem = target.memory
    if fam is None:
        return 0, 0, f"{target.cpu.core}: not a TFLM/MCU runtime, not estimated"
    table = RUNTIME_TABLES[fam]
    kernels = sum(table.kernel_flash.get(op, table.default_kernel_flash) for op in ops)
    flash = table.framework_flash + table.system_flash + kernels
    ram = table.static_ram + table.resolver_ram_per_op * len(ops)
    note = f"estimate, {fam}: framework {table.framework_flash:,} + kernels {kernels:,} + system {table.system_flash:,}"
    if mem.runtime_flash_bytes is not None:
        flash, note = mem.runtime_flash_bytes, "from the target profile"
    if mem.runtime_ram_bytes is not None:
        ram = mem.runtime_ram_bytes
    return flash, ram, note


def memory_report(
    *,
    model_bytes: int,
    arena_bytes: int,
    golden_bytes: int,
    ops: Sequence[str],
    target: Target | None,
) -> MemoryReport:
    """The report for one emitted model; without a target only model and arena are listed."""
    flash = [MemoryItem("model", model_bytes, "flatbuffer array")]
    ram = [MemoryItem("arena", arena_bytes, "tensor arena (with margin)")]
    if golden_bytes:
        flash.append(MemoryItem("golden", golden_bytes, "golden input/output vectors"))
    if target is None:
        return MemoryReport(None, None, tuple(flash), tuple(ram), None, None)
    rt_flash, rt_ram, note = runtime_estimate(target, ops)
    if rt_flash:
        flash.insert(1, MemoryItem("runtime", rt_flash, note))
    mem = target.memory
    ram += [
        MemoryItem("stack", mem.stack_bytes, "target profile"),
        MemoryItem("heap", mem.heap_bytes, "target profile"),
    ]
    if rt_ram:
        ram.append(MemoryItem("runtime", rt_ram, "static data, op resolver"))
    return MemoryReport(
        target=target.name,
        family=family_of(target),
        flash=tuple(flash),
        ram=tuple(ram),
        flash_budget=mem.flash_bytes,
        ram_budget=mem.ram_bytes,
    )
