"""On-device benchmarking: statistics, the shared result schema, and the runners.

Runners (serial, QEMU, host-TFLM, host-compiled, ADB, SSH) all return a :class:`~toolchain.bench.result.BenchResult`
so that reports and comparisons do not care where a number came from.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from toolchain.errors import UsageError

if TYPE_CHECKING:
    from toolchain.bench.options import BenchOptions
    from toolchain.bench.result import BenchResult
    from toolchain.targets import Target

#: transport kind → "module:function" with signature ``(target, model, options) -> BenchResult``.
#: Explicit, imported lazily (the phone runners do not need the MCU stack and vice versa).
RUNNERS: dict[str, str] = {
    "adb": "toolchain.bench.android:run_adb",
    "ssh": "toolchain.bench.linux:run_ssh",
    "serial": "toolchain.bench.mcu:run_serial",
    "host-tflm": "toolchain.bench.mcu:run_host_tflm",
    "host-compiled": "toolchain.devices.host_compiled:run_host_compiled",
    "qemu": "toolchain.bench.qemu:run_qemu",
}

#: runners whose outputs must be bit-identical to the host TFLM interpreter's (the same kernels
#: on the device or on the host): a difference there is an error, not rounding
BIT_EXACT_RUNNERS = ("serial", "qemu", "host-tflm", "host-compiled")


def run_bench(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """Benchmark ``model`` on ``target`` with the runner of ``options.runner`` or the target's
    transport kind. Raises :class:`UsageError` for a runner that does not exist."""
    kind = options.runner or target.transport.kind
    if kind not in RUNNERS:
        raise UsageError(
            f"no benchmark runner for {kind!r}",
            hint="available runners: " + ", ".join(sorted(RUNNERS)),
        )
    module, func = RUNNERS[kind].split(":")
    runner = getattr(importlib.import_module(module), func)
    result: BenchResult = runner(target, Path(model), options)
    return result
