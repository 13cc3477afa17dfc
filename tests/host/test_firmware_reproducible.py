"""The same firmware project builds the same image wherever it is built: edgedeploy builds in
a hidden staging folder and moves it into place, and the stage cache of `edgedeploy run`
hashes the result — a path in the debug info would make every rebuild look new (and the
bench stage after it run again). Uses the self-test firmware: no TFLM library needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toolchain.firmware import make_firmware


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc (scripts/install-system-deps.sh)")  # fmt: skip
def test_the_same_project_builds_the_same_elf_in_another_folder(tmp_path: Path) -> None:
    elves = []
    for where in ("a", "somewhere/else/b"):
        result = make_firmware(
            target="mps2-an386", out_dir=tmp_path / where, selftest=True, build=True
        )
        assert result.build is not None
        elves.append(result.build.elf)
    assert str(tmp_path) not in elves[0].read_bytes().decode("latin-1")
    assert elves[0].read_bytes() == elves[1].read_bytes()
