"""Host tier: report.html from report.json content — every section with the numbers a person
looks for, plots embedded as PNG data URIs, nothing fetched from the network, user text
escaped; a failed run shows which stage failed and why; sections whose stage did not run say
so. (The page in a real browser: tests/emulated/test_run_demo.py.)"""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from toolchain.bench.result import BenchResult, OpTiming, OutputCheck
from toolchain.report import REPORT_SCHEMA, render_html, summary, write_reports


def _report() -> dict[str, Any]:
    samples = [178.0 + (i % 7) for i in range(60)] + [905.0]
    bench = BenchResult(
        runner="qemu",
        target="mps2-an386",
        model="model_int8.tflite",
        model_sha256="ab" * 32,
        unit="instructions",
        samples=samples,
        warmup=2,
        unit_note="guest instructions counted by QEMU -icount",
        per_op=[
            OpTiming("CONV_2D", "instructions", 120.0, index=0, share=0.6),
            OpTiming("FULLY_CONNECTED", "instructions", 60.0, index=2, share=0.3),
            OpTiming("SOFTMAX", "instructions", 20.0, index=3, share=0.1),
        ],
        memory={"arena_bytes": 4880, "arena_used_bytes": 4688},
        output_check=OutputCheck("host tflite-micro interpreter", 10, 0, 0.0, True),
        device={"fw_kind": "tflm", "clock_hz": 25_000_000, "info": {"board": "mps2-cmsdk"}},
        environment={"qemu": "QEMU emulator version 7.2"},
    ).to_dict()
    layers = [
        {"index": 0, "module": "features.0", "op": "CONV_2D", "sqnr_db": 42.2, "drop_db": 14.4},
        {"index": 1, "module": "features.3", "op": "CONV_2D", "sqnr_db": 38.3, "drop_db": 3.9},
        {"index": 2, "module": "classifier.1", "op": "FULLY_CONNECTED", "sqnr_db": 42.3, "drop_db": -4.0},
    ]  # fmt: skip
    r: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "edgedeploy": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00",
        "status": "ok",
        "failed_stage": None,
        "seconds": 42.0,
        "out_dir": "/tmp/out",
        "project": {
            "name": "digits <demo>",
            "model": {"source": "digits_model.py:model"},
            "data": {"validation": "digits_model.py:validation"},
        },  # fmt: skip
        "stages": [
            {
                "name": n,
                "title": n,
                "status": s,
                "seconds": 1.0,
                "built_seconds": 2.0,
                "folder": f"/tmp/out/{n}",
                "key": "k",
                "notes": [],
                "error": None,
            }
            for n, s in (
                ("prune", "ok"),
                ("convert", "ok"),
                ("validate", "cached"),
                ("emit", "ok"),
                ("firmware", "ok"),
                ("bench", "ok"),
            )
        ],  # fmt: skip
        "target": {
            "name": "mps2-an386",
            "kind": "mcu",
            "description": "Cortex-M4F under QEMU",
            "core": "cortex-m4",
            "flash_bytes": 4194304,
            "ram_bytes": 4194304,
        },  # fmt: skip
        "bench_target": None,
        "prune": {
            "method": "structured",
            "ratio": 0.5,
            "importance": "l1",
            "params_before": 38378,
            "params_after": 11098,
            "macs_before": 337536,
            "macs_after": 165184,
            "tflite_bytes_before": 44848,
            "tflite_bytes_after": 16304,
            "arena_bytes_before": 6096,
            "arena_bytes_after": 4688,
            "metric": {"name": "accuracy", "before": 0.9944, "after": 0.9889},
            "int8": {"metric": "accuracy", "before": 0.9917, "after": 0.9861},
            "groups": [
                {
                    "root": "features.3",
                    "members": ["features.3"],
                    "channels_before": 32,
                    "channels_after": 16,
                }
            ],
            "finetune": {"epochs": 3},
        },  # fmt: skip
        "convert": {
            "tflite_bytes": 16304,
            "tflite_sha256": "cd" * 32,
            "model": {"source": "<DigitsCNN object>"},
            "ops": {"CONV_2D": 2, "FULLY_CONNECTED": 2, "MAX_POOL_2D": 1},
            "lint": {"TRANSPOSE": 0, "QUANTIZE": 0, "problems": []},
            "transposes_folded": 1,
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 8, 8, 1],
                    "dtype": "int8",
                    "scale": 0.0039,
                    "zero_point": -128,
                    "layout": "NHWC",
                    "torch_layout": "NCHW",
                }
            ],
            "outputs": [
                {
                    "name": "output",
                    "shape": [1, 10],
                    "dtype": "int8",
                    "scale": 0.13,
                    "zero_point": -1,
                    "layout": "NC",
                    "torch_layout": "NC",
                }
            ],
            "options": {
                "activations": "int8",
                "per_channel": True,
                "input_dtype": "int8",
                "output_dtype": "int8",
            },
            "data": {"validation": {"source": "array (360, 1, 8, 8) float32", "samples": 360}},
            "fidelity": {
                "output": {
                    "sqnr_db": 35.57,
                    "cosine": 0.99993,
                    "max_abs_err": 2.7,
                    "top1_agreement": 0.9972,
                    "samples": 360,
                }
            },
            "accuracy": {"float": 98.889, "int8": 98.611, "drop": 0.278, "samples": 360},
            "layers": layers,
            "worst_layers": layers[:2],
        },  # fmt: skip
        "validate": {
            "gates": [
                {
                    "name": "SQNR of output 'output' (dB)",
                    "value": 35.57,
                    "limit": "≥ 25",
                    "passed": True,
                }
            ],
            "tflm": {"samples": 360, "accuracy": 98.611},
            "litert_check": [
                {
                    "kernels": "reference",
                    "status": "exact",
                    "compared": 3600,
                    "mismatches": 0,
                    "max_abs_diff": 0.0,
                    "reason": "",
                }
            ],
        },  # fmt: skip
        "emit": {
            "arena": {
                "size": 4880,
                "minimum": 4688,
                "margin": "4%",
                "recorded": 4688,
                "measured_on": "host",
            },
            "memory": {
                "estimated": True,
                "runtime_family": "thumb2-cmsis-nn",
                "flash": {
                    "budget": 4194304,
                    "total": 80910,
                    "headroom": 4113394,
                    "fits": True,
                    "items": [
                        {"name": "model", "bytes": 16304, "note": "flatbuffer array"},
                        {"name": "runtime", "bytes": 64384, "note": "estimate"},
                    ],
                },
                "ram": {
                    "budget": 4194304,
                    "total": 31696,
                    "headroom": 4162608,
                    "fits": True,
                    "items": [
                        {"name": "arena", "bytes": 4880, "note": "tensor arena"},
                        {"name": "stack", "bytes": 16384, "note": "target profile"},
                    ],
                },
            },
        },  # fmt: skip
        "firmware": {
            "project": "/tmp/out/firmware",
            "target": "mps2-an386",
            "fw": "tflm",
            "files": ["Makefile"],
            "build": {"skipped": "no TFLM library given"},
        },  # fmt: skip
        "bench": bench,
        "environment": {
            "edgedeploy": "0.1.0",
            "python": "3.11.7",
            "platform": "Linux",
            "cpu": "EPYC",
            "cpu_count": 2,
            "packages": {"torch": "2.13.0"},
            "tools": {"qemu-system-arm": None},
        },  # fmt: skip
    }
    r["summary"] = summary(r)
    return r


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        for k in ("src", "href", "srcset", "poster", "data"):
            if a.get(k):
                self.urls.append(str(a[k]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _text(page: _Page) -> str:
    return re.sub(r"\s+", " ", " ".join(page.text))


def test_summary_picks_the_headline_numbers() -> None:
    s = _report()["summary"]
    assert s["tflite_bytes"] == 16304 and s["tflite_bytes_unpruned"] == 44848
    assert s["arena_bytes"] == 4880 and s["fits"] is True
    assert s["accuracy_int8"] == 98.611 and s["min_sqnr_db"] == 35.57
    assert s["latency_unit"] == "instructions" and s["runner"] == "qemu"
    assert s["latency_median"] == pytest.approx(181.0)
    assert s["model"] == "digits_model.py:model"  # the project's name, not "<DigitsCNN object>"
    assert s["image_flash_bytes"] is None and s["firmware_built"] is False
    empty = summary({"project": {"model": {"source": "m.py:f"}}})
    assert empty["model"] == "m.py:f" and empty["tflite_bytes"] is None and empty["fits"] is None


@pytest.fixture(scope="module")
def html() -> str:
    return render_html(_report())


def test_html_has_every_section_with_its_numbers(html: str) -> None:
    page = _parse(html)
    for section in ("summary", "pipeline", "memory", "fidelity", "pruning", "latency", "per-op", "model", "environment", "stages"):  # fmt: skip
        assert section in page.ids, section
    text = _text(page)
    for expected in (
        "15.9 KiB",  # the model card
        "-64% vs unpruned",
        "98.61%",
        "35.6 dB",
        "181 instructions",  # median latency, in the runner's unit
        "1.9% flash",  # against the target's budget
        "38,378",  # parameters before pruning
        "11,098",
        "features.0",  # worst layer
        "bit-identical",
        "FULLY_CONNECTED",  # per-op table
        "60.0%",
        "guest instructions counted by QEMU",
        "no TFLM library given",
        "cached",
        "NCHW → NHWC",
        "digits_model.py:validation",  # the data as the project names it, not "array (...)"
    ):
        assert expected in text, expected
    assert "<script" not in html  # a static page


def test_plots_are_embedded_pngs_and_nothing_is_fetched(html: str) -> None:
    page = _parse(html)
    assert page.urls, "no images?"
    for url in page.urls:
        assert url.startswith("data:image/png;base64,"), url[:60]
        png = base64.b64decode(url.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert page.tags.count("img") == 5  # memory, layers, pruning, latency, per-op
    assert not re.search(r"https?://", html)
    assert "@import" not in html and "url(" not in html


def test_user_text_is_escaped(html: str) -> None:
    assert "digits &lt;demo&gt;" in html
    r = _report()
    r["project"]["name"] = "<script>alert(1)</script>"
    evil = render_html(r)
    assert "<script>alert(1)" not in evil and "&lt;script&gt;alert(1)" in evil


def test_failed_run_and_stages_that_did_not_run() -> None:
    r = copy.deepcopy(_report())
    r["status"] = "failed"
    r["failed_stage"] = {
        "stage": "validate",
        "status": "failed",
        "type": "FidelityError",
        "message": "SQNR of output 'output' (dB) is 35.57, the project asks ≥ 99",
        "hint": 'try activations = "int16"',
        "exit_code": 3,
    }
    for st in r["stages"][2:]:
        st["status"] = "not run" if st["name"] != "validate" else "failed"
    r["stages"][0].update(status="skipped", notes=["pruning is off"])
    for k in ("prune", "validate", "emit", "firmware", "bench"):
        r[k] = None
    r["summary"] = summary(r)
    page = _parse(render_html(r))
    text = _text(page)
    assert "failure" in page.ids
    assert "Stage “validate” failed" in text and "the project asks ≥ 99" in text
    assert "try activations" in text and "Earlier stages’ artifacts were kept" in text
    assert "Not pruned: pruning is off" in text
    assert "Not measured" in text and "No memory report" in text
    assert page.tags.count("img") == 2  # the layer plot and the operator count remain


def test_per_op_missing_says_why() -> None:
    r = _report()
    r["bench"]["per_op"] = []
    r["bench"]["warnings"] = ["no per-op timing: the device has no per-op profiler"]
    text = _text(_parse(render_html(r)))
    assert "Not measured: the device has no per-op profiler" in text
    assert "Operators in the model (count, not time)" in text


def _built(flash: int, ram: int, budget: int = 4194304) -> dict[str, Any]:
    r = copy.deepcopy(_report())
    r["firmware"]["build"] = {
        "elf": "/tmp/out/firmware/build/tflm/firmware.elf",
        "memory": {"flash_used_bytes": flash, "ram_used_bytes": ram,
                   "flash_budget_bytes": budget, "ram_budget_bytes": budget},
    }  # fmt: skip
    r["summary"] = summary(r)
    return r


def test_a_built_image_gives_the_real_flash_and_ram() -> None:
    r = _built(74216, 35540)
    s = r["summary"]
    assert (s["image_flash_bytes"], s["image_ram_bytes"]) == (74216, 35540)
    assert s["firmware_built"] is True and s["fits"] is True
    assert s["flash_total_bytes"] == 80910  # the emit stage's estimate stays as it was
    text = _text(_parse(render_html(r)))
    assert "1.8% flash" in text and "linked image" in text  # the card: 74,216 / 4 MiB
    assert "Flash, linked image 72.5 KiB 4.00 MiB" in text  # the budget table
    assert "real use (from the ELF)" in text and "until the firmware is built" not in text
    over = _built(74216, 35540, budget=65536)["summary"]
    assert over["fits"] is False  # the image, not the estimate, decides


def test_instruction_counts_read_as_numbers() -> None:
    """QEMU counts: 1,761,560 every run — no 1.762e+06, no card overflow."""
    from toolchain.report.html import num
    from toolchain.report.plots import _count

    assert (num(1761560.0), num(3240.0), num(181.0), num(35.58)) == (
        "1,761,560",
        "3,240",
        "181",
        "35.58",
    )
    assert (_count(1761560.0), _count(176.7)) == ("1,761,560", "176.7")
    r = copy.deepcopy(_report())
    r["bench"]["samples"] = [1761560.0] * 20
    r["bench"]["summary"].update(median=1761560.0, p90=1761560.0, p10=1761560.0)
    r["summary"] = summary(r)
    html = render_html(r)
    page = _parse(html)
    assert '<div class="value">1,761,560</div>' in html  # the unit goes under the number
    assert "1,761,560 instructions" in _text(page) and "e+06" not in html
    assert page.tags.count("img") >= 4  # the histogram of identical samples is drawn


def test_write_reports(tmp_path: Path) -> None:
    r = _report()
    j, h = write_reports(tmp_path, r)
    assert json.loads(j.read_text())["summary"] == json.loads(json.dumps(r["summary"]))
    assert h is not None and h.read_text().startswith("<!DOCTYPE html>")
    j2, h2 = write_reports(tmp_path / "sub", r, html=False)
    assert j2.is_file() and h2 is None and not (tmp_path / "sub" / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "sub"]
