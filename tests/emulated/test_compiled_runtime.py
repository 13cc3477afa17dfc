"""Emulated tier: the compiled runtime (``edgedeploy compile`` → plain C, no TFLM library)
built into the Cortex-M firmware for every QEMU board and into the host-compiled device, and
benchmarked through the ordinary runners: outputs bit-identical to the host tflite-micro
interpreter on the golden vectors, instruction counts identical inference to inference and
QEMU run to QEMU run, the painted-stack high-water mark reported, per-op times that add up;
and the bad input: ``--runtime compiled`` with an operator the compiler lacks.

Small reference models (../shared/reference; skipped without it) keep this under a minute
or so on 2 cores: lm3s6965evb has 64 KiB of RAM and 256 KiB of flash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.firmware import FirmwareResult, make_firmware
from toolchain.targets import load_target

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc (scripts/install-system-deps.sh)",
)
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

#: (QEMU target, reference model): every board once, the real KWS model on the M4F
BOARDS = {
    "mps2-an386": "mlperf_tiny/kws/kws_ref_model.tflite",
    "mps2-an500": "tflm_models/micro_speech/micro_speech_quantized.tflite",
    "mps2-an505": "tflm_models/hello_world/hello_world_int8.tflite",
    "lm3s6965evb": "tflm_models/micro_speech/micro_speech_quantized.tflite",
}
#: a model with an operator the compiler does not have (an LSTM)
UNSUPPORTED = "tflm_models/mnist_lstm/trained_lstm_int8.tflite"


def _model(reference_dir: Path, rel: str) -> Path:
    p = reference_dir / rel
    if not p.is_file():
        pytest.skip(f"{p} is not there")
    return p


@pytest.fixture(scope="module")
def built(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, FirmwareResult]]:
    root = tmp_path_factory.mktemp("compiled_fw")
    out = {}
    for board, rel in BOARDS.items():
        model = _model(reference_dir, rel)
        res = make_firmware(
            target=board, out_dir=root / board, model=model, runtime="compiled", build=True
        )
        out[board] = (model, res)
    return out


def _bench(board: str, model: Path, elf: Path, runs: int = 3) -> BenchResult:
    opts = BenchOptions(runs=runs, warmup=1, firmware=elf, timeout_s=120.0)
    return run_bench(load_target(board), model, opts)


@needs_qemu
@pytest.mark.parametrize("board", list(BOARDS))
def test_compiled_firmware_in_qemu(
    board: str, built: dict[str, tuple[Path, FirmwareResult]]
) -> None:
    model, res = built[board]
    b = res.build
    assert b is not None and b.fw == "compiled" and b.memory.fits
    proj = res.project
    assert proj.fw == "compiled" and proj.tflm is None
    assert (proj.path / "src/compiled_main.c").is_file()
    assert not (proj.path / "src/tflm_main.cc").exists()
    # no TFLM anywhere in the image: no interpreter symbols linked
    assert "MicroInterpreter" not in b.map.read_text(errors="replace")
    manifest = json.loads((proj.path / "edgedeploy_firmware.json").read_text())
    assert manifest["golden"] == "model/golden.npz" and manifest["runtime"]["name"] == "compiled"

    r = _bench(board, model, b.elf)
    assert r.runner == "qemu" and r.unit == "instructions"
    assert r.device["fw_kind"] == "compiled"
    assert r.environment["inputs"].startswith("1 sample(s) from")  # the project's golden.npz
    check = r.output_check
    assert check is not None and check.bit_exact, check
    assert len(set(r.samples)) == 1, r.samples  # -icount: the same count every inference
    assert r.per_op and len(r.per_op) == r.device["n_ops"]
    ops_total = sum(op.per_inference for op in r.per_op)
    assert 0.9 * r.samples[0] <= ops_total <= r.samples[0]
    mem = r.memory
    assert 0 < mem["stack_peak_bytes"] < mem["stack_reserved_bytes"]
    sections = mem["sections"]
    data_bss = sections[".data"]["size"] + sections[".bss"]["size"]
    assert mem["ram_measured_bytes"] == data_bss + mem["stack_peak_bytes"]
    assert mem["ram_measured_bytes"] < mem["ram_used_bytes"]  # reserved stack+heap not counted
    assert mem["arena_bytes"] == res.project.compiled["arena_bytes"]  # type: ignore[index]
    print(
        f"{board} {model.name}: {r.samples[0]:,.0f} instructions, flash "
        f"{mem['flash_used_bytes']:,} B, RAM {mem['ram_measured_bytes']:,} B "
        f"(stack peak {mem['stack_peak_bytes']:,} B)"
    )
    if board == "mps2-an386":  # a second QEMU run counts exactly the same instructions
        again = _bench(board, model, b.elf, runs=2)
        assert again.samples[0] == r.samples[0]
        assert [o.per_inference for o in again.per_op] == [o.per_inference for o in r.per_op]
        assert again.memory["stack_peak_bytes"] == mem["stack_peak_bytes"]


@needs_qemu
def test_every_golden_vector_bit_exact_in_qemu(
    built: dict[str, tuple[Path, FirmwareResult]],
) -> None:
    """Each sample of the project's golden.npz (outputs recorded from the host tflite-micro
    interpreter when the project was made) through the image in QEMU: equal to the byte."""
    from toolchain.bench.qemu import QemuProcess
    from toolchain.protocol.client import DeviceClient

    board = "mps2-an386"
    _, res = built[board]
    assert res.build is not None
    with np.load(res.project.path / "model" / "golden.npz") as z:
        golden = {k: z[k] for k in z.files if k != "source"}
    n = golden["input_0"].shape[0]
    assert n >= 3
    with QemuProcess(load_target(board), res.build.elf) as q:
        client = DeviceClient(q.connect(), timeout_s=30.0)
        assert client.wait_boot(10.0)
        client.hello()
        for k in range(n):
            client.upload_input(0, golden["input_0"][k].tobytes())
            client.run(warmup=0, runs=1, timeout=60.0)
            out = client.read_output_array(0)
            assert out.tobytes() == golden["output_0"][k].tobytes(), k


@needs_qemu
@pytest.mark.parametrize("board", ["mps2-an386", "lm3s6965evb"])
def test_compiled_firmware_ram_outside_the_arena_is_small(
    board: str, built: dict[str, tuple[Path, FirmwareResult]]
) -> None:
    """The device-protocol state is small: no input shadow (the planner keeps the inputs and
    SET_INPUT writes into the arena), no TX frame buffer (replies are streamed), 64 tick
    records. Before, KWS's edp_device alone was 4,736 B and VWW's 31,888 B."""
    _, res = built[board]
    assert res.build is not None
    out = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(res.build.elf)], capture_output=True, text=True, check=True
    ).stdout
    rows = [ln.split() for ln in out.splitlines()]
    sizes = {f[3]: int(f[1], 16) for f in rows if len(f) == 4 and f[2] in "bBdD"}
    arena = res.project.compiled["arena_bytes"]  # type: ignore[index]
    assert sizes["model_arena"] == arena
    assert sizes["s_dev"] <= 1036 + 512 + 160, sizes["s_dev"]  # RX frame, 64 runs, the rest
    rest = sum(sizes.values()) - arena
    assert rest < 4096, sorted(sizes.items(), key=lambda kv: -kv[1])[:8]  # data+bss but arena


@needs_qemu
def test_kept_input_survives_repeated_runs_in_qemu(
    built: dict[str, tuple[Path, FirmwareResult]],
) -> None:
    """One upload, several RUNs with warm-ups: the input stays as uploaded in the arena
    (GET_INPUT_CRC), the outputs stay those of the golden sample."""
    import zlib

    from toolchain.bench.qemu import QemuProcess
    from toolchain.protocol.client import DeviceClient

    board = "mps2-an386"
    _, res = built[board]
    assert res.build is not None
    with np.load(res.project.path / "model" / "golden.npz") as z:
        x, y = z["input_0"][0].tobytes(), z["output_0"][0].tobytes()
    with QemuProcess(load_target(board), res.build.elf) as q:
        client = DeviceClient(q.connect(), timeout_s=30.0)
        assert client.wait_boot(10.0)
        h = client.hello()
        assert h.info["edp.max_input_bytes"] == str(len(x)) and h.max_runs == 64
        client.upload_input(0, x)
        for warmup, runs in ((2, 3), (0, 2)):
            client.run(warmup=warmup, runs=runs, timeout=60.0)
            assert client.read_output_array(0).tobytes() == y
            assert client.input_crc(0) == zlib.crc32(x)


@needs_qemu
def test_vww_fits_lm3s6965evb_and_runs_bit_exact(reference_dir: Path, tmp_path: Path) -> None:
    """VWW (96x96x3 input, 27,648 B) on the 64 KiB Cortex-M3: the input kept in the arena (two
    split blocks), no shadow copy: it links within the RAM budget and runs bit-exact. Before,
    arena + shadow + EDP buffers were 20,304 B over."""
    model = _model(reference_dir, "mlperf_tiny/vww/vww_96_int8.tflite")
    res = make_firmware(
        target="lm3s6965evb", out_dir=tmp_path / "fw", model=model, runtime="compiled", build=True
    )
    assert res.build is not None and res.build.memory.fits
    r = _bench("lm3s6965evb", model, res.build.elf, runs=2)
    check = r.output_check
    assert check is not None and check.bit_exact, check
    assert len(set(r.samples)) == 1
    mem = r.memory
    assert mem["arena_bytes"] <= 50_000
    assert mem["ram_measured_bytes"] - mem["arena_bytes"] < 4096
    assert mem["ram_used_bytes"] <= 65_536


@needs_gcc
def test_host_compiled_device_is_bit_exact_on_golden_vectors(
    reference_dir: Path, tmp_path: Path
) -> None:
    from toolchain.firmware.render import compile_into

    model = _model(reference_dir, BOARDS["mps2-an386"])
    arts = compile_into(model, tmp_path / "m", load_target("mps2-an386"))
    golden = tmp_path / "m" / "golden.npz"
    assert arts["model_sha256"] and golden.is_file()
    r = run_bench(load_target("host-compiled"), model, BenchOptions(runs=5, golden=golden))
    assert r.runner == "host-compiled" and r.unit == "us"
    assert r.device["fw_kind"] == "compiled" and r.device["info"]["board"] == "host"
    assert "HOST timings" in r.unit_note
    check = r.output_check
    assert check is not None and check.bit_exact, check
    with np.load(golden) as z:  # the device's answer for the first golden sample, too
        assert check.compared_values == z["output_0"][0].size
    assert len(r.per_op) == r.device["n_ops"] and all(o.per_inference >= 0 for o in r.per_op)


def test_unsupported_operator_names_it_and_points_at_tflm(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolchain.cli import main
    from toolchain.compile import supported
    from toolchain.errors import EdgeDeployError

    model = _model(reference_dir, UNSUPPORTED)
    missing = supported(model)
    assert missing, "the compiler supports the LSTM model now: pick another unsupported one"
    out = tmp_path / "fw"
    with pytest.raises(EdgeDeployError) as info:
        make_firmware(target="mps2-an386", out_dir=out, model=model, runtime="compiled")
    text = f"{info.value.message} {info.value.hint or ''}"
    assert "LSTM" in text and "--runtime tflm" in text
    assert not out.exists()
    rc = main(["firmware", "--target", "mps2-an386", "--model", str(model), "--out", str(out),
               "--runtime", "compiled", "--build"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and "LSTM" in err and "--runtime tflm" in err and not out.exists()
    # without --runtime the project falls back to TFLM and says why
    res = make_firmware(target="mps2-an386", out_dir=out, model=model)
    assert res.project.fw == "tflm"
    assert "LSTM" in res.project.manifest["runtime"]["why"]
