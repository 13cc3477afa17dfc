"""Host tier: the EDP codec, the DeviceClient against fake devices (the Python dispatcher and
the C dispatcher via ctypes) over pyserial's loop://, link faults, and the transports'
error contract."""

from __future__ import annotations

import binascii
import os
import socket
import struct
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.edp_c import LoopDevice, build_shim
from tests.support.edp_fake import FakeBackend, expected_output
from toolchain.errors import (
    AmbiguousDeviceError,
    DeviceResetError,
    IoTimeoutError,
    PortNotFoundError,
    ProtocolError,
    ProtocolVersionError,
    RemoteError,
    TransportClosedError,
)
from toolchain.protocol import DeviceClient
from toolchain.protocol.device import DeviceDispatcher
from toolchain.protocol.frame import ErrCode, Frame, FrameParser, MsgType, crc8, encode
from toolchain.protocol.messages import Hello, ProfilePage, TensorInfo, TimesPage
from toolchain.transports import serial_port
from toolchain.transports.faults import FaultyTransport
from toolchain.transports.serial_port import SerialTransport, find_port

DATA = bytes((i * 37 + 11) % 251 for i in range(2500))

# --- codec ---------------------------------------------------------------------------------


def test_frame_layout_is_the_documented_one() -> None:
    f = encode(MsgType.HELLO, 1)
    # docs/protocol.md "Example": the HELLO request with seq 1
    assert f.hex(" ") == "a5 5a 01 01 01 00 00 1f 26 31 4a 72"
    assert f[7] == crc8(f[2:7])
    assert struct.unpack("<I", f[-4:])[0] == binascii.crc32(f[2:-4])
    g = encode(MsgType.ECHO, 200, b"xyz")
    assert g[:8] == bytes((0xA5, 0x5A, 1, 9, 200, 3, 0, crc8(bytes((1, 9, 200, 3, 0)))))


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300)), max_size=6
    ),
    noise=st.binary(max_size=40),
    cuts=st.lists(st.integers(1, 50), max_size=20),
)
def test_parser_finds_every_frame_after_noise_in_any_chunking(
    frames: list[tuple[int, int, bytes]], noise: bytes, cuts: list[int]
) -> None:
    stream = noise.replace(b"\xa5", b"\x00") + b"".join(encode(*f) for f in frames)
    p = FrameParser(1024)
    got: list[Frame] = []
    pos = 0
    for c in [*cuts, len(stream)]:
        got += p.feed(stream[pos : pos + c])
        pos += c
    assert [(f.type, f.seq, f.payload) for f in got] == frames


def test_parser_resyncs_after_a_frame_cut_short() -> None:
    whole = encode(MsgType.ECHO, 7, b"hello")
    cut = encode(MsgType.SET_INPUT, 3, bytes(600))[:100]  # sender reset mid-frame
    p = FrameParser(1024)
    # the cut frame's length swallows the next frame; the parser waits for more bytes
    assert p.feed(cut + whole) == []
    assert p.wanted() > 1
    # a timeout on the reader's side gives up on the candidate and finds the frame inside
    assert [(f.seq, f.payload) for f in p.drop_candidate()] == [(7, b"hello")]
    # or: more bytes arrive (the host's flush of zeros), the bad CRC drops it
    p2 = FrameParser(1024)
    assert [f.seq for f in p2.feed(cut + whole + bytes(600))] == [7]
    assert p2.dropped == 1


def test_parser_rejects_oversize_bad_header_and_other_versions() -> None:
    p = FrameParser(256)
    assert p.feed(encode(1, 1, bytes(257))) == []  # len > max_payload: not a frame
    bad = bytearray(encode(1, 2, b"ab"))
    bad[7] ^= 0xFF
    assert p.feed(bytes(bad)) == []
    v2 = encode(1, 3, b"", version=2)
    assert p.feed(v2) == []  # the device side takes only version 1
    host = FrameParser(versions=None)
    (f,) = host.feed(v2)
    assert f.version == 2


def test_messages_round_trip_and_reject_malformed() -> None:
    h = Hello(1, 0, 1024, 25_000_000, 1, 40, bytes(range(32)), 30000, 22772, 1, 1, 13, "a=b\n")
    assert Hello.unpack(h.pack()) == h and h.info == {"a": "b"} and h.has_model
    t = TensorInfo(9, (1, 49, 10, 1), 0.5, -3, 490)
    assert TensorInfo.unpack(t.pack()) == t
    assert TimesPage.unpack(TimesPage(2, [1, 2**63]).pack()) == TimesPage(2, [1, 2**63])
    for bad in (h.pack()[:30], b"\x09\x07" + bytes(8)):
        with pytest.raises(ProtocolError, match="malformed"):
            (Hello if len(bad) == 30 else TensorInfo).unpack(bad)
    with pytest.raises(ProtocolError, match="GET_TIMES"):
        TimesPage.unpack(struct.pack("<HH", 0, 3) + bytes(8))
    with pytest.raises(ProtocolError, match="cut short"):
        ProfilePage.unpack(struct.pack("<HHH", 1, 0, 1) + struct.pack("<HQB", 0, 5, 10) + b"ab")


# --- client against fake devices ------------------------------------------------------------


@pytest.fixture(scope="module")
def c_lib(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    try:
        return build_shim(tmp_path_factory.mktemp("edp_proto"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


Feed = Callable[[bytes], bytes]


@pytest.fixture(params=["python", "c"])
def make_device(request: pytest.FixtureRequest) -> Callable[[int, int], Feed]:
    """A factory of fresh fake devices: Python dispatcher or C dispatcher."""

    def make(in_bytes: int, out_bytes: int) -> Feed:
        if request.param == "python":
            return DeviceDispatcher(FakeBackend(in_bytes, out_bytes), max_runs=64).feed
        lib = request.getfixturevalue("c_lib")
        lib.device_init(in_bytes, out_bytes)
        return lib.device_feed  # type: ignore[no-any-return]

    return make


def _session(client: DeviceClient, runs: int = 5) -> None:
    client.hello()
    client.upload_input(0, DATA)
    assert client.run(warmup=1, runs=runs) == [1000] * runs
    out = client.read_output(0)
    # the fake's output counts its invocations; a resent RUN (after a lost reply) runs again
    assert any(out == expected_output(DATA, 40, k) for k in range(runs, runs + 4 * (runs + 1)))


def test_client_full_session(make_device: Callable[[int, int], Feed]) -> None:
    with LoopDevice(make_device(len(DATA), 40)) as link:
        client = DeviceClient(link, timeout_s=0.5)
        client.resync()
        _session(client, runs=70)  # > the fake's 64 records: split over two RUNs
        assert client.ticks() > 0
        assert client.input_crc(0) == binascii.crc32(DATA)
        assert client.resends == 0


def test_long_runs_report_progress_per_run_batch(make_device: Callable[[int, int], Feed]) -> None:
    # issue 14: a long benchmark showed nothing until the end; the client reports each RUN
    with LoopDevice(make_device(len(DATA), 40)) as link:
        client = DeviceClient(link, timeout_s=0.5)
        client.resync()
        client.upload_input(0, DATA)
        seen: list[int] = []
        assert client.run(warmup=0, runs=150, on_progress=seen.append) == [1000] * 150
        assert seen == [64, 128, 150]


@pytest.mark.parametrize(
    "faults",
    [
        {"noise_after": {1, 2, 3, 5, 8}},
        {"drop_write": {2, 6}},
        {"corrupt_write": {1, 3, 7}},
        {"drop_reply_after": {2, 4}, "drop_reply_bytes": 9},
        {"noise_after": {4}, "drop_write": {5}, "corrupt_write": {9}, "drop_reply_after": {11}},
    ],
    ids=["noise", "dropped-request", "corrupted-request", "cut-reply", "mixed"],
)
def test_client_survives_link_faults(make_device: Callable[[int, int], Feed], faults: dict) -> None:
    link = FaultyTransport(LoopDevice(make_device(len(DATA), 40)), seed=3, **faults)
    with link:
        client = DeviceClient(link, timeout_s=0.15, retries=3)
        _session(client)
    assert link.log, "no fault was injected"


def test_silent_device_times_out_fast_and_clearly(make_device: Callable[[int, int], Feed]) -> None:
    link = FaultyTransport(LoopDevice(make_device(16, 4)), silence_after=1)
    with link:
        client = DeviceClient(link, timeout_s=0.1, retries=2)
        t0 = time.monotonic()
        with pytest.raises(IoTimeoutError, match="did not answer HELLO.*3 tries"):
            client.hello()
        assert time.monotonic() - t0 < 2.0


def test_device_that_talks_text_is_a_protocol_error() -> None:
    with LoopDevice(lambda data: b"Hello from Arduino!\r\n") as link:
        client = DeviceClient(link, timeout_s=0.1, retries=1)
        with pytest.raises(ProtocolError, match="not EDP frames.*Arduino"):
            client.hello()


def test_wrong_protocol_version_is_reported(make_device: Callable[[int, int], Feed]) -> None:
    feed = make_device(16, 4)

    def v2(data: bytes) -> bytes:  # a device of a future protocol version
        return b"".join(
            encode(f.type, f.seq, f.payload, version=2) for f in FrameParser().feed(feed(data))
        )

    with LoopDevice(v2) as link, pytest.raises(ProtocolVersionError, match="version 2"):
        DeviceClient(link, timeout_s=0.2).hello()

    def hello_v3(data: bytes) -> bytes:  # frames v1, but HELLO announces protocol 3
        out = b""
        for f in FrameParser().feed(feed(data)):
            p = bytes((3,)) + f.payload[1:] if f.type == MsgType.HELLO | 0x80 else f.payload
            out += encode(f.type, f.seq, p)
        return out

    with LoopDevice(hello_v3) as link, pytest.raises(ProtocolVersionError, match="version 3"):
        DeviceClient(link, timeout_s=0.2).hello()


def test_reset_mid_run_raises_device_reset_then_recovers() -> None:
    disp = DeviceDispatcher(FakeBackend(len(DATA), 40))
    state = {"reset_on_run": True}

    def feed(data: bytes) -> bytes:
        frames = disp.parser.feed(data)
        out = b""
        for f in frames:
            if f.type == MsgType.RUN and state["reset_on_run"]:
                state["reset_on_run"] = False
                return disp.reboot()  # the board rebooted instead of answering
            out += disp.dispatch(f)
        return out

    with LoopDevice(feed) as link:
        client = DeviceClient(link, timeout_s=0.2)
        client.hello()
        client.upload_input(0, DATA)
        with pytest.raises(DeviceResetError, match="reset"):
            client.run(warmup=0, runs=3)
        with pytest.raises(RemoteError, match="NOT_READY") as ei:
            client.run(warmup=0, runs=3)  # the reset lost the input
        assert ei.value.code == ErrCode.NOT_READY
        client.upload_input(0, DATA)
        assert client.run(warmup=0, runs=3) == [1000] * 3
        assert client.boots == 1


def test_boot_before_session_and_stale_replies_are_skipped(
    make_device: Callable[[int, int], Feed],
) -> None:
    with LoopDevice(make_device(16, 4)) as link:
        link.inject(encode(MsgType.BOOT, 0, b"\x01\x01"))
        link.inject(encode(MsgType.HELLO | 0x80, 77, b"stale"))  # an old session's reply
        client = DeviceClient(link, timeout_s=0.3)
        client._seq = 10
        assert client.hello().n_ops == 3
        assert client.boots == 1 and client.stale == 1


def test_truncated_frame_left_in_device_is_flushed(make_device: Callable[[int, int], Feed]) -> None:
    feed = make_device(16, 4)
    feed(encode(MsgType.SET_INPUT, 9, bytes(900))[:50])  # a host died mid-frame
    with LoopDevice(feed) as link:
        client = DeviceClient(link, timeout_s=0.2, retries=0)
        with pytest.raises(IoTimeoutError):  # the HELLO disappears into the stuck frame
            client.hello()
        client.resync()  # flush: zeros complete the stuck frame, its CRC fails
        assert client.hello().n_inputs == 1


def test_output_longer_than_asked_is_refused(make_device: Callable[[int, int], Feed]) -> None:
    feed = make_device(16, 300)

    def overrun(data: bytes) -> bytes:
        out = b""
        for f in FrameParser().feed(feed(data)):
            p = f.payload + b"\x00" * 8 if f.type == MsgType.GET_OUTPUT | 0x80 else f.payload
            out += encode(f.type, f.seq, p)
        return out

    with LoopDevice(overrun) as link:
        client = DeviceClient(link, timeout_s=0.2)
        client.hello()
        client.upload_input(0, bytes(16))
        client.run(warmup=0, runs=1)
        with pytest.raises(ProtocolError, match="overruns the host's buffer"):
            client.read_output(0)
        assert client.hello().n_inputs == 1  # the link is still in step afterwards


def test_remote_errors_carry_codes_and_hints(make_device: Callable[[int, int], Feed]) -> None:
    with LoopDevice(make_device(16, 4)) as link:
        client = DeviceClient(link, timeout_s=0.2)
        client.hello()
        with pytest.raises(RemoteError, match="NOT_READY"):
            client.read_output(0)
        with pytest.raises(RemoteError, match="TOO_MANY") as ei:
            client.request(MsgType.RUN, struct.pack("<HHB", 0, 1000, 0))
        assert ei.value.code == ErrCode.TOO_MANY and "lower --runs" in str(ei.value)
        with pytest.raises(Exception, match="input 0: 3 B given"):
            client.upload_input(0, b"abc")


# --- transports -------------------------------------------------------------------------------


def test_missing_port_is_port_not_found() -> None:
    with pytest.raises(PortNotFoundError, match="cannot open serial port /dev/ttyEDGEDEPLOY"):
        SerialTransport("/dev/ttyEDGEDEPLOY_NONE").open()


def test_busy_port_is_reported_busy() -> None:
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        with SerialTransport(path), pytest.raises(PortNotFoundError, match="busy"):
            SerialTransport(path).open()
    finally:
        os.close(master)
        os.close(slave)


def test_refused_socket_is_port_not_found() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PortNotFoundError, match="nothing listens"):
        SerialTransport(f"socket://127.0.0.1:{port}").open()


def test_read_is_exact_or_raises_and_keeps_partial_bytes() -> None:
    with SerialTransport("loop://") as t:
        t.write(b"abc", 1.0)
        with pytest.raises(IoTimeoutError, match="3 of 5 bytes"):
            t.read(5, 0.05)
        t.write(b"de", 1.0)
        assert t.read(5, 1.0) == b"abcde"


def test_closed_pty_is_transport_closed() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    with SerialTransport(path) as t:
        os.close(master)
        os.close(slave)
        with pytest.raises(TransportClosedError):
            t.read(1, 1.0)


class _Port:
    def __init__(self, device: str, vid: int, pid: int) -> None:
        self.device, self.vid, self.pid, self.description = device, vid, pid, "probe"


def test_find_port_by_usb_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = [_Port("/dev/ttyACM0", 0x0483, 0x374B), _Port("/dev/ttyUSB0", 0x10C4, 0xEA60)]
    monkeypatch.setattr(serial_port.serial.tools.list_ports, "comports", lambda: ports)
    assert find_port(["0483:374B", "0483:374e"]) == "/dev/ttyACM0"
    with pytest.raises(PortNotFoundError, match="ports seen: /dev/ttyACM0"):
        find_port(["1366:1015"])
    ports.append(_Port("/dev/ttyACM1", 0x0483, 0x374E))
    with pytest.raises(AmbiguousDeviceError, match="ttyACM0, /dev/ttyACM1"):
        find_port(["0483:374b", "0483:374e"])
    with pytest.raises(PortNotFoundError, match="no USB ids"):
        find_port([])
