"""A fault-injecting transport wrapper for tests and link-robustness checks.

Faults are scheduled by the number of the write (1-based: the first frame the host sends is
write 1), so a test says exactly what goes wrong and when:

* ``noise_after``: after these writes, random noise bytes appear in the read stream (before
  the device's reply), as a noisy UART would produce.
* ``drop_write``: these writes never reach the device (a lost request).
* ``corrupt_write``: one byte of these writes is flipped (the device must drop the frame).
* ``drop_reply_after``: the first ``n`` bytes the device sends after these writes are eaten
  (a lost reply, or a reply cut in half).
* ``silence_after``: from this write on, nothing is delivered either way (a dead board).
* ``on_write``: ``callback(k, data)`` called after write ``k`` (the bytes ``data``) went
  out, e.g. to reset the device in the middle of a RUN.

Everything is deterministic for a given ``seed``. The wrapper keeps the
:class:`~toolchain.transports.base.Transport` contract.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection

from toolchain.errors import IoTimeoutError
from toolchain.transports.base import Transport


class FaultyTransport(Transport):
    def __init__(
        self,
        inner: Transport,
        *,
        noise_after: Collection[int] = (),
        noise_bytes: int = 37,
        drop_write: Collection[int] = (),
        corrupt_write: Collection[int] = (),
        drop_reply_after: Collection[int] = (),
        drop_reply_bytes: int = 10,
        silence_after: int | None = None,
        on_write: Callable[[int, bytes], None] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.name = f"faulty({inner.name})"
        self.noise_after = set(noise_after)
        self.noise_bytes = noise_bytes
        self.drop_write = set(drop_write)
        self.corrupt_write = set(corrupt_write)
        self.drop_reply_after = set(drop_reply_after)
        self.drop_reply_bytes = drop_reply_bytes
        self.silence_after = silence_after
        self.on_write = on_write
        self.rng = random.Random(seed)
        self.writes = 0
        self._noise = bytearray()
        self._to_drop = 0
        #: what was injected, for assertions: ("noise"|"drop"|"corrupt"|"eat", write number)
        self.log: list[tuple[str, int]] = []

    def _open(self) -> None:
        self.inner.open()

    def _close(self) -> None:
        self.inner.close()

    def _silent(self) -> bool:
        return self.silence_after is not None and self.writes >= self.silence_after

    def write(self, data: bytes, timeout: float) -> None:
        self.writes += 1
        k = self.writes
        if self._silent():
            self.log.append(("silence", k))
            return
        if k in self.drop_write:
            self.log.append(("drop", k))
        else:
            if k in self.corrupt_write and data:
                b = bytearray(data)
                i = self.rng.randrange(2, len(b))  # keep SYNC so the parser sees a candidate
                b[i] ^= 1 << self.rng.randrange(8)
                data = bytes(b)
                self.log.append(("corrupt", k))
            self.inner.write(data, timeout)
        if k in self.noise_after:
            self._noise += bytes(self.rng.randrange(256) for _ in range(self.noise_bytes))
            self.log.append(("noise", k))
        if k in self.drop_reply_after:
            self._to_drop += self.drop_reply_bytes
            self.log.append(("eat", k))
        if self.on_write is not None:
            self.on_write(k, data)

    def _read_some(self, max_n: int, timeout: float) -> bytes:
        if self._silent():
            time.sleep(min(timeout, 0.05))
            return b""
        if self._noise:
            out = bytes(self._noise[:max_n])
            del self._noise[:max_n]
            return out
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self.inner.read(1, max(0.001, deadline - time.monotonic()))
            except IoTimeoutError:
                return b""
            if self._to_drop:
                self._to_drop -= 1
                continue
            return chunk

    def _discard_os_input(self) -> int:
        return self.inner.discard_input()
