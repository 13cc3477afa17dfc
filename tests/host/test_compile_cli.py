"""`edgedeploy compile`: files, determinism, atomic output and one clear error per bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.compile import compile_model, supported
from toolchain.errors import BudgetError, CompileError, UsageError

KWS = "mlperf_tiny/kws/kws_ref_model.tflite"
HELLO_FLOAT = "tflm_models/hello_world/hello_world_float.tflite"
LSTM = "tflm_models/micro_speech_lstm/micro_speech_lstm.tflite"


def test_cli_writes_the_contract_files(reference_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "kws"
    rc = main(["compile", str(reference_dir / KWS), "--target", "mps2-an386", "--out", str(out),
               "--name", "kws", "--json"])  # fmt: skip
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    names = sorted(p.name for p in out.iterdir())
    # a DSP target (mps2-an386): the fast conv kernel
    assert {"kws.h", "kws.c", "kws_weights.c", "edc_runtime.h", "edc_conv_fast.c"} <= set(names)
    assert "edc_binary.c" not in names  # only the kernels the model uses
    assert d["n_ops"] == 13 and d["ops"][0] == "CONV_2D"
    assert sorted(Path(s).name for s in d["sources"]) == sorted(
        n for n in names if n.endswith(".c")
    )
    h = (out / "kws.h").read_text()
    assert f"#define KWS_ARENA_BYTES {d['arena_bytes']}u" in h
    for sym in ("kws_init(void)", "kws_input(int i)", "kws_output(int i)", "kws_invoke(void)",
                "KWS_NUM_OPS 13", "kws_model_sha256[32]"):  # fmt: skip
        assert sym in h
    assert d["plan"]["lower_bound_bytes"] <= d["arena_bytes"]


def test_output_is_deterministic_and_replaced_atomically(
    reference_dir: Path, tmp_path: Path
) -> None:
    a = compile_model(reference_dir / KWS, out_dir=tmp_path / "a", name="kws")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stale.c").write_text("old")
    b = compile_model(reference_dir / KWS, out_dir=tmp_path / "b", name="kws")
    assert not (tmp_path / "b" / "stale.c").exists()
    for f in a.files:
        assert f.read_bytes() == (b.out_dir / f.name).read_bytes(), f.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_float_model_is_one_clear_error(reference_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="float32.*full-integer models") as e:
        compile_model(reference_dir / HELLO_FLOAT, out_dir=tmp_path / "o")
    assert "--runtime tflm" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_unsupported_operator_names_op_layer_and_tflm(
    reference_dir: Path, tmp_path: Path, capsys
) -> None:
    rc = main(["compile", str(reference_dir / LSTM), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == CompileError.exit_code
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in err and "operator 0" in err and "--runtime tflm" in err
    assert not (tmp_path / "o").exists()
    assert supported(reference_dir / LSTM) and not supported(reference_dir / KWS)


@pytest.mark.parametrize("name", ["9lives", "my-model", "int", "edc_x"])
def test_bad_names(reference_dir: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        compile_model(reference_dir / KWS, out_dir=tmp_path / "o", name=name)
    assert not (tmp_path / "o").exists()


def test_over_budget_is_exit_4(reference_dir: Path, tmp_path: Path, capsys) -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "targets" / "lm3s6965evb.toml").read_text()
    tiny = tmp_path / "tiny-m3.toml"
    tiny.write_text(text.replace('name = "lm3s6965evb"', 'name = "tiny-m3"')
                    .replace("ram_bytes = 65536", "ram_bytes = 20480"))  # fmt: skip
    kws = str(reference_dir / KWS)
    rc = main(["compile", kws, "--out", str(tmp_path / "o"), "--target", str(tiny)])
    assert rc == BudgetError.exit_code == 4
    # 16,000 B with the reference kernels; 16,128 B with the M3's fast kernels' im2col scratch
    assert "16,128 B arena" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["compile", kws, "--out", str(tmp_path / "o"), "--target", "lm3s6965evb"]) == 0


def test_output_under_a_file_is_one_clear_error(reference_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CompileError, match="cannot write"):
        compile_model(reference_dir / KWS, out_dir=tmp_path / "f" / "o")
    with pytest.raises(CompileError, match="cannot write"):
        compile_model(reference_dir / KWS, out_dir=tmp_path / "f")  # a file, not a folder
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(reference_dir: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(CompileError, match="cannot write"):
            compile_model(reference_dir / KWS, out_dir=ro / "o")
    finally:
        ro.chmod(0o755)


def test_every_reference_model_compiles_or_says_why(reference_dir: Path, tmp_path: Path) -> None:
    """supported() never crashes; when it says [] the model compiles, else compile raises."""
    compiled_ok = 0
    for k, path in enumerate(sorted(reference_dir.rglob("*.tflite"))):
        problems = supported(path)
        out = tmp_path / f"m{k}"
        if problems:
            assert all(isinstance(p, str) and p for p in problems)
            with pytest.raises(CompileError):
                compile_model(path, out_dir=out)
            assert not out.exists()
        else:
            cm = compile_model(path, out_dir=out)
            assert cm.plan["lower_bound_bytes"] <= cm.arena_bytes
            compiled_ok += 1
    assert compiled_ok >= 10  # MLPerf Tiny, Arm zoo, TFLM examples


def test_report_measures_tflm_arena_and_lists_layers(
    reference_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "kws"
    argv = ["compile", str(reference_dir / KWS), "--out", str(out), "--report", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    # TFLM's whole arena (tensors + interpreter structures) is larger than ours
    assert d["plan"]["tflm_arena_bytes"] > d["arena_bytes"]
    assert [r["kind"] for r in d["layers"]] == d["ops"]
    assert d["inputs"][0]["shape"] == [1, 49, 10, 1] and d["inputs"][0]["dtype"] == "int8"


def test_missing_model_file(tmp_path: Path, capsys) -> None:
    rc = main(["compile", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "o")])
    assert rc != 0 and "no such model file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
