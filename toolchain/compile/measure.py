"""Per-layer instruction counts of a compiled model, measured in QEMU.

:func:`measure_layers` builds the compiled-model firmware for a QEMU target (the same build
``edgedeploy firmware --runtime compiled`` makes, with the kernels :mod:`.select` picks for
that CPU), runs it under ``-icount shift=0`` through the ordinary QEMU runner and returns the
device's per-operator profile (the EDC_PROFILE hooks around every kernel call): guest
instructions per layer, identical run to run. ``edgedeploy compile --report --measure`` shows
them next to the plan.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import UsageError


@dataclass(frozen=True)
class LayerCounts:
    """Instructions per inference in total and per operator (graph order), and the output check."""

    target: str
    total: float
    per_op: tuple[float, ...]
    bit_exact: bool | None
    flash_bytes: int | None
    ram_bytes: int | None


def measure_layers(
    model: str | Path,
    target: str,
    *,
    patch: str = "auto",
    cmsis_nn: str | Path | None = None,
    cmsis_nn_ops: str = "all",
) -> LayerCounts:
    """Build and run ``model`` compiled for QEMU ``target`` (calling CMSIS-NN from the
    checkout ``cmsis_nn`` when given); raises UsageError for a target that is not emulated,
    and the errors of the firmware build and the QEMU runner. ``patch``: the split-execution
    policy the firmware's model is compiled with."""
    from toolchain.bench import run_bench
    from toolchain.bench.options import BenchOptions
    from toolchain.firmware import make_firmware
    from toolchain.targets import load_target

    t = load_target(target)
    if t.transport.kind != "qemu":
        raise UsageError(
            f"--measure runs the model in QEMU; target {t.name} is not a QEMU board",
            hint="use --target mps2-an386 (Cortex-M4F), mps2-an500 (M7) or lm3s6965evb (M3)",
        )
    with tempfile.TemporaryDirectory(prefix="edc-measure-") as tmp:
        res = make_firmware(
            target=t.name, out_dir=Path(tmp) / "fw", model=Path(model), runtime="compiled",
            build=True, patch=patch, cmsis_nn=cmsis_nn, cmsis_nn_ops=cmsis_nn_ops,
        )  # fmt: skip
        assert res.build is not None
        r = run_bench(t, Path(model), BenchOptions(runs=1, warmup=0, firmware=res.build.elf))
    check = r.output_check
    mem = r.memory or {}
    return LayerCounts(
        target=t.name,
        total=float(r.samples[0]),
        per_op=tuple(float(o.per_inference) for o in r.per_op),
        bit_exact=None if check is None else bool(check.bit_exact),
        flash_bytes=mem.get("flash_used_bytes"),
        ram_bytes=mem.get("ram_measured_bytes"),
    )
