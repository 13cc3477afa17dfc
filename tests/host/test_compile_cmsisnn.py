"""`edgedeploy compile --cmsis-nn DIR` / `firmware --cmsis-nn DIR`: the checkout and option
checks (one clear error, exit 2, nothing written) and, with a real checkout in
``$EDGEDEPLOY_CMSIS_NN``, the generated calls and the library-sized scratch buffers.

CI has no CMSIS-NN checkout (nothing may download at run time): the tests that need one skip
and say so; the bit-exact run in QEMU is tests/emulated/test_compile_cmsisnn_qemu.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.compile import compile_model
from toolchain.compile.cmsisnn import REQUIRED_FUNCS, open_checkout, source_files
from toolchain.errors import UsageError

KWS = "mlperf_tiny/kws/kws_ref_model.tflite"
IC = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
ENV = "EDGEDEPLOY_CMSIS_NN"


@pytest.fixture(scope="module")
def checkout() -> Path:
    path = os.environ.get(ENV)
    if not path:
        pytest.skip(f"no CMSIS-NN checkout: set {ENV}=/path/to/CMSIS-NN (4ab83cc3) to run this")
    return Path(path)


def _fake(root: Path, revision: str | None, funcs: tuple[str, ...] = REQUIRED_FUNCS) -> Path:
    """A folder shaped like a CMSIS-NN checkout, its header saying ``revision``."""
    (root / "Include").mkdir(parents=True)
    head = f" * $Revision:    V.{revision}\n" if revision else ""
    decls = "".join(f"int {f}(void);\n" for f in funcs)
    (root / "Include" / "arm_nnfunctions.h").write_text(f"/*\n{head} */\n{decls}")
    for rel in (
        "ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
        "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
        "FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c",
        "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c",
    ):
        p = root / "Source" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("/* empty */\n")
    return root


def _compile(reference_dir: Path, tmp_path: Path, cmsis: Path, *extra: str) -> list[str]:
    return ["compile", str(reference_dir / KWS), "--out", str(tmp_path / "out"),
            "--cmsis-nn", str(cmsis), *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nope", "no such folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a CMSIS-NN checkout"),
        (lambda d: _fake(d / "old", "12.0.0"), "unsupported CMSIS-NN version"),
        (lambda d: _fake(d / "norev", None), "unknown CMSIS-NN version"),
        (lambda d: _fake(d / "lacks", "19.2.0", REQUIRED_FUNCS[1:]), "lacks arm_convolve"),
    ],
    ids=["missing", "not-cmsis-nn", "old-version", "no-version", "api-gap"],
)
def test_bad_checkout_is_one_clear_error_and_nothing_written(
    reference_dir: Path, tmp_path: Path, capsys, make, message: str
) -> None:  # type: ignore[no-untyped-def]
    bad = make(tmp_path)
    rc = main(_compile(reference_dir, tmp_path, bad, "--target", "mps2-an386"))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "--cmsis-nn" in err and "hint" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match=message):
        open_checkout(bad)


def test_supported_revision_is_accepted_by_the_version_check(tmp_path: Path) -> None:
    c = open_checkout(_fake(tmp_path / "ok", "19.1.0"))
    assert c.revision == "19.1.0" and c.describe is None  # not a git checkout


def test_cmsis_nn_needs_a_cortex_m_target(reference_dir: Path, tmp_path: Path, capsys) -> None:
    ok = _fake(tmp_path / "ok", "19.1.0")
    assert main(_compile(reference_dir, tmp_path, ok)) == 2
    assert "needs a Cortex-M --target" in capsys.readouterr().err
    assert main(_compile(reference_dir, tmp_path, ok, "--target", "linux-x86_64")) == 2
    assert "for Cortex-M targets" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_firmware_cmsis_nn_refuses_the_tflm_runtime(
    reference_dir: Path, tmp_path: Path, capsys
) -> None:
    ok = _fake(tmp_path / "ok", "19.1.0")
    argv = ["firmware", "--target", "mps2-an386", "--model", str(reference_dir / KWS),
            "--out", str(tmp_path / "fw"), "--runtime", "tflm", "--cmsis-nn", str(ok)]  # fmt: skip
    assert main(argv) == 2
    assert "compiled runtime" in capsys.readouterr().err
    assert not (tmp_path / "fw").exists()


# --- with a real checkout ----------------------------------------------------------------------


def test_kws_calls_cmsis_nn_with_library_sized_scratch(
    reference_dir: Path, tmp_path: Path, checkout: Path
) -> None:
    cm = compile_model(reference_dir / KWS, out_dir=tmp_path / "kws", name="kws",
                       target="mps2-an386", cmsis_nn=checkout)  # fmt: skip
    assert cm.cmsis_nn is not None and cm.cmsis_nn["revision"].startswith("19.")
    kernels = {r["index"]: r["kernel"] for r in cm.layers}
    assert [kernels[i] for i in (0, 1, 2, 9, 11, 12)] == [
        "edc_cmsis_conv_s8", "edc_cmsis_dwconv_s8", "edc_cmsis_conv_s8",
        "edc_cmsis_avgpool_s8", "edc_cmsis_fc_s8", "edc_cmsis_softmax_s8",
    ]  # fmt: skip
    assert cm.kernels == ("edc_cmsisnn",)  # no kernel of ours left in KWS
    scratch = {r["index"]: r["scratch_bytes"] for r in cm.layers}
    # CMSIS-NN's documented DSP sizes: im2col of 2 columns of int16, the row length rounded up
    # to 4 (10x4x1 -> 2*40*2); avgpool: an int32 per channel; 1x1 conv and FC: none with GCC
    assert scratch[0] == 2 * 40 * 2
    assert scratch[9] == 64 * 4
    assert scratch[2] == 0 and scratch[11] == 0
    src = (tmp_path / "kws" / "kws.c").read_text()
    assert "if (edc_cmsis_conv_s8(&kws_op0" in src and "!= 0) return -1;" in src
    assert f"edc_cmsis_conv_buffer_size(&kws_op0) > {scratch[0]}) return -1;" in src
    # the planner gave op 0's scratch a range of its own inside the arena
    row0 = cm.layers[0]
    assert row0["scratch_offset"] is not None
    assert row0["scratch_offset"] + scratch[0] <= cm.arena_bytes
    assert not list((tmp_path / "kws").glob("arm_*"))  # nothing of CMSIS-NN is copied


def test_ic_residual_adds_go_to_cmsis_nn_in_place(
    reference_dir: Path, tmp_path: Path, checkout: Path
) -> None:
    cm = compile_model(reference_dir / IC, out_dir=tmp_path / "ic", target="mps2-an386",
                       cmsis_nn=checkout)  # fmt: skip
    adds = [r for r in cm.layers if r["kind"] == "ADD"]
    assert adds and all(r["kernel"] == "edc_cmsis_add_s8" for r in adds)
    assert any(r["in_place"] for r in adds)


def test_source_files_are_the_int8_sources(checkout: Path) -> None:
    files = source_files(open_checkout(checkout))
    names = {p.name for p in files}
    assert {"arm_convolve_wrapper_s8.c", "arm_softmax_s8.c", "arm_avgpool_s8.c"} <= names
    assert not any(n.endswith(("_f16.c", "_f32.c")) for n in names)


@pytest.mark.parametrize(
    ("ops", "message"),
    [("CONV_2D,GATHER", "unknown operator GATHER"), (",", "empty")],
)
def test_bad_cmsis_nn_ops_is_a_usage_error(
    reference_dir: Path, tmp_path: Path, capsys, ops: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    ok = _fake(tmp_path / "ok", "19.1.0")
    argv = _compile(reference_dir, tmp_path, ok, "--target", "mps2-an386", "--cmsis-nn-ops", ops)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cmsis_nn_ops_needs_cmsis_nn(reference_dir: Path, tmp_path: Path, capsys) -> None:
    argv = ["compile", str(reference_dir / KWS), "--out", str(tmp_path / "out"),
            "--target", "mps2-an386", "--cmsis-nn-ops", "auto"]  # fmt: skip
    assert main(argv) == 2
    assert "--cmsis-nn-ops without --cmsis-nn" in capsys.readouterr().err


def test_auto_keeps_our_fast_kernels_and_gives_cmsis_nn_pool_and_add(
    reference_dir: Path, tmp_path: Path, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the static rule (no measuring; the per-layer choice: tests/host/test_compile_perlayer.py)
    monkeypatch.setenv("EDGEDEPLOY_CMSIS_NN_MEASURE", "0")
    monkeypatch.setenv("EDGEDEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    cm = compile_model(reference_dir / IC, out_dir=tmp_path / "ic", target="mps2-an386",
                       cmsis_nn=checkout, cmsis_nn_ops="auto")  # fmt: skip
    by_kind: dict[str, set[str]] = {}
    for r in cm.layers:
        by_kind.setdefault(r["kind"], set()).add(r["kernel"])
    assert by_kind["CONV_2D"] == {"edc_conv_fast_s8"}
    assert by_kind["ADD"] == {"edc_cmsis_add_s8"}
    assert by_kind["AVERAGE_POOL_2D"] == {"edc_cmsis_avgpool_s8"}
    assert by_kind["SOFTMAX"] == {"edc_softmax_s8"}
    assert cm.cmsis_nn is not None and cm.cmsis_nn["policy"] == "auto"
    assert cm.cmsis_nn["choice"]["how"] == "static"
