"""The host-compiled device: the compiled model (``edgedeploy compile``) built with this
machine's gcc, serving the EDP device protocol on a pseudo terminal.

It is the same C the Cortex-M firmware links — the generated model, its kernels, and the
device protocol library (``firmware_templates/common/edp/``), the model's EDP backend
(``firmware_templates/common/compiled/edc_backend.c``) — with a host main
(``firmware_templates/host/compiled_host_main.c``) instead of the board layer, so the
compiled code runs and is checked bit-exact in every test tier, without QEMU or a board.
Timings are host timings (nanoseconds of ``CLOCK_MONOTONIC`` around invoke); per-op times
come from the compiled model's profiling hooks.

:func:`build_host_device` compiles a model and builds the executable;
:class:`HostCompiledProcess` builds and starts it (``with HostCompiledProcess(model) as dev:
... dev.port ...``); :func:`run_host_compiled` is the ``host-compiled`` benchmark runner.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.devices.host_tflm import HostTflmProcess
from toolchain.errors import FirmwareError, ToolchainMissingError
from toolchain.firmware.render import (
    COMPILED_DIR,
    COMPILED_NAME,
    EDP_DIR,
    TEMPLATES_DIR,
    _env,
    compiled_binding,
)

if TYPE_CHECKING:
    from toolchain.bench.options import BenchOptions
    from toolchain.bench.result import BenchResult
    from toolchain.targets import Target

log = logging.getLogger(__name__)

HOST_MAIN = TEMPLATES_DIR / "host" / "compiled_host_main.c"
CC = "gcc"
#: host build flags: the generated code is C99; -Werror=implicit catches a contract mismatch
CFLAGS = ("-std=gnu11", "-O2", "-Wall", "-Werror=implicit-function-declaration", "-DEDC_PROFILE")
BUILD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class HostBuild:
    """A built host device: the executable, the compiled model's folder and report."""

    exe: Path
    model_dir: Path
    compiled: dict[str, Any]


def build_host_device(model: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> HostBuild:
    """Compile ``model`` into ``out_dir/model`` and build ``out_dir/edp_device`` with gcc.

    Raises the compiler's errors (an unsupported operator names itself and ``--runtime
    tflm``), :class:`ToolchainMissingError` (no gcc) and :class:`FirmwareError` (the C
    build failed, with gcc's message)."""
    from toolchain.compile import compile_model
    from toolchain.fsutil import to_json

    gcc = shutil.which(CC)
    if gcc is None:
        raise ToolchainMissingError(
            "gcc not found on PATH: it is needed to build the host-compiled device",
            hint="install gcc (Debian: apt-get install gcc)",
        )
    out = Path(out_dir)
    model_path = Path(model).resolve()
    model_dir = out / "model"
    # inputs kept intact by the planner: received in place, no shadow copy (as the firmware)
    cm = compile_model(model_path, out_dir=model_dir, name=COMPILED_NAME, keep_inputs=True)
    include = out / "include"
    include.mkdir(parents=True, exist_ok=True)
    binding = (
        _env(TEMPLATES_DIR / "cortex-m")
        .get_template("include/compiled_binding.h.j2")
        .render(**compiled_binding(cm, model_path.stem))
    )
    (include / "compiled_binding.h").write_text(binding, encoding="utf-8")
    sources = [
        HOST_MAIN,
        COMPILED_DIR / "edc_backend.c",
        EDP_DIR / "edp.c",
        EDP_DIR / "edp_device.c",
        *sorted(cm.sources),
    ]
    exe = out / "edp_device"
    cmd = [
        gcc,
        *CFLAGS,
        "-DEDP_MAX_INPUT_BYTES=0u",
        f"-I{include}",
        f"-I{EDP_DIR}",
        f"-I{COMPILED_DIR}",
        f"-I{model_dir}",
        *map(str, sources),
        "-o",
        str(exe),
    ]
    log.info("building the host-compiled device: %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(
            f"building the host-compiled device took longer than {BUILD_TIMEOUT_S:.0f} s"
        ) from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln] or lines
        raise FirmwareError(
            "building the host-compiled device failed:\n" + "\n".join(errors[-15:]),
            hint="the compiled C or its kernels do not build with this gcc; report it",
        )
    import json

    return HostBuild(exe=exe, model_dir=model_dir, compiled=json.loads(to_json(cm.to_dict())))


class HostCompiledProcess(HostTflmProcess):
    """Build the host-compiled device for ``model`` (in a temporary folder, removed on
    :meth:`stop`) and start it; ``port`` is its pty. Same signals and errors as
    :class:`~toolchain.devices.host_tflm.HostTflmProcess`; the build raises
    :func:`build_host_device`'s errors."""

    what = "host-compiled"

    def __init__(self, model: str | Path, *, startup_timeout_s: float = 30.0) -> None:
        super().__init__(model, startup_timeout_s=startup_timeout_s)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.build: HostBuild | None = None

    def _command(self) -> tuple[list[str], dict[str, str]]:
        if self.build is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgedeploy-host-compiled-")
            self.build = build_host_device(self.model, self._tmp.name)
        return [str(self.build.exe)], dict(os.environ)

    def start(self) -> str:
        try:
            return super().start()
        except BaseException:
            self._cleanup()
            raise

    def stop(self) -> None:
        super().stop()
        self._cleanup()

    def _cleanup(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()
        self.build = None


def run_host_compiled(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """The ``host-compiled`` runner: the compiled model built for this machine, measured over
    its pty (or an already running one on ``options.port``)."""
    from toolchain.bench.mcu import bench_pty_device

    return bench_pty_device(
        target,
        model,
        options,
        runner="host-compiled",
        no_firmware="builds its own device",
        start=lambda: HostCompiledProcess(model),
        process="host-compiled device (gcc build of the model)",
    )
