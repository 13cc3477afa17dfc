"""An ADB *device* on loopback, for the emulated test tier.

The real ``adb`` server connects to it with ``adb connect 127.0.0.1:PORT`` and speaks the ADB
transport protocol to it, exactly as to a phone over TCP/IP:

* messages: 24-byte header ``command, arg0, arg1, data_length, data_check, magic`` (little
  endian, ``magic = command ^ 0xffffffff``, ``data_check`` = byte sum; adb 29 skips checking it
  from protocol version 0x01000001 on) followed by the payload;
* ``CNXN`` handshake (we answer with a ``device::`` banner carrying ``ro.product.*`` and the
  ``features=`` list), optional ``AUTH`` (mode ``unauthorized`` sends tokens and never accepts a
  key), ``OPEN``/``OKAY``/``WRTE``/``CLSE`` streams with one-message flow control;
* services ``shell:`` (v1: stdout and stderr merged, no exit code) and ``shell,v2,...:``
  (packets ``id:u8 len:u32 data``: 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 close-stdin), and
  ``sync:`` (``STAT``, ``LIST``/``DENT``, ``SEND``/``DATA``/``DONE``, ``RECV``, ``QUIT``).

Commands run with ``/bin/sh`` on this machine inside a *sandbox* directory that stands for the
device's filesystem: absolute device paths under ``/data``, ``/sdcard``, ``/sys``, ``/system``
and ``/proc/cpuinfo`` in a command line (quoted or not) are mapped into the sandbox, ``getprop``
answers from a property table, and the thermal zones and cpufreq governors are files in the
sandbox. That is the one thing this peer fakes: it is a device whose CPU is this machine's.

Run by hand: ``python -m tests.support.adb_peer --port 6520 --sandbox /tmp/dev``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")

# shell protocol v2 packet ids
SH_STDIN, SH_STDOUT, SH_STDERR, SH_EXIT, SH_CLOSE_STDIN = 0, 1, 2, 3, 4

FEATURES = ("shell_v2", "cmd", "fixed_push_mkdir")
DEVICE_ROOTS = ("/data", "/sdcard", "/sys", "/system", "/proc/cpuinfo")
SYNC_DATA_MAX = 64 * 1024

#: Host programs linked into the sandbox's /system/bin (what toybox gives an Android shell);
#: PATH holds nothing else, so no Python or compiler of this machine is visible "on the phone".
TOOLBOX = (
    "sh", "cat", "echo", "ls", "mkdir", "rm", "rmdir", "chmod", "cp", "mv", "ln", "touch", "kill",
    "pkill", "sleep", "test", "true", "false", "printf", "env", "id", "uname", "head", "tail",
    "grep", "sed", "cut", "sort", "wc", "md5sum", "sha256sum", "stat", "find", "taskset", "date",
    "nproc", "timeout", "dirname", "basename", "tr", "xargs",
)  # fmt: skip

DEFAULT_PROPS: dict[str, str] = {
    "ro.product.model": "Edge Test Phone",
    "ro.product.name": "edgetest",
    "ro.product.device": "edgetest",
    "ro.product.manufacturer": "edgedeploy",
    "ro.soc.manufacturer": "EdgeSilicon",
    "ro.soc.model": "ES-1000",
    "ro.board.platform": "edgeplat",
    "ro.hardware": "edgehw",
    "ro.product.cpu.abi": "x86_64",
    "ro.product.cpu.abilist": "x86_64",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
}


def _msg(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    check = sum(data) & 0xFFFFFFFF
    return HEADER.pack(cmd, arg0, arg1, len(data), check, cmd ^ 0xFFFFFFFF) + data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("host closed the connection")
        buf += chunk
    return bytes(buf)


@dataclass
class Sandbox:
    """The device filesystem: a directory on this machine plus a property table."""

    root: Path
    props: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPS))
    cpus: int = 4
    governor: str = "schedutil"
    thermal: Mapping[str, int] = field(
        default_factory=lambda: {"cpu-0-0": 41200, "battery": 30500}
    )  # zone type -> millidegrees C

    def populate(self) -> None:
        r = self.root
        (r / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        (r / "sdcard").mkdir(exist_ok=True)
        (r / "proc").mkdir(exist_ok=True)
        (r / "proc/cpuinfo").write_text(
            "".join(f"processor\t: {i}\nBogoMIPS\t: 38.40\n\n" for i in range(self.cpus))
            + "Hardware\t: EdgeSilicon ES-1000\n"
        )
        for i in range(self.cpus):
            d = r / f"sys/devices/system/cpu/cpu{i}/cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            (d / "scaling_governor").write_text(self.governor + "\n")
            (d / "scaling_cur_freq").write_text("1804800\n")
        for i, (kind, milli) in enumerate(self.thermal.items()):
            d = r / f"sys/class/thermal/thermal_zone{i}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "type").write_text(kind + "\n")
            (d / "temp").write_text(f"{milli}\n")
        bindir = r / "system/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        cases = "".join(
            f"  {shlex.quote(k)}) echo {shlex.quote(v)} ;;\n" for k, v in sorted(self.props.items())
        )
        listing = "".join(f"[{k}]: [{v}]\\n" for k, v in sorted(self.props.items()))
        getprop = bindir / "getprop"
        getprop.write_text(
            "#!/bin/sh\n"
            "# getprop of the ADB test peer: answers from its property table\n"
            f"if [ $# -eq 0 ]; then printf {shlex.quote(listing)}; exit 0; fi\n"
            f'case "$1" in\n{cases}  *) echo "${{2:-}}" ;;\nesac\n'
        )
        getprop.chmod(0o755)
        for tool in TOOLBOX:
            src = shutil.which(tool)
            if src and not (bindir / tool).exists():
                (bindir / tool).symlink_to(src)

    def host_path(self, device_path: str) -> Path:
        """The sandbox file that stands for ``device_path`` (an absolute device path)."""
        if not device_path.startswith("/"):
            device_path = "/" + device_path
        return self.root / device_path.lstrip("/")

    def map_command(self, command: str) -> str:
        """Rewrite absolute device paths in a shell command line into the sandbox."""
        roots = "|".join(re.escape(p) for p in DEVICE_ROOTS)
        pattern = re.compile(rf"(?<![\w./-])({roots})(?=[/'\"\s;|&)=]|$)")
        return pattern.sub(lambda m: str(self.root) + m.group(1), command)


class _Stream:
    """One ADB stream (an OPENed service) with one-message-in-flight flow control."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.acked = threading.Event()
        self.acked.set()
        self.closed = threading.Event()
        self._inbox = bytearray()
        self._cv = threading.Condition()
        self.on_close: list[object] = []

    # host -> device
    def deliver(self, data: bytes) -> None:
        with self._cv:
            self._inbox += data
            self._cv.notify_all()

    def read_exact(self, n: int, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self._inbox) < n:
                if self.closed.is_set():
                    raise ConnectionError("stream closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("stream read timed out")
                self._cv.wait(min(left, 0.2))
            out = bytes(self._inbox[:n])
            del self._inbox[:n]
            return out

    def take_all(self) -> bytes:
        with self._cv:
            out = bytes(self._inbox)
            self._inbox.clear()
            return out

    # device -> host
    def send(self, data: bytes) -> None:
        step = min(self.conn.max_payload, MAX_PAYLOAD)
        for i in range(0, len(data), step):
            if not self.acked.wait(60.0) or self.closed.is_set():
                raise ConnectionError("stream closed or not acknowledged")
            self.acked.clear()
            self.conn.write(_msg(A_WRTE, self.local_id, self.remote_id, data[i : i + step]))

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with self._cv:
                self._cv.notify_all()
            self.conn.write(_msg(A_CLSE, self.local_id, self.remote_id))
            self.conn.drop(self.local_id)

    def closed_by_host(self) -> None:
        self.closed.set()
        self.acked.set()
        with self._cv:
            self._cv.notify_all()
        for cb in self.on_close:
            cb()  # type: ignore[operator]


class _Connection:
    """One TCP connection from the adb server."""

    def __init__(self, peer: AdbPeer, sock: socket.socket) -> None:
        self.peer = peer
        self.sock = sock
        self.max_payload = MAX_PAYLOAD
        self._wlock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._slock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._wlock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def drop(self, local_id: int) -> None:
        with self._slock:
            self._streams.pop(local_id, None)

    def serve(self) -> None:
        try:
            while True:
                cmd, arg0, arg1, length, _check, magic = HEADER.unpack(_recv_exact(self.sock, 24))
                if magic != cmd ^ 0xFFFFFFFF:
                    return
                data = _recv_exact(self.sock, length) if length else b""
                self.peer.log.append((cmd, arg0, arg1, data[:64]))
                self._dispatch(cmd, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            with self._slock:
                streams = list(self._streams.values())
            for s in streams:
                s.closed_by_host()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        mode = self.peer.mode
        if cmd == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if mode == "offline":
                return  # never finish the handshake: the server lists us as offline
            if mode == "unauthorized":
                self.write(_msg(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                return
            self.write(_msg(A_CNXN, A_VERSION, MAX_PAYLOAD, self.peer.banner()))
        elif cmd == A_AUTH:
            if arg0 == AUTH_SIGNATURE:  # reject every signature, then wait for the user forever
                self.write(_msg(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
        elif cmd == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == A_OKAY:
            with self._slock:
                s = self._streams.get(arg1)
            if s is not None:
                s.acked.set()
        elif cmd == A_WRTE:
            with self._slock:
                s = self._streams.get(arg1)
            if s is not None:
                self.write(_msg(A_OKAY, s.local_id, s.remote_id))
                s.deliver(data)
        elif cmd == A_CLSE:
            with self._slock:
                s = self._streams.pop(arg1, None)
            if s is not None and not s.closed.is_set():
                s.closed_by_host()
                self.write(_msg(A_CLSE, s.local_id, s.remote_id))

    def _open(self, remote_id: int, service: str) -> None:
        handler = None
        if service.startswith("shell"):
            head, _, command = service.partition(":")
            args = head.split(",")[1:]
            handler = lambda s: self.peer.shell(s, command, v2="v2" in args)  # noqa: E731
        elif service.startswith("sync:"):
            handler = self.peer.sync
        if handler is None:
            self.write(_msg(A_CLSE, 0, remote_id))
            return
        with self._slock:
            local_id = self._next_id
            self._next_id += 1
            stream = _Stream(self, local_id, remote_id)
            self._streams[local_id] = stream
        self.write(_msg(A_OKAY, local_id, remote_id))
        threading.Thread(target=self._run, args=(handler, stream), daemon=True).start()

    @staticmethod
    def _run(handler: object, stream: _Stream) -> None:
        try:
            handler(stream)  # type: ignore[operator]
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            stream.close()


class AdbPeer:
    """An ADB device listening on ``127.0.0.1:port``.

    ``mode``: ``device`` (normal), ``unauthorized`` (asks for a key it never accepts),
    ``offline`` (accepts the TCP connection, never completes the handshake).
    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, sandbox: Sandbox, *, port: int = 0, mode: str = "device", serialno: str = "EDGE0001"
    ) -> None:
        if mode not in ("device", "unauthorized", "offline"):
            raise ValueError(f"mode {mode!r}")
        self.sandbox = sandbox
        self.mode = mode
        self.serialno = serialno
        self.log: list[tuple[int, int, int, bytes]] = []
        self.commands: list[str] = []
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", port))
        self._srv.listen(8)
        self.port = self._srv.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> AdbPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> AdbPeer:
        self.sandbox.populate()
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._srv.close()
        for c in list(self._conns):
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
                c.close()
        for p in list(self._procs):
            self._kill(p)

    def banner(self) -> bytes:
        p = self.sandbox.props
        fields = ";".join(
            f"{k}={p.get(k, '')}"
            for k in ("ro.product.name", "ro.product.model", "ro.product.device")
        )
        return f"device::{fields};features={','.join(FEATURES)}".encode()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._srv.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(sock)
            threading.Thread(target=_Connection(self, sock).serve, daemon=True).start()

    # --- services ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        tmp = str(self.sandbox.root / "data/local/tmp")
        return {
            "PATH": str(self.sandbox.root / "system/bin"),
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C",
        }

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def shell(self, stream: _Stream, command: str, *, v2: bool) -> None:
        self.commands.append(command)
        if not command.strip():
            command = "true"  # no interactive shell on this peer
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.sandbox.map_command(command)],
            cwd=self.sandbox.root,
            env=self._env(),
            stdin=subprocess.PIPE if v2 else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.add(proc)
        stream.on_close.append(lambda: self._kill(proc))
        lock = threading.Lock()

        def pump(pipe: object, ident: int) -> None:
            while True:
                chunk = os.read(pipe.fileno(), 32 * 1024)  # type: ignore[attr-defined]
                if not chunk:
                    return
                with lock:
                    if v2:
                        stream.send(struct.pack("<BI", ident, len(chunk)) + chunk)
                    else:
                        stream.send(chunk)

        pumps = [threading.Thread(target=pump, args=(proc.stdout, SH_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=pump, args=(proc.stderr, SH_STDERR), daemon=True))
            threading.Thread(target=self._stdin, args=(stream, proc), daemon=True).start()
        for t in pumps:
            t.start()
        try:
            for t in pumps:
                t.join()
            rc = proc.wait()
        finally:
            self._procs.discard(proc)
        if v2:
            code = rc if rc >= 0 else 128 - rc  # killed by a signal: 128 + signo, like a shell
            with lock:
                stream.send(struct.pack("<BI", SH_EXIT, 1) + bytes([code & 0xFF]))

    @staticmethod
    def _stdin(stream: _Stream, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        try:
            while True:
                ident, n = struct.unpack("<BI", stream.read_exact(5, timeout=3600))
                data = stream.read_exact(n) if n else b""
                if ident == SH_STDIN:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                elif ident == SH_CLOSE_STDIN:
                    break
        except (ConnectionError, TimeoutError, OSError, struct.error):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def sync(self, stream: _Stream) -> None:
        while True:
            ident = stream.read_exact(4, timeout=3600)
            (n,) = struct.unpack("<I", stream.read_exact(4))
            if ident == b"QUIT":
                return
            arg = stream.read_exact(n).decode("utf-8", "surrogateescape")
            if ident == b"STAT":
                stream.send(b"STAT" + self._stat(arg))
            elif ident == b"LIST":
                self._list(stream, arg)
            elif ident == b"SEND":
                self._send(stream, arg)
            elif ident == b"RECV":
                self._recv(stream, arg)
            else:
                self._fail(stream, f"unknown sync request {ident!r}")
                return

    def _stat(self, path: str) -> bytes:
        try:
            st = os.stat(self.sandbox.host_path(path))
        except OSError:
            return struct.pack("<III", 0, 0, 0)
        return struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))

    def _list(self, stream: _Stream, path: str) -> None:
        d = self.sandbox.host_path(path)
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(d)):
                st = os.lstat(d / name)
                raw = name.encode("utf-8", "surrogateescape")
                stream.send(
                    b"DENT"
                    + struct.pack(
                        "<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)
                    )
                    + raw
                )
        stream.send(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))

    @staticmethod
    def _fail(stream: _Stream, message: str) -> None:
        raw = message.encode()
        stream.send(b"FAIL" + struct.pack("<I", len(raw)) + raw)

    def _send(self, stream: _Stream, arg: str) -> None:
        path, _, mode_s = arg.rpartition(",")
        if not path:
            path, mode_s = arg, "33188"
        mode = int(mode_s) if mode_s.isdigit() else 0o100644
        target = self.sandbox.host_path(path)
        ok = True
        error = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = open(target, "wb")  # noqa: SIM115
        except OSError as exc:
            ok, error, fh = False, f"couldn't create file: {exc.strerror}", None
        try:
            while True:
                ident = stream.read_exact(4)
                (n,) = struct.unpack("<I", stream.read_exact(4))
                if ident == b"DATA":
                    data = stream.read_exact(n)
                    if fh is not None:
                        fh.write(data)
                elif ident == b"DONE":
                    break
                else:
                    ok, error = False, f"unexpected {ident!r} in SEND"
                    break
        finally:
            if fh is not None:
                fh.close()
        if ok and fh is not None:
            os.chmod(target, stat.S_IMODE(mode))
            stream.send(b"OKAY" + struct.pack("<I", 0))
        else:
            if fh is not None:
                with contextlib.suppress(OSError):
                    target.unlink()
            self._fail(stream, error or "write failed")

    def _recv(self, stream: _Stream, path: str) -> None:
        try:
            data = self.sandbox.host_path(path).read_bytes()
        except OSError as exc:
            self._fail(stream, f"remote object '{path}' does not exist ({exc.strerror})")
            return
        for i in range(0, len(data), SYNC_DATA_MAX):
            chunk = data[i : i + SYNC_DATA_MAX]
            stream.send(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        stream.send(b"DONE" + struct.pack("<I", 0))


def main() -> None:  # pragma: no cover - manual use
    ap = argparse.ArgumentParser(description="ADB device peer on 127.0.0.1 (test tool)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--sandbox", type=Path, required=True)
    ap.add_argument("--mode", default="device", choices=("device", "unauthorized", "offline"))
    a = ap.parse_args()
    with AdbPeer(Sandbox(a.sandbox), port=a.port, mode=a.mode) as peer:
        print(f"listening on 127.0.0.1:{peer.port}; adb connect 127.0.0.1:{peer.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    main()
