"""Benchmark a .tflite model on an Android device over ADB (runner ``adb``).

Two ways, chosen by ``options.benchmark_binary``:

* **benchmark_model** (given): TFLite's own benchmark tool, built by the user for the device
  (``--config=android_arm64``). Its ELF header is checked against the device's ABI list before
  anything is pushed. It runs ``options.rounds`` times (a cool-down of ``cooldown_s`` between
  rounds), each process doing ``warmup`` + ``runs`` inferences with ``--min_secs=0`` so the
  counts are exact; threads, XNNPACK, GPU/NNAPI and ``extra_args`` are passed through, and
  ``taskset <mask>`` pins it when ``cpu_affinity`` is set. benchmark_model prints only
  aggregates, so each round contributes one sample: the mean of its runs (the per-round
  count/min/max/std are kept in ``environment["rounds"]``). With ``profile_ops`` one more
  round runs with ``--enable_op_profiling=true``, kept out of the latency samples.
* **Python runner** (no binary): the device needs Python with numpy and ai-edge-litert /
  tflite-runtime (Termux, rooted or custom images); our ``remote_runner.py`` times every
  inference and returns the outputs, which are checked against the host's LiteRT.

Everything goes to a private ``/data/local/tmp/edgedeploy-<random>`` directory that is
removed afterwards, on success, error, timeout or Ctrl-C. CPU governors and thermal zones are
read before and after the timed runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from toolchain.bench import remote
from toolchain.bench.benchmark_model_output import (
    BenchmarkModelOutput,
    parse_benchmark_model_output,
)
from toolchain.bench.mcu import bench_inputs
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult, OpTiming
from toolchain.devices.adb import AdbDevice, AndroidInfo, select_device
from toolchain.devices.arch import check_device_arch, mismatch_warning
from toolchain.devices.elf import check_executable_for
from toolchain.devices.shell import (
    HOUSEKEEPING_TIMEOUT_S,
    SIGNAL_HINT,
    Workdir,
    exit_description,
    q,
)
from toolchain.errors import (
    BenchmarkError,
    InputFileError,
    RemoteCommandError,
    TFLiteModelError,
    UsageError,
)
from toolchain.fsutil import sha256_file
from toolchain.progress import no_progress
from toolchain.targets import Target

log = logging.getLogger(__name__)

DEVICE_BASE = "/data/local/tmp"
PYTHON_CANDIDATES = ("python3", "python", "/data/data/com.termux/files/usr/bin/python3")
#: Words in benchmark_model's output that mean "the runtime rejected the model".
_MODEL_REJECTED = (
    "Failed to mmap model",
    "not a valid Flatbuffer",
    "Didn't find op for builtin opcode",
    "Failed to allocate tensors",
    "Failed to construct interpreter",
    "Encountered unresolved custom op",
    "quantized_dimension",
)


def run_adb(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """Benchmark ``model`` on the Android device of ``options.adb_serial`` (or the target's,
    or the only one attached). See the module docstring; errors are those of
    :func:`toolchain.devices.adb.select_device`, :class:`InputFileError` (model or binary),
    :class:`TFLiteModelError` (the device's runtime rejected the model),
    :class:`IoTimeoutError` and :class:`RemoteCommandError`."""
    remote.check_options(options)
    if options.rounds < 1:
        raise UsageError(f"--rounds must be at least 1 (got {options.rounds})")
    model = Path(model)
    tfl = remote.load_model(model)
    binary = Path(options.benchmark_binary) if options.benchmark_binary else None
    if binary is not None and not binary.is_file():
        raise InputFileError(f"benchmark binary {binary} does not exist")
    progress = options.progress or no_progress

    progress("connect", 0, 1)
    device = select_device(options.adb_serial or target.transport.adb_serial)
    device.require_shell_v2()
    info = device.info()
    abis = list(info.abilist) or ([info.abi] if info.abi else [])
    if not abis:  # old devices without the ABI properties
        uname = device.run("uname -m", timeout_s=HOUSEKEEPING_TIMEOUT_S)
        abis = [uname.stdout.strip()] if uname.returncode == 0 and uname.stdout.strip() else []
    arch = check_device_arch(
        target, abis, device=device.description, allow_mismatch=options.allow_arch_mismatch
    )
    abis = abis or ([target.cpu.abi] if target.cpu.abi else [])
    if binary is not None:
        check_executable_for(binary, abis)
        python = None
    elif options.remote_python:
        python = remote.require_python(device, options.remote_python)
    else:
        python = remote.find_python(device, PYTHON_CANDIDATES)
        if python is None:
            raise InputFileError(
                f"no benchmark_model binary given and {device.description} has no Python with numpy",
                hint="pass --benchmark-binary PATH (TFLite's benchmark_model for "
                f"{info.abi or 'the device ABI'}), or install Python, numpy and ai-edge-litert "
                "on the device (e.g. in Termux; over adb this needs a rooted device - "
                "otherwise use Termux's sshd with --runner ssh)",
            )
    progress("connect", 1, 1)

    with Workdir(device, DEVICE_BASE) as wd:
        if python is None and binary is not None:
            result = _bench_binary(wd, device, info, binary, model, target, options)
        else:
            result = _bench_python(wd, device, info, str(python), model, tfl, target, options)
    result.device["arch"] = arch
    if warning := mismatch_warning(arch, target, "device"):
        result.warnings.append(warning)
    result.environment["device_dir"] = wd.path
    result.environment["device_dir_removed"] = wd.removed
    if not wd.removed:
        result.warnings.append(f"could not remove {wd.path} from the device; remove it by hand")
    return result


def _device_dict(
    info: AndroidInfo, before: remote.DeviceState, after: remote.DeviceState
) -> dict[str, Any]:
    d = info.to_dict()
    d.update(
        governors=before.governors,
        governors_after=after.governors,
        temperatures_before=before.temperatures,
        temperatures_after=after.temperatures,
    )
    return d


def benchmark_model_args(graph: str, options: BenchOptions, *, profile: bool = False) -> list[str]:
    """The benchmark_model flags for ``options`` (device path of the model in ``graph``)."""
    args = [
        f"--graph={graph}",
        f"--num_runs={options.runs}",
        f"--warmup_runs={options.warmup}",
        "--min_secs=0",
        "--warmup_min_secs=0",
        f"--max_secs={remote.run_timeout_s(options):g}",
    ]
    if options.threads is not None:
        args.append(f"--num_threads={options.threads}")
    if options.use_xnnpack is not None:
        args.append(f"--use_xnnpack={str(options.use_xnnpack).lower()}")
    if options.delegate == "gpu":
        args.append("--use_gpu=true")
    elif options.delegate == "nnapi":
        args.append("--use_nnapi=true")
    if profile:
        args += ["--enable_op_profiling=true", "--max_profiling_buffer_entries=65536"]
    args += list(options.extra_args)
    return args


def _run_binary(
    wd: Workdir, exe: str, args: list[str], options: BenchOptions
) -> BenchmarkModelOutput:
    command = remote.affinity_prefix(options) + " ".join(q(a) for a in [exe, *args])
    res = wd.run_guarded(command, timeout_s=remote.run_timeout_s(options))
    text = res.stdout + "\n" + res.stderr
    where = wd.shell.description
    if res.returncode != 0:
        errors = [
            ln.strip()
            for ln in text.splitlines()
            if "ERROR" in ln or "Failed" in ln or "rror:" in ln
        ]
        detail = " | ".join(errors[-4:]) or res.tail(500)
        if res.returncode in (126, 127):
            raise RemoteCommandError(
                f"benchmark_model cannot be executed on {where} (exit code {res.returncode}): {detail}",
                hint="check that the binary is built for this device (a static android_arm64 "
                "build needs no libraries) and that /data/local/tmp allows execution",
            )
        if any(word in text for word in _MODEL_REJECTED):
            raise TFLiteModelError(
                f"benchmark_model on {where} rejected the model: {detail}",
                hint="the binary's TFLite may be older than the converter; build a newer "
                "benchmark_model or convert for an older op set",
            )
        if res.returncode > 128:
            raise RemoteCommandError(
                f"benchmark_model was {exit_description(res.returncode)} on {where}: {detail}",
                hint=SIGNAL_HINT,
            )
        raise RemoteCommandError(
            f"benchmark_model failed on {where} ({exit_description(res.returncode)}): {detail}"
        )
    try:
        return parse_benchmark_model_output(text)
    except BenchmarkError as err:
        raise BenchmarkError(f"{err.message}; its output ended with: {res.tail(400)}") from err


def _bench_binary(
    wd: Workdir,
    device: AdbDevice,
    info: AndroidInfo,
    binary: Path,
    model: Path,
    target: Target,
    options: BenchOptions,
) -> BenchResult:
    progress = options.progress or no_progress
    t = options.timeout_s
    progress("push", 0, 2)
    exe = wd.put(binary, "benchmark_model", mode=0o755, timeout_s=t * 4)
    progress("push", 1, 2)
    graph = wd.put(model, model.name, timeout_s=t * 4)
    progress("push", 2, 2)
    args = benchmark_model_args(graph, options)

    before = remote.probe_state(device)
    rounds: list[BenchmarkModelOutput] = []
    for r in range(options.rounds):
        if r and options.cooldown_s:
            time.sleep(options.cooldown_s)
        progress("benchmark", r, options.rounds)
        rounds.append(_run_binary(wd, exe, args, options))
    progress("benchmark", options.rounds, options.rounds)
    after = remote.probe_state(device)

    per_op: list[OpTiming] = []
    if options.profile_ops:
        if options.cooldown_s:
            time.sleep(options.cooldown_s)
        progress("op profile", 0, 1)
        prof = _run_binary(wd, exe, benchmark_model_args(graph, options, profile=True), options)
        per_op = [
            OpTiming(
                name=f"{row.node_type} {row.name}".strip(),
                unit="ms",
                per_inference=row.avg_ms,
                index=i,
                share=row.percent / 100.0 if row.percent is not None else None,
            )
            for i, row in enumerate(prof.run_order)
        ]
        if not per_op:
            raise BenchmarkError(
                "benchmark_model printed no op-profiling table (--enable_op_profiling)"
            )
        progress("op profile", 1, 1)

    samples = []
    for i, out in enumerate(rounds):
        mean = out.inference.mean_us
        if mean is None or out.inference.count not in (0, options.runs):
            raise BenchmarkError(
                f"benchmark_model round {i + 1} reported {out.inference.count} runs, expected {options.runs}"
            )
        samples.append(mean / 1000.0)
    last = rounds[-1]
    result = BenchResult(
        runner="adb",
        target=target.name,
        model=str(model),
        model_sha256=sha256_file(model),
        unit="ms",
        samples=samples,
        runs_per_sample=options.runs,
        warmup=options.warmup,
        unit_note=(
            f"each sample is the mean of {options.runs} inferences in one benchmark_model process "
            f"({options.rounds} processes); benchmark_model prints no per-inference times"
        ),
        per_op=per_op,
        memory={f"{k}_mb": v for k, v in last.memory_mb.items()},
        device=_device_dict(info, before, after),
        environment={
            "runtime": "benchmark_model",
            "benchmark_args": args[1:],
            "cpu_affinity": options.cpu_affinity,
            "cooldown_s": options.cooldown_s,
            "init_ms": [o.init_us / 1000.0 if o.init_us is not None else None for o in rounds],
            "first_inference_ms": [
                o.first_inference_us / 1000.0 if o.first_inference_us is not None else None
                for o in rounds
            ],
            "rounds": [
                {
                    "count": o.inference.count,
                    "mean_us": o.inference.mean_us,
                    "min_us": o.inference.min,
                    "max_us": o.inference.max,
                    "std_us": o.inference.std,
                    **{f"{k}_us": v for k, v in o.inference.extra.items()},
                }
                for o in rounds
            ],
            "delegations": [list(d) for d in last.delegations],
            "tool_params": last.params,
        },
    )
    result.warnings += remote.governor_warnings(before.governors, after.governors)
    result.add_trust_warnings(
        remote.hottest(before.temperatures), remote.hottest(after.temperatures)
    )
    return result


def _bench_python(
    wd: Workdir,
    device: AdbDevice,
    info: AndroidInfo,
    python: str,
    model: Path,
    tfl: Any,
    target: Target,
    options: BenchOptions,
) -> BenchResult:
    inputs, inputs_note = bench_inputs(tfl, options.golden)
    before = remote.probe_state(device)
    doc = remote.run_runner(wd, python=python, model=model, inputs=inputs, options=options)
    after = remote.probe_state(device)
    device_info = _device_dict(info, before, after)
    device_info["python"] = python
    result = remote.result_from_runner(
        doc,
        runner="adb",
        target=target.name,
        model_path=model,
        options=options,
        device=device_info,
        inputs=inputs,
        inputs_note=inputs_note,
        temperatures=(remote.hottest(before.temperatures), remote.hottest(after.temperatures)),
        environment={"cpu_affinity": options.cpu_affinity},
    )
    if options.profile_ops:
        result.warnings.append("per-op profiling needs benchmark_model (--benchmark-binary)")
    return result
