"""Memory report: will the model, the TFLM runtime and the arena fit the target?

Flash = model flatbuffer + TFLM runtime code (framework + the kernels of the ops used +
the edgedeploy firmware around it) + golden vectors. RAM = tensor arena + stack + heap (from
the target profile) + the runtime's static data (.data/.bss, the op resolver object).

The runtime figures are *estimates* measured once by linking TFLM (tflite-micro 90b983c2,
2026-08-20; arm-none-eabi-gcc 12.2, -Os, function/data sections with --gc-sections,
newlib-nano, error strings kept) into a minimal Cortex-M4 program that builds a
MicroInterpreter, allocates and invokes: with an empty resolver (the framework) and with one
operator at a time (that kernel's cost, in :data:`KERNEL_FLASH_REFERENCE` and, for the
kernels CMSIS-NN replaces, :data:`KERNEL_FLASH_CMSIS_NN`). Kernels share helpers
(quantization utilities, tensor accessors): linked together, person_detect's and KWS's ops
took about :data:`SHARED_KERNEL_FLASH` less per extra op than the sum of the single
figures, so that much is counted once. Thumb-1 cores (M0/M0+) scale the code by
:data:`THUMB1_CODE_RATIO` (16 TFLM translation units compiled for both) and cores without an
FPU add the soft-float library (:data:`SOFT_FLOAT_FLASH`). The edgedeploy firmware itself
(startup, UART, the device protocol) is its measured self-test image. See docs/emit.md.

A target can replace the estimate with its own measured figures: ``runtime_flash_bytes`` /
``runtime_ram_bytes`` in its ``[memory]`` table. Non-MCU targets (Linux, Android, host) run
LiteRT or the host, so only the model and the arena are counted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toolchain.errors import BudgetError
from toolchain.targets import Target

#: TFLM framework (interpreter, allocator, planner, flatbuffer reader, MicroPrintf with
#: newlib-nano's vsnprintf): the empty-resolver program minus a bare startup, Cortex-M4.
FRAMEWORK_FLASH = 28_444
#: .data + .bss of that program: the MicroInterpreter object, TFLM globals, libc state.
FRAMEWORK_RAM = 360
#: One slot of MicroMutableOpResolver<N> on a 32-bit core (registration + parser).
RESOLVER_RAM_PER_OP = 36
#: Helper code several kernels share, counted once (reference / CMSIS-NN builds).
SHARED_KERNEL_FLASH = {"reference": 3_941, "cmsis-nn": 3_807}
#: The edgedeploy firmware without TFLM (the self-test image on mps2-an386: startup, board,
#: UART, device protocol; benchmarks/README.md "qemu-firmware"), and its static data besides
#: the stack and heap (the protocol's buffers). Measured when the table was made; the current
#: self-test image is 8,696 B flash (benchmarks/results/qemu_firmware.json), RAM the same.
FIRMWARE_FLASH = 8_568
FIRMWARE_RAM = 13_288
#: Thumb-1 / Thumb-2 code size, from 16 TFLM translation units compiled for both (-Os).
THUMB1_CODE_RATIO = 1.008
#: libgcc/libm soft-float routines a core without an FPU links in (float and double
#: arithmetic, conversions, exp/log/sqrt as TFLM's Prepare code uses them), by code family.
SOFT_FLOAT_FLASH = {"thumb1": 9_476, "thumb2": 1_664}
#: An operator not in the tables (custom ops, the Signal library).
DEFAULT_KERNEL_FLASH = 6_000

#: Flash (bytes) each operator adds when it is the only one registered: Cortex-M4,
#: reference kernels (measured; see the module docstring).
KERNEL_FLASH_REFERENCE: dict[str, int] = {
    "ABS": 6172,
    "ADD": 10692,
    "ADD_N": 6292,
    "ARG_MAX": 2148,
    "ARG_MIN": 2148,
    "ASSIGN_VARIABLE": 1712,
    "AVERAGE_POOL_2D": 6228,
    "BATCH_MATMUL": 11328,
    "BATCH_TO_SPACE_ND": 2528,
    "BROADCAST_ARGS": 1568,
    "BROADCAST_TO": 2652,
    "CALL_ONCE": 760,
    "CAST": 2676,
    "CEIL": 1852,
    "CONCATENATION": 6144,
    "CONV_2D": 12428,
    "COS": 6016,
    "CUMSUM": 6580,
    "DEPTHWISE_CONV_2D": 11804,
    "DEPTH_TO_SPACE": 2792,
    "DEQUANTIZE": 3480,
    "DIV": 10036,
    "DYNAMIC_UPDATE_SLICE": 3544,
    "ELU": 3220,
    "EMBEDDING_LOOKUP": 3644,
    "EQUAL": 9036,
    "EXP": 2436,
    "EXPAND_DIMS": 2180,
    "FILL": 2048,
    "FLOOR": 1200,
    "FLOOR_DIV": 5600,
    "FLOOR_MOD": 3324,
    "FULLY_CONNECTED": 10020,
    "GATHER": 3052,
    "GATHER_ND": 2532,
    "GREATER": 9292,
    "GREATER_EQUAL": 8300,
    "HARD_SWISH": 5112,
    "IF": 2368,
    "L2_NORMALIZATION": 3116,
    "L2_POOL_2D": 4200,
    "LEAKY_RELU": 5336,
    "LESS": 8300,
    "LESS_EQUAL": 8300,
    "LOG": 2516,
    "LOGICAL_AND": 1780,
    "LOGICAL_NOT": 1840,
    "LOGICAL_OR": 1780,
    "LOGISTIC": 8580,
    "LOG_SOFTMAX": 9212,
    "MAXIMUM": 5636,
    "MAX_POOL_2D": 6380,
    "MEAN": 9068,
    "MINIMUM": 5636,
    "MIRROR_PAD": 1496,
    "MUL": 10804,
    "NEG": 944,
    "NOT_EQUAL": 9004,
    "PACK": 1880,
    "PAD": 5640,
    "PADV2": 5672,
    "PRELU": 7216,
    "QUANTIZE": 6596,
    "READ_VARIABLE": 948,
    "REDUCE_ALL": 5696,
    "REDUCE_MAX": 7128,
    "REDUCE_MIN": 7128,
    "RELU": 5208,
    "RELU6": 2800,
    "RESHAPE": 2352,
    "RESIZE_BILINEAR": 3620,
    "RESIZE_NEAREST_NEIGHBOR": 3308,
    "REVERSE_V2": 5280,
    "ROUND": 1916,
    "RSQRT": 6776,
    "SELECT_V2": 6500,
    "SHAPE": 1112,
    "SIN": 6016,
    "SLICE": 2888,
    "SOFTMAX": 10444,
    "SPACE_TO_BATCH_ND": 2624,
    "SPACE_TO_DEPTH": 2832,
    "SPLIT": 2180,
    "SPLIT_V": 2436,
    "SQRT": 1972,
    "SQUARE": 1872,
    "SQUARED_DIFFERENCE": 10084,
    "SQUEEZE": 1968,
    "STRIDED_SLICE": 6236,
    "SUB": 10888,
    "SUM": 8936,
    "SVDF": 10968,
    "TANH": 8788,
    "TRANSPOSE": 2700,
    "TRANSPOSE_CONV": 11852,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 18852,
    "UNPACK": 1720,
    "VAR_HANDLE": 976,
    "WHILE": 2604,
    "ZEROS_LIKE": 1144,
}
#: The same for the kernels CMSIS-NN replaces (Cortex-M4 + DSP, CMSIS-NN kernels).
KERNEL_FLASH_CMSIS_NN: dict[str, int] = {
    "ADD": 13196,
    "AVERAGE_POOL_2D": 6960,
    "BATCH_MATMUL": 13528,
    "CONV_2D": 31880,
    "DEPTHWISE_CONV_2D": 22732,
    "FULLY_CONNECTED": 17568,
    "MAXIMUM": 5736,
    "MAX_POOL_2D": 7184,
    "MINIMUM": 5736,
    "MUL": 12208,
    "PAD": 5928,
    "PADV2": 5960,
    "SOFTMAX": 12264,
    "SVDF": 13652,
    "TRANSPOSE": 3264,
    "TRANSPOSE_CONV": 17892,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 21836,
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


def kernels_flash(ops: Sequence[str], *, cmsis_nn: bool) -> int:
    """Code of the kernels of ``ops`` (Cortex-M4 figures), shared helpers counted once."""
    table = {**KERNEL_FLASH_REFERENCE, **(KERNEL_FLASH_CMSIS_NN if cmsis_nn else {})}
    shared = SHARED_KERNEL_FLASH["cmsis-nn" if cmsis_nn else "reference"]
    own = 0
    for op in ops:
        single = table.get(op, DEFAULT_KERNEL_FLASH)
        own += max(single - shared, single // 4)
    return shared + own if ops else 0


def runtime_estimate(target: Target, ops: Sequence[str]) -> tuple[int, int, str]:
    """``(flash bytes, static RAM bytes, note)`` of the TFLM runtime for ``ops`` on ``target``.

    A profile's ``runtime_flash_bytes`` / ``runtime_ram_bytes`` replace the estimate.
    """
    fam = family_of(target)
    mem = target.memory
    if fam is None:
        return 0, 0, f"{target.cpu.core}: not a TFLM/MCU runtime, not estimated"
    thumb1 = fam == "thumb1-reference"
    scale = THUMB1_CODE_RATIO if thumb1 else 1.0
    kernels = kernels_flash(ops, cmsis_nn=fam == "thumb2-cmsis-nn")
    soft = (
        SOFT_FLOAT_FLASH["thumb1" if thumb1 else "thumb2"] if target.cpu.float_abi == "soft" else 0
    )
    flash = round((FRAMEWORK_FLASH + kernels + FIRMWARE_FLASH) * scale) + soft
    ram = FRAMEWORK_RAM + FIRMWARE_RAM + RESOLVER_RAM_PER_OP * len(ops)
    note = (
        f"estimate ({fam}): framework {FRAMEWORK_FLASH:,} + kernels {kernels:,} + "
        f"firmware {FIRMWARE_FLASH:,}"
        + (f" + soft-float {soft:,}" if soft else "")
        + (f", x{THUMB1_CODE_RATIO} Thumb-1" if thumb1 else "")
    )
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
        ram.append(MemoryItem("runtime", rt_ram, "static data: TFLM, firmware buffers, resolver"))
    return MemoryReport(
        target=target.name,
        family=family_of(target),
        flash=tuple(flash),
        ram=tuple(ram),
        flash_budget=mem.flash_bytes,
        ram_budget=mem.ram_bytes,
    )
