"""Target profiles: one TOML file per board or device, validated into frozen dataclasses.

A profile is data (see ``docs/targets.md`` for the format). Profiles are looked up by name in
the directories of ``EDGEDEPLOY_TARGETS_PATH`` (``os.pathsep``-separated), then in the
project's ``targets/`` folder; a path to a ``.toml`` file works too. ``extends = "base"``
merges a base profile (tables merge key by key, the child wins). Profiles whose file name
starts with ``_`` are bases: they can be extended but are not listed or loaded as targets.

Validation happens at load time and every error lists the allowed values.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import TargetError

BUILTIN_TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"

KINDS = ("mcu", "linux", "android", "host")
CORES = (
    "cortex-m0",
    "cortex-m0plus",
    "cortex-m3",
    "cortex-m4",
    "cortex-m7",
    "cortex-m33",
    "cortex-m55",
    "cortex-a53",
    "cortex-a55",
    "cortex-a72",
    "cortex-a76",
    "x86_64",
    "arm64",
)
FPUS = ("none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16", "auto")
FLOAT_ABIS = ("soft", "softfp", "hard")
TRANSPORTS = ("serial", "qemu", "host-tflm", "host-compiled", "adb", "ssh")
BOARDS = ("mps2-cmsdk", "lm3s-pl011", "generic-cmsis")
QEMU_MACHINES = ("mps2-an386", "mps2-an500", "mps2-an505", "lm3s6965evb")

_TOP_KEYS = {
    "name",
    "extends",
    "description",
    "kind",
    "cpu",
    "memory",
    "firmware",
    "transport",
    "flash",
    "benchmark",
}


@dataclass(frozen=True)
class CpuSpec:
    """The processor: ``core`` (e.g. cortex-m4), ``fpu`` and ``float_abi``, clock in Hz."""

    core: str
    clock_hz: int
    fpu: str = "none"
    float_abi: str = "soft"
    dsp: bool = False
    abi: str = ""  # Android/Linux ABI, e.g. arm64-v8a

    @property
    def is_cortex_m(self) -> bool:
        return self.core.startswith("cortex-m")

    def gcc_flags(self) -> tuple[str, ...]:
        """arm-none-eabi-gcc machine flags for this CPU (empty for non Cortex-M cores)."""
        if not self.is_cortex_m:
            return ()
        flags = [f"-mcpu={self.core}", "-mthumb", f"-mfloat-abi={self.float_abi}"]
        if self.fpu != "none" and self.float_abi != "soft":
            flags.append(f"-mfpu={self.fpu}")
        return tuple(flags)


@dataclass(frozen=True)
class MemorySpec:
    """Budgets in bytes; for MCUs also the origins of flash and RAM (the linker's memory map).

    ``runtime_flash_bytes`` / ``runtime_ram_bytes``: measured TFLM runtime code and static
    data for this board; when unset the emit stage's memory report estimates them per core
    (toolchain/emit/footprint.py).
    """

    flash_bytes: int | None
    ram_bytes: int
    flash_origin: int = 0
    ram_origin: int = 0x20000000
    stack_bytes: int = 16 * 1024
    heap_bytes: int = 8 * 1024
    runtime_flash_bytes: int | None = None
    runtime_ram_bytes: int | None = None


@dataclass(frozen=True)
class FirmwareSpec:
    """Which template renders the firmware, and which board-support layer it uses."""

    template: str = "cortex-m"
    board: str = "generic-cmsis"
    uart_base: int | None = None
    uart_irq: int | None = None
    semihosting_exit: bool = False
    has_dwt: bool = False


@dataclass(frozen=True)
class TransportSpec:
    """How to reach the device. Only the fields of ``kind`` matter."""

    kind: str
    serial_url: str | None = None
    baud: int = 115200
    usb_ids: tuple[str, ...] = ()  # "VVVV:PPPP", hex
    qemu_machine: str | None = None
    qemu_icount_shift: int = 0
    adb_serial: str | None = None
    ssh_host: str | None = None
    reset: str = "none"  # none | dtr | rts | command


@dataclass(frozen=True)
class Target:
    """A validated target profile."""

    name: str
    kind: str
    description: str
    cpu: CpuSpec
    memory: MemorySpec
    transport: TransportSpec
    firmware: FirmwareSpec | None = None
    flash_command: tuple[str, ...] = ()
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, **dict(self.raw)}


# --- loading ------------------------------------------------------------------------------


def search_path() -> list[Path]:
    """Directories searched for profiles, in order."""
    dirs = [Path(p) for p in os.environ.get("EDGEDEPLOY_TARGETS_PATH", "").split(os.pathsep) if p]
    dirs.append(BUILTIN_TARGETS_DIR)
    return dirs


def _find(name: str) -> Path:
    if name.endswith(".toml") or os.sep in name:
        p = Path(name)
        if p.is_file():
            return p
        raise TargetError(f"no such target profile file: {name}")
    for d in search_path():
        p = d / f"{name}.toml"
        if p.is_file():
            return p
    raise TargetError(
        f"unknown target {name!r}",
        hint="known targets: " + ", ".join(t for t in available_names()) + " (or a .toml path)",
    )


def available_names() -> list[str]:
    """Names of every loadable (non-base) profile on the search path, sorted, de-duplicated."""
    names: set[str] = set()
    for d in search_path():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml") if not p.name.startswith("_"))
    return sorted(names)


def _read_raw(path: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise TargetError(
            f"{path}: cannot read target profile: {why}",
            hint="fix the file (TOML syntax, UTF-8) or remove it from the targets search path",
        ) from exc
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise TargetError(f"{path}: 'extends' must be a profile name (a string)")
    if base_name in seen:
        raise TargetError(f"{path}: 'extends' loop: {' -> '.join((*seen, base_name))}")
    try:
        base_path = _find(base_name) if os.sep in base_name else _find_base(base_name, path.parent)
    except TargetError as exc:
        raise TargetError(f"{path}: 'extends': {exc.message}", hint=exc.hint) from exc
    return _merge(_read_raw(base_path, (*seen, base_name)), data)


def _find_base(name: str, near: Path) -> Path:
    p = near / f"{name}.toml"
    return p if p.is_file() else _find(name)


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_target(name_or_path: str) -> Target:
    """Load and validate a profile by name (``mps2-an386``) or path (``my_board.toml``).

    Raises :class:`TargetError` naming the file, the key and the allowed values.
    """
    path = _find(name_or_path)
    raw = _read_raw(path, (path.stem,))
    return _validate(raw, path)


def load_all() -> list[Target]:
    """Every profile on the search path (invalid ones raise)."""
    return [load_target(n) for n in available_names()]


def scan_targets(kind: str | None = None) -> tuple[list[Target], list[TargetError]]:
    """Every valid profile on the search path (of ``kind``), and the errors of the invalid
    ones: one broken profile does not hide the others (``edgedeploy targets`` lists both)."""
    found: list[Target] = []
    broken: list[TargetError] = []
    for name in available_names():
        try:
            t = load_target(name)
        except TargetError as exc:
            broken.append(exc)
            continue
        if kind is None or t.kind == kind:
            found.append(t)
    return found, broken


def iter_targets(kind: str | None = None) -> Iterator[Target]:
    for t in load_all():
        if kind is None or t.kind == kind:
            yield t


# --- validation ---------------------------------------------------------------------------


class _Table:
    """Typed access to one table of a profile with errors that name the key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise TargetError(f"{where} must be a table")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def get(
        self, key: str, typ: type | tuple[type, ...], default: Any = ..., *, allowed: Any = None
    ) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise TargetError(f"{self.where}: missing required key '{key}'")
            return default
        value = self.data[key]
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise TargetError(f"{self.where}.{key}: expected {tname}, got {value!r}")
        if allowed is not None and value not in allowed:
            raise TargetError(
                f"{self.where}.{key}: {value!r} is not allowed",
                hint="allowed values: " + ", ".join(map(str, allowed)),
            )
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise TargetError(f"{self.where}.{key}: must not be negative, got {value}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise TargetError(
                f"{self.where}: unknown key(s) {', '.join(unknown)}",
                hint="allowed keys: " + ", ".join(sorted(self.used)),
            )


def _validate(raw: dict[str, Any], path: Path) -> Target:
    where = str(path)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise TargetError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint="allowed keys: " + ", ".join(sorted(_TOP_KEYS)),
        )
    top = _Table(raw, where)
    name = top.get("name", str, path.stem)
    kind = top.get("kind", str, allowed=KINDS)
    description = top.get("description", str, "")

    c = _Table(top.get("cpu", dict), f"{where}: [cpu]")
    cpu = CpuSpec(
        core=c.get("core", str, allowed=CORES),
        clock_hz=c.get("clock_hz", int),
        fpu=c.get("fpu", str, "none", allowed=FPUS),
        float_abi=c.get("float_abi", str, "soft", allowed=FLOAT_ABIS),
        dsp=c.get("dsp", bool, False),
        abi=c.get("abi", str, ""),
    )
    c.finish()
    if cpu.float_abi != "soft" and cpu.fpu == "none":
        raise TargetError(
            f"{where}: [cpu] float_abi = {cpu.float_abi!r} needs an FPU",
            hint=f"set fpu to one of {', '.join(f for f in FPUS if f != 'none')}, or float_abi = 'soft'",
        )

    m = _Table(top.get("memory", dict), f"{where}: [memory]")
    memory = MemorySpec(
        flash_bytes=m.get("flash_bytes", int, None),
        ram_bytes=m.get("ram_bytes", int),
        flash_origin=m.get("flash_origin", int, 0),
        ram_origin=m.get("ram_origin", int, 0x20000000),
        stack_bytes=m.get("stack_bytes", int, 16 * 1024),
        heap_bytes=m.get("heap_bytes", int, 8 * 1024),
        runtime_flash_bytes=m.get("runtime_flash_bytes", int, None),
        runtime_ram_bytes=m.get("runtime_ram_bytes", int, None),
    )
    m.finish()
    if kind == "mcu" and memory.flash_bytes is None:
        raise TargetError(f"{where}: [memory] flash_bytes is required for an mcu target")

    firmware = None
    if "firmware" in raw:
        f = _Table(top.get("firmware", dict), f"{where}: [firmware]")
        firmware = FirmwareSpec(
            template=f.get("template", str, "cortex-m"),
            board=f.get("board", str, "generic-cmsis", allowed=BOARDS),
            uart_base=f.get("uart_base", int, None),
            uart_irq=f.get("uart_irq", int, None),
            semihosting_exit=f.get("semihosting_exit", bool, False),
            has_dwt=f.get("has_dwt", bool, False),
        )
        f.finish()
    else:
        top.used.add("firmware")
    if kind == "mcu" and firmware is None:
        raise TargetError(f"{where}: an mcu target needs a [firmware] table")

    t = _Table(top.get("transport", dict), f"{where}: [transport]")
    usb_ids = t.get("usb_ids", list, [])
    for u in usb_ids:
        if not (isinstance(u, str) and len(u) == 9 and u[4] == ":" and _is_hex(u[:4] + u[5:])):
            raise TargetError(f"{where}: [transport] usb_ids entry {u!r} is not 'VVVV:PPPP' (hex)")
    transport = TransportSpec(
        kind=t.get("kind", str, allowed=TRANSPORTS),
        serial_url=t.get("serial_url", str, None),
        baud=t.get("baud", int, 115200),
        usb_ids=tuple(usb_ids),
        qemu_machine=t.get("qemu_machine", str, None, allowed=QEMU_MACHINES),
        qemu_icount_shift=t.get("qemu_icount_shift", int, 0),
        adb_serial=t.get("adb_serial", str, None),
        ssh_host=t.get("ssh_host", str, None),
        reset=t.get("reset", str, "none", allowed=("none", "dtr", "rts", "command")),
    )
    t.finish()
    if transport.kind == "qemu" and transport.qemu_machine is None:
        raise TargetError(
            f"{where}: [transport] kind = 'qemu' needs qemu_machine",
            hint="allowed machines: " + ", ".join(QEMU_MACHINES),
        )

    flash_cmd: tuple[str, ...] = ()
    if "flash" in raw:
        fl = _Table(top.get("flash", dict), f"{where}: [flash]")
        cmd = fl.get("command", list)
        if not cmd or not all(isinstance(x, str) for x in cmd):
            raise TargetError(f"{where}: [flash] command must be a non-empty list of strings")
        flash_cmd = tuple(cmd)
        fl.finish()
    else:
        top.used.add("flash")
    if "benchmark" in raw:
        top.get("benchmark", dict)  # free-form defaults for the bench stage (runs, warmup...)
    else:
        top.used.add("benchmark")
    top.used.add("extends")
    top.finish()
    return Target(
        name=name,
        kind=kind,
        description=description,
        cpu=cpu,
        memory=memory,
        transport=transport,
        firmware=firmware,
        flash_command=flash_cmd,
        source=str(path),
        raw=raw,
    )


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
    except ValueError:
        return False
    return True
