"""Host tier: ``edgedeploy emit`` end to end — files, report, determinism, a firmware-style
program cross-compiled for a Cortex-M4, and every kind of bad input failing cleanly (clear
message, non-zero exit, no files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.emit_cxx import compile_cxx
from toolchain.cli import main
from toolchain.emit import emit
from toolchain.targets import load_target

HELLO = "tflm_models/hello_world/hello_world_int8.tflite"
SPEECH = "tflm_models/micro_speech/micro_speech_quantized.tflite"


@pytest.fixture(scope="module")
def speech_out(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emit") / "out"
    rc = main(
        ["emit", str(reference_dir / SPEECH), "--out", str(out), "--target", "mps2-an386",
         "--namespace", "nn", "--section", ".rodata.model"]
    )  # fmt: skip
    assert rc == 0
    return out


def test_cli_writes_every_file(speech_out: Path) -> None:
    names = sorted(p.name for p in speech_out.iterdir())
    assert names == sorted(
        [
            "emit_report.json",
            "golden.npz",
            "micro_speech_quantized_golden.cc",
            "micro_speech_quantized_golden.h",
            "micro_speech_quantized_model_data.cc",
            "micro_speech_quantized_model_data.h",
            "micro_speech_quantized_op_resolver.h",
            "micro_speech_quantized_tensors.json",  # lean by default for an MCU target
        ]
    )
    report = json.loads((speech_out / "emit_report.json").read_text())
    assert report["arena"]["size"] >= report["arena"]["minimum"]
    assert report["memory"]["target"] == "mps2-an386" and report["memory"]["flash"]["fits"]
    assert [c["status"] for c in report["litert_check"]][0] == "exact"
    assert report["golden"]["count"] == 3 and "random" in report["golden"]["source"]
    assert report["symbols"]["model_array"] == "nn::g_micro_speech_quantized_model_data"
    # every file the symbols name was written
    sym = report["symbols"]
    for key in ("model_header", "model_source", "resolver_header", "golden_header",
                "golden_source", "golden_npz", "tensor_names"):  # fmt: skip
        assert sym[key] in names, key
    h = (speech_out / "micro_speech_quantized_model_data.h").read_text()
    assert f"kMicroSpeechQuantizedTensorArenaSize = {report['arena']['size']};" in h


FIRMWARE_LIKE = r"""
#include <cstdint>
#include "micro_speech_quantized_model_data.h"
#include "micro_speech_quantized_golden.h"
alignas(16) static uint8_t tensor_arena[nn::kMicroSpeechQuantizedTensorArenaSize];
extern "C" int check(void) {
  int sum = nn::g_micro_speech_quantized_golden_output0[0][0];
  return sum + tensor_arena[0] + nn::g_micro_speech_quantized_model_data[4]
         + static_cast<int>(nn::g_micro_speech_quantized_model_data_size);
}
"""


def test_cross_compiles_for_the_target(speech_out: Path, tmp_path: Path) -> None:
    flags = load_target("mps2-an386").cpu.gcc_flags()
    (tmp_path / "use.cc").write_text(FIRMWARE_LIKE)
    for src in (
        "use.cc",
        "micro_speech_quantized_model_data.cc",
        "micro_speech_quantized_golden.cc",
    ):
        path = tmp_path / src if src == "use.cc" else speech_out / src
        compile_cxx(
            "arm-none-eabi-g++",
            tmp_path / f"{src}.o",
            [path],
            "-c",
            "-Os",
            *flags,
            f"-I{speech_out}",
        )


def test_output_is_deterministic(reference_dir: Path, tmp_path: Path) -> None:
    a = emit(reference_dir / HELLO, out_dir=tmp_path / "a", target="lm3s6965evb")
    b = emit(reference_dir / HELLO, out_dir=tmp_path / "b", target="lm3s6965evb")
    for fa, fb in zip(a.files, b.files, strict=True):
        assert fa.name == fb.name and fa.read_bytes() == fb.read_bytes(), fa.name


def test_golden_from_user_data(reference_dir: Path, tmp_path: Path) -> None:
    data = np.random.default_rng(5).normal(size=(4, 1)).astype(np.float32)  # hello_world: x
    np.save(tmp_path / "x.npy", data)
    r = emit(
        reference_dir / HELLO,
        out_dir=tmp_path / "o",
        golden_data=tmp_path / "x.npy",
        golden_count=2,
    )
    assert r.golden is not None and r.golden.count == 2 and "from x.npy" in r.golden.source
    with np.load(tmp_path / "o" / "golden.npz") as z:
        assert z["input_0"].shape == (2, 1, 1) and z["output_0"].dtype == np.int8
    assert "from x.npy" in (tmp_path / "o" / "hello_world_int8_golden.h").read_text()


def test_no_golden(reference_dir: Path, tmp_path: Path) -> None:
    r = emit(reference_dir / HELLO, out_dir=tmp_path, name="sine", golden_count=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "emit_report.json",
        "sine_model_data.cc",
        "sine_model_data.h",
        "sine_op_resolver.h",
        "sine_tensors.json",
    ]
    assert r.litert == () and r.symbols.golden_npz is None
    assert r.symbols.golden_header is None and r.symbols.golden_source is None


# --- bad input: clear message, non-zero exit, nothing written ------------------------------


def _fails(
    argv: list[str], out: Path, capsys: pytest.CaptureFixture[str], code: int, text: str
) -> None:
    rc = main(["emit", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == code, err
    assert text in err
    assert not out.exists() or not any(out.iterdir()), "a failed emit left files behind"


def _wrong_identifier(data: bytes) -> bytes:
    return data[:4] + b"XXXX" + data[8:]


@pytest.mark.parametrize(
    ("corrupt", "text"),
    [
        (lambda d: b"this is not a model at all", "not a TFLite flatbuffer"),
        (lambda d: d[:5000], "truncated"),
        (_wrong_identifier, "file identifier"),
        (lambda d: d[:6], "too short"),
    ],
)
def test_bad_model_files(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt: Any, text: str
) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(corrupt((reference_dir / SPEECH).read_bytes()))
    _fails([str(bad)], tmp_path / "o", capsys, 1, text)


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails([str(tmp_path / "nope.tflite")], tmp_path / "o", capsys, 1, "no such model file")


@pytest.mark.parametrize(
    ("model", "extra", "code", "text"),
    [
        ("tflm_models/person_detection/person_detect_vela.tflite", [], 1, "ethos-u"),
        (HELLO, ["--name", "9lives"], 2, "not a valid C identifier"),
        (HELLO, ["--namespace", "a::class"], 2, "keyword"),
        (HELLO, ["--target", "nosuchboard"], 1, "unknown target"),
        (HELLO, ["--arena-margin", "lots"], 2, "arena margin"),
        (HELLO, ["--golden-count", "-1"], 2, "golden count"),
        (
            "tflm_models/person_detection/person_detect.tflite",
            ["--target", "lm3s6965evb", "--golden-count", "0"],
            4,
            "does not fit lm3s6965evb",
        ),
    ],
)
def test_bad_options_and_models(
    reference_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    extra: list[str],
    code: int,
    text: str,
) -> None:
    _fails([str(reference_dir / model), *extra], tmp_path / "o", capsys, code, text)


def test_golden_data_that_does_not_fit(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4), np.float32))
    _fails(
        [str(reference_dir / HELLO), "--golden", str(tmp_path / "bad.npy")],
        tmp_path / "o",
        capsys,
        1,
        "shape",
    )


def test_existing_files_survive_a_failure(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["emit", str(reference_dir / HELLO), "--out", str(out), "--section", "bad section"])
    assert rc == 2 and "section" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_error_text_keeps_brackets(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = tmp_path / "board.toml"
    board.write_text('kind = "mcu"\n[cpu]\ncore = "cortex-m4"\nfpu = "fpv4"\nclock_hz = 1\n')
    _fails(
        [str(reference_dir / HELLO), "--target", str(board)],
        tmp_path / "o",
        capsys,
        1,
        "[cpu].fpu: 'fpv4'",
    )


def test_out_is_a_file(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["emit", str(reference_dir / HELLO), "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err and f.read_text() == "x"
