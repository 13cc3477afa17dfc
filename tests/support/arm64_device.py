"""An arm64 Linux "Raspberry Pi" for the emulated tier: a Debian arm64 root filesystem run
with qemu-user through binfmt_misc, with OpenSSH listening on a 127.0.0.1 port.

Everything comes from this machine's registries at *build* time, nothing at test time:

* the root filesystem from ``debootstrap --arch=arm64`` against the Debian mirror that apt
  already uses here (read from ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/``, never
  written in this file): ``python3``, ``python3-numpy``, ``python3-venv`` and ``openssh-server``
  from Debian, a user ``pi`` with a home directory;
* the aarch64 ``ai-edge-litert`` wheel (the version pinned in ``requirements.lock``, the one the
  host runs) and its pure-Python dependencies from PyPI with the host's pip
  (``pip download --platform manylinux_2_27_aarch64``), kept next to the root filesystem as the
  "offline wheels pushed from the host" of ``bench --setup``. The image itself has no LiteRT:
  it is a fresh Pi that ``--setup`` has not touched yet.

Build (root; once per machine; 5-13 min on 2 shared cores, see docs/arm64-standin.md)::

    python -m tests.support.arm64_device build      # or: make arm64-device

The image is cached in ``$EDGEDEPLOY_ARM64_CACHE`` (default ``/var/cache/edgedeploy``) as
``arm64-<recipe hash>/`` (built in a temporary directory, then renamed: a half-built image is
never found). :class:`Arm64Device` runs one instance: an overlay file system (the cached image
read-only below, a private writable layer above, so tests can break the board without touching
the cache), ``/proc``, ``/dev`` and ``/sys`` bound in, all inside a private mount namespace
(``unshare --mount``) so the mounts vanish with the sshd process whatever happens; then
``chroot … /usr/sbin/sshd -D`` runs the *arm64* sshd under qemu-aarch64.

What it is not: a Pi. Every aarch64 instruction is translated by QEMU's TCG on this x86 CPU,
so latencies are emulated time; ``/sys`` (governors, thermal zones) and ``/proc/meminfo`` are
the host's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.devices import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGEDEPLOY_ARM64_CACHE", "/var/cache/edgedeploy"))

#: Debian packages inside the image (debootstrap --include), on top of --variant=minbase;
#: Raspberry Pi OS Lite has all of them (python3-pip included).
PACKAGES = ("openssh-server", "python3", "python3-numpy", "python3-venv", "python3-pip", "procps")
#: LiteRT's dependencies besides numpy (Debian's numpy satisfies numpy>=1.23.2).
LITERT_DEPS = ("backports.strenum", "flatbuffers", "tqdm", "typing_extensions", "protobuf")
WHEEL_PLATFORM = "manylinux_2_27_aarch64"
USER = "pi"
#: bump when the recipe changes in a way the hash of the constants above does not show
RECIPE_VERSION = 2

BUILD_HINT = (
    "build the arm64 stand-in once (root, 5-13 min, needs the Debian mirror and PyPI): "
    "scripts/install-system-deps.sh && make arm64-device"
)


class StandinError(RuntimeError):
    """The stand-in cannot be built or started (the message says what failed)."""


# --- apt's configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]
    keyring: str | None


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    """The ``deb`` entries apt uses here, in apt's order (sources.list, then sources.list.d/)."""
    out: list[AptSource] = []
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*"))
    for f in files:
        if not f.is_file() or f.suffix not in (".list", ".sources"):
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".list":
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
                if not m:
                    continue
                opts = m.group(1) or ""
                key = re.search(r"signed-by=(\S+?)\s*\]?$", opts.strip("[] "))
                out.append(
                    AptSource(
                        m.group(2),
                        m.group(3),
                        tuple(m.group(4).split()),
                        key.group(1) if key else None,
                    )
                )
            continue
        for st in _deb822_stanzas(text):
            if "deb" not in st.get("types", "").split() or st.get("enabled", "yes") == "no":
                continue
            for uri in st.get("uris", "").split():
                for suite in st.get("suites", "").split():
                    out.append(
                        AptSource(
                            uri,
                            suite,
                            tuple(st.get("components", "").split()),
                            st.get("signed-by") or None,
                        )
                    )
    return out


def host_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise StandinError("/etc/os-release has no VERSION_CODENAME: cannot tell the Debian suite")


def debian_source() -> AptSource:
    """The entry of apt's configuration for the host's own suite (e.g. ``bookworm``)."""
    codename = host_codename()
    for src in apt_sources():
        if src.suite == codename and "main" in src.components:
            return src
    raise StandinError(
        f"apt's configuration (/etc/apt/sources.list*) has no 'deb' entry for suite {codename} "
        "with component main: no Debian mirror to debootstrap from"
    )


# --- the recipe and its cache ----------------------------------------------------------------


def locked(name: str) -> str:
    norm = re.sub(r"[-_.]+", "-", name).lower()
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        pkg, sep, ver = line.partition("==")
        if sep and re.sub(r"[-_.]+", "-", pkg).lower() == norm:
            return f"{name}=={ver.strip()}"
    return name


def recipe() -> dict[str, object]:
    return {
        "version": RECIPE_VERSION,
        "suite": host_codename(),
        "packages": PACKAGES,
        "wheels": [locked("ai-edge-litert"), *(locked(n) for n in LITERT_DEPS)],
        "platform": WHEEL_PLATFORM,
        "user": USER,
    }


def image_dir() -> Path:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"arm64-{digest}"


def binfmt_ready() -> str | None:
    """None when aarch64 binaries run here through binfmt_misc with the F flag, else why not."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.is_file():
        return (
            "no qemu-aarch64 binfmt_misc handler (apt-get install qemu-user-static binfmt-support; "
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; "
            "update-binfmts --enable qemu-aarch64)"
        )
    text = entry.read_text()
    if not text.startswith("enabled"):
        return "the qemu-aarch64 binfmt handler is disabled (update-binfmts --enable qemu-aarch64)"
    flags = re.search(r"^flags: *(\S*)", text, re.M)
    if not flags or "F" not in flags.group(1):
        return "the qemu-aarch64 binfmt handler lacks the F flag: it cannot run inside a chroot"
    return None


def enable_binfmt() -> None:
    """Mount binfmt_misc and enable Debian's qemu-aarch64 handler (root)."""
    mnt = Path("/proc/sys/fs/binfmt_misc")
    if not (mnt / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(mnt)])
    if not (mnt / "qemu-aarch64").exists():
        _run(["update-binfmts", "--enable", "qemu-aarch64"])


def unavailable() -> str | None:
    """None when a cached image can be started here, else the reason (with what to do)."""
    if os.geteuid() != 0:
        return "the arm64 stand-in needs root (chroot, mount namespaces)"
    for tool in ("unshare", "chroot", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (image_dir() / "ok").is_file():
        return f"no arm64 stand-in image at {image_dir()}: {BUILD_HINT}"
    with contextlib.suppress(StandinError, OSError, subprocess.SubprocessError):
        enable_binfmt()
    return binfmt_ready()


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise StandinError(
            f"`{' '.join(argv)}` failed (exit {res.returncode}): "
            f"{(res.stderr or res.stdout).strip()[-2000:]}"
        )
    return res  # type: ignore[no-any-return]


def unmount_under(path: Path) -> None:
    """Unmount whatever is mounted under ``path`` (debootstrap's /proc and /sys when it was
    interrupted), deepest first, so that removing ``path`` never walks into the host's."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        where = line.split()[1].encode().decode("unicode_escape")
        if where.startswith(prefix):
            mounts.append(where)
    for where in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", where], capture_output=True)


def remove_tree(path: Path) -> None:
    """``rm -rf`` after :func:`unmount_under` (never follows a mount into the host)."""
    if path.exists():
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def build(*, log: bool = True) -> Path:
    """Build the image if the cache lacks it; return its directory. See the module docstring."""
    final = image_dir()
    if (final / "ok").is_file():
        return final
    if os.geteuid() != 0:
        raise StandinError("building the arm64 stand-in needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "update-binfmts"):
        if shutil.which(tool) is None:
            raise StandinError(f"{tool} is missing: run scripts/install-system-deps.sh")
    enable_binfmt()
    why = binfmt_ready()
    if why:
        raise StandinError(why)
    src = debian_source()
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob(f".{final.name}.tmp-*"):
        pid = stale.name.rpartition("-")[2]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            remove_tree(stale)  # an interrupted build
    tmp = CACHE / f".{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    timings: dict[str, float] = {}

    def say(msg: str) -> None:
        if log:
            print(f"[arm64-device] {msg}", file=sys.stderr, flush=True)

    try:
        rootfs = tmp / "rootfs"
        t0 = time.monotonic()
        say(f"debootstrap arm64 {src.suite} from {src.uri} (apt's configuration)")
        argv = ["debootstrap", "--arch=arm64", "--variant=minbase",
                f"--include={','.join(PACKAGES)}", f"--components={','.join(src.components)}"]  # fmt: skip
        if src.keyring:
            argv.append(f"--keyring={src.keyring}")
        _run([*argv, src.suite, str(rootfs), src.uri])
        timings["debootstrap_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        say(f"user {USER}; no host keys in the image (each instance makes its own)")
        # password "*": no password login, but not a locked account (sshd without PAM
        # refuses key logins to locked accounts)
        _run(["chroot", str(rootfs), "/usr/sbin/useradd", "-m", "-s", "/bin/bash", "-p", "*", USER])
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        _run(["chroot", str(rootfs), "/usr/bin/apt-get", "clean"])
        timings["configure_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        py = guest_python_version(rootfs)
        wheels = tmp / "wheels"
        reqs = [str(w) for w in recipe()["wheels"]]  # type: ignore[attr-defined]
        say(f"pip download {' '.join(reqs)} for cp{py.replace('.', '')} {WHEEL_PLATFORM}")
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--only-binary=:all:", "--platform", WHEEL_PLATFORM, "--python-version", py,
              "--implementation", "cp", "-d", str(wheels), *reqs])  # fmt: skip
        timings["wheels_s"] = time.monotonic() - t0
        (tmp / "recipe.json").write_text(
            json.dumps({**recipe(), "mirror": src.uri, "python": py, "timings": timings}, indent=2)
        )
        (tmp / "ok").write_text("")
        tmp.rename(final)
    except BaseException:
        remove_tree(tmp)
        raise
    say(f"built {final}: {json.dumps(timings)}")
    return final


def guest_python_version(rootfs: Path) -> str:
    target = os.readlink(rootfs / "usr/bin/python3")
    m = re.fullmatch(r"python(3\.\d+)", Path(target).name)
    if not m:
        raise StandinError(f"cannot tell the image's Python version from python3 -> {target}")
    return m.group(1)


def namespace_pids(ns: str | None) -> list[int]:
    """Pids whose mount namespace is ``ns`` (``mnt:[inode]``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(d / "ns/mnt") == ns:
                    out.append(int(d.name))
    return out


# --- one running instance ----------------------------------------------------------------------


class Arm64Device:
    """One running instance of the cached image (see the module docstring).

    ``upper`` is the instance's writable layer: keep it to "reboot" the same board
    (:meth:`stop` then :meth:`start`); a new directory gives a fresh board.
    """

    def __init__(self, work: Path, image: Path | None = None) -> None:
        self.image = image or image_dir()
        self.work = work
        self.upper = work / "upper"
        self.port = free_port()
        self.user = USER
        self.user_key = work / "id_ed25519"
        self.host_key = work / "ssh_host_ed25519_key"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_s: float | None = None

    @property
    def wheels(self) -> Path:
        """The aarch64 wheels to push with ``bench --setup --wheels``."""
        return self.image / "wheels"

    @property
    def login(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        if self.upper.exists():
            return
        self.work.mkdir(parents=True, exist_ok=True)
        for key in (self.user_key, self.host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True, capture_output=True)  # fmt: skip
        etc = self.upper / "etc/edgedeploy-sshd"
        etc.mkdir(parents=True)
        shutil.copyfile(self.host_key, etc / "ssh_host_ed25519_key")
        (etc / "ssh_host_ed25519_key").chmod(0o600)
        (etc / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        (etc / "authorized_keys").chmod(0o644)
        (etc / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            "HostKey /etc/edgedeploy-sshd/ssh_host_ed25519_key\n"
            "PidFile /run/edgedeploy-sshd.pid\n"
            "AuthorizedKeysFile /etc/edgedeploy-sshd/authorized_keys\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin no\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        (self.work / "ovl-work").mkdir(exist_ok=True)

    def start(self, timeout_s: float = 120.0) -> Arm64Device:
        """Mount the overlay in a private mount namespace and start the arm64 sshd."""
        self._prepare()
        merged = self.work / "merged"
        merged.mkdir(exist_ok=True)
        rootfs = self.image / "rootfs"
        script = (
            "set -e; "
            f"mount -t overlay overlay -o lowerdir={rootfs},upperdir={self.upper},"
            f"workdir={self.work / 'ovl-work'} {merged}; "
            f"mount -t proc proc {merged}/proc; "
            f"mount --rbind /dev {merged}/dev; "
            f"mount --rbind -o ro /sys {merged}/sys || mount --rbind /sys {merged}/sys; "
            f"mount -t tmpfs tmpfs {merged}/run; mkdir -p {merged}/run/sshd; "
            f"exec chroot {merged} /usr/sbin/sshd -D -e -f /etc/edgedeploy-sshd/sshd_config"
        )
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / "sshd.log", "ab"),  # noqa: SIM115 (owned by the child)
            start_new_session=True,
        )
        try:
            wait_port(self.port, timeout_s)
        except TimeoutError as exc:
            log = (self.work / "sshd.log").read_text(errors="replace")[-1500:]
            self.stop()
            raise StandinError(
                f"the arm64 sshd did not listen within {timeout_s:.0f} s: {log}"
            ) from exc
        self.start_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Power cut: SIGKILL every process of the board's mount namespace (the listening
        sshd, each connection's sshd — they call setsid(), so the process group is not
        enough — and everything the sessions started); the namespace, and with it every
        mount, goes away with the last of them."""
        if self.proc is None:
            return
        try:
            ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        except OSError:
            ns = None
        for _ in range(3):
            victims = [p for p in namespace_pids(ns) if p != os.getpid()] if ns else []
            victims.append(self.proc.pid)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if not ns or not namespace_pids(ns):
                break
        self.proc = None

    def root_sh(self, command: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``sh -c command`` as root inside the running board (through its namespace)."""
        if self.proc is None:
            raise StandinError("the arm64 device is not running")
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "chroot", str(self.work / "merged"),
             "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
             "/bin/sh", "-c", command],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def __enter__(self) -> Arm64Device:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        try:
            t0 = time.monotonic()
            path = build()
            print(f"{path} ({time.monotonic() - t0:.0f} s)")
        except StandinError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["path"]:
        print(image_dir())
        return 0
    if argv[:1] == ["status"]:
        why = unavailable()
        print(why or f"ready: {image_dir()}")
        return 1 if why else 0
    print("usage: python -m tests.support.arm64_device build|path|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
