"""Hardware tier: a real board running an edgedeploy firmware (benchmark or self-test) on a
serial port. Skipped unless ``--port`` is given:

    pytest tests/hardware --port /dev/ttyACM0 --target nucleo-l4r5zi
"""

from __future__ import annotations

import os

import pytest

from toolchain.protocol import DeviceClient
from toolchain.targets import load_target
from toolchain.transports.serial_port import SerialTransport


def test_board_speaks_edp(hw_port: str, request: pytest.FixtureRequest) -> None:
    name = request.config.getoption("hw_target")
    baud = load_target(name).transport.baud if name else 115200
    with SerialTransport(hw_port, baudrate=baud) as link:
        client = DeviceClient(link, timeout_s=2.0)
        client.resync()
        h = client.hello()
        assert h.protocol_version == 1 and h.max_payload >= 256
        payload = os.urandom(h.max_payload)
        assert client.echo(payload) == payload
        t0 = client.ticks()
        assert client.ticks() > t0
        if h.n_inputs == 0:
            return
        for i in range(h.n_inputs):
            client.upload_input(i, os.urandom(client.tensor_info(i).nbytes))
        ticks = client.run(warmup=1, runs=5, timeout=60)
        assert len(ticks) == 5 and min(ticks) > 0
        for j in range(h.n_outputs):
            assert len(client.read_output(j)) == client.tensor_info(j, output=True).nbytes
