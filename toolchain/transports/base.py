"""The transport contract: moving bytes to and from a device, nothing more.

A protocol (``toolchain.protocol``) gives the bytes meaning; a transport only moves them and
reports failure with our errors — it never returns ``None`` or a short read on failure.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType
from typing import Self

from toolchain.errors import IoTimeoutError


class Transport(abc.ABC):
    """A byte link to one device (serial port, TCP socket, pty, ...).

    Contract:

    * :meth:`open` / :meth:`close` (or ``with transport:``). ``open`` raises
      :class:`~toolchain.errors.PortNotFoundError` for a missing or busy port; ``close`` is
      idempotent and never raises.
    * :meth:`write` ``(data, timeout)`` writes *all* of ``data`` within ``timeout`` seconds or
      raises :class:`~toolchain.errors.IoTimeoutError` /
      :class:`~toolchain.errors.TransportClosedError`.
    * :meth:`read` ``(n, timeout)`` returns *exactly* ``n`` bytes within ``timeout`` seconds or
      raises :class:`~toolchain.errors.IoTimeoutError` (the bytes that did arrive are kept
      and returned first by the next read) or :class:`~toolchain.errors.TransportClosedError`
      (the other end went away).
    * :meth:`discard_input` drops whatever has been received but not read.

    Subclasses implement :meth:`_open`, :meth:`_close`, :meth:`_read_some` and :meth:`write`.
    """

    #: a human-readable name of the link for messages (the port URL, the pty path)
    name: str = "transport"

    def __init__(self) -> None:
        self._pending = bytearray()
        self._open_flag = False

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        if not self._open_flag:
            self._open()
            self._open_flag = True

    def close(self) -> None:
        if self._open_flag:
            self._open_flag = False
            self._close()

    @property
    def is_open(self) -> bool:
        return self._open_flag

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- bytes ----------------------------------------------------------------------------

    def read(self, n: int, timeout: float) -> bytes:
        """Exactly ``n`` bytes within ``timeout`` seconds (see the class contract)."""
        deadline = time.monotonic() + timeout
        while len(self._pending) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IoTimeoutError(
                    f"{self.name}: read timed out after {timeout:.3g} s "
                    f"({len(self._pending)} of {n} bytes arrived)",
                    hint="is the device powered, running the right firmware, and on this port?",
                )
            self._pending += self._read_some(n - len(self._pending), remaining)
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def discard_input(self) -> int:
        """Drop received-but-unread bytes; returns how many were dropped (best effort)."""
        n = len(self._pending)
        self._pending.clear()
        return n + self._discard_os_input()

    @abc.abstractmethod
    def write(self, data: bytes, timeout: float) -> None:
        """Write all of ``data`` within ``timeout`` seconds or raise."""

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read_some(self, max_n: int, timeout: float) -> bytes:
        """Up to ``max_n`` bytes, waiting at most ``timeout`` seconds; ``b""`` when none came.
        Raises :class:`~toolchain.errors.TransportClosedError` when the link is gone."""

    def _discard_os_input(self) -> int:
        return 0
