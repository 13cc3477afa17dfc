"""A Linux board (Raspberry Pi...) over a shell: what it is, whether it fits a target
profile, and setting up the runtime the Python runner needs.

:func:`describe_board` reads, in one remote command, ``uname -m``/``-r``, ``/etc/os-release``,
the login user, ``/proc/meminfo``, the CPU governors and thermal zones (sysfs, the same probe as
the bench statistics) and, for each candidate interpreter (the edgedeploy virtualenv first, then
``python3``, ``python``), its version and the versions of numpy and ai-edge-litert
(package metadata, nothing imported: cheap even on a slow board).

:func:`check_board` compares that with a target profile; :func:`setup_board` installs
``ai-edge-litert`` into the virtualenv ``~/.edgedeploy/venv`` (created with
``--system-site-packages`` so Debian's / Raspberry Pi OS's numpy is used), from wheels copied
from the host (``wheels``: a directory of ``.whl`` files, for a board without internet) or with
the board's own pip from PyPI. It is idempotent (a venv that already has the wanted version is
left alone) and refuses to run as root unless told to.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bench.remote import PROBE_SCRIPT, parse_probe
from toolchain.devices.arch import check_device_arch
from toolchain.devices.shell import HOUSEKEEPING_TIMEOUT_S, RemoteShell, checked, q
from toolchain.errors import (
    ArchMismatchError,
    IoTimeoutError,
    RemoteCommandError,
    TransportError,
    UsageError,
)

log = logging.getLogger(__name__)

#: The virtualenv ``--setup`` creates, relative to the login's home directory (SSH commands
#: start there, so the relative path works as a command name too).
VENV = ".edgedeploy/venv"
VENV_PYTHON = f"{VENV}/bin/python"
WHEEL_DIR = ".edgedeploy/wheels"
PYTHON_CANDIDATES = (VENV_PYTHON, "python3", "python")
#: seconds for pip and the first import of LiteRT (slow boards, emulated boards)
SETUP_TIMEOUT_S = 900.0
HOT_C = 80.0

#: Prints one JSON line: interpreter version and the installed numpy / ai-edge-litert versions.
_PY_PROBE = (
    "import json, sys\n"
    "try:\n from importlib.metadata import version\nexcept ImportError:\n version = None\n"
    "def v(name):\n"
    " try:\n  return version(name) if version else None\n"
    " except Exception:\n  return None\n"
    "print(json.dumps({'version': sys.version.split()[0], 'executable': sys.executable,"
    " 'numpy': v('numpy'), 'litert': v('ai-edge-litert'), 'tflite_runtime': v('tflite-runtime'),"
    " 'pip': v('pip')}))"
)


def _probe_command(candidates: tuple[str, ...]) -> str:
    py = "; ".join(
        f'if command -v {q(c)} >/dev/null 2>&1; then echo "py {c} $({q(c)} -c {q(_PY_PROBE)} '
        f'2>/dev/null | tail -n 1)"; else echo "py {c} missing"; fi'
        for c in candidates
    )
    return (
        'echo "machine $(uname -m)"; echo "kernel $(uname -r)"; '
        "(. /etc/os-release 2>/dev/null && echo \"os $PRETTY_NAME\") || echo 'os ?'; "
        'echo "user $(id -un) $(id -u)"; echo "home $HOME"; '
        "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo 2>/dev/null | "
        'while read k v u; do echo "mem $k $v"; done; '
        f"echo \"cpus $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')\"; "
        "echo \"cpuinfo $(grep -m1 -E '^(vendor_id|CPU implementer|model name)' /proc/cpuinfo "
        "2>/dev/null | tr -s '\\t ' ' ')\"; "
        f"{PROBE_SCRIPT}; {py}"
    )


@dataclass
class PythonInfo:
    """One interpreter on the board (``version`` None: not there or not runnable)."""

    command: str
    version: str | None = None
    executable: str | None = None
    numpy: str | None = None
    litert: str | None = None
    tflite_runtime: str | None = None
    pip: str | None = None


@dataclass
class Check:
    name: str
    status: str  # ok | warn | error
    message: str


@dataclass
class BoardInfo:
    """What :func:`describe_board` read from the board."""

    where: str
    machine: str = "?"
    kernel: str = "?"
    os: str = "?"
    user: str = "?"
    uid: int | None = None
    home: str = ""
    cpus: int | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    governors: dict[str, str] = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)
    #: first identifying /proc/cpuinfo line (``vendor_id: GenuineIntel``, ``CPU implementer``...)
    cpuinfo: str = ""
    pythons: list[PythonInfo] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def emulated(self) -> str | None:
        """Why this board is an emulator rather than the CPU it claims, or None.

        An Arm userland (``uname -m`` aarch64/armv7l) that sees an x86 ``/proc/cpuinfo``
        (``vendor_id``) runs under qemu-user on an x86 host: its timings are emulated time."""
        arm = self.machine.startswith(("aarch64", "arm"))
        if arm and self.cpuinfo.startswith("vendor_id"):
            vendor = self.cpuinfo.partition(":")[2].strip()
            return f"{self.machine} user space translated by qemu-user on an x86 CPU ({vendor})"
        return None

    def summary(self) -> dict[str, Any]:
        """Fields for a bench report's ``device`` section."""
        out: dict[str, Any] = {"machine": self.machine, "os": self.os, "kernel": self.kernel}
        if self.mem_total_bytes:
            out["mem_total_bytes"] = self.mem_total_bytes
        if self.emulated:
            out["emulated"] = self.emulated
        return out

    def python(self, *, runtime: bool = False) -> PythonInfo | None:
        """The first interpreter with numpy (and a TFLite runtime, with ``runtime``)."""
        for p in self.pythons:
            usable = bool(p.version and p.version.startswith("3.") and p.numpy)
            if usable and (not runtime or p.litert or p.tflite_runtime):
                return p
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_board(text: str, where: str) -> BoardInfo:
    """Parse the output of the probe command (see :func:`describe_board`)."""
    info = BoardInfo(where=where)
    state = parse_probe(text)
    info.governors, info.temperatures = state.governors, state.temperatures
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if key == "machine":
            info.machine = rest
        elif key == "kernel":
            info.kernel = rest
        elif key == "cpuinfo":
            info.cpuinfo = rest
        elif key == "os":
            info.os = rest
        elif key == "home":
            info.home = rest
        elif key == "cpus" and rest.isdigit():
            info.cpus = int(rest)
        elif key == "user":
            name, _, uid = rest.rpartition(" ")
            info.user, info.uid = name, int(uid) if uid.isdigit() else None
        elif key == "mem":
            parts = rest.split()
            if len(parts) == 2 and parts[1].isdigit():
                value = int(parts[1]) * 1024
                if parts[0] == "MemTotal:":
                    info.mem_total_bytes = value
                else:
                    info.mem_available_bytes = value
        elif key == "py":
            cmd, _, payload = rest.partition(" ")
            p = PythonInfo(command=cmd)
            try:
                doc = json.loads(payload) if payload not in ("", "missing") else {}
            except json.JSONDecodeError:
                doc = {}
            if isinstance(doc, dict):
                for k in ("version", "executable", "numpy", "litert", "tflite_runtime", "pip"):
                    setattr(p, k, doc.get(k))
            info.pythons.append(p)
    return info


def describe_board(
    shell: RemoteShell, candidates: tuple[str, ...] = PYTHON_CANDIDATES
) -> BoardInfo:
    """Read the board's architecture, OS, memory, governors, temperatures and Pythons."""
    res = checked(
        shell,
        _probe_command(candidates),
        timeout_s=HOUSEKEEPING_TIMEOUT_S * 4,
        what="reading the board's description",
    )
    return parse_board(res.stdout, shell.description)


def check_board(info: BoardInfo, target: Any) -> list[Check]:
    """Compare ``info`` with a target profile; the result is also stored in ``info.checks``.

    ``error``: the board cannot run the target's build (wrong architecture, no Python 3 with
    numpy); ``warn``: results will be skewed or the runtime is missing (``--setup``)."""
    checks: list[Check] = []
    try:
        check_device_arch(target, info.machine, device=info.where)
        checks.append(Check("architecture", "ok", f"{info.machine} (target {target.name})"))
    except ArchMismatchError as err:
        checks.append(Check("architecture", "error", err.message))
    py = info.python()
    if py is None:
        checks.append(Check("python", "error", no_python_message(info)))
    else:
        checks.append(Check("python", "ok", f"{py.command}: Python {py.version}, numpy {py.numpy}"))
        rt = info.python(runtime=True)
        if rt is None:
            checks.append(
                Check("runtime", "warn", "no ai-edge-litert/tflite-runtime: run bench --setup")
            )
        else:
            name = (
                f"ai-edge-litert {rt.litert}"
                if rt.litert
                else f"tflite-runtime {rt.tflite_runtime}"
            )
            checks.append(Check("runtime", "ok", f"{name} ({rt.command})"))
    want = getattr(getattr(target, "memory", None), "ram_bytes", None)
    if info.mem_total_bytes and want:
        ratio = info.mem_total_bytes / want
        status = "ok" if 0.75 <= ratio <= 1.1 else "warn"
        checks.append(
            Check(
                "memory",
                status,
                f"{info.mem_total_bytes / 2**30:.1f} GiB "
                f"(profile {target.name}: {want / 2**30:.1f} GiB)",
            )  # fmt: skip
        )
    govs = sorted(set(info.governors.values()))
    if not govs:
        checks.append(Check("governor", "warn", "no cpufreq governor readable (sysfs)"))
    else:
        status = "warn" if "powersave" in govs else "ok"
        checks.append(Check("governor", status, ", ".join(govs)))
    if info.temperatures:
        hot = max(info.temperatures.values())
        checks.append(
            Check("temperature", "warn" if hot >= HOT_C else "ok", f"hottest zone {hot:.1f} °C")
        )
    else:
        checks.append(Check("temperature", "warn", "no thermal zone readable (sysfs)"))
    info.checks = checks
    return checks


def no_python_message(info: BoardInfo) -> str:
    tried = ", ".join(p.command for p in info.pythons) or "python3"
    found = [p for p in info.pythons if p.version]
    if not found:
        return (
            f"{info.where} has no Python 3 (tried {tried}): install it there with "
            "`sudo apt install python3 python3-numpy python3-venv`"
        )
    return (
        f"{info.where} has Python ({found[0].command} {found[0].version}) but no numpy: "
        "install it there with `sudo apt install python3-numpy`"
    )


# --- setup --------------------------------------------------------------------------------


@dataclass
class SetupResult:
    """What :func:`setup_board` did."""

    python: str
    litert: str
    changed: bool
    actions: list[str]
    seconds: float
    wheels_pushed: list[str] = field(default_factory=list)


def wheel_tags(name: str) -> tuple[str, str, str, str]:
    """(distribution, python tag, abi tag, platform tag) of a wheel file name."""
    parts = name[:-4].split("-")
    if not name.endswith(".whl") or len(parts) < 5:
        raise UsageError(f"{name} is not a wheel file name")
    return parts[0].lower().replace("_", "-"), parts[-3], parts[-2], parts[-1]


def choose_wheels(wheels: Path, *, machine: str, python: str, litert: str) -> list[Path]:
    """The ``.whl`` files of ``wheels`` that can install on the board, checked to contain
    ai-edge-litert ``litert`` for its machine and Python version (a clear error otherwise)."""
    if not wheels.is_dir():
        raise UsageError(f"--wheels {wheels} is not a directory")
    pytag = "cp" + "".join(python.split(".")[:2])
    usable, litert_found, seen = [], False, []
    for whl in sorted(wheels.glob("*.whl")):
        dist, py, _abi, plat = wheel_tags(whl.name)
        if plat != "any" and not any(plat.endswith(m) for m in {machine, f"_{machine}"}):
            seen.append(whl.name)
            continue
        if py not in ("py3", "py2.py3", pytag) and not py.startswith("py3"):
            seen.append(whl.name)
            continue
        usable.append(whl)
        if dist == "ai-edge-litert" and whl.name.split("-")[1] == litert:
            litert_found = True
    if not litert_found:
        pyver = ".".join(python.split(".")[:2])
        raise UsageError(
            f"{wheels} has no ai-edge-litert {litert} wheel for {machine} / Python {pyver}"
            + (f" (found only: {', '.join(seen)})" if seen else ""),
            hint=f"on a machine with internet: pip download --only-binary=:all: --platform "
            f"manylinux_2_27_{machine} --python-version {pyver} --implementation cp "
            f"-d {wheels} ai-edge-litert=={litert}",
        )
    return usable


def setup_board(
    shell: RemoteShell,
    info: BoardInfo,
    *,
    litert: str,
    wheels: Path | None = None,
    allow_root: bool = False,
    timeout_s: float = SETUP_TIMEOUT_S,
) -> SetupResult:
    """Install ai-edge-litert ``litert`` into ``~/.edgedeploy/venv`` on the board (see the
    module docstring). ``info`` is the board's :func:`describe_board` (checked against the
    target by the caller)."""
    t0 = time.monotonic()
    if info.uid == 0 and not allow_root:
        raise UsageError(
            f"{info.where} logs in as root: --setup does not install as root",
            hint="log in as a normal user (user@board), or pass --setup-as-root if you mean it",
        )
    venv = next((p for p in info.pythons if p.command == VENV_PYTHON), None)
    if venv is not None and venv.litert == litert and venv.numpy:
        log.info("%s already has ai-edge-litert %s in ~/%s", info.where, litert, VENV)
        return SetupResult(VENV_PYTHON, litert, False, ["already set up"], time.monotonic() - t0)
    system = next((p for p in info.pythons if p.command == "python3" and p.version), None)
    if system is None:
        raise RemoteCommandError(
            f"{info.where} has no python3 to create the virtualenv with",
            hint="install it on the board: sudo apt install python3 python3-venv python3-numpy",
        )
    actions: list[str] = []
    if venv is None or not venv.version:
        # With the distribution's pip (python3-pip, on Raspberry Pi OS by default) the venv
        # needs no pip of its own: it sees the system's through --system-site-packages, and
        # pip installs into the venv it runs in. Skipping ensurepip is most of a cold setup
        # on a slow board. Without python3-pip, ensurepip puts pip into the venv.
        flags = "--system-site-packages" + (" --without-pip" if system.pip else "")
        res = shell.run(
            f"mkdir -p .edgedeploy && python3 -m venv {flags} {VENV}",
            timeout_s=timeout_s,
        )
        if res.returncode != 0:
            raise RemoteCommandError(
                f"creating the virtualenv ~/{VENV} on {info.where} failed: {res.tail(400)}",
                hint="install the venv module on the board: sudo apt install python3-venv",
            )
        actions.append(f"created ~/{VENV} (python3 -m venv {flags})")
    pushed: list[str] = []
    pip = f"{VENV_PYTHON} -m pip install --disable-pip-version-check --no-input"
    if wheels is not None:
        files = choose_wheels(
            wheels, machine=info.machine, python=system.version or "", litert=litert
        )
        checked(shell, f"mkdir -p {WHEEL_DIR}", timeout_s=HOUSEKEEPING_TIMEOUT_S, what="mkdir")
        for whl in files:
            shell.put(whl, f"{info.home or '.'}/{WHEEL_DIR}/{whl.name}", timeout_s=timeout_s)
            pushed.append(whl.name)
        actions.append(f"copied {len(pushed)} wheels to ~/{WHEEL_DIR}")
        cmd = f"{pip} --no-index --find-links {WHEEL_DIR} ai-edge-litert=={q(litert)}"
    else:
        cmd = f"{pip} ai-edge-litert=={q(litert)}"
    res = shell.run(cmd, timeout_s=timeout_s)
    if res.returncode != 0:
        hint = (
            "the wheel directory lacks a dependency: add its wheel (pip download ... -d DIR) "
            "or install it with apt on the board (numpy: sudo apt install python3-numpy)"
            if wheels is not None
            else "the board needs internet for PyPI; without it, pass --wheels DIR with the "
            "aarch64 wheels (pip download --platform manylinux_2_27_aarch64 ...)"
        )
        raise RemoteCommandError(
            f"pip install ai-edge-litert=={litert} failed on {info.where}: {res.tail(600)}",
            hint=hint,
        )
    actions.append(f"pip install ai-edge-litert=={litert}")
    verify = checked(
        shell,
        f"{VENV_PYTHON} -c {q('import ai_edge_litert, numpy; from ai_edge_litert.interpreter import Interpreter; print(ai_edge_litert.__version__)')}",
        timeout_s=timeout_s,
        what="importing the installed LiteRT",
    )
    actions.append(f"imported ai_edge_litert {verify.stdout.strip()}")
    return SetupResult(VENV_PYTHON, litert, True, actions, time.monotonic() - t0, pushed)


def setup_for_bench(shell: RemoteShell, info: BoardInfo, options: Any) -> BoardInfo:
    """``bench --setup``: :func:`setup_board` with the host's LiteRT version and the options'
    wheels; returns the board described again (now with the virtualenv)."""
    done = setup_board(
        shell,
        info,
        litert=host_litert_version(),
        wheels=options.setup_wheels,
        allow_root=options.setup_as_root,
    )
    return describe_board(shell) if done.changed else info


@contextmanager
def lost_board_hint(where: str) -> Iterator[None]:
    """Turn a connection lost in the middle of a run into an error that says what probably
    happened and what to do (timeouts pass through unchanged)."""
    try:
        yield
    except TransportError as exc:
        if isinstance(exc, IoTimeoutError):
            raise
        raise TransportError(
            f"{exc.message} during the benchmark: the board rebooted, lost power or network, "
            "or its sshd was restarted",
            hint=f"check that the board is up (ssh to it), then run again; a scratch directory "
            f"/tmp/edgedeploy-* may be left on {where}",
        ) from exc


def mark_emulated(result: Any, info: BoardInfo) -> None:
    """Say in the report's unit note and warnings that an emulated board's times are emulated."""
    if info.emulated:
        result.unit_note = (
            f"EMULATED time, not the time of a real {result.target}: {result.unit_note}, "
            f"measured on {info.emulated}"
        )
        result.warnings.append(
            f"the board is emulated ({info.emulated}): latencies are QEMU's translation speed "
            "on this host, not the board's; outputs and the runtime are the real aarch64 ones"
        )


def host_litert_version() -> str:
    """The ai-edge-litert version installed on the host (the one to install on the board,
    so that outputs can be compared with the host's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError as exc:
        raise UsageError("ai-edge-litert is not installed on the host") from exc


@dataclass
class BoardReport:
    """:func:`inspect_board`'s answer: the board, its checks, and what ``setup`` did."""

    info: BoardInfo
    setup: SetupResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "emulated": self.info.emulated,
            "setup": asdict(self.setup) if self.setup else None,
        }

    @property
    def ok(self) -> bool:
        return all(c.status != "error" for c in self.info.checks)


def inspect_board(
    host: str,
    *,
    target: Any | None,
    port: int | None = None,
    key: Path | None = None,
    known_hosts: Path | None = None,
    trust_new_host: bool = False,
    setup: bool = False,
    wheels: Path | None = None,
    allow_root: bool = False,
) -> BoardReport:
    """Connect to ``host`` over SSH, describe it and check it against ``target``
    (:func:`check_board`: a wrong architecture is an ``error`` check); with ``setup``, a wrong
    architecture is an :class:`ArchMismatchError` before anything is installed, then the
    runtime is installed (:func:`setup_board`) and the board described again. ``port``,
    ``key``, ``known_hosts``, ``trust_new_host``: as :class:`~toolchain.devices.ssh.SshBoard`."""
    from toolchain.devices.ssh import SshBoard

    with SshBoard(
        host, port=port, key=key, known_hosts=known_hosts, trust_new_host=trust_new_host
    ) as board:
        info = describe_board(board)
        if target is not None and setup:  # without setup, check_board reports it below
            check_device_arch(target, info.machine, device=board.description)
        result = None
        if setup:
            result = setup_board(
                board, info, litert=host_litert_version(), wheels=wheels, allow_root=allow_root
            )
            if result.changed:
                info = describe_board(board)
    if target is not None:
        check_board(info, target)
    return BoardReport(info, result)
