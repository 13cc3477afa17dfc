"""Linux boards (Raspberry Pi, Jetson, Termux's sshd...) over SSH with paramiko.

Key-based authentication only (the key given, else the SSH agent and ``~/.ssh/id_*``); no
passwords are ever sent. Host keys are checked against ``known_hosts`` (``~/.ssh/known_hosts``
unless told otherwise): an unknown host is refused unless ``trust_new_host`` is set, in which
case its key is appended to that file; a *changed* key is always refused.

Errors: unreachable host/port → :class:`DeviceNotFoundError`; authentication refused →
:class:`AuthError`; unknown or changed host key → :class:`HostKeyError`; a command or a copy
running too long → :class:`IoTimeoutError`; the connection dropping → :class:`TransportError`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType

import paramiko

from toolchain.devices.shell import ShellResult
from toolchain.errors import (
    AuthError,
    DeviceNotFoundError,
    HostKeyError,
    InputFileError,
    IoTimeoutError,
    TransportError,
    UsageError,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0


def parse_host(spec: str, default_port: int = 22) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) → (user, host, port)."""
    user, sep, rest = spec.rpartition("@")
    user_or_none = user if sep else None
    if sep and not user:
        raise UsageError(f"bad SSH host {spec!r}: empty user name", hint="use user@host")
    port = default_port
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:], spec)
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        port = _port(p, spec)
    else:
        host = rest
    if not host:
        raise UsageError(f"bad SSH host {spec!r}", hint="use user@host or user@host:port")
    return user_or_none, host, port


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in SSH host {spec!r}")
    return int(text)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host (saying its key's fingerprint), or trust and record it."""

    def __init__(self, known_hosts: Path, trust: bool) -> None:
        self.known_hosts = known_hosts
        self.trust = trust

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.trust:
            raise HostKeyError(
                f"{hostname} is not in {self.known_hosts} (its key: {_fingerprint(key)})",
                hint="check the fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*.pub), "
                "then run again with --trust-new-host, or connect once with ssh",
            )
        log.warning(
            "trusting new host %s (%s); added to %s", hostname, _fingerprint(key), self.known_hosts
        )
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshBoard:
    """An open SSH connection to a Linux board; a :class:`~toolchain.devices.shell.RemoteShell`.

    Use as a context manager. ``connect_timeout_s`` bounds the TCP connect, the banner and the
    authentication.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        key: Path | None = None,
        known_hosts: Path | None = None,
        trust_new_host: bool = False,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.user, self.host, self.port = parse_host(host, port)
        self.key = Path(key).expanduser() if key else None
        self.known_hosts = Path(known_hosts or Path("~/.ssh/known_hosts").expanduser())
        self.trust_new_host = trust_new_host
        self.connect_timeout_s = connect_timeout_s
        self._client: paramiko.SSHClient | None = None

    @property
    def description(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"ssh {who}{self.host}:{self.port}"

    def __enter__(self) -> SshBoard:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        if self.key is not None and not self.key.is_file():
            raise InputFileError(
                f"SSH key {self.key} does not exist",
                hint="give the private key file with --ssh-key, or leave it out to use "
                "ssh-agent and ~/.ssh/id_*",
            )
        client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"cannot read {self.known_hosts}: {exc}") from exc
        client.set_missing_host_key_policy(_HostKeyPolicy(self.known_hosts, self.trust_new_host))
        t = self.connect_timeout_s
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=str(self.key) if self.key else None,
                look_for_keys=self.key is None,
                allow_agent=True,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            entry = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            raise HostKeyError(
                f"the host key of {self.host}:{self.port} CHANGED: it offered "
                f"{_fingerprint(exc.key)}, {self.known_hosts} has {_fingerprint(exc.expected_key)}. "
                "Someone may be intercepting the connection, or the board was reinstalled",
                hint=f"if the board was reinstalled, remove the old key with "
                f"`ssh-keygen -R '{entry}'` and connect again",
            ) from exc
        except paramiko.PasswordRequiredException as exc:
            client.close()
            raise AuthError(
                f"the SSH key {self.key} is encrypted", hint="load it into ssh-agent (ssh-add)"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthError(
                f"{self.description} refused our key: {exc}",
                hint="install your public key on the board (ssh-copy-id), or give the key "
                "with --ssh-key; password logins are not supported",
            ) from exc
        except (OSError, paramiko.SSHException) as exc:  # refused, unreachable, DNS, timeout
            client.close()
            reason = (
                exc.strerror
                if isinstance(exc, OSError) and exc.strerror
                else str(exc) or type(exc).__name__
            )
            raise DeviceNotFoundError(
                f"cannot reach {self.host}:{self.port} over SSH: {reason}",
                hint="check the address, the port (--ssh-port) and that sshd runs on the board",
            ) from exc
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _transport(self) -> paramiko.Transport:
        if self._client is None:
            raise TransportError(f"{self.description} is not connected")
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise TransportError(f"the SSH connection to {self.description} was lost")
        return t

    def run(self, command: str, *, timeout_s: float) -> ShellResult:
        """Run ``command`` on the board (see :class:`~toolchain.devices.shell.RemoteShell`)."""
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout_s)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            raise TransportError(f"could not start a command on {self.description}: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        out, err = bytearray(), bytearray()
        try:
            while True:
                busy = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    busy = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    busy = True
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if chan.closed and not chan.exit_status_ready():
                    raise TransportError(f"the SSH channel to {self.description} closed")
                if time.monotonic() > deadline:
                    raise IoTimeoutError(
                        f"command on {self.description} did not finish within {timeout_s:.0f} s"
                    )
                if not busy:
                    time.sleep(0.005)
            rc = chan.recv_exit_status()
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise TransportError(f"the SSH connection to {self.description} failed: {exc}") from exc
        finally:
            chan.close()
        return ShellResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def put(self, local: Path, remote: str, *, mode: int = 0o644, timeout_s: float) -> None:
        """Copy one file with SFTP (all or raise), then set its mode."""
        try:
            sftp = paramiko.SFTPClient.from_transport(self._transport())
            if sftp is None:
                raise TransportError(f"SFTP is not available on {self.description}")
            try:
                chan = sftp.get_channel()
                if chan is not None:
                    chan.settimeout(timeout_s)
                sftp.put(os.fspath(local), remote, confirm=True)
                sftp.chmod(remote, mode)
            finally:
                sftp.close()
        except TimeoutError as exc:
            raise IoTimeoutError(
                f"copying {local.name} to {self.description} took over {timeout_s:.0f} s"
            ) from exc
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(
                f"copying {local} to {self.description}:{remote} failed: {exc}"
            ) from exc
