"""Benchmark a .tflite model on a Raspberry Pi or other Linux board over SSH (runner ``ssh``).

The model, an ``.npz`` of seeded inputs and ``remote_runner.py`` are copied with SFTP into a
private ``/tmp/edgedeploy-<random>`` directory, the runner is started with the board's Python
(``options.remote_python``, else the first of ``python3``/``python`` that has numpy; it uses
ai_edge_litert, tflite_runtime or tensorflow.lite, whichever it finds first) with the thread
count and XNNPACK setting, optionally pinned with ``taskset``. Its JSON gives one latency per
inference, the outputs (compared with the host's LiteRT on the same inputs) and the board's
CPU model, governors and temperatures before and after the timed loop. The directory is
removed afterwards whatever happened.

Connection errors are those of :class:`toolchain.devices.ssh.SshBoard` (unreachable →
``DeviceNotFoundError``, silent port → ``IoTimeoutError``, no or refused key → ``AuthError``,
unknown, changed or revoked host key → ``HostKeyError``). The board's ``uname -m``, read
with the rest of its description in one round trip, is checked against the target's
architecture before anything is set up or run
(:func:`toolchain.devices.arch.check_device_arch`: ``ArchMismatchError`` unless
``options.allow_arch_mismatch``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from toolchain.bench import remote
from toolchain.bench.mcu import bench_inputs
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.devices import linux_board
from toolchain.devices.arch import check_device_arch, mismatch_warning
from toolchain.devices.shell import Workdir
from toolchain.devices.ssh import SshBoard
from toolchain.errors import RemoteCommandError, UsageError
from toolchain.progress import no_progress
from toolchain.targets import Target

log = logging.getLogger(__name__)

BOARD_BASE = "/tmp"
#: the virtualenv of `bench --setup` first, then the system interpreters
PYTHON_CANDIDATES = linux_board.PYTHON_CANDIDATES


def run_ssh(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """Benchmark ``model`` on the board ``options.ssh_host`` (``user@host[:port]``, else the
    target's ``transport.ssh_host``). See the module docstring."""
    remote.check_options(options)
    host = options.ssh_host or target.transport.ssh_host
    if not host:
        raise UsageError("no board given", hint="pass --host user@board (key-based SSH login)")
    if options.benchmark_binary is not None:
        raise UsageError(
            "--benchmark-binary is for Android devices (adb); Linux boards use the Python runner"
        )
    if options.delegate is not None:
        raise UsageError(f"the {options.delegate} delegate is Android-only (adb runner)")
    model = Path(model)
    tfl = remote.load_model(model)
    progress = options.progress or no_progress
    t = options.timeout_s

    progress("connect", 0, 1)
    with SshBoard(
        host,
        port=options.ssh_port,
        key=options.ssh_key,
        known_hosts=options.known_hosts,
        trust_new_host=options.trust_new_host,
        connect_timeout_s=min(t, 30.0),
    ) as board:
        # uname -m, OS, memory, sysfs, Pythons in one command; --setup installs the runtime
        info = linux_board.describe_board(board)
        arch = check_device_arch(
            target,
            "" if info.machine == "?" else info.machine,
            device=board.description,
            allow_mismatch=options.allow_arch_mismatch,
        )
        if options.setup:
            info = linux_board.setup_for_bench(board, info, options)
        if options.remote_python:
            python: str | None = remote.require_python(board, options.remote_python)
        else:
            python = remote.find_python(board, PYTHON_CANDIDATES)
        if python is None:
            raise RemoteCommandError(
                f"{board.description} has no Python 3 with numpy ({', '.join(PYTHON_CANDIDATES)})",
                hint=linux_board.no_python_message(info)
                + "; or name the interpreter with --remote-python",
            )
        progress("connect", 1, 1)
        inputs, inputs_note = bench_inputs(tfl, options.golden)
        with linux_board.lost_board_hint(board.description), Workdir(board, BOARD_BASE) as wd:
            doc = remote.run_runner(wd, python=python, model=model, inputs=inputs, options=options)
        description = board.description
    result = remote.result_from_runner(
        doc,
        runner="ssh",
        target=target.name,
        model_path=model,
        options=options,
        device={"host": description, "python_path": python, "arch": arch, **info.summary()},
        inputs=inputs,
        inputs_note=inputs_note,
        environment={
            "cpu_affinity": options.cpu_affinity,
            "board_dir": wd.path,
            "board_dir_removed": wd.removed,
        },
    )
    if warning := mismatch_warning(arch, target, "board"):
        result.warnings.append(warning)
    linux_board.mark_emulated(result, info)
    if not wd.removed:
        result.warnings.append(f"could not remove {wd.path} from the board; remove it by hand")
    if options.profile_ops:
        result.warnings.append("per-op profiling is not available from the Python runner")
    return result
