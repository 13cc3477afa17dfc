"""Host tier: the device-side C protocol library (firmware_templates/common/edp), compiled
with the host compilers and arm-none-eabi-gcc, and checked against the Python codec and the
Python device (byte for byte) through ctypes."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support.edp_c import EDP_DIR, WARNINGS, EdpC, LoopDevice, build_shim
from tests.support.edp_fake import FakeBackend, expected_output
from toolchain.errors import RemoteError
from toolchain.protocol import DeviceClient
from toolchain.protocol.device import DeviceDispatcher
from toolchain.protocol.frame import FrameParser, MsgType, crc8, crc32, encode
from toolchain.protocol.messages import Hello
from toolchain.transports.faults import FaultyTransport

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

SOURCES = [EDP_DIR / "edp.c", EDP_DIR / "edp_device.c"]


@pytest.fixture(scope="module")
def edp(tmp_path_factory: pytest.TempPathFactory) -> EdpC:
    return build_shim(tmp_path_factory.mktemp("edp_c"))


def _compile(cmd: list[str], tmp_path: Path) -> None:
    for src in SOURCES:
        proc = subprocess.run(
            [*cmd, f"-I{EDP_DIR}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "cmd",
    [
        ["gcc", *WARNINGS, "-Wshadow", "-O2"],
        ["clang-14", *WARNINGS, "-O2"],
        ["g++", "-x", "c++", "-Wall", "-Wextra", "-Werror", "-O2"],
        ["gcc", *WARNINGS, "-O2", "-DEDP_MAX_PAYLOAD=256u", "-DEDP_MAX_RUNS=1u"],
        ["gcc", *WARNINGS, "-O2", "-DEDP_MAX_PAYLOAD=65535u", "-DEDP_MAX_INPUTS=255u"],
        ["gcc", *WARNINGS, "-O2", "-DEDP_MAX_INPUT_BYTES=0u"],
    ],
    ids=["gcc", "clang", "g++", "small-sizes", "large-sizes", "no-shadow"],
)
def test_builds_warning_free_on_host(cmd: list[str], tmp_path: Path) -> None:
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed")
    _compile(cmd, tmp_path)


@pytest.mark.parametrize(
    "flags",
    [
        ["-mcpu=cortex-m3"],
        ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
        ["-mcpu=cortex-m33"],
        ["-mcpu=cortex-m0plus"],
    ],
    ids=["m3", "m4f", "m33", "m0plus"],
)
def test_builds_warning_free_for_cortex_m(flags: list[str], tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt install gcc-arm-none-eabi)")
    _compile(["arm-none-eabi-gcc", *WARNINGS, "-mthumb", "-Os", *flags], tmp_path)


def test_header_rejects_bad_sizes(tmp_path: Path) -> None:
    src = tmp_path / "t.c"
    src.write_text('#include "edp_device.h"\n')
    for bad in ("-DEDP_MAX_PAYLOAD=100u", "-DEDP_MAX_RUNS=0u"):
        proc = subprocess.run(
            ["gcc", f"-I{EDP_DIR}", bad, "-c", str(src), "-o", str(tmp_path / "t.o")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0 and "must be in" in proc.stderr


def test_crcs_match_python_and_known_values(edp: EdpC) -> None:
    assert edp.crc8(b"123456789") == crc8(b"123456789") == 0xF4  # CRC-8/SMBUS check value
    assert edp.crc32(b"123456789") == crc32(b"123456789") == 0xCBF43926
    rng = random.Random(1)
    for n in (0, 1, 7, 64, 1000):
        data = rng.randbytes(n)
        assert edp.crc8(data) == crc8(data)
        assert edp.crc32(data) == crc32(data)
        assert edp.crc32(data[n // 2 :], edp.crc32(data[: n // 2])) == crc32(data)


def test_encode_matches_python(edp: EdpC) -> None:
    rng = random.Random(2)
    for _ in range(50):
        t, s, p = rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randrange(300))
        assert edp.encode(t, s, p) == encode(t, s, p)
    assert edp.encode(1, 1, b"abc", cap=14) == b""  # too small: 0, nothing written


def _noisy_stream(rng: random.Random, n_frames: int, max_payload: int) -> tuple[bytes, int]:
    """Frames (some oversized, truncated or corrupted) between noise; returns the stream and
    how many frames went in intact."""
    out = bytearray()
    intact = 0
    for _ in range(n_frames):
        kind = rng.randrange(10)
        if kind < 3:  # noise, often with SYNC bytes in it
            out += bytes(
                rng.choice((0xA5, 0x5A, rng.randrange(256))) for _ in range(rng.randrange(40))
            )
        n = rng.choice((0, 1, 5, rng.randrange(max_payload + 40)))
        f = bytearray(encode(rng.randrange(256), rng.randrange(256), rng.randbytes(n)))
        if kind == 3:  # truncated (sender reset mid-frame)
            f = f[: rng.randrange(len(f))]
        elif kind == 4:  # one bit flipped
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif n <= max_payload:
            intact += 1
        out += f
    return bytes(out), intact


@pytest.mark.parametrize("max_payload", [256, 1024])
def test_c_and_python_parsers_agree_on_noisy_streams(edp: EdpC, max_payload: int) -> None:
    rng = random.Random(max_payload)
    for _ in range(40):
        stream, intact = _noisy_stream(rng, 30, max_payload)
        c_frames, c_dropped = edp.parse(stream, max_payload)
        py = FrameParser(max_payload)
        py_frames = []
        pos = 0
        while pos < len(stream):  # feed in random chunks
            step = rng.randrange(1, 300)
            py_frames += py.feed(stream[pos : pos + step])
            pos += step
        assert [(f.type, f.seq, f.payload) for f in py_frames] == c_frames
        assert py.dropped == c_dropped
        # resync guarantee: every frame sent intact is recovered, except ones swallowed by
        # a truncated frame's length at the very end of the stream
        assert len(c_frames) >= intact - 1


def _fresh_pair(
    edp: EdpC, in_bytes: int, out_bytes: int, *, persist: bool = False, **kw: bool
) -> tuple:
    edp.device_init(in_bytes, out_bytes, profiler=kw.get("profiler", True), persist=persist)
    py = DeviceDispatcher(FakeBackend(in_bytes, out_bytes, **kw), max_runs=64)
    return edp.device_feed, py.feed


def _script(in_bytes: int) -> list[tuple[int, bytes]]:
    """A session with every request type, good and bad."""
    data = bytes((i * 7 + 3) & 0x7F for i in range(in_bytes))
    sset = lambda i, off, d: struct.pack("<BI", i, off) + d  # noqa: E731
    return [
        (MsgType.TENSOR_INFO, b"\x00\x00"),
        (MsgType.TENSOR_INFO, b"\x01\x00"),
        (MsgType.TENSOR_INFO, b"\x01\x05"),
        (MsgType.TENSOR_INFO, b"\x01"),
        (MsgType.RUN, struct.pack("<HHB", 0, 1, 0)),  # NOT_READY: no input yet
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 0, 16)),  # NOT_READY
        (MsgType.GET_TIMES, struct.pack("<HH", 0, 4)),  # NOT_READY
        (MsgType.SET_INPUT, sset(0, 10, data[10:20])),  # GAP
        (MsgType.SET_INPUT, sset(0, 0, data[:300])),
        (MsgType.SET_INPUT, sset(0, in_bytes - 3, b"1234")),  # OVERRUN
        (MsgType.SET_INPUT, sset(3, 0, b"x")),  # BAD_INDEX
        (MsgType.SET_INPUT, sset(0, 300, data[300:])),
        (MsgType.SET_INPUT, sset(0, 100, data[100:120])),  # rewrite inside: fine
        (MsgType.GET_INPUT_CRC, b"\x00"),
        (MsgType.GET_INPUT_CRC, b"\x01"),
        (MsgType.RUN, struct.pack("<HHB", 0, 65, 0)),  # TOO_MANY
        (MsgType.RUN, struct.pack("<HHB", 2, 5, 1)),
        (MsgType.GET_TIMES, struct.pack("<HH", 0, 100)),
        (MsgType.GET_TIMES, struct.pack("<HH", 3, 100)),
        (MsgType.GET_TIMES, struct.pack("<HH", 6, 1)),  # OVERRUN
        (MsgType.GET_PROFILE, struct.pack("<HH", 0, 10)),
        (MsgType.GET_PROFILE, struct.pack("<HH", 2, 10)),
        (MsgType.GET_PROFILE, struct.pack("<HH", 4, 1)),  # OVERRUN
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 0, 1024)),
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 1000, 1024)),  # cut at the end
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 5000, 4)),  # OVERRUN
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 0, 1025)),  # BAD_LENGTH
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 1, 0, 4)),  # BAD_INDEX
        (MsgType.TICKS, b""),
        (MsgType.TICKS, b"x"),
        (MsgType.ECHO, bytes(range(200))),
        (MsgType.ECHO, b""),
        (MsgType.HELLO, b"x"),
        (0x3F, b""),  # UNKNOWN_TYPE
        (0x81, b""),  # a reply type: ignored, no answer
        (MsgType.SET_INPUT, sset(0, 0, b"\xff")),  # makes the fake's invoke fail
        (MsgType.GET_OUTPUT, struct.pack("<BIH", 0, 0, 4)),  # NOT_READY after SET_INPUT
        (MsgType.RUN, struct.pack("<HHB", 0, 2, 0)),  # INVOKE_FAILED
        (MsgType.RUN, struct.pack("<HHB", 0, 0, 1)),
        (MsgType.GET_PROFILE, struct.pack("<HH", 0, 10)),  # NOT_READY: 0 profiled runs
    ]


@pytest.mark.parametrize("persist", [False, True], ids=["shadow", "in-place"])
def test_c_device_answers_byte_for_byte_like_python_device(edp: EdpC, persist: bool) -> None:
    """Shadow: the fake clobbers its input after each invoke (as TFLM), the device refills
    it from its copy. In place: the input survives invoke (as the compiled model's, whose
    planner keeps it) and SET_INPUT writes straight into it; the replies are the same."""
    c_feed, py_feed = _fresh_pair(edp, 700, 1100, persist=persist)
    c_hello, py_hello = c_feed(encode(MsgType.HELLO, 9)), py_feed(encode(MsgType.HELLO, 9))
    hc, hp = (Hello.unpack(FrameParser().feed(b)[0].payload) for b in (c_hello, py_hello))
    assert hc.info["edp.max_runs"] == hp.info["edp.max_runs"] == "64"
    # the shim's shadow room is EDP_MAX_INPUT_BYTES (8192); in place: the inputs' own bytes
    assert hc.info["edp.max_input_bytes"] == ("700" if persist else "8192")
    assert hc.info["board"] == hp.info["board"] == "fake"
    assert {**hc.__dict__, "text": ""} == {**hp.__dict__, "text": ""}
    errors = 0
    for seq, (typ, payload) in enumerate(_script(700)):
        frame = encode(typ, seq, payload)
        c, p = c_feed(frame), py_feed(frame)
        assert c == p, (seq, MsgType(typ).name if typ in MsgType else typ, c, p)
        errors += bool(c) and FrameParser().feed(c)[0].type == MsgType.ERR
    assert errors >= 20  # the script really exercised the error paths


def test_c_device_without_profiler_says_unsupported(edp: EdpC) -> None:
    c_feed, py_feed = _fresh_pair(edp, 16, 4, profiler=False)
    for frame in (
        encode(MsgType.SET_INPUT, 1, struct.pack("<BI", 0, 0) + bytes(16)),
        encode(MsgType.RUN, 2, struct.pack("<HHB", 0, 1, 1)),
        encode(MsgType.GET_PROFILE, 3, struct.pack("<HH", 0, 1)),
    ):
        c, p = c_feed(frame), py_feed(frame)
        assert c == p
    (err,) = FrameParser().feed(c)
    assert err.type == MsgType.ERR and struct.unpack_from("<H", err.payload, 1)[0] == 10


def test_client_drives_c_device(edp: EdpC) -> None:
    """The whole client API against the C dispatcher; RUN refills the input every time (the
    fake clobbers it after each invoke, as TFLM does), runs > EDP_MAX_RUNS are split."""
    edp.device_init(1500, 1300)
    data = bytes(random.Random(3).randrange(200) for _ in range(1500))
    with LoopDevice(edp.device_feed) as link:
        client = DeviceClient(link, timeout_s=0.5)
        h = client.hello()
        assert (h.max_payload, h.max_runs, h.n_ops) == (1024, 64, 3)
        client.upload_input(0, data)
        ticks = client.run(warmup=2, runs=150)
        assert ticks == [1000] * 150
        assert client.read_output(0) == expected_output(data, 1300, 2 + 149)
        client.run(warmup=0, runs=3, profile=True)
        assert [(e.name, e.ticks) for e in client.profile()] == [
            ("CONV_2D", 300),
            ("DEPTHWISE_CONV_2D", 600),
            ("FULLY_CONNECTED", 900),
        ]
        assert client.echo(b"\x00\xa5\x5a" * 100) == b"\x00\xa5\x5a" * 100
        with pytest.raises(RemoteError, match="BAD_INDEX") as ei:
            client.tensor_info(4)
        assert ei.value.code == 3


def test_client_drives_c_device_receiving_in_place(edp: EdpC) -> None:
    """No shadow copy: inputs are received into the tensor, which survives invoke; repeated
    RUNs and a partial rewrite give the outputs of the bytes the tensor holds."""
    edp.device_init(1500, 1300, persist=True)
    data = bytearray(random.Random(4).randrange(200) for _ in range(1500))
    with LoopDevice(edp.device_feed) as link:
        client = DeviceClient(link, timeout_s=0.5)
        client.upload_input(0, bytes(data))
        assert client.run(warmup=1, runs=70) == [1000] * 70  # split over two RUNs (64 + 6)
        assert client.read_output(0) == expected_output(bytes(data), 1300, 1 + 69)
        assert client.input_crc(0) == crc32(bytes(data))  # intact after 71 invokes
        client.request(MsgType.SET_INPUT, struct.pack("<BI", 0, 1000) + b"\x07" * 10)
        data[1000:1010] = b"\x07" * 10
        assert client.input_crc(0) == crc32(bytes(data))
        client.run(warmup=0, runs=1)
        assert client.read_output(0) == expected_output(bytes(data), 1300, 71)


def test_client_recovers_on_faulty_link_to_c_device(edp: EdpC) -> None:
    edp.device_init(3000, 50)
    data = bytes(range(250)) * 12
    link = FaultyTransport(
        LoopDevice(edp.device_feed),
        noise_after={1, 4, 9},
        drop_write={3, 7},
        corrupt_write={5, 11},
        drop_reply_after={13},
        seed=5,
    )
    with link:
        client = DeviceClient(link, timeout_s=0.2, retries=3)
        client.hello()
        client.upload_input(0, data)
        assert client.run(warmup=1, runs=4) == [1000] * 4
        assert client.read_output(0) == expected_output(data, 50, 4)
    assert client.resends >= 4
    assert {kind for kind, _ in link.log} >= {"noise", "drop", "corrupt", "eat"}


def test_c_device_boot_frame(edp: EdpC) -> None:
    edp.device_init(8, 8)
    (boot,) = FrameParser().feed(edp.device_boot())
    assert (boot.type, boot.seq, boot.payload) == (MsgType.BOOT, 0, b"\x01\x01")
