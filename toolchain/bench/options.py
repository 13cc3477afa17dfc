"""Options shared by every benchmark runner (one dataclass, so the CLI and the project file
map onto the same fields). Fields that a runner does not use are ignored by it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import UsageError
from toolchain.progress import ProgressFn


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark. Times are seconds; ``runs``/``warmup`` are inference counts."""

    runs: int = 20
    warmup: int = 2
    #: override the target's transport kind: serial | qemu | host-tflm | adb | ssh
    runner: str | None = None
    #: MCU: serial URL (``/dev/ttyACM0``, ``socket://host:port``, ``rfc2217://...``)
    port: str | None = None
    #: MCU: firmware ELF to run under QEMU or flash to a board
    firmware: Path | None = None
    #: MCU: flash the firmware with the target's flash command before benchmarking
    flash: bool = False
    #: golden vectors (``golden.npz`` from the emit stage: inputs and expected int8 outputs)
    golden: Path | None = None
    #: per-operator timing (TFLM profiler / benchmark_model op profiling)
    profile_ops: bool = False
    #: Android
    adb_serial: str | None = None
    benchmark_binary: Path | None = None
    #: Linux boards
    ssh_host: str | None = None
    ssh_key: Path | None = None
    #: None: the port of ``ssh_host`` (``host:port``), else ~/.ssh/config's, else 22; giving
    #: both this and a port in ``ssh_host`` is an error
    ssh_port: int | None = None
    trust_new_host: bool = False
    #: known_hosts file (default ~/.ssh/known_hosts); given explicitly it must exist unless
    #: ``trust_new_host`` is set
    known_hosts: Path | None = None
    #: ADB/SSH: run even when the device's CPU architecture is not the target's
    #: (toolchain.devices.arch.check_device_arch); the report keeps a warning
    allow_arch_mismatch: bool = False
    #: Linux boards: install the runtime into ~/.edgedeploy/venv first (bench --setup), from
    #: the host's wheel directory ``setup_wheels`` when given; never as root unless allowed
    setup: bool = False
    setup_wheels: Path | None = None
    setup_as_root: bool = False
    #: CPU runtime options (phones, Pis)
    threads: int | None = None
    use_xnnpack: bool | None = None
    delegate: str | None = None  # gpu | nnapi
    cpu_affinity: str | None = None  # taskset mask, e.g. "f0"
    cooldown_s: float = 0.0
    #: ADB benchmark_model: how many benchmark_model processes to run (each gives one sample,
    #: the mean of its ``runs`` inferences: the tool prints no per-inference times)
    rounds: int = 5
    #: SSH / ADB Python runner: the interpreter on the device (default: probe python3, python)
    remote_python: str | None = None
    extra_args: tuple[str, ...] = ()
    #: wall-clock limit for one device operation (a RUN may take longer: runners scale it)
    timeout_s: float = 30.0
    progress: ProgressFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Refuse values no runner can use, before any device is touched (a zero timeout
        would otherwise be reported as the board not answering)."""
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise UsageError(
                f"--timeout must be a positive number of seconds (got {self.timeout_s:g})",
                hint="it bounds one device operation; the default is 30",
            )
        if self.runs < 1 or self.warmup < 0:
            raise UsageError(
                f"--runs must be at least 1 and --warmup at least 0 (got {self.runs}, "
                f"{self.warmup})"
            )
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise UsageError(f"--cooldown must be 0 or more seconds (got {self.cooldown_s:g})")
