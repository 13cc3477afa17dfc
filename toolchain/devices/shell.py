"""What ADB devices and SSH boards have in common: a remote POSIX shell and file upload.

Contract of a :class:`RemoteShell` (implemented by :class:`toolchain.devices.adb.AdbDevice`
and :class:`toolchain.devices.ssh.SshBoard`):

* ``run(command, timeout_s=...)`` runs one ``sh`` command line on the device and returns its
  exit code, stdout and stderr. It raises :class:`~toolchain.errors.IoTimeoutError` when the
  command does not finish within ``timeout_s`` seconds and
  :class:`~toolchain.errors.TransportError` (or a subclass) when the link itself fails. The
  command line is passed as is: callers quote every user-supplied word with :func:`q`.
* ``put(local, remote, mode=..., timeout_s=...)`` copies one file (all or raise).
* Optionally (:class:`StreamingShell`), ``run_streaming(command, timeout_s=...,
  on_stderr_line=...)`` is ``run`` that also hands each complete stderr line to
  ``on_stderr_line`` as soon as it arrives (same timeouts, errors and result).

:class:`Workdir` is a private scratch directory on the device that is removed on exit, whatever
happened (error, timeout, Ctrl-C); :meth:`Workdir.run_guarded` runs a command whose process is
killed on the device if it times out.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from toolchain.errors import EdgeDeployError, IoTimeoutError, RemoteCommandError

log = logging.getLogger(__name__)

#: Seconds allowed for the small housekeeping commands (mkdir, rm, kill, cat).
HOUSEKEEPING_TIMEOUT_S = 15.0


def q(word: str | Path) -> str:
    """Quote one word for a POSIX shell (``shlex.quote``)."""
    return shlex.quote(str(word))


@dataclass(frozen=True)
class ShellResult:
    """Exit code and output of one remote command."""

    returncode: int
    stdout: str
    stderr: str

    def tail(self, n: int = 1500) -> str:
        """The last ``n`` characters of stderr and stdout, for error messages."""
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return text[-n:]


def exit_description(returncode: int) -> str:
    """How every remote runner words an exit code: ``killed by signal 11 (SIGSEGV)`` for
    ``128 + N`` (what a POSIX shell, adb's shell_v2 and our SSH board report for a process
    killed by signal N), else ``exit code N``."""
    if returncode > 128:
        num = returncode - 128
        try:
            name = f" ({signal.Signals(num).name})"
        except ValueError:
            name = ""
        return f"killed by signal {num}{name}"
    return f"exit code {returncode}"


def append_lines(buf: bytearray, chunk: bytes, on_line: Callable[[str], None] | None) -> None:
    """Append ``chunk`` to ``buf`` and hand each line it completes (decoded, without its
    newline) to ``on_line``: the line splitting of every ``run_streaming``."""
    start = buf.rfind(b"\n") + 1
    buf += chunk
    if on_line is not None and b"\n" in chunk:
        for line in bytes(buf[start : buf.rfind(b"\n")]).split(b"\n"):
            on_line(line.decode("utf-8", "replace").rstrip("\r"))


#: Hint for a runner killed by a signal (shared by the ADB and SSH runners).
SIGNAL_HINT = (
    "signal 11 is a crash inside the TFLite interpreter (a corrupt or truncated model, or a "
    "runtime built for another CPU?); signal 9 is usually the out-of-memory killer"
)


class RemoteShell(Protocol):
    """A device reachable through a shell (see the module docstring for the contract)."""

    @property
    def description(self) -> str: ...

    def run(self, command: str, *, timeout_s: float) -> ShellResult: ...

    def put(self, local: Path, remote: str, *, mode: int = 0o644, timeout_s: float) -> None: ...


@runtime_checkable
class StreamingShell(Protocol):
    """A shell that can also stream a command's stderr line by line while it runs."""

    def run_streaming(
        self, command: str, *, timeout_s: float, on_stderr_line: Callable[[str], None]
    ) -> ShellResult: ...


def checked(shell: RemoteShell, command: str, *, timeout_s: float, what: str) -> ShellResult:
    """Run ``command``; raise :class:`RemoteCommandError` (with its output) unless it exits 0."""
    res = shell.run(command, timeout_s=timeout_s)
    if res.returncode != 0:
        raise RemoteCommandError(
            f"{what} failed on {shell.description} (exit code {res.returncode}): {res.tail(400)}"
        )
    return res


class Workdir:
    """A private directory ``<base>/edgedeploy-<random>`` on the device, removed on exit.

    Created with mode 700. Removal kills a process still recorded in the directory's pid
    file, then ``rm -rf``\\ s the directory, and checks that it is gone (a failure is logged
    as a warning, never raised over the original error).
    """

    def __init__(self, shell: RemoteShell, base: str) -> None:
        self.shell = shell
        self.path = f"{base.rstrip('/')}/edgedeploy-{secrets.token_hex(6)}"
        self.removed: bool | None = None

    def file(self, name: str) -> str:
        """Device path of ``name`` inside the directory (``name`` is kept as is: quote it)."""
        return f"{self.path}/{name}"

    def __enter__(self) -> Workdir:
        checked(
            self.shell,
            f"mkdir -p -m 700 {q(self.path)}",
            timeout_s=HOUSEKEEPING_TIMEOUT_S,
            what="creating the scratch directory",
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> bool:
        pid = q(self.file(".pid"))
        cmd = (
            f"if [ -f {pid} ]; then pkill -9 -P $(cat {pid}) 2>/dev/null; "
            f"kill -9 $(cat {pid}) 2>/dev/null; fi; "
            f"rm -rf -- {q(self.path)}; test ! -e {q(self.path)}"
        )
        try:
            res = self.shell.run(cmd, timeout_s=HOUSEKEEPING_TIMEOUT_S)
            self.removed = res.returncode == 0
        except EdgeDeployError as err:
            log.warning("could not remove %s on %s: %s", self.path, self.shell.description, err)
            self.removed = False
        if not self.removed:
            log.warning(
                "%s may still exist on %s; remove it by hand", self.path, self.shell.description
            )
        return bool(self.removed)

    def put(self, local: Path, name: str, *, mode: int = 0o644, timeout_s: float) -> str:
        """Copy ``local`` into the directory as ``name``; return its device path."""
        remote = self.file(name)
        self.shell.put(local, remote, mode=mode, timeout_s=timeout_s)
        return remote

    def run_guarded(
        self,
        command: str,
        *,
        timeout_s: float,
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ShellResult:
        """Run one simple command (``[env] program args``) with its pid recorded.

        On timeout the device process and its children are killed (``kill -9``) before
        :class:`IoTimeoutError` is raised, so nothing keeps running on the device.
        With ``on_stderr_line``, each stderr line is passed to it while the command runs when
        the shell is a :class:`StreamingShell` (otherwise the command runs as usual and the
        callback is never called; the result holds all of stderr either way).
        """
        pid = q(self.file(".pid"))
        full = f"echo $$ > {pid} && exec {command}"
        try:
            if on_stderr_line is not None and isinstance(self.shell, StreamingShell):
                res = self.shell.run_streaming(
                    full, timeout_s=timeout_s, on_stderr_line=on_stderr_line
                )
            else:
                res = self.shell.run(full, timeout_s=timeout_s)
            # the process is gone: forget its pid so that cleanup never kills a reused one
            self.shell.run(f"rm -f {pid}", timeout_s=HOUSEKEEPING_TIMEOUT_S)
            return res
        except IoTimeoutError:
            try:
                self.shell.run(
                    f"pkill -9 -P $(cat {pid}) 2>/dev/null; kill -9 $(cat {pid}) 2>/dev/null; "
                    f"rm -f {pid}",
                    timeout_s=HOUSEKEEPING_TIMEOUT_S,
                )
            except EdgeDeployError as err:
                log.warning("could not kill the timed-out command: %s", err)
            raise IoTimeoutError(
                f"the benchmark on {self.shell.description} did not finish within "
                f"{timeout_s:.0f} s; it was killed",
                hint="raise --timeout, or lower --runs/--warmup",
            ) from None
