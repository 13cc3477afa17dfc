"""Emulated tier: the demo project (examples/digits) through `edgedeploy run`, end to end, as a
user runs it — a subprocess, a fresh converter cache, no TFLM library: the model compiled to
plain C, built into a Cortex-M image for mps2-an386 and measured in QEMU — then: an unchanged re-run comes from the stage cache; report.html in a real headless browser
(Debian's chromium: the rendered DOM and a screenshot); Ctrl-C in the middle of a stage
stops cleanly, with no half-written artifact and no process left behind.

One run is shared by every test (session fixture); about 1–3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from toolchain.pipeline.cache import MANIFEST, tree_digests

ROOT = Path(__file__).resolve().parents[2]
EDGEDEPLOY = [sys.executable, "-m", "toolchain"]
#: what `edgedeploy run` needs of the source tree (see the ``source`` fixture)
SOURCE_PARTS = ("toolchain", "targets", "firmware_templates", "examples")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
STAGES = ("prune", "convert", "validate", "emit", "firmware", "bench")


@dataclass(frozen=True)
class Run:
    src: Path
    out: Path
    env: dict[str, str]
    proc: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "report.json").read_text())
        return data


def _command(src: Path, out: Path, *extra: str) -> list[str]:
    return [*EDGEDEPLOY, "run", str(src / "examples/digits/edgedeploy.toml"), "--out", str(out), *extra]  # fmt: skip


def _run(src: Path, out: Path, env: dict[str, str], *extra: str, timeout: float = 900) -> Run:
    t0 = time.monotonic()
    proc = subprocess.run(
        _command(src, out, *extra),
        capture_output=True,
        text=True,
        env=env,
        cwd=src,
        timeout=timeout,
    )
    return Run(src, out, env, proc, time.monotonic() - t0)


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the source tree that every run here uses: the stage cache keys on
    edgedeploy's own code, so a run and its re-run must see the same code even while the
    working tree changes under the test (several people commit to it)."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "out", ".edgedeploy_cache")
    for part in SOURCE_PARTS:
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    return src


@pytest.fixture(scope="session")
def demo(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "PYTHONPATH": str(source),
        "EDGEDEPLOY_CACHE_DIR": str(root / "cache"),
        "COLUMNS": "200",
    }
    env.pop("EDGEDEPLOY_TFLM_LIB", None)  # the demo is the no-library path
    run = _run(source, root / "out", env)
    assert run.proc.returncode == 0, run.proc.stdout[-3000:] + run.proc.stderr[-3000:]
    return run


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["stages"]}


def _leftovers(out: Path) -> list[str]:
    bad = (".building-", ".old-", ".staging-")
    return [str(p) for p in out.rglob("*") if any(b in p.name for b in bad) or p.suffix == ".tmp"]


def test_demo_end_to_end_compiled_in_qemu(demo: Run) -> None:
    r = demo.report
    assert r["status"] == "ok" and _statuses(r) == dict.fromkeys(STAGES, "ok")
    assert f"report: {demo.out / 'report.html'}" in " ".join(demo.proc.stdout.split())
    for stage in STAGES:  # the progress lines on stderr, one per stage
        assert f"] {stage}" in demo.proc.stderr
    # pruning really shrank the deployed model, and accuracy held
    p = r["prune"]
    assert p["tflite_bytes_after"] < 0.6 * p["tflite_bytes_before"]
    assert p["arena_bytes_after"] < p["arena_bytes_before"]
    assert r["convert"]["tflite_bytes"] == p["tflite_bytes_after"]
    acc = r["convert"]["accuracy"]
    assert acc["int8"] >= 95.0 and acc["drop"] <= 2.0
    assert all(g["passed"] for g in r["validate"]["gates"])
    assert r["validate"]["tflm"]["samples"] == 360
    # the firmware for the QEMU Cortex-M4 board: the compiled runtime, built with no library
    fw = r["firmware"]
    assert fw["target"] == "mps2-an386" and fw["fw"] == "compiled" and fw["runtime"] == "compiled"
    assert fw["tflm_library"] is None and fw["compiled"]["arena_bytes"] > 0
    elf = Path(fw["build"]["elf"])
    assert elf.is_file() and elf.is_relative_to(demo.out / "firmware")
    assert "MicroInterpreter" not in elf.with_suffix(".map").read_text(errors="replace")
    image = fw["build"]["memory"]
    assert 0 < image["flash_used_bytes"] <= image["flash_budget_bytes"]
    # measured in QEMU: instructions, the same every run, outputs bit-identical to TFLM's
    b = r["bench"]
    assert b["runner"] == "qemu" and b["unit"] == "instructions" and len(b["samples"]) == 20
    assert len(set(b["samples"])) == 1 and b["summary"]["median"] > 0
    assert b["output_check"]["bit_exact"]
    assert b["memory"]["flash_used_bytes"] == image["flash_used_bytes"]
    assert 0 < b["memory"]["stack_peak_bytes"] < b["memory"]["stack_reserved_bytes"]
    ops = [o["name"] for o in b["per_op"]]
    assert sorted(ops) == sorted(k for k, n in r["convert"]["ops"].items() for _ in range(n))
    s = r["summary"]
    assert s["latency_median"] == b["summary"]["median"] and s["firmware_built"]
    assert s["firmware_runtime"] == "compiled"
    assert s["ram_measured_bytes"] == b["memory"]["ram_measured_bytes"]
    assert r["environment"]["device"]["fw_kind"] == "compiled"
    assert r["target"]["name"] == "mps2-an386" and r["bench_target"] is None  # the same board
    assert f"image {image['flash_used_bytes']:,} B flash" in " ".join(demo.proc.stdout.split())
    print(f"digits on mps2-an386 (QEMU, compiled): median {b['summary']['median']:,.0f} "
          f"instructions, image {image['flash_used_bytes']:,} B flash, RAM used "
          f"{s['ram_measured_bytes']:,} B")  # fmt: skip
    assert _leftovers(demo.out) == []


def test_unchanged_rerun_is_cached(demo: Run) -> None:
    again = _run(demo.src, demo.out, demo.env, "--json")
    assert again.proc.returncode == 0, again.proc.stderr[-3000:]
    report = json.loads(again.proc.stdout)
    assert _statuses(report) == dict.fromkeys(STAGES, "cached")
    assert report["summary"] == demo.report["summary"]
    print(f"demo: first run {demo.seconds:.0f} s, cached re-run {again.seconds:.1f} s")


def test_tflm_firmware_built_and_benchmarked_in_qemu(
    tflm_library: tuple[Path, Path], demo: Run, tmp_path: Path
) -> None:
    """The same project with a TFLM library (from $EDGEDEPLOY_TFLM_LIB / _INCLUDE): the
    firmware stage builds the TFLM image instead, the bench stage runs it in QEMU; the stages
    before come from the demo's cache."""
    lib, include = tflm_library
    example = demo.src / "examples/digits"
    text = (example / "edgedeploy.toml").read_text()
    text = text.replace('"digits_model.py:', f'"{example}/digits_model.py:')
    text = re.sub(r"(?m)^runs = \d+", "runs = 5", text)
    project = tmp_path / "edgedeploy.toml"
    project.write_text(text)
    out = tmp_path / "out"
    shutil.copytree(demo.out, out)
    env = {**demo.env, "EDGEDEPLOY_TFLM_LIB": str(lib), "EDGEDEPLOY_TFLM_INCLUDE": str(include)}
    proc = subprocess.run(
        [*EDGEDEPLOY, "run", str(project), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=demo.src, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    expected = {**dict.fromkeys(STAGES[:4], "cached"), "firmware": "ok", "bench": "ok"}
    assert _statuses(r) == expected
    assert r["firmware"]["fw"] == "tflm"
    image = r["firmware"]["build"]["memory"]
    elf = Path(r["firmware"]["build"]["elf"])
    assert elf.is_file() and elf.is_relative_to(out / "firmware")
    assert 0 < image["flash_used_bytes"] <= image["flash_budget_bytes"]
    assert r["firmware"]["tflm_library"]["ok"] and r["firmware"]["tflm_library"]["path"] == str(lib)
    b = r["bench"]
    assert b["runner"] == "qemu" and b["unit"] == "instructions" and len(b["samples"]) == 5
    assert (
        b["output_check"]["bit_exact"]
        and b["memory"]["flash_used_bytes"] == image["flash_used_bytes"]
    )
    assert len(set(b["samples"])) == 1  # -icount: the same instruction count every run
    ops = [o["name"] for o in b["per_op"]]
    assert sorted(ops) == sorted(k for k, n in r["convert"]["ops"].items() for _ in range(n))
    total = sum(o["per_inference"] for o in b["per_op"])
    assert 0.5 * b["summary"]["median"] < total <= 1.01 * b["summary"]["median"]
    s = r["summary"]
    assert s["firmware_built"] and s["image_flash_bytes"] == image["flash_used_bytes"]
    assert r["environment"]["device"]["info"]["target"] == "mps2-an386"
    html = (out / "report.html").read_text()
    assert "Flash, linked image" in html and f"{image['flash_used_bytes']:,} B flash" in html
    assert "Not measured" not in html and "not built" not in html
    print(f"digits on mps2-an386 (QEMU, TFLM): median {b['summary']['median']:,.0f} instructions, "
          f"image {image['flash_used_bytes']:,} B flash / {image['ram_used_bytes']:,} B RAM")  # fmt: skip
    assert _leftovers(out) == []


def _chromium(*args: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/install-system-deps.sh installs it)")
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(tmp)},
    )


def test_report_in_headless_chromium(demo: Run, tmp_path: Path) -> None:
    html = demo.out / "report.html"
    dom = _chromium("--dump-dom", html.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom.stdout))
    r = demo.report
    s = r["summary"]
    for expected in (
        "digits",
        "all stages ok",
        "Size and memory against the budget",
        "Float vs int8",
        "Pruning",
        "Latency",
        "Time per operator on the device",
        "Environment",
        f"{s['tflite_bytes'] / 1024:.1f} KiB",
        f"{s['accuracy_int8']:.2f}%",
        f"{r['prune']['params_before']:,}",
        "bit-identical",
        "QEMU does not model time",  # instructions, not time
        "Flash, linked image",
        "RAM really used on the device",
        "no TFLM library in the image",
        r["environment"]["packages"]["torch"],
    ):
        assert expected in text, expected
    assert dom.stdout.count("data:image/png;base64,") >= 5

    shot = tmp_path / "report.png"
    proc = _chromium("--window-size=1280,2400", f"--screenshot={shot}", html.as_uri(), tmp=tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import numpy as np
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    pixels = rgb[::4, ::4].reshape(-1, 3)
    white = float(np.mean(pixels.min(axis=1) >= 250))
    assert 0.05 < white < 0.9, white  # cards on a grey page: neither blank nor a solid block
    assert len(np.unique(pixels, axis=0)) > 200  # text, plots, colours
    band = rgb[8]  # the header band, above its text: a dark navy-to-blue gradient
    assert band[:, 0].max() < 60 and band.mean() < 90, band[::160]

    def near(colour: tuple[int, int, int], tol: int = 30) -> bool:
        return bool(np.any(np.all(np.abs(pixels - np.array(colour)) <= tol, axis=1)))

    assert near((0x16, 0xA3, 0x4A))  # green: stages ok, "fits"
    assert near((0x25, 0x63, 0xEB))  # blue: cards and plots
    assert near((0x0D, 0x94, 0x88))  # teal: plots


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _default_sigint() -> None:
    """Ctrl-C as in a terminal: a test run started as a background job without job control
    (``make test &``) has SIGINT ignored, which its children would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly(demo: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(demo.out, out)
    before = {s: tree_digests(out / s) for s in STAGES}
    # a cache of its own: with the demo's, the forced prune takes its pruned model from the
    # cache, every later stage is cached too, and the run is over in a few seconds
    env = {**demo.env, "EDGEDEPLOY_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        _command(demo.src, out, "--force", "prune"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=demo.src,
        start_new_session=True,  # its own process group, as a shell job has
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stderr is not None
        seen = ""
        while "[1/6] prune" not in seen:
            line = proc.stderr.readline()
            assert line, "edgedeploy run exited before the prune stage: " + seen
            seen += line
        time.sleep(5.0)  # well inside the stage: loading, pruning, fine-tuning or converting
        assert proc.poll() is None, "the prune stage finished too early to interrupt"
        children = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "report (of the interrupted run)" in stderr
    time.sleep(1.0)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert _leftovers(out) == []
    # nothing half-written: every stage folder is the one the earlier run finished
    assert {s: tree_digests(out / s) for s in STAGES} == before
    for s in STAGES:
        manifest = json.loads((out / s / MANIFEST).read_text())
        assert manifest["files"] == before[s]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["failed_stage"]["stage"] == "prune"
    assert _statuses(report)["convert"] == "not run"
    assert "interrupted" in (out / "report.html").read_text()
    # and the next run picks up where it was: everything from the cache
    again = _run(demo.src, out, demo.env, "--json")
    assert again.proc.returncode == 0, again.proc.stderr[-2000:]
    assert _statuses(json.loads(again.proc.stdout)) == dict.fromkeys(STAGES, "cached")
