"""Stand-ins for phones and boards in the emulated tier: a private adb server, ADB peers, a
private OpenSSH server, and the native launcher of the fake ``benchmark_model``.

* :class:`AdbServer` — the real adb server on a free port with its own ``HOME`` (so it has
  its own adb key and never touches the user's), selected through ``ANDROID_ADB_SERVER_PORT``.
* :func:`build_launcher` — a tiny C program (compiled with the host's ``cc``) that execs
  ``python fake_benchmark_model.py ARGS``: a real ELF executable for this machine's ABI, which
  the peer advertises (``ro.product.cpu.abilist``), so the runner's ELF check passes for the
  right reason.
* :class:`Sshd` — ``/usr/sbin/sshd -D -f cfg`` on 127.0.0.1 with a private config, generated
  host and user keys, ``UsePAM no``, ``StrictModes no``, SFTP.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKE_BENCHMARK_MODEL = HERE / "fake_benchmark_model.py"
#: The adb server grabs anything on 127.0.0.1:5555-5585 as an emulator: stay out of it.
EMULATOR_PORTS = range(5554, 5586)


#: Target profiles whose architecture is this machine's: the emulated peers (sshd, the ADB
#: peer) run here, so benchmarking them as "rpi4"/"android-arm64" would be refused by the
#: architecture check (toolchain.devices.arch) on an x86_64 machine.
LINUX_TARGET = {"x86_64": "linux-x86_64", "aarch64": "rpi4"}.get(platform.machine(), "linux-x86_64")
ANDROID_TARGET = "android-x86_64"  # the ADB peer advertises ro.product.cpu.abi = x86_64


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in EMULATOR_PORTS:
            return port


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def patched_environ(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class AdbServer:
    """A private adb server (``adb start-server`` with our HOME and port in ``os.environ``)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self._env: contextlib.ExitStack | None = None

    def adb(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["adb", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def __enter__(self) -> AdbServer:
        self._env = contextlib.ExitStack()
        self._env.enter_context(
            patched_environ(
                HOME=str(self.home),
                ANDROID_ADB_SERVER_PORT=str(self.port),
                ANDROID_SERIAL=None,
                ADB_VENDOR_KEYS=None,
            )
        )
        self.adb("start-server")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.adb("kill-server", timeout_s=10)
        if self._env is not None:
            self._env.close()

    def connect(self, port: int) -> str:
        serial = f"127.0.0.1:{port}"
        out = self.adb("connect", serial)
        if "connected" not in out.stdout:
            raise RuntimeError(f"adb connect {serial}: {out.stdout} {out.stderr}")
        return serial

    def disconnect(self, serial: str) -> None:
        self.adb("disconnect", serial, timeout_s=10)


def c_compiler() -> str | None:
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            return cc
    return None


def build_launcher(
    out: Path, *, script: Path = FAKE_BENCHMARK_MODEL, python: str = sys.executable
) -> Path:
    """Compile a native program that runs ``python script ARGS`` (see module docstring)."""
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang)")
    src = out.with_suffix(".c")
    src.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
        "int main(int argc, char **argv) {\n"
        "  char **args = calloc((size_t)argc + 2, sizeof(char *));\n"
        f"  args[0] = {json_c(python)}; args[1] = {json_c(str(script))};\n"
        "  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];\n"
        '  execv(args[0], args);\n  perror("execv");\n  return 127;\n}\n'
    )
    subprocess.run([cc, "-O1", "-o", str(out), str(src)], check=True, capture_output=True)
    return out


def json_c(text: str) -> str:
    """A C string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def install_device_python(sandbox_root: Path, python: str = sys.executable) -> str:
    """Put a Termux-style ``python3`` into the sandbox; returns its device path."""
    device_path = "/data/data/com.termux/files/usr/bin/python3"
    host = sandbox_root / device_path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(f'#!/bin/sh\nexec {json_c(python)[1:-1]!s} "$@"\n')
    host.chmod(0o755)
    return device_path


class Sshd:
    """A private OpenSSH server on 127.0.0.1 (see module docstring)."""

    SSHD = "/usr/sbin/sshd"

    def __init__(self, root: Path, *, extra_host_key_types: tuple[str, ...] = ()) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = root / "ssh_host_ed25519_key"
        #: more host keys (ssh-keygen -t TYPE), offered after the ed25519 one
        self.extra_host_keys = [root / f"ssh_host_{t}_key" for t in extra_host_key_types]
        self._extra_types = extra_host_key_types
        self.user_key = root / "id_ed25519"
        self.config = root / "sshd_config"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return Path(Sshd.SSHD).is_file() and shutil.which("ssh-keygen") is not None

    def keygen(self, path: Path, kind: str = "ed25519") -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)],
            check=True,
            capture_output=True,
        )

    def __enter__(self) -> Sshd:
        self.root.mkdir(parents=True, exist_ok=True)
        self.keygen(self.host_key)
        for kind, path in zip(self._extra_types, self.extra_host_keys, strict=True):
            self.keygen(path, kind)
        self.keygen(self.user_key)
        extra = "".join(f"HostKey {p}\n" for p in self.extra_host_keys)
        auth = self.root / "authorized_keys"
        auth.write_text((self.user_key.with_suffix(".pub")).read_text())
        auth.chmod(0o600)
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n{extra}"
            f"PidFile {self.root / 'sshd.pid'}\nAuthorizedKeysFile {auth}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def known_hosts_line(self, key: Path | None = None) -> str:
        kind, b64 = (key or self.host_key).with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"
