"""The Python twin of tests/c/edp_fake.c: the same fake device behaviour behind the Python
:class:`~toolchain.protocol.device.DeviceDispatcher`, so C and Python devices can be compared
byte for byte and the client tested without a model."""

from __future__ import annotations

from toolchain.protocol.device import PROFILE_ON, PROFILE_RESET, DeviceBackend
from toolchain.protocol.messages import FwKind, Hello, ProfileEntry, TensorInfo, TickUnit

OP_NAMES = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class FakeBackend(DeviceBackend):
    def __init__(self, in_bytes: int, out_bytes: int, *, profiler: bool = True) -> None:
        self.in_bytes = max(1, in_bytes)
        self.out_bytes = out_bytes
        self.profiler = profiler
        self.clock = 0
        self.invocations = 0
        self.out = bytes(out_bytes)
        self.op_ticks = [0, 0, 0]

    def hello(self) -> Hello:
        return Hello(
            protocol_version=1,
            fw_kind=FwKind.SELFTEST,
            max_payload=0,
            clock_hz=25_000_000,
            tick_unit=TickUnit.INSTRUCTIONS,
            ticks_per_tick_count=1,
            model_sha256=bytes(range(32)),
            arena_bytes=4096,
            arena_used_bytes=1234,
            n_inputs=1,
            n_outputs=1,
            n_ops=3,
            text="board=fake\ntarget=host\n",
        )

    def tensor(self, index: int, *, output: bool) -> TensorInfo:
        if index != 0:
            raise IndexError(index)
        if output:
            return TensorInfo(9, (1, self.out_bytes), 0.00390625, -128, self.out_bytes)
        return TensorInfo(3, (1, self.in_bytes), 0.5, 3, self.in_bytes)

    def set_inputs(self, inputs: list[bytes]) -> None:
        self.inp = inputs[0]

    def invoke(self, profile: int) -> None:
        x = self.inp
        if x[0] == 0xFF:
            raise RuntimeError("fake failure")
        n = self.invocations
        self.out = bytes((x[i % len(x)] * 3 + 1 + n) & 0xFF for i in range(self.out_bytes))
        self.invocations += 1
        if profile & PROFILE_RESET:
            self.op_ticks = [0, 0, 0]
        if profile & PROFILE_ON:
            self.op_ticks = [t + (k + 1) * 100 for k, t in enumerate(self.op_ticks)]

    def output(self, index: int) -> bytes:
        return self.out

    def now(self) -> int:
        self.clock += 1000
        return self.clock

    def op_profile(self) -> list[ProfileEntry] | None:
        if not self.profiler:
            return None
        return [ProfileEntry(k, OP_NAMES[k], self.op_ticks[k]) for k in range(3)]


def expected_output(inp: bytes, out_bytes: int, invocations_before: int) -> bytes:
    """What the fake's output is after an invoke with ``inp`` (see edp_fake.h)."""
    return bytes((inp[i % len(inp)] * 3 + 1 + invocations_before) & 0xFF for i in range(out_bytes))
