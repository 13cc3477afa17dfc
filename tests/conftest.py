"""Test tiers and shared fixtures.

Tiers (each test is in exactly one; the folder decides, see ``pytest_collection_modifyitems``):

* ``tests/host/``      — no device: pure Python, host compilers, host interpreters, fakes.
* ``tests/emulated/``  — a faithful stand-in for a device: QEMU Cortex-M boards, the host-TFLM
  device over a real pty, a real sshd on 127.0.0.1, the real adb server with an ADB device peer
  on loopback.
* ``tests/hardware/``  — real boards and phones. Skipped unless the matching option is given:
  ``--port URL`` (MCU over serial, with ``--target NAME``), ``--adb-serial SERIAL`` (Android),
  ``--ssh-host user@host`` (Raspberry Pi / Linux board).

Reference models live in ``../shared/reference`` (outside the project); tests that need them
skip with a reason when it is absent. A TFLM static library (``EDGEDEPLOY_TFLM_LIB`` and
``EDGEDEPLOY_TFLM_INCLUDE``) enables the ``tflm_lib`` tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("EDGEDEPLOY_REFERENCE", ROOT.parent / "shared" / "reference"))


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("edgedeploy hardware")
    g.addoption("--port", help="serial URL of a real board (hardware tier)")
    g.addoption("--target", dest="hw_target", help="target profile of the board on --port")
    g.addoption("--adb-serial", help="serial of a real Android device (hardware tier)")
    g.addoption("--ssh-host", help="user@host of a real Raspberry Pi / Linux board (hardware tier)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        tier = parts[0] if len(parts) > 1 else "host"
        if tier not in ("host", "emulated", "hardware"):
            tier = "host"
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``; skips the test when it is not there."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference models not found at {REFERENCE} (set EDGEDEPLOY_REFERENCE)")
    return REFERENCE


@pytest.fixture(scope="session")
def tflm_library() -> tuple[Path, Path]:
    """(libtensorflow-microlite.a, include dir) built by the user with TFLM's own tooling."""
    lib = os.environ.get("EDGEDEPLOY_TFLM_LIB")
    inc = os.environ.get("EDGEDEPLOY_TFLM_INCLUDE")
    if not lib or not inc:
        pytest.skip(
            "needs a TFLM static library: build one with TFLM's own Makefile (docs/tflm-library.md) "
            "and set EDGEDEPLOY_TFLM_LIB=/path/libtensorflow-microlite.a and "
            "EDGEDEPLOY_TFLM_INCLUDE=/path/to/tflite-micro"
        )
    return Path(lib), Path(inc)


def _hardware_option(config: pytest.Config, name: str, how: str) -> str:
    value = config.getoption(name)
    if not value:
        pytest.skip(f"hardware tier: {how}")
    return str(value)


@pytest.fixture
def hw_port(request: pytest.FixtureRequest) -> str:
    return _hardware_option(
        request.config,
        "port",
        "connect a board and run pytest tests/hardware --port URL --target NAME",
    )


@pytest.fixture
def hw_adb_serial(request: pytest.FixtureRequest) -> str:
    return _hardware_option(
        request.config,
        "adb_serial",
        "connect a phone and run pytest tests/hardware --adb-serial SERIAL",
    )


@pytest.fixture
def hw_ssh_host(request: pytest.FixtureRequest) -> str:
    return _hardware_option(
        request.config, "ssh_host", "run pytest tests/hardware --ssh-host user@pi (key-based auth)"
    )
