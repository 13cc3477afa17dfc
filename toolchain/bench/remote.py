"""What the ADB and SSH runners share: model checks, inputs, the remote Python runner, the
host reference check, device-state probes and the assembly of a :class:`BenchResult`.

The remote runner (``remote_runner.py`` next to this file) is copied to the device with the
model and an ``.npz`` of inputs; it prints one JSON object (see its docstring). The inputs
are those of the MCU bench (:func:`toolchain.bench.mcu.bench_inputs`: sample 0 of
``--golden``, else seeded random values), and the host's LiteRT interpreter computes the
reference outputs for exactly those inputs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult, OutputCheck
from toolchain.devices.shell import (
    HOUSEKEEPING_TIMEOUT_S,
    SIGNAL_HINT,
    RemoteShell,
    Workdir,
    exit_description,
    q,
)
from toolchain.errors import (
    BenchmarkError,
    RemoteCommandError,
    TFLiteModelError,
    UsageError,
)
from toolchain.fsutil import sha256_file
from toolchain.progress import no_progress
from toolchain.tflite_model import TFLiteModel

log = logging.getLogger(__name__)

RUNNER_SCRIPT = Path(__file__).with_name("remote_runner.py")

#: First word of the runner's progress lines on stderr (``EDP-PROGRESS done total``).
PROGRESS_PREFIX = "EDP-PROGRESS"
#: Seconds between two progress lines of the runner.
PROGRESS_EVERY_S = 0.5


def parse_progress_line(line: str) -> tuple[int, int] | None:
    """``(done, total)`` of one ``EDP-PROGRESS done total`` line, else None (any other
    stderr line, or a malformed one: progress is never worth an error)."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        done, total = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if total < 1 or not 0 <= done <= total:
        return None
    return done, total


def strip_progress(text: str) -> str:
    """``text`` without the runner's progress lines (kept out of error messages)."""
    return "".join(
        line for line in text.splitlines(keepends=True) if parse_progress_line(line) is None
    )


def check_options(options: BenchOptions) -> None:
    """Reject the options only the remote runners read (threads, delegate, CPU affinity)
    before touching a device (:class:`UsageError`); runs, warm-up, cooldown and timeout were
    checked when the options were built (``BenchOptions.__post_init__``)."""
    if options.threads is not None and options.threads < 1:
        raise UsageError(f"--threads must be at least 1 (got {options.threads})")
    if options.delegate not in (None, "gpu", "nnapi"):
        raise UsageError(f"unknown delegate {options.delegate!r}", hint="use gpu or nnapi")
    if options.cpu_affinity is not None and not re.fullmatch(
        r"(0x)?[0-9a-fA-F]+", options.cpu_affinity
    ):
        raise UsageError(
            f"--cpu-affinity must be a hexadecimal CPU mask such as f0 (got {options.cpu_affinity!r})"
        )


def run_timeout_s(options: BenchOptions) -> float:
    """Wall-clock limit of one benchmark process: ``timeout_s`` per 10 inferences, at least
    ``timeout_s`` (the model load and the first inference fit in that)."""
    return options.timeout_s * max(1.0, (options.runs + options.warmup + 1) / 10.0)


def load_model(path: Path) -> TFLiteModel:
    """Parse the model on the host first: a bad file fails here, before any device work."""
    return TFLiteModel.from_file(path)


def save_inputs(arrays: list[np.ndarray], path: Path) -> Path:
    np.savez(path, **{f"input_{i}": a for i, a in enumerate(arrays)})
    return path


@contextmanager
def staging_dir() -> Iterator[Path]:
    """A host temporary directory for the files to push (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="edgedeploy-bench-") as d:
        yield Path(d)


def host_reference(model_path: Path, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], str]:
    """Outputs of the host's LiteRT interpreter for ``inputs`` (and its name/version)."""
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path))
    interp.allocate_tensors()
    for arr, d in zip(inputs, interp.get_input_details(), strict=True):
        interp.set_tensor(d["index"], arr)
    interp.invoke()
    outs = [np.array(interp.get_tensor(d["index"])) for d in interp.get_output_details()]
    return outs, f"host ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"


def decode_outputs(payload: list[dict[str, Any]]) -> list[np.ndarray]:
    """The runner's base64 outputs back to arrays."""
    out = []
    for o in payload:
        raw = base64.b64decode(o["data"])
        out.append(np.frombuffer(raw, dtype=np.dtype(o["dtype"])).reshape(o["shape"]))
    return out


def compare_outputs(
    device: list[np.ndarray], reference: list[np.ndarray], what: str
) -> OutputCheck:
    """Element-wise comparison (integers exactly; differences in quantized units)."""
    if len(device) != len(reference) or any(
        a.shape != b.shape for a, b in zip(device, reference, strict=False)
    ):
        raise BenchmarkError(
            "the device returned outputs of other shapes than the host reference: "
            f"{[a.shape for a in device]} vs {[b.shape for b in reference]}"
        )
    values = mismatches = 0
    max_diff = 0.0
    for a, b in zip(device, reference, strict=True):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        values += int(diff.size)
        mismatches += int(np.count_nonzero(diff))
        if diff.size:
            max_diff = max(max_diff, float(diff.max()))
    return OutputCheck(
        reference=what,
        compared_values=values,
        mismatches=mismatches,
        max_abs_diff=max_diff,
        bit_exact=mismatches == 0,
    )


def hottest(temps: dict[str, float]) -> float | None:
    """The highest zone temperature (°C), or None without thermal zones."""
    return max(temps.values()) if temps else None


# --- device-state probe over a shell ---------------------------------------------------------

#: Prints ``gov <cpu> <governor>`` and ``temp <zone> <type> <millideg>`` lines; POSIX sh only.
PROBE_SCRIPT = (
    "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do "
    '[ -r "$f" ] && c=${f#/sys/devices/system/cpu/} && echo "gov ${c%%/*} $(cat "$f")"; done; '
    "for z in /sys/class/thermal/thermal_zone*; do "
    '[ -r "$z/temp" ] && echo "temp ${z##*/} $(cat "$z/type" 2>/dev/null || echo zone) '
    '$(cat "$z/temp" 2>/dev/null)"; done; true'
)


@dataclass
class DeviceState:
    """CPU governors and temperatures (°C) at one moment."""

    governors: dict[str, str] = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)


def parse_probe(text: str) -> DeviceState:
    state = DeviceState()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "gov":
            state.governors[parts[1]] = parts[2]
        elif len(parts) >= 4 and parts[0] == "temp":
            try:
                milli = float(parts[-1])
            except ValueError:
                continue
            # zones report millidegrees; a few old kernels report degrees
            value = milli / 1000.0 if abs(milli) > 200 else milli
            state.temperatures[f"{' '.join(parts[2:-1])} ({parts[1]})"] = round(value, 1)
    return state


def probe_state(shell: RemoteShell) -> DeviceState:
    """Read governors and thermal zones through the shell (unreadable ones are skipped)."""
    res = shell.run(PROBE_SCRIPT, timeout_s=HOUSEKEEPING_TIMEOUT_S)
    return parse_probe(res.stdout)


def governor_warnings(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = []
    govs = sorted(set(before.values()))
    if "powersave" in govs:
        out.append("a CPU runs the 'powersave' governor: latencies reflect its lowest clock")
    if after and before and after != before:
        out.append("the CPU governor changed during the run (thermal or power management)")
    return out


# --- the Python runner on the device ---------------------------------------------------------


def find_python(shell: RemoteShell, candidates: tuple[str, ...]) -> str | None:
    """The first candidate interpreter that runs on the device and has numpy."""
    for exe in candidates:
        res = shell.run(
            f"{q(exe)} -c 'import numpy, sys; print(sys.version_info[0])'",
            timeout_s=HOUSEKEEPING_TIMEOUT_S * 2,
        )
        if res.returncode == 0 and res.stdout.strip() == "3":
            return exe
    return None


def require_python(shell: RemoteShell, exe: str) -> str:
    """Check the interpreter the user named (``--remote-python``): it must exist on the
    device, be Python 3 and have numpy. Returns ``exe``; raises :class:`RemoteCommandError`
    saying which of the three failed."""
    where = shell.description
    res = shell.run(
        f"command -v -- {q(exe)} >/dev/null 2>&1 || [ -x {q(exe)} ] || echo missing",
        timeout_s=HOUSEKEEPING_TIMEOUT_S,
    )
    if "missing" in res.stdout:
        what = "does not exist" if "/" in exe else "is not on the PATH"
        raise RemoteCommandError(
            f"--remote-python {exe} {what} on {where}",
            hint="check the path on the device (e.g. `which python3` there), or leave "
            "--remote-python out to try python3 and python",
        )
    if find_python(shell, (exe,)) is None:
        probe = shell.run(
            f"{q(exe)} -c 'import sys; print(sys.version_info[0]); import numpy'",
            timeout_s=HOUSEKEEPING_TIMEOUT_S * 2,
        )
        if probe.stdout.strip().startswith("3"):
            raise RemoteCommandError(
                f"--remote-python {exe} on {where} has no numpy: {probe.tail(300)}",
                hint=f"install it there ({exe} -m pip install numpy ai-edge-litert)",
            )
        raise RemoteCommandError(
            f"--remote-python {exe} on {where} is not a working Python 3 "
            f"({exit_description(probe.returncode)}): {probe.tail(300)}",
            hint="name a Python 3 interpreter on the device",
        )
    return exe


def affinity_prefix(options: BenchOptions) -> str:
    """``taskset MASK `` when ``cpu_affinity`` is set, else nothing."""
    return f"taskset {q(options.cpu_affinity)} " if options.cpu_affinity else ""


def run_runner(
    workdir: Workdir,
    *,
    python: str,
    model: Path,
    inputs: list[np.ndarray],
    options: BenchOptions,
) -> dict[str, Any]:
    """Copy ``remote_runner.py``, the model and the inputs into ``workdir``, run the runner
    with ``python`` on the device and return its JSON.

    Raises :class:`TFLiteModelError` when the device's interpreter rejects the model,
    :class:`RemoteCommandError` for anything else that failed on the device,
    :class:`IoTimeoutError` (process killed) when it ran too long.
    """
    progress = options.progress or no_progress
    t = options.timeout_s
    with staging_dir() as stage:
        npz = save_inputs(inputs, stage / "inputs.npz")
        progress("copy", 0, 3)
        runner = workdir.put(RUNNER_SCRIPT, "remote_runner.py", timeout_s=t)
        graph = workdir.put(model, model.name, timeout_s=t * 4)
        inputs_remote = workdir.put(npz, "inputs.npz", timeout_s=t)
        progress("copy", 3, 3)
    xnnpack = {None: "auto", True: "on", False: "off"}[options.use_xnnpack]
    argv = [python, runner, "--model", graph, "--inputs", inputs_remote, "--runs",
            str(options.runs), "--warmup", str(options.warmup), "--xnnpack", xnnpack]  # fmt: skip
    if options.threads is not None:
        argv += ["--threads", str(options.threads)]
    argv += ["--progress-every", str(PROGRESS_EVERY_S)]
    total = options.warmup + options.runs
    progress("benchmark", 0, total)

    def on_stderr_line(line: str) -> None:
        parsed = parse_progress_line(line)
        if parsed is not None:
            progress("benchmark", parsed[0], total)

    command = affinity_prefix(options) + " ".join(q(a) for a in argv)
    res = workdir.run_guarded(
        command, timeout_s=run_timeout_s(options), on_stderr_line=on_stderr_line
    )
    res = dataclasses.replace(res, stderr=strip_progress(res.stderr))
    progress("benchmark", total, total)
    where = workdir.shell.description
    try:
        doc = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else None
    except (json.JSONDecodeError, IndexError):
        doc = None
    if not isinstance(doc, dict) and res.returncode > 128:
        raise RemoteCommandError(
            f"the runner on {where} was {exit_description(res.returncode)}: {res.tail(500)}",
            hint=SIGNAL_HINT,
        )
    if not isinstance(doc, dict):
        raise RemoteCommandError(
            f"the runner on {where} failed ({exit_description(res.returncode)}) without a "
            f"result: {res.tail(800)}"
        )
    if not doc.get("ok"):
        kind, error = doc.get("kind"), doc.get("error", "")
        if kind == "model_rejected":
            raise TFLiteModelError(
                f"the interpreter on {where} rejected the model: {error}",
                hint="the device's TFLite runtime may be older than the converter; "
                "upgrade it (pip install -U ai-edge-litert) or convert for an older op set",
            )
        if kind == "no_runtime":
            raise RemoteCommandError(
                f"{where} has no usable TFLite interpreter: {error}",
                hint="install one there (pip install ai-edge-litert, or tflite-runtime, with "
                "numpy), or point --remote-python at a Python that has one; on Android, "
                "--benchmark-binary PATH runs TFLite's benchmark_model instead",
            )
        raise RemoteCommandError(f"the runner on {where} failed ({kind}): {error}")
    return doc


def result_from_runner(
    doc: dict[str, Any],
    *,
    runner: str,
    target: str,
    model_path: Path,
    options: BenchOptions,
    device: dict[str, Any],
    inputs: list[np.ndarray],
    inputs_note: str = "",
    environment: dict[str, Any] | None = None,
    temperatures: tuple[float | None, float | None] | None = None,
) -> BenchResult:
    """Build the :class:`BenchResult` of a runner run, with the host reference check.

    ``device`` entries win over the runner's own device report; ``temperatures`` (hottest
    zone before, after) overrides the runner's when the caller probed them itself."""
    dev = dict(device)
    runner_dev = doc.get("device", {})
    dev.update({k: v for k, v in runner_dev.items() if k not in dev})
    if temperatures is None:
        temperatures = (
            hottest(runner_dev.get("temperatures_before", {})),
            hottest(runner_dev.get("temperatures_after", {})),
        )
    t_before, t_after = temperatures
    result = BenchResult(
        runner=runner,
        target=target,
        model=str(model_path),
        model_sha256=sha256_file(model_path),
        unit="ms",
        samples=[float(x) for x in doc["samples_ms"]],
        warmup=options.warmup,
        unit_note="wall-clock time of one Interpreter.invoke() on the device (time.perf_counter_ns)",
        device=dev,
        environment={
            "runtime": doc.get("runtime"),
            "python": doc.get("python"),
            "numpy": doc.get("numpy"),
            "threads": options.threads,
            "xnnpack": doc.get("config", {}).get("xnnpack"),
            "first_inference_ms": doc.get("first_ms"),
            "inputs": inputs_note,
            **(environment or {}),
        },
    )
    try:
        reference, what = host_reference(model_path, inputs)
    except (ValueError, RuntimeError) as exc:
        result.warnings.append(f"no output check: the host interpreter rejected the model ({exc})")
    else:
        check = compare_outputs(decode_outputs(doc.get("outputs", [])), reference, what)
        result.output_check = check
        if not check.bit_exact:
            result.warnings.append(
                f"device outputs differ from the {what} reference in {check.mismatches} of "
                f"{check.compared_values} values (max |diff| {check.max_abs_diff:g})"
            )
    result.warnings += governor_warnings(dev.get("governors", {}), dev.get("governors_after", {}))
    result.add_trust_warnings(t_before, t_after)
    return result
