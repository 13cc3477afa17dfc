"""Host tier: `edgedeploy run` without a device — the stage cache (an unchanged re-run takes
every stage from its folder; a changed option re-runs only the stages it feeds; a tampered
artifact is rebuilt) and a stage failure in the middle (earlier artifacts kept, the report
says which stage failed and why, the failing stage's exit code).

One real conversion (the scikit-learn digits CNN) is shared by every test through the
converter's cache; pruning and benchmarking are off here (tests/emulated/test_run_demo.py
runs the whole demo on the host-TFLM device).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.errors import StageError, UsageError
from toolchain.pipeline import RunResult, run_project
from toolchain.pipeline.cache import MANIFEST, tree_digests
from toolchain.project import Project, load_project

PROJECT = """
name = "digits-host"
[model]
source = "toolchain.zoo.digits:model"
[data]
calibration = "toolchain.zoo.digits:calibration"
validation = "toolchain.zoo.digits:validation"
validation_labels = "toolchain.zoo.digits:validation_labels"
[quantization]
calibration_samples = 64
min_sqnr_db = {min_sqnr}
[target]
name = "mps2-an386"
[firmware]
runtime = "tflm"  # rendered, not built, without a library (the compiled runtime: emulated tier)
[bench]
enabled = false
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEDEPLOY_CACHE_DIR", str(root / "cache"))
    yield root
    mp.undo()


def _project(folder: Path, min_sqnr: float = 20.0) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "edgedeploy.toml").write_text(PROJECT.format(min_sqnr=min_sqnr))
    return load_project(folder / "edgedeploy.toml")


@pytest.fixture(scope="module")
def first(workdir: Path) -> RunResult:
    return run_project(_project(workdir / "ok"))


def _statuses(result: RunResult) -> dict[str, str]:
    return {s.name: s.status for s in result.stages}


def _hidden(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if p.name.startswith((".staging-", ".tmp")) or ".building-" in p.name or p.name.endswith(".tmp")]  # fmt: skip


def test_first_run_builds_each_stage(first: RunResult) -> None:
    assert first.ok
    assert _statuses(first) == {
        "prune": "skipped",
        "convert": "ok",
        "validate": "ok",
        "emit": "ok",
        "firmware": "ok",
        "bench": "skipped",
    }
    out = first.out_dir
    assert first.report_json == out / "report.json" and first.report_html == out / "report.html"
    report = json.loads(first.report_json.read_text())
    assert report["schema"] == "edgedeploy.report/1" and report["status"] == "ok"
    assert (
        report["convert"]["tflite_bytes"] == (out / "convert" / "model_int8.tflite").stat().st_size
    )
    assert report["validate"]["gates"][0]["passed"] and report["emit"]["arena"]["size"] > 0
    assert report["bench"] is None and "pruning is off" in first.stage("prune").notes[0]
    # the firmware was rendered, and the run says why it was not built
    assert (out / "firmware" / "Makefile").is_file() and (out / "firmware" / "model").is_dir()
    assert "build skipped: no TFLM library" in " ".join(first.stage("firmware").notes)
    assert report["firmware"]["build"]["skipped"].startswith("no TFLM library")
    fw_manifest = json.loads((out / "firmware" / "edgedeploy_firmware.json").read_text())
    assert fw_manifest["runtime"] == {"name": "tflm", "why": "asked for"}  # runtime = "tflm"
    # emit's golden vectors are real validation samples, from the validate stage
    assert "samples.npz" in report["emit"]["golden"]["source"]
    for name in ("convert", "validate", "emit", "firmware"):
        assert (out / name / MANIFEST).is_file()
    assert not (out / "prune").exists() and not (out / "bench").exists()
    assert _hidden(out) == []


def test_unchanged_rerun_takes_every_stage_from_the_cache(first: RunResult) -> None:
    before = {
        n: tree_digests(first.out_dir / n) for n in ("convert", "validate", "emit", "firmware")
    }
    again = run_project(first.project)
    assert {k: v for k, v in _statuses(again).items() if v != "skipped"} == dict.fromkeys(
        ("convert", "validate", "emit", "firmware"), "cached"
    )
    assert all(s.built_seconds is not None for s in again.stages if s.status == "cached")
    after = {n: tree_digests(first.out_dir / n) for n in before}
    assert after == before
    assert again.report["summary"] == first.report["summary"]


def test_a_changed_option_reruns_only_what_it_feeds(first: RunResult) -> None:
    p = first.project
    changed = dataclasses.replace(p, target=dataclasses.replace(p.target, arena_margin="512"))
    result = run_project(changed)
    assert _statuses(result)["convert"] == "cached" and _statuses(result)["validate"] == "cached"
    assert _statuses(result)["emit"] == "ok"
    assert result.report["emit"]["arena"]["margin"] == "512 B"
    # back to the original: emit runs again (one folder per stage, not a history)
    assert _statuses(run_project(p))["emit"] == "ok"


def test_a_tampered_artifact_is_rebuilt_and_force_reruns(first: RunResult) -> None:
    header = next((first.out_dir / "emit").glob("*_model_data.cc"))
    original = header.read_bytes()
    header.write_bytes(original + b"// edited\n")
    result = run_project(first.project)
    assert _statuses(result)["emit"] == "ok" and header.read_bytes() == original
    forced = run_project(first.project, force=["validate"])
    assert _statuses(forced)["validate"] == "ok" and _statuses(forced)["convert"] == "cached"
    # validate gave the same files, so what follows it stays cached
    assert _statuses(forced)["emit"] == "cached"
    stopped = run_project(first.project, stop_after="convert")
    assert _statuses(stopped)["validate"] == "not run" and not stopped.ok
    with pytest.raises(UsageError, match="no stage named 'lint'"):
        run_project(first.project, force=["lint"])


def test_stage_failure_keeps_earlier_artifacts_and_says_why(
    workdir: Path, first: RunResult, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _project(workdir / "strict", min_sqnr=99.0)
    out = bad.out_dir
    with pytest.raises(StageError) as info:
        run_project(bad)
    err = info.value
    assert err.stage == "validate" and err.exit_code == 3  # FidelityError's code
    assert "SQNR" in err.message and "99" in err.message and err.report == out / "report.json"
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["failed_stage"]["stage"] == "validate"
    assert report["failed_stage"]["type"] == "FidelityError"
    assert (
        report["failed_stage"]["hint"]
        and "layers losing the most" in report["failed_stage"]["hint"]
    )
    statuses = {s["name"]: s["status"] for s in report["stages"]}
    assert statuses == {
        "prune": "skipped",
        "convert": "ok",
        "validate": "failed",
        "emit": "not run",
        "firmware": "not run",
        "bench": "not run",
    }
    # the earlier stage's artifacts are there and intact; the failed one left nothing behind
    conv = out / "convert"
    manifest = json.loads((conv / MANIFEST).read_text())
    assert tree_digests(conv) == manifest["files"]
    assert report["convert"]["fidelity"] and not (out / "validate").exists()
    assert _hidden(out) == []
    html = (out / "report.html").read_text()
    assert "Stage “validate” failed" in html and "99" in html

    # the CLI: the stage's exit code, the error, and where the report is
    assert main(["run", str(bad.path)]) == 3
    captured = capsys.readouterr()
    assert "stage 'validate' failed" in captured.err
    assert str(out / "report.html") in captured.err
    assert "cached" in captured.out  # convert came from its folder this time


def test_cli_run_prints_the_report_and_json(
    first: RunResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-q", "run", str(first.project.path)]) == 0
    out = capsys.readouterr().out
    assert "report" in out and str(first.out_dir / "report.html") in out
    assert main(["-q", "run", str(first.project.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok" and report["project"]["name"] == "digits-host"
    assert os.path.samefile(report["out_dir"], first.out_dir)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_firmware_stage_lets_make_firmware_choose_the_runtime(first: RunResult) -> None:
    """Without [firmware] runtime, the firmware's manifest says why the runtime was chosen
    (every operator supported), not "asked for"; the compiled firmware is built, no library.
    Runs last: it leaves the compiled firmware in the shared folder."""
    p = first.project
    auto = dataclasses.replace(p, firmware=dataclasses.replace(p.firmware, runtime=None))
    result = run_project(auto)
    assert _statuses(result)["convert"] == "cached" and _statuses(result)["firmware"] == "ok"
    fw = json.loads((result.out_dir / "firmware" / "edgedeploy_firmware.json").read_text())
    assert fw["runtime"] == {
        "name": "compiled",
        "why": "the compiler supports every operator of the model",
    }
    assert result.report["firmware"]["build"]["elf"]
    assert "runtime compiled: the compiler supports" in " ".join(result.stage("firmware").notes)
