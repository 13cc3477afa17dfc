"""OpenSSH ``known_hosts`` files, read the way ``ssh`` reads them (sshd(8) "SSH_KNOWN_HOSTS
FILE FORMAT"), for :class:`toolchain.devices.ssh.SshBoard`.

A line is ``[@marker] patterns keytype base64 [comment]``:

* ``patterns``: comma-separated host patterns with ``*``/``?`` wildcards and ``!`` negation,
  ``[host]:port`` for a port other than 22, or one hashed name ``|1|salt|hmac`` (HashKnownHosts);
* ``@revoked``: the key must never be accepted, for any host;
* ``@cert-authority``: the key is a CA that signs host certificates. edgedeploy's SSH client
  (paramiko) cannot check host certificates, so these lines are kept only to explain a refusal.

A line that cannot be parsed (too few fields, bad base64, a key blob of another type, an
unknown marker, bytes that are not ASCII/UTF-8) is skipped with a warning naming
``file:line``, as ``ssh`` does; it never aborts the connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MARKERS = ("@revoked", "@cert-authority")


def host_entry_name(host: str, port: int) -> str:
    """The name ``ssh`` records for ``host:port``: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class KnownHostLine:
    """One usable line: where it came from, its marker ("" for a plain key), its patterns
    and the key (type name and the decoded public-key blob)."""

    source: str  # "file:line"
    marker: str
    patterns: tuple[str, ...]
    keytype: str
    blob: bytes

    def matches_host(self, name: str) -> bool:
        """Whether ``name`` (as from :func:`host_entry_name`) matches the line's patterns."""
        return patterns_match(self.patterns, name)

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"{self.keytype} SHA256:{digest}"


@dataclass
class KnownHosts:
    """The usable lines of one file, plus the ``file:line: reason`` of each skipped one."""

    path: Path
    lines: list[KnownHostLine] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> KnownHosts:
        """Read ``path`` (a missing file is empty). Raises ``OSError`` only when an existing
        file cannot be read; bad lines are skipped and logged (see the module docstring)."""
        out = cls(Path(path))
        if not out.path.exists():
            return out
        raw = out.path.read_bytes()
        for n, line_bytes in enumerate(raw.splitlines(), start=1):
            where = f"{out.path}:{n}"
            try:
                text = line_bytes.decode("utf-8")
            except UnicodeDecodeError:
                out._skip(where, "not UTF-8 text")
                continue
            try:
                parsed = parse_line(text, where)
            except ValueError as exc:
                out._skip(where, str(exc))
                continue
            if parsed is not None:
                out.lines.append(parsed)
        return out

    def _skip(self, where: str, reason: str) -> None:
        self.skipped.append(f"{where}: {reason}")
        log.warning("%s: %s; line ignored", where, reason)

    def revoked(self, blob: bytes) -> KnownHostLine | None:
        """The ``@revoked`` line listing this key, whatever its host patterns."""
        for line in self.lines:
            if line.marker == "@revoked" and line.blob == blob:
                return line
        return None

    def keys_for(self, name: str) -> list[KnownHostLine]:
        """Plain (unmarked) lines whose patterns match ``name``."""
        return [ln for ln in self.lines if not ln.marker and ln.matches_host(name)]

    def authorities_for(self, name: str) -> list[KnownHostLine]:
        """``@cert-authority`` lines whose patterns match ``name``."""
        return [ln for ln in self.lines if ln.marker == "@cert-authority" and ln.matches_host(name)]


def parse_line(text: str, where: str = "") -> KnownHostLine | None:
    """One line → :class:`KnownHostLine`; None for a blank or comment line. Raises
    ``ValueError`` (with the reason) for a line that cannot be used."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    fields = stripped.split()
    marker = ""
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker not in MARKERS:
            raise ValueError(f"unknown marker {marker!r} (OpenSSH knows {', '.join(MARKERS)})")
    if len(fields) < 3:
        raise ValueError("expected: [@marker] hostnames keytype base64-key [comment]")
    hosts, keytype, b64 = fields[:3]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {keytype} key is not valid base64") from None
    inner = _blob_type(blob)
    if inner is None:
        raise ValueError("the key is not an SSH public key blob")
    if inner != keytype:
        raise ValueError(f"the line says {keytype} but the key is {inner}")
    patterns = tuple(p for p in hosts.split(",") if p)
    if not patterns:
        raise ValueError("no host names")
    return KnownHostLine(where, marker, patterns, keytype, blob)


def _blob_type(blob: bytes) -> str | None:
    """The key type name at the start of an SSH public-key blob (a length-prefixed string)."""
    if len(blob) < 4:
        return None
    (n,) = struct.unpack(">I", blob[:4])
    if n == 0 or n > 64 or len(blob) < 4 + n:
        return None
    try:
        return blob[4 : 4 + n].decode("ascii")
    except UnicodeDecodeError:
        return None


def hashed_match(entry: str, name: str) -> bool:
    """Whether ``|1|salt|hmac`` is the HMAC-SHA1 of ``name`` (ssh-keygen -H)."""
    parts = entry.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        want = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(got, want)


def patterns_match(patterns: tuple[str, ...], name: str) -> bool:
    """OpenSSH pattern-list matching: a negated match (``!pat``) wins; else any positive
    match. Host names compare case-insensitively; hashed entries by HMAC."""
    lowered = name.lower()
    positive = False
    for pat in patterns:
        if pat.startswith("|"):
            if hashed_match(pat, name):
                positive = True
            continue
        negate = pat.startswith("!")
        body = pat[1:] if negate else pat
        if _wildcard(body.lower()).fullmatch(lowered):
            if negate:
                return False
            positive = True
    return positive


def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` wildcards only (``[`` and ``]`` are literal, as in ``[host]:port``)."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )
