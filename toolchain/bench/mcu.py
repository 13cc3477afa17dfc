"""The MCU benchmark over EDP (docs/bench.md): one procedure for every device that speaks
the protocol — a real board on a serial port (runner ``serial``), the host-TFLM device on a
pty (runner ``host-tflm``), and QEMU boards (runner ``qemu``, in ``toolchain.bench.qemu``,
which calls :func:`benchmark_device`).

The procedure: HELLO → check the protocol version and that the firmware was built for this
model (SHA-256, tensor shapes) → upload the golden input (or a seeded random one) → one
inference, read the outputs and compare them with the host tflite-micro interpreter's for the
same input (bit-identical expected) → ``warmup`` + ``runs`` inferences with per-inference
ticks → a short profiled RUN for the per-op table (when the device has a profiler) →
:class:`~toolchain.bench.result.BenchResult`. A device reset in the middle (BOOT) is
survived by re-uploading and starting the measurement again (twice at most).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolchain.bench.options import BenchOptions
from toolchain.bench.remote import compare_outputs
from toolchain.bench.result import BenchResult, OpTiming
from toolchain.errors import (
    DeviceError,
    DeviceResetError,
    FirmwareError,
    ModelMismatchError,
    RemoteError,
    ToolchainMissingError,
    UsageError,
)
from toolchain.progress import no_progress
from toolchain.protocol.client import DEFAULT_MAX_RUNS, DeviceClient, describe
from toolchain.protocol.frame import ErrCode
from toolchain.protocol.messages import DTYPES, FwKind, Hello, TickUnit
from toolchain.targets import Target
from toolchain.tflite_model import TFLiteModel
from toolchain.transports.serial_port import SerialTransport, find_port

if TYPE_CHECKING:
    from toolchain.devices.host_tflm import HostTflmProcess

log = logging.getLogger(__name__)

#: device resets survived during one benchmark before giving up
MAX_RESETS = 2
#: per-request timeout (seconds) for everything but RUN; RUN is scaled from a probe
REQUEST_TIMEOUT_S = 2.0
#: profiled inferences for the per-op table
PROFILE_RUNS = 3
REFERENCE = "host tflite-micro interpreter"


# --- units ---------------------------------------------------------------------------------


def tick_scale(h: Hello) -> tuple[str, float, str]:
    """(report unit, factor from raw counter steps to that unit, note) for a HELLO."""
    step = max(1, h.ticks_per_tick_count)
    mhz = f" at {h.clock_hz / 1e6:g} MHz" if h.clock_hz else ""
    per = f", {step} per counter step" if step != 1 else ""
    if h.tick_unit == TickUnit.INSTRUCTIONS:
        return (
            "instructions",
            step,
            f"guest instructions counted by QEMU -icount (SysTick{per}); QEMU does not "
            "model time: never read these as cycles or milliseconds",
        )
    if h.tick_unit == TickUnit.CYCLES:
        return "cycles", step, f"core clock cycles (DWT CYCCNT){mhz}"
    if h.tick_unit == TickUnit.US:
        return "us", step, "microseconds on the device's timer"
    if h.tick_unit == TickUnit.NS:
        note = "nanoseconds on the device's timer, reported in microseconds"
        if h.fw_kind == FwKind.HOST_TFLM:
            note = (
                "HOST timings: the tflite-micro Python interpreter on this machine's CPU "
                "(time.perf_counter_ns around invoke), not a microcontroller latency"
            )
        elif h.fw_kind == FwKind.COMPILED and h.info.get("board") == "host":
            note = (
                "HOST timings: the compiled model built with the host's gcc on this machine's "
                "CPU (clock_gettime around invoke), not a microcontroller latency"
            )
        return "us", step / 1000.0, note
    if h.tick_unit == TickUnit.SYSTICK:
        return "ticks", step, f"SysTick counts{mhz}{per}"
    raise DeviceError(f"the device reported an unknown tick unit {h.tick_unit}")


# --- inputs and the host reference ----------------------------------------------------------


def bench_inputs(model: TFLiteModel, golden: Path | None) -> tuple[list[np.ndarray], str]:
    """One sample per model input (shape = the tensor's, batch included): the first of
    ``golden`` (golden.npz from the emit stage, or any .npy/.npz it accepts), else seeded
    random values. Returns the arrays and where they came from."""
    from toolchain.emit import golden as golden_mod

    if golden is not None:
        arrays, desc = golden_mod.load_inputs(model, golden, count=1)
    else:
        arrays = golden_mod.random_inputs(model, count=1, seed=0)
        desc = "1 seeded random sample (seed 0)"
    return [
        np.ascontiguousarray(a[0]).reshape(t.shape)
        for a, t in zip(arrays, model.inputs, strict=True)
    ], desc


def host_outputs(model: TFLiteModel, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The host tflite-micro interpreter's outputs for one sample (in the emit sandbox)."""
    from toolchain.emit import golden as golden_mod
    from toolchain.emit.arena import recommended_arena
    from toolchain.emit.model_input import model_file

    with model_file(model) as mf:
        outs = golden_mod.run_tflm(mf, [a[None] for a in inputs], arena=recommended_arena(model))
    return [np.asarray(o[0]).reshape(t.shape) for o, t in zip(outs, model.outputs, strict=True)]


# --- the procedure ---------------------------------------------------------------------------


def check_device(h: Hello, model: TFLiteModel) -> None:
    """Raise :class:`ModelMismatchError` unless the firmware was built for ``model``."""
    if h.fw_kind == FwKind.SELFTEST:
        raise ModelMismatchError(
            "the device runs the self-test firmware, which has no model",
            hint="build and flash the benchmark firmware: edgedeploy firmware --model ... --build",
        )
    if not h.has_model:
        raise ModelMismatchError("the firmware does not report which model it was built for")
    if h.model_sha256.hex() != model.sha256:
        raise ModelMismatchError(
            f"the device runs a firmware built for another model (sha256 "
            f"{h.model_sha256.hex()[:16]}…, {model.source or 'the model'} is "
            f"{model.sha256[:16]}…)",
            hint="rebuild and flash the firmware for this model (edgedeploy firmware "
            "--model ... --build; bench --flash), or benchmark the model it was built for",
        )
    if (h.n_inputs, h.n_outputs) != (len(model.inputs), len(model.outputs)):
        raise ModelMismatchError(
            f"the device has {h.n_inputs} input(s) / {h.n_outputs} output(s), the model "
            f"{len(model.inputs)} / {len(model.outputs)}"
        )


def _check_tensors(client: DeviceClient, model: TFLiteModel) -> None:
    for output, tensors in ((False, model.inputs), (True, model.outputs)):
        for i, t in enumerate(tensors):
            info = client.tensor_info(i, output=output)
            want_dtype = np.dtype(str(t.dtype))
            got = (DTYPES.get(info.dtype), tuple(info.shape))
            if got != (want_dtype, tuple(t.shape)):
                kind = "output" if output else "input"
                raise ModelMismatchError(
                    f"{kind} {i}: the device has {got[0]} {list(info.shape)}, the model "
                    f"{want_dtype} {list(t.shape)}"
                )


def benchmark_device(
    client: DeviceClient,
    *,
    target: Target,
    model: TFLiteModel,
    options: BenchOptions,
    runner: str,
    device_info: dict[str, Any] | None = None,
    memory: dict[str, Any] | None = None,
    environment: dict[str, Any] | None = None,
) -> BenchResult:
    """Run the MCU benchmark procedure (module doc) on a connected device. ``device_info``,
    ``memory`` and ``environment`` are merged into the result (the port, the image's
    flash/RAM use, the emulator's version...). Raises the client's errors,
    :class:`ModelMismatchError`, and :class:`DeviceResetError` after more than
    :data:`MAX_RESETS` resets."""
    progress = options.progress or no_progress  # options were checked when made
    progress("connect", 0, 1)
    client.resync()
    h = client.hello()
    check_device(h, model)
    _check_tensors(client, model)
    progress("connect", 1, 1)
    unit, scale, note = tick_scale(h)
    inputs, inputs_desc = bench_inputs(model, options.golden)
    reference = host_outputs(model, inputs)
    warnings: list[str] = []
    resets = 0
    while True:
        try:
            measured = _measure(client, model, inputs, options, progress)
            break
        except DeviceResetError as exc:
            resets += 1
            if resets > MAX_RESETS:
                raise DeviceResetError(
                    f"the device reset {resets} times during the benchmark; last: {exc.message}",
                    hint="it probably crashes (HardFault: see its serial output) or runs out "
                    "of stack/arena; try fewer --runs or check the firmware",
                ) from exc
            warnings.append(f"the device reset during the benchmark ({exc.message}); restarted")
            log.warning("device reset; re-uploading and measuring again")
            client.hello()
    ticks, first_outputs, last_outputs, profile = measured
    stack = stack_figures(client, h, memory or {})
    check = compare_outputs(first_outputs, reference, REFERENCE)
    if not check.bit_exact:
        warnings.append(
            f"device outputs differ from the {REFERENCE}: {check.mismatches} of "
            f"{check.compared_values} values, max |diff| {check.max_abs_diff:g}"
        )
    if any(not np.array_equal(a, b) for a, b in zip(first_outputs, last_outputs, strict=True)):
        warnings.append(
            "outputs after the timed runs differ from those after the first inference: the "
            "model is stateful, or the firmware does not refill its inputs before each invoke"
        )
    golden_warning = _golden_outputs_warning(options.golden, reference)
    if golden_warning:
        warnings.append(golden_warning)
    per_op: list[OpTiming] = []
    if isinstance(profile, str):
        warnings.append(f"no per-op timing: {profile}")
    else:
        per_op = _op_table(profile, unit, scale)
    samples = [t * scale for t in ticks]
    result = BenchResult(
        runner=runner,
        target=target.name,
        model=model.source,
        model_sha256=model.sha256,
        unit=unit,
        samples=samples,
        warmup=options.warmup,
        unit_note=note,
        per_op=per_op,
        memory={
            "arena_bytes": h.arena_bytes,
            "arena_used_bytes": h.arena_used_bytes,
            **(memory or {}),
            **stack,
        },
        output_check=check,
        device={
            **describe(h),
            **(device_info or {}),
            "boots_seen": client.boots,
            "resends": client.resends,
        },
        environment={
            "host": platform.node(),
            "platform": platform.platform(),
            "inputs": inputs_desc,
            **(environment or {}),
        },
        warnings=warnings,
    )
    result.add_trust_warnings()
    return result


def stack_figures(client: DeviceClient, h: Hello, memory: dict[str, Any]) -> dict[str, Any]:
    """The stack high-water mark a firmware reports in HELLO (``stack_peak_bytes``: the
    compiled-model firmware paints its stack at boot), asked after the inferences; with the
    image's sections, ``ram_measured_bytes`` = .data + .bss + that peak (the RAM the image
    really uses, without the unused part of the reserved stack and heap). Empty when the
    firmware does not report it (its first HELLO, ``h``, has no such line)."""
    if "stack_peak_bytes" not in h.info:
        return {}
    h = client.hello()
    try:
        peak = int(h.info["stack_peak_bytes"])
    except (KeyError, ValueError):
        return {}
    out: dict[str, Any] = {"stack_peak_bytes": peak}
    if "stack_reserved_bytes" in h.info:
        with contextlib.suppress(ValueError):
            out["stack_reserved_bytes"] = int(h.info["stack_reserved_bytes"])
    sections = memory.get("sections") or {}
    if sections:
        data_bss = sum(
            int(sec.get("ram", 0)) for name, sec in sections.items() if name in (".data", ".bss")
        )
        out["ram_data_bss_bytes"] = data_bss
        out["ram_measured_bytes"] = data_bss + peak
    return out


def _measure(
    client: DeviceClient,
    model: TFLiteModel,
    inputs: list[np.ndarray],
    options: BenchOptions,
    progress: Callable[[str, int, int], None],
) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[Any] | str]:
    for i, x in enumerate(inputs):
        progress("upload input", i, len(inputs))
        client.upload_input(i, x.tobytes())
    progress("upload input", len(inputs), len(inputs))
    t0 = time.monotonic()
    client.run(warmup=0, runs=1, timeout=options.timeout_s)
    probe_s = time.monotonic() - t0
    first = [client.read_output_array(j) for j in range(len(model.outputs))]
    max_runs = (client.device.max_runs if client.device else None) or DEFAULT_MAX_RUNS
    per_run = options.timeout_s + 3.0 * probe_s * (options.warmup + min(options.runs, max_runs))
    progress("inference", 0, options.runs)
    ticks = client.run(
        warmup=options.warmup,
        runs=options.runs,
        timeout=per_run,
        on_progress=lambda done: progress("inference", done, options.runs),
    )
    progress("inference", options.runs, options.runs)
    last = [client.read_output_array(j) for j in range(len(model.outputs))]
    profile: list[Any] | str
    try:
        n = min(PROFILE_RUNS, options.runs, max_runs)
        client.run(warmup=0, runs=n, profile=True, timeout=per_run)
        profile = [(e, n) for e in client.profile()]
    except RemoteError as exc:
        if exc.code not in (ErrCode.UNSUPPORTED, ErrCode.NOT_READY):
            raise
        profile = "the device has no per-op profiler" + (
            f" ({client.device.info['per_op']})"
            if client.device and "per_op" in client.device.info
            else ""
        )
    return ticks, first, last, profile


def _op_table(profile: list[Any], unit: str, scale: float) -> list[OpTiming]:
    total = sum(e.ticks for e, _ in profile) or 1
    return [
        OpTiming(
            name=e.name,
            unit=unit,
            per_inference=e.ticks * scale / max(1, n),
            index=e.op_index,
            share=e.ticks / total,
        )
        for e, n in profile
    ]


def _golden_outputs_warning(golden: Path | None, reference: list[np.ndarray]) -> str | None:
    if golden is None or Path(golden).suffix != ".npz":
        return None
    with np.load(golden, allow_pickle=False) as z:
        for j, ref in enumerate(reference):
            key = f"output_{j}"
            if key in z.files and not np.array_equal(np.asarray(z[key])[0].reshape(ref.shape), ref):
                return (
                    f"{golden}: {key} differs from what the {REFERENCE} gives now; the "
                    "golden file is stale or from another model"
                )
    return None


# --- runners ---------------------------------------------------------------------------------


def flash_image(target: Target, image: Path, *, timeout_s: float = 300.0) -> None:
    """Flash ``image`` with the target profile's flash command (``{image}`` is replaced)."""
    if not target.flash_command:
        raise UsageError(
            f"target {target.name} has no flash command",
            hint="flash the board yourself, or add [flash] command = [...] to its profile",
        )
    if not image.is_file():
        raise UsageError(f"no such firmware image: {image}")
    cmd = [part.replace("{image}", str(image)) for part in target.flash_command]
    if shutil.which(cmd[0]) is None:
        raise ToolchainMissingError(
            f"{cmd[0]} (the flash tool of {target.name}) is not installed",
            hint=f"install it (e.g. pip install {cmd[0]}) or flash the board yourself",
        )
    log.info("flashing: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"flashing {target.name} timed out after {timeout_s:g} s") from exc
    if proc.returncode != 0:
        raise DeviceError(
            f"flashing {target.name} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}",
            hint="is the debug probe connected and the board powered?",
        )


def firmware_memory(target: Target, firmware: Path | None) -> dict[str, Any]:
    """The ``memory`` entries of a report for a firmware image: its path and flash/RAM use
    against ``target``'s budget (only the path when the ELF cannot be measured)."""
    if firmware is None:
        return {}
    from toolchain.firmware.build import image_memory

    try:
        return {"image": str(firmware), **image_memory(firmware, target).to_dict()}
    except (FirmwareError, ToolchainMissingError) as exc:
        log.warning("no flash/RAM figures for %s: %s", firmware, exc)
        return {"image": str(firmware)}


def run_serial(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """A real board on a serial port (``options.port``, else the profile's URL, else found by
    the profile's USB ids); optional flashing (``options.flash``) and reset (the profile's
    ``transport.reset``: dtr/rts pulse)."""
    tfl = TFLiteModel.from_file(model)
    port = options.port or target.transport.serial_url
    if not port:
        port = find_port(target.transport.usb_ids, what=target.name)
    if options.flash:
        if options.firmware is None:
            raise UsageError("--flash needs --firmware IMAGE")
        flash_image(target, options.firmware)
    with SerialTransport(port, baudrate=target.transport.baud) as link:
        client = DeviceClient(link, timeout_s=REQUEST_TIMEOUT_S)
        if target.transport.reset in ("dtr", "rts"):
            link.pulse(target.transport.reset)
            if not client.wait_boot(5.0):
                log.warning("no BOOT frame within 5 s after the %s reset", target.transport.reset)
        elif options.flash:
            client.wait_boot(5.0)
        return benchmark_device(
            client,
            target=target,
            model=tfl,
            options=options,
            runner="serial",
            device_info={"port": port, "baud": target.transport.baud},
            memory=firmware_memory(target, options.firmware),
        )


def run_host_tflm(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """The host-TFLM device (started for the model on a pty, or an already running one on
    ``options.port``)."""
    from toolchain.devices.host_tflm import HostTflmProcess

    return bench_pty_device(
        target,
        model,
        options,
        runner="host-tflm",
        no_firmware="runs no firmware",
        start=lambda: HostTflmProcess(model),
        process="python -m toolchain.devices.host_tflm",
    )


def bench_pty_device(
    target: Target,
    model: Path,
    options: BenchOptions,
    *,
    runner: str,
    no_firmware: str,
    start: Callable[[], HostTflmProcess],
    process: str,
) -> BenchResult:
    """:func:`benchmark_device` on a host device process that speaks EDP over a pty: the one
    already running on ``options.port``, else one ``start()`` returns (started here, stopped
    when the benchmark ends; ``process`` describes it in the report's device info). Host
    timings: the report's environment names the CPU. Raises UsageError when ``--firmware``
    was given (``no_firmware`` says why the runner takes none)."""
    tfl = TFLiteModel.from_file(model)
    if options.firmware is not None:
        raise UsageError(f"the {runner} runner {no_firmware}; drop --firmware")
    with contextlib.ExitStack() as stack:
        port = options.port
        info: dict[str, Any] = {"port": port}
        if not port:
            port = stack.enter_context(start()).port
            info = {"port": port, "process": process}
        link = stack.enter_context(SerialTransport(port))
        return benchmark_device(
            DeviceClient(link, timeout_s=REQUEST_TIMEOUT_S),
            target=target,
            model=tfl,
            options=options,
            runner=runner,
            device_info=info,
            environment={"cpu": cpu_name()},
        )


def cpu_name() -> str:
    """The host CPU's model name (for reports of host timings)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
