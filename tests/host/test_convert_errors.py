"""Host tier: bad input to ``edgedeploy convert``. Each case gives one clear message, a
non-zero exit code, and leaves the output folder as it was (here: with one file of ours)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import convert_nets as nets
from toolchain.cli import main

NETS = Path(nets.__file__)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    return d


def _untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"], "partial output left"


def _convert(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["-q", "convert", *args, "--no-cache"])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    good = rng.standard_normal((8, 2, 4, 4)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[5, 0, 1, 1] = np.nan
    inf[2, 1, 0, 0] = -np.inf
    files = {
        "good": good,
        "shape": rng.standard_normal((8, 4, 4, 2)).astype(np.float32),  # NHWC by mistake
        "dtype": np.array([["a"] * 4] * 8),
        "empty": np.zeros((0, 2, 4, 4), np.float32),
        "nan": nan,
        "inf": inf,
    }
    paths = {}
    for k, v in files.items():
        paths[k] = d / f"{k}.npy"
        np.save(paths[k], v)
    return paths


TINY = f"{NETS}:tiny_net"
SHAPE = ("--input-shape", "1,2,4,4")


@pytest.mark.parametrize(
    ("model", "extra", "code", "message"),
    [
        ("no/such/model.pt", SHAPE, 1, "model file not found: no/such/model.pt"),
        ("no/such/file.py:make", SHAPE, 1, "file not found: no/such/file.py"),
        (f"{NETS}:raising_factory", SHAPE, 1, "raised RuntimeError: checkpoint server unreachable"),
        (TINY, ("--input-shape", "1,2,5,5"), 2, r"fails on input shape\(s\) \[1, 2, 5, 5\]"),
        (TINY, ("--input-shape", "1,2,4,x"), 2, "'1,2,4,x' is not a shape"),
        (TINY, (), 2, "the input shape is unknown"),
    ],
)
def test_bad_model(
    capsys: pytest.CaptureFixture[str],
    out: Path,
    calib: dict[str, Path],
    model: str,
    extra: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    rc, err = _convert(capsys, model, "--calib", str(calib["good"]), "--out", str(out), *extra)
    assert rc == code, err
    assert re.search(message, err), err
    assert err.count("error:") == 1
    _untouched(out)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("shape", r"shape \(8, 4, 4, 2\); expected \(N, 2, 4, 4\)"),
        ("dtype", "numbers are needed"),
        ("empty", "is empty"),
        ("nan", "NaN value.*first in sample 5"),
        ("inf", "inf value.*first in sample 2"),
        ("missing", "not found"),
    ],
)
def test_bad_calibration_data(
    capsys: pytest.CaptureFixture[str], out: Path, calib: dict[str, Path], which: str, message: str
) -> None:
    path = calib.get(which, out.parent / "missing.npy")
    rc, err = _convert(capsys, TINY, *SHAPE, "--calib", str(path), "--out", str(out))
    assert rc == 1, err
    assert re.search(message, err), err
    assert "calibration data" in err
    _untouched(out)


def test_bad_options(capsys: pytest.CaptureFixture[str], out: Path, calib: dict[str, Path]) -> None:
    base = (TINY, *SHAPE, "--calib", str(calib["good"]), "--out", str(out))
    rc, err = _convert(capsys, *base, "--activations", "int16", "--input-type", "uint8")
    assert rc == 2 and "does not go with int16 activations" in err
    rc, err = _convert(capsys, *base, "--labels", str(calib["good"]))
    assert rc == 2 and "--labels belong to --val" in err
    rc, err = _convert(capsys, *base, "--mean", "0.5")
    assert rc == 2 and "image folders only" in err
    rc, err = _convert(capsys, *base, "--per-tensor", "--per-channel-dense")
    assert rc == 2 and "per-channel dense layers need per-channel weights" in err
    _untouched(out)


@pytest.mark.parametrize(
    ("net", "message"),
    [
        # no TFLite builtin at all: TFLiteConverter refuses
        ("erf_net", r"no int8 TFLite kernel for Erf at ONNX /act/Erf \(PyTorch module act\)"),
        # a float-only builtin: the converter leaves a float island, the lint refuses it
        ("sin_net", r"SIN computes in float.*at ONNX /act/Sin \(PyTorch module act\)"),
    ],
)
def test_op_without_int8_kernel_names_the_op_and_layer(
    capsys: pytest.CaptureFixture[str], out: Path, tmp_path: Path, net: str, message: str
) -> None:
    np.save(tmp_path / "c.npy", np.random.default_rng(0).standard_normal((8, 16)).astype("f4"))
    rc, err = _convert(
        capsys, f"{NETS}:{net}", "--input-shape", "1,16", "--calib", str(tmp_path / "c.npy"),
        "--out", str(out),
    )  # fmt: skip
    assert rc == 1, err
    assert re.search(message, err), err
    _untouched(out)


def test_onnx2tf_failure_shows_its_error(
    capsys: pytest.CaptureFixture[str], out: Path, tmp_path: Path
) -> None:
    ts = tmp_path / "loop.pt"
    torch.jit.save(torch.jit.script(nets.DataDependentLoop()), str(ts))
    np.save(tmp_path / "c.npy", np.ones((4, 8), np.float32))
    rc, err = _convert(
        capsys,
        str(ts),
        "--input-shape",
        "1,8",
        "--calib",
        str(tmp_path / "c.npy"),
        "--out",
        str(out),
    )
    assert rc == 1, err
    assert "onnx2tf failed" in err
    assert "last lines of its output" in err and "loop" in err.lower(), err
    _untouched(out)


def test_onnx2tf_timeout_kills_it(
    capsys: pytest.CaptureFixture[str], out: Path, calib: dict[str, Path]
) -> None:
    rc, err = _convert(
        capsys,
        TINY,
        *SHAPE,
        "--calib",
        str(calib["good"]),
        "--out",
        str(out),
        "--onnx2tf-timeout",
        "0.05",
    )
    assert rc == 1, err
    assert "onnx2tf failed: did not finish within 0.05 s" in err
    assert "--onnx2tf-timeout" in err
    _untouched(out)
