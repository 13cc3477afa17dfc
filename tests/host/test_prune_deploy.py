"""Pruning through the converter: the int8 TFLite and the TFLM arena really shrink; budgets.

Conversions are the expensive part (seconds each): one session fixture converts the unpruned
and the pruned net, and the budget tests reuse those conversions through the converter cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.prune_nets import mixed_net
from toolchain.cli import main
from toolchain.emit.arena import recommended_arena
from toolchain.errors import BudgetError, PruneError
from toolchain.modelsrc import load_model
from toolchain.prune import Budget, PruneResult, fit, prune

SPEC = "tests/support/prune_nets.py:mixed_net"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    x = np.random.default_rng(0).uniform(-1, 1, (48, 3, 16, 16)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "calib.npz"
    np.savez(path, x=x)
    return x, path


@pytest.fixture(scope="module")
def pruned(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, Path]
) -> tuple[PruneResult, Path]:
    out = tmp_path_factory.mktemp("pruned")
    res = prune(SPEC, ratio=0.5, out_dir=out, calib=data[0], val=data[0], keep_first=False)
    return res, out


def test_int8_model_and_arena_shrink(pruned: tuple[PruneResult, Path]) -> None:
    res, out = pruned
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep == json.loads(json.dumps(res.report))
    assert (out / "model_int8.tflite").stat().st_size == rep["tflite_bytes_after"]
    assert (out / "baseline" / "model_int8.tflite").stat().st_size == rep["tflite_bytes_before"]
    # half the channels: about a third of the weights, so the int8 file and the arena shrink
    assert rep["tflite_bytes_after"] < 0.7 * rep["tflite_bytes_before"]
    assert rep["arena_bytes_after"] < 0.8 * rep["arena_bytes_before"]
    # the recommended arena is what emit would give the written model
    assert rep["arena_recommended_bytes_after"] == recommended_arena(out / "model_int8.tflite")
    assert rep["macs_after"] < 0.5 * rep["macs_before"]
    assert rep["int8"]["metric"] == "sqnr_db"
    assert rep["int8"]["before"] > 30  # quantization alone
    assert rep["int8"]["after"] < rep["int8"]["before"]  # pruning without fine-tuning costs
    # the pruned model file loads and computes what the pruned module computes
    # (through the loader `edgedeploy convert model_pruned.pt2` uses)
    loaded = load_model(str(out / rep["model_file"]))
    x = torch.randn(1, 3, 16, 16)  # exported for batch 1, like the converter
    assert loaded.input_shapes == ((1, 3, 16, 16),)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), res.model(x), atol=1e-5)


def test_budget_search_picks_a_fitting_ratio(
    tmp_path: Path, pruned: tuple[PruneResult, Path], data: tuple[np.ndarray, Path]
) -> None:
    rep = pruned[0].report
    # between the unpruned and the 50%-pruned size: some ratio below 0.5 is needed
    limit = (rep["tflite_bytes_before"] + rep["tflite_bytes_after"]) // 2
    res = fit(
        mixed_net(),
        calib=data[0],
        budget=Budget(flash_bytes=limit, ram_bytes=None),
        out_dir=tmp_path / "fit",
        val=data[0],
        keep_first=False,
        max_ratio=0.5,
        tolerance=0.3,
    )
    assert 0 < res.ratio <= 0.5
    assert res.best.deployed.tflite_bytes <= limit
    assert [c.ratio for c in res.candidates][:1] == [0.0] and not res.candidates[0].fits
    written = json.loads((tmp_path / "fit" / "prune_report.json").read_text())
    assert written["budget"]["chosen_ratio"] == res.ratio
    assert (tmp_path / "fit" / "model_int8.tflite").stat().st_size <= limit
    assert not (tmp_path / "fit" / ".candidates").exists()


def test_budget_no_candidate_fits_cli(
    tmp_path: Path, data: tuple[np.ndarray, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nofit"
    calib = str(data[1])
    args = ["prune", SPEC, "--calib", calib, "--val", calib, "--flash-bytes", "2048"]
    rc = main([*args, "--ram-bytes", "1024", "--out", str(out), "--max-ratio", "0.5"])
    assert rc == BudgetError.exit_code == 4
    err = capsys.readouterr().err
    assert "cannot fit; the smallest candidate (ratio 0.5) needs" in err
    assert "KB flash /" in err and "KB RAM" in err
    assert not out.exists()


def test_fit_refuses_an_unknown_model_format_before_searching(
    tmp_path: Path, data: tuple[np.ndarray, Path]
) -> None:
    out = tmp_path / "fmt"
    budget = Budget(flash_bytes=2048, ram_bytes=None)
    with pytest.raises(PruneError, match="unknown model format 'onnx'"):
        fit(SPEC, calib=data[0], budget=budget, out_dir=out, model_format="onnx")
    assert not out.exists()


def test_unstructured_saves_nothing_once_deployed(
    tmp_path: Path, data: tuple[np.ndarray, Path]
) -> None:
    out = tmp_path / "unstructured"
    prune(SPEC, ratio=0.5, method="unstructured", out_dir=out, calib=data[0], val=data[0])
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["nonzero_params_after"] < 0.7 * rep["nonzero_params_before"]
    assert (
        abs(rep["tflite_bytes_after"] - rep["tflite_bytes_before"])
        < 0.01 * rep["tflite_bytes_before"]
    )
    assert rep["arena_bytes_after"] == rep["arena_bytes_before"]
    assert "dense" in rep["note"]
