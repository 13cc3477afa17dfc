"""Linux boards (Raspberry Pi, Jetson, Termux's sshd...) over SSH with paramiko.

Key-based authentication only (the key given, else ``IdentityFile`` from ``~/.ssh/config``,
the SSH agent and ``~/.ssh/id_*``); no passwords are ever sent. Host keys are checked against
``known_hosts`` (``~/.ssh/known_hosts`` unless told otherwise) as ``ssh`` does it, hashed names,
wildcards and ``@revoked`` lines included (see :mod:`toolchain.devices.known_hosts`): an unknown
host is refused unless ``trust_new_host`` is set, in which case its key is appended to that
file; a *changed* or *revoked* key is always refused.

``~/.ssh/config`` is honoured for the ``Host`` given: ``HostName``, ``Port``, ``User`` and
``IdentityFile``. Precedence: what the caller gave explicitly (``user@host:port``, ``port``,
``key``) > the ssh config > defaults (port 22, the local user name). A port both in the host
spec and in ``port`` is an error, not a silent choice.

Errors: unreachable host/port → :class:`DeviceNotFoundError`; a port that accepts but never
speaks SSH → :class:`IoTimeoutError`; no key at all, or the key refused → :class:`AuthError`;
unknown, changed or revoked host key → :class:`HostKeyError`; a command or a copy running too
long → :class:`IoTimeoutError`; the connection dropping → :class:`TransportError`. A command
killed by a signal on the board returns exit code ``128 + N`` (as a POSIX shell reports it).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

from toolchain.devices.known_hosts import KnownHosts, host_entry_name
from toolchain.devices.shell import ShellResult, append_lines
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
DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


def parse_host(spec: str, default_port: int = 22) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) → (user, host, port)."""
    user, host, port = split_host(spec)
    return user, host, port if port is not None else default_port


def split_host(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) → (user or None, host, port or None)."""
    user, sep, rest = spec.rpartition("@")
    user_or_none = user if sep else None
    if sep and not user:
        raise UsageError(f"bad SSH host {spec!r}: empty user name", hint="use user@host")
    port: int | None = None
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


@dataclass(frozen=True)
class SshDestination:
    """Where to connect, after the ssh config: ``alias`` is what the user typed, ``host``
    the address (``HostName``), ``identity_files`` the config's ``IdentityFile`` entries that
    exist; ``sources`` says where each of host/port/user came from (cli, ssh config, default)."""

    alias: str
    host: str
    port: int
    user: str | None
    identity_files: tuple[Path, ...] = ()
    config_file: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)


def resolve_destination(
    spec: str, *, port: int | None = None, config_file: Path | None = None
) -> SshDestination:
    """Apply ``~/.ssh/config`` (or ``config_file``) to ``[user@]host[:port]`` and ``port``
    (``--ssh-port``). Explicit values win over the config, the config over the defaults.

    Raises :class:`UsageError` when the spec carries a port and ``port`` is given too,
    :class:`InputFileError` when the ssh config cannot be read or parsed.
    """
    user, alias, spec_port = split_host(spec)
    if spec_port is not None and port is not None:
        raise UsageError(
            f"two SSH ports given: {spec!r} carries port {spec_port} and --ssh-port says {port}",
            hint="give the port once: either user@host:PORT or --ssh-port PORT",
        )
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--ssh-port must be 1-65535 (got {port})")
    cli_port = spec_port if spec_port is not None else port
    path = Path(config_file or DEFAULT_SSH_CONFIG).expanduser()
    conf: dict[str, Any] = {}
    used_config: Path | None = None
    if path.is_file():
        try:
            conf = dict(paramiko.SSHConfig.from_path(str(path)).lookup(alias))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, ImportError,
                paramiko.SSHException) as exc:  # fmt: skip
            raise InputFileError(
                f"cannot use the ssh config {path}: {exc}",
                hint="fix that file (ssh -G HOST shows how ssh reads it), or move it aside",
            ) from exc
        used_config = path
    sources: dict[str, str] = {}
    host = alias
    if conf.get("hostname") and conf["hostname"] != alias:
        host, sources["host"] = str(conf["hostname"]), f"ssh config {path}"
    if cli_port is not None:
        final_port, sources["port"] = cli_port, "command line"
    elif "port" in conf:
        try:
            final_port = int(conf["port"])
        except ValueError:
            raise InputFileError(
                f"{path}: Port {conf['port']!r} for {alias} is not a number"
            ) from None
        sources["port"] = f"ssh config {path}"
    else:
        final_port, sources["port"] = 22, "default"
    if user is not None:
        sources["user"] = "command line"
    elif conf.get("user"):
        user, sources["user"] = str(conf["user"]), f"ssh config {path}"
    identities: list[Path] = []
    for name in conf.get("identityfile", []) or []:
        p = Path(str(name)).expanduser()
        if p.is_file():
            identities.append(p)
        else:
            log.warning("%s: IdentityFile %s for %s does not exist; skipped", path, p, alias)
    for key in ("proxyjump", "proxycommand"):
        if conf.get(key) and str(conf[key]).lower() != "none":
            log.warning(
                "%s: %s for %s is not supported by edgedeploy; connecting directly",
                path,
                key,
                alias,
            )
    return SshDestination(alias, host, final_port, user, tuple(identities), used_config, sources)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """The whole host-key check (the client itself is given no host keys, so paramiko asks
    this policy every time): revoked → refuse; a matching key → accept; other keys for this
    host → CHANGED, refuse; only a cert-authority → refuse, saying why; unknown → refuse
    (saying its key's fingerprint), or trust and record it."""

    def __init__(self, known_hosts: KnownHosts, trust: bool, name: str) -> None:
        self.known_hosts = known_hosts
        self.trust = trust
        self.name = name  # host_entry_name(host, port)

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        kh = self.known_hosts
        blob = key.asbytes()
        revoked = kh.revoked(blob)
        if revoked is not None:
            raise HostKeyError(
                f"the host key of {self.name} ({_fingerprint(key)}) is REVOKED in "
                f"{revoked.source} (@revoked): it must never be accepted",
                hint="the board's host key was withdrawn (compromised or replaced): give the "
                "board a new host key (ssh-keygen -A there) and record that one, or remove the "
                "@revoked line if it is a mistake",
            )
        known = kh.keys_for(self.name)
        if any(line.blob == blob for line in known):
            return
        if known:
            entry = self.name
            first = known[0]
            raise HostKeyError(
                f"the host key of {self.name} CHANGED: it offered {_fingerprint(key)}, "
                f"{first.source} has {first.fingerprint}. Someone may be intercepting the "
                "connection, or the board was reinstalled",
                hint=f"if the board was reinstalled, remove the old key with "
                f"`ssh-keygen -R '{entry}' -f {kh.path}` and connect again",
            )
        cas = kh.authorities_for(self.name)
        if cas:
            raise HostKeyError(
                f"{kh.path} trusts {self.name} only through a certificate authority "
                f"({cas[0].source}, @cert-authority), and edgedeploy's SSH client (paramiko) "
                f"cannot check host certificates; the host offered {_fingerprint(key)}",
                hint=f"record the host's own key: ssh-keyscan -p PORT HOST >> {kh.path} "
                "(check its fingerprint first), or run again with --trust-new-host",
            )
        if not self.trust:
            raise HostKeyError(
                f"{self.name} is not in {kh.path} (its key: {_fingerprint(key)})",
                hint="check the fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*.pub), "
                "then run again with --trust-new-host, or connect once with ssh",
            )
        log.warning("trusting new host %s (%s); added to %s", self.name, _fingerprint(key), kh.path)
        kh.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(kh.path, "a", encoding="ascii") as fh:
            fh.write(f"{self.name} {key.get_name()} {key.get_base64()}\n")


def _signal_number(name: str) -> int | None:
    """``SEGV`` (as SSH's exit-signal names it) → 11."""
    try:
        return int(signal.Signals[f"SIG{name.upper().removeprefix('SIG')}"])
    except KeyError:
        return None


def _record_exit_signals(transport: paramiko.Transport, into: dict[int, str]) -> None:
    """Make ``transport`` remember the RFC 4254 ``exit-signal`` of each channel (paramiko
    ignores it and reports exit status -1) in ``into[channel id]``."""
    table = getattr(transport, "_channel_handler_table", None)
    if not isinstance(table, dict) or MSG_CHANNEL_REQUEST not in table:
        return
    original = table[MSG_CHANNEL_REQUEST]

    def handle(chan: paramiko.Channel, m: paramiko.Message) -> None:
        pos = m.packet.tell()
        try:
            if m.get_text() == "exit-signal":
                m.get_boolean()  # want reply
                into[chan.get_id()] = m.get_text()
        except Exception as exc:  # noqa: BLE001 - a malformed request is paramiko's to reject
            log.debug("could not read a channel request: %s", exc)
        m.packet.seek(pos)
        original(chan, m)

    transport._channel_handler_table = {**table, MSG_CHANNEL_REQUEST: handle}


#: host-key algorithm names that verify a key of each known_hosts key type
_HOSTKEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def _transport_factory(
    known_types: list[str], exit_signals: dict[int, str]
) -> Callable[..., paramiko.Transport]:
    """A paramiko ``transport_factory`` that asks the server for a host key of a type
    known_hosts already has for it (as ssh does, so a board with several host keys is not
    taken for a changed one) and records exit signals (:func:`_record_exit_signals`)."""

    def make(sock: socket.socket, **kwargs: Any) -> paramiko.Transport:
        t = paramiko.Transport(sock, **kwargs)
        opts = t.get_security_options()
        available = list(opts.key_types)
        wanted = [a for k in known_types for a in _HOSTKEY_ALGORITHMS.get(k, (k,))]
        first = [a for a in dict.fromkeys(wanted) if a in available]
        if first:
            opts.key_types = first + [a for a in available if a not in first]
        _record_exit_signals(t, exit_signals)
        return t

    return make


def _wait_for_banner(sock: socket.socket, where: str, timeout_s: float) -> None:
    """Wait until the server sends its first bytes (the SSH banner). A port that accepts the
    connection and then says nothing gives :class:`IoTimeoutError`, one that closes it
    :class:`DeviceNotFoundError` (paramiko's own messages for both are misleading)."""
    ready, _, _ = select.select([sock], [], [], timeout_s)
    if not ready:
        raise IoTimeoutError(
            f"cannot reach {where} over SSH: it accepted the connection but sent no SSH "
            f"greeting within {timeout_s:.0f} s (nothing there speaks SSH)",
            hint="check the address and the port (--host user@host:PORT or --ssh-port): "
            "another service, or a firewall or proxy holding the connection, answers there",
        )
    if not sock.recv(1, socket.MSG_PEEK):
        raise DeviceNotFoundError(
            f"cannot reach {where} over SSH: it closed the connection without an SSH greeting",
            hint="check the port and that sshd runs on the board (MaxStartups or a firewall "
            "can also drop connections)",
        )


class SshBoard:
    """An open SSH connection to a Linux board; a :class:`~toolchain.devices.shell.RemoteShell`.

    Use as a context manager. ``connect_timeout_s`` bounds the TCP connect, the banner and the
    authentication. ``host`` is ``[user@]host[:port]`` or a ``Host`` alias of the ssh config
    (``ssh_config``, default ``~/.ssh/config``); ``port`` is ``--ssh-port`` (None: the spec's,
    else the config's, else 22); ``known_hosts`` given explicitly must exist unless
    ``trust_new_host`` is set.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        key: Path | None = None,
        known_hosts: Path | None = None,
        trust_new_host: bool = False,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        ssh_config: Path | None = None,
    ) -> None:
        self.destination = resolve_destination(host, port=port, config_file=ssh_config)
        self.user = self.destination.user
        self.host = self.destination.host
        self.port = self.destination.port
        self.key = Path(key).expanduser() if key else None
        self.known_hosts_explicit = known_hosts is not None
        self.known_hosts = Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.trust_new_host = trust_new_host
        self.connect_timeout_s = connect_timeout_s
        self._client: paramiko.SSHClient | None = None
        self._exit_signals: dict[int, str] = {}

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

    def _load_known_hosts(self) -> KnownHosts:
        kh = self.known_hosts
        if kh.exists() and not kh.is_file():
            raise InputFileError(
                f"known_hosts {kh} is not a file", hint="give a known_hosts file with --known-hosts"
            )
        if self.known_hosts_explicit and not kh.exists() and not self.trust_new_host:
            raise InputFileError(
                f"known_hosts file {kh} does not exist",
                hint="check the --known-hosts path, or add --trust-new-host to create it with "
                "this board's key",
            )
        try:
            return KnownHosts.load(kh)
        except OSError as exc:
            raise HostKeyError(
                f"cannot read {kh}: {exc.strerror or exc}",
                hint="fix its permissions, or give another file with --known-hosts",
            ) from exc

    def _key_files(self) -> list[str] | None:
        if self.key is not None:
            return [str(self.key)]
        return [str(p) for p in self.destination.identity_files] or None

    def connect(self) -> None:
        if self.key is not None and not self.key.is_file():
            raise InputFileError(
                f"SSH key {self.key} does not exist",
                hint="give the private key file with --ssh-key, or leave it out to use "
                "ssh-agent and ~/.ssh/id_*",
            )
        known = self._load_known_hosts()
        t = self.connect_timeout_s
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=t)
        except OSError as exc:  # refused, unreachable, DNS, timeout
            reason = exc.strerror or str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {t:.0f} s"
            raise DeviceNotFoundError(
                f"cannot reach {where} over SSH: {reason}",
                hint="check the address, the port (--ssh-port) and that sshd runs on the board",
            ) from exc
        try:
            _wait_for_banner(sock, where, t)
        except BaseException:
            sock.close()
            raise
        name = host_entry_name(self.host, self.port)
        known_types = [ln.keytype for ln in known.keys_for(name) if not known.revoked(ln.blob)]
        client = paramiko.SSHClient()  # given no host keys: the policy decides every time
        client.set_missing_host_key_policy(_HostKeyPolicy(known, self.trust_new_host, name))
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=self._key_files(),
                look_for_keys=self.key is None,
                allow_agent=True,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
                sock=sock,
                transport_factory=_transport_factory(known_types, self._exit_signals),
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.PasswordRequiredException as exc:
            client.close()
            raise AuthError(
                f"the SSH key {self.key or 'file'} is encrypted",
                hint="load it into ssh-agent (ssh-add)",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthError(
                f"{self.description} refused our key: {exc}",
                hint="install your public key on the board (ssh-copy-id), or give the key "
                "with --ssh-key; password logins are not supported",
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "No authentication methods available" in str(exc):
                raise AuthError(
                    f"no SSH key to log in to {self.description} with: no --ssh-key, no "
                    "IdentityFile in ~/.ssh/config, no ~/.ssh/id_* key, and no SSH agent "
                    "with keys",
                    hint="load a key into the agent (ssh-add), install it on the board "
                    "(ssh-copy-id), or pass --ssh-key PATH; password logins are not supported",
                ) from exc
            raise DeviceNotFoundError(
                f"the SSH handshake with {where} failed: {exc or type(exc).__name__}",
                hint="check that the port is the board's sshd (--ssh-port) and that it allows "
                "a modern key exchange",
            ) from exc
        except OSError as exc:
            client.close()
            raise DeviceNotFoundError(
                f"the SSH connection to {where} failed: {exc.strerror or exc}",
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
        return self._run(command, timeout_s=timeout_s, on_stderr_line=None)

    def run_streaming(
        self, command: str, *, timeout_s: float, on_stderr_line: Callable[[str], None]
    ) -> ShellResult:
        """:meth:`run`, also passing each complete stderr line (decoded, without its newline)
        to ``on_stderr_line`` as it arrives (a
        :class:`~toolchain.devices.shell.StreamingShell`)."""
        return self._run(command, timeout_s=timeout_s, on_stderr_line=on_stderr_line)

    def _run(
        self, command: str, *, timeout_s: float, on_stderr_line: Callable[[str], None] | None
    ) -> ShellResult:
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
                    append_lines(err, chan.recv_stderr(65536), on_stderr_line)
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
            name = self._exit_signals.pop(chan.get_id(), None)
            if name is not None:
                num = _signal_number(name)
                log.debug("command on %s killed by SIG%s", self.description, name)
                rc = 128 + num if num is not None else rc
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
