"""Host tier: target profiles load, validate, and reject bad input with the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain import targets
from toolchain.errors import TargetError

REQUIRED = {
    "mps2-an386": ("cortex-m4", "qemu"),
    "mps2-an500": ("cortex-m7", "qemu"),
    "mps2-an505": ("cortex-m33", "qemu"),
    "lm3s6965evb": ("cortex-m3", "qemu"),
    "nucleo-l4r5zi": ("cortex-m4", "serial"),
    "stm32f746g-disco": ("cortex-m7", "serial"),
    "nrf52840-dk": ("cortex-m4", "serial"),
    "rpi-pico": ("cortex-m0plus", "serial"),
    "rpi4": ("cortex-a72", "ssh"),
    "rpi5": ("cortex-a76", "ssh"),
    "android-arm64": ("arm64", "adb"),
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shipped_profiles_load(name: str) -> None:
    t = targets.load_target(name)
    core, transport = REQUIRED[name]
    assert t.name == name
    assert t.cpu.core == core
    assert t.transport.kind == transport
    assert t.memory.ram_bytes > 0


def test_bases_are_not_listed() -> None:
    names = targets.available_names()
    assert not [n for n in names if n.startswith("_")]
    assert set(REQUIRED) <= set(names)


def test_extends_merges_tables() -> None:
    t = targets.load_target("mps2-an505")
    assert t.transport.kind == "qemu"  # from _qemu-mps2
    assert t.memory.ram_origin == 0x38000000  # own value wins
    assert t.firmware is not None and t.firmware.board == "mps2-cmsdk"
    assert t.cpu.gcc_flags() == (
        "-mcpu=cortex-m33",
        "-mthumb",
        "-mfloat-abi=hard",
        "-mfpu=fpv5-sp-d16",
    )
    pi5 = targets.load_target("rpi5")
    assert pi5.transport.kind == "ssh" and pi5.cpu.core == "cortex-a76"


def test_unknown_target_lists_known_ones() -> None:
    with pytest.raises(TargetError) as e:
        targets.load_target("no-such-board")
    assert "mps2-an386" in str(e.value)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "board.toml"
    p.write_text(text)
    return p


GOOD = """
name = "myboard"
kind = "mcu"
[cpu]
core = "cortex-m4"
fpu = "fpv4-sp-d16"
float_abi = "hard"
clock_hz = 80000000
[memory]
flash_bytes = 1048576
ram_bytes = 131072
[firmware]
board = "generic-cmsis"
[transport]
kind = "serial"
usb_ids = ["0483:374b"]
"""


def test_profile_from_path(tmp_path: Path) -> None:
    t = targets.load_target(str(_write(tmp_path, GOOD)))
    assert t.name == "myboard" and t.transport.usb_ids == ("0483:374b",)


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('core = "cortex-m4"', 'core = "cortex-m99"', "cortex-m33"),
        ('kind = "mcu"', 'kind = "toaster"', "android"),
        ('kind = "serial"', 'kind = "carrier-pigeon"', "qemu"),
        ("clock_hz = 80000000", 'clock_hz = "fast"', "expected int"),
        ('fpu = "fpv4-sp-d16"', 'fpu = "none"', "needs an FPU"),
        ('board = "generic-cmsis"', 'board = "generic-cmsis"\nbogus = 1', "unknown key"),
        ('usb_ids = ["0483:374b"]', 'usb_ids = ["zz"]', "VVVV:PPPP"),
        ("flash_bytes = 1048576\n", "", "flash_bytes is required"),
    ],
)
def test_invalid_profiles_say_what_is_allowed(
    tmp_path: Path, old: str, new: str, needle: str
) -> None:
    assert old in GOOD
    with pytest.raises(TargetError) as e:
        targets.load_target(str(_write(tmp_path, GOOD.replace(old, new))))
    assert needle in str(e.value)


def test_broken_toml_and_missing_base_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nkind = "mcu\n')
    with pytest.raises(TargetError) as e:
        targets.load_target(str(broken))
    assert "broken.toml: cannot read target profile" in str(e.value) and e.value.hint
    orphan = _write(tmp_path, 'extends = "no-such-base"\n' + GOOD)
    with pytest.raises(TargetError) as e:
        targets.load_target(str(orphan))
    assert f"{orphan}: 'extends': unknown target 'no-such-base'" in str(e.value)
