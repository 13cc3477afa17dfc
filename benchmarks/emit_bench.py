"""Emit: the searched tensor arena of every reference model, and C-array speed vs ``xxd -i``.

    .venv/bin/python -m benchmarks.run emit -- [--repeats 5] [--no-arenas] [--no-speed]

Arena table: for every .tflite in the reference folder, the smallest arena with which the
tflite-micro Python interpreter allocates and invokes it (searched; the size 16 B below is
checked to fail), TFLM's own recorded figure, the emitted size (default 4 % margin) and its
ratio to the minimum, next to the arenas hard-coded upstream and the device figures measured
on a Cortex-M4 build. Models TFLM rejects are listed with the reason.

Speed table: rendering ``<name>_model_data.cc`` (the full file, written to disk) against
``xxd -i MODEL > out`` for the largest reference model and a synthetic 16 MiB blob; median of
``--repeats`` runs. Writes ``benchmarks/results/emit.json`` and the ``emit`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import reference_dir, say, update_readme, write_result
from toolchain.emit import arena, carray, golden, litert_check, sandbox
from toolchain.emit.model_input import load, model_file
from toolchain.errors import EdgeDeployError

#: Arenas hard-coded by upstream projects for these models (bytes; upper bounds, not minima).
UPSTREAM = {
    "tflm_models/hello_world/hello_world_int8.tflite": (3_000, "TFLM hello_world"),
    "tflm_models/micro_speech/micro_speech_quantized.tflite": (28_584, "TFLM micro_speech"),
    "tflm_models/person_detection/person_detect.tflite": (136 * 1024, "TFLM person_detection"),
    "tflm_models/keyword_benchmark/keyword_scrambled.tflite": (21 * 1024, "TFLM keyword benchmark"),
    "tflm_models/dtln/dtln_noise_suppression.tflite": (16 * 1024, "TFLM dtln"),
    "tflm_models/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite": (
        3 * 1024 * 1024,
        "TFLM pytorch_to_tflite",
    ),
    "mlperf_tiny/ad/ad01_int8.tflite": (10 * 1024, "MLPerf Tiny v0.5 reference"),
    "mlperf_tiny/ic/pretrainedResnet_quant.tflite": (100 * 1024, "MLPerf Tiny v0.5 reference"),
    "mlperf_tiny/kws/kws_ref_model.tflite": (200 * 1024, "MLPerf Tiny v0.5 reference"),
    "mlperf_tiny/vww/vww_96_int8.tflite": (200 * 1024, "MLPerf Tiny v0.5 reference"),
}
#: Smallest arenas measured on a 32-bit Cortex-M4 TFLM build (reference README; issue 5).
DEVICE_M4 = {
    "tflm_models/person_detection/person_detect.tflite": 82_292,
    "tflm_models/micro_speech/micro_speech_quantized.tflite": 6_788,
    "tflm_models/hello_world/hello_world_int8.tflite": 676,
    "mlperf_tiny/kws/kws_ref_model.tflite": 22_772,
    "mlperf_tiny/ic/pretrainedResnet_quant.tflite": 54_340,
    "mlperf_tiny/vww/vww_96_int8.tflite": 100_660,
}


def _reason(message: str) -> str:
    """The part of a rejection message that says why (no paths, no source file names)."""
    why = message.split(" this model at ", 1)[-1].split(": ", 1)[-1]
    return re.sub(r"\S+\.cc ", "", why)[:120]


def _works(mf: sandbox.ModelFile, size: int) -> bool:
    try:
        reply = sandbox.shared().request("tflm_attempt", arena=size, invoke=True, **mf.fields())
    except sandbox.SandboxCrash:
        return False
    return bool(reply["ok"])


def arenas(ref: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(ref.rglob("*.tflite")):
        rel = str(path.relative_to(ref))
        row: dict[str, Any] = {"model": rel, "bytes": path.stat().st_size}
        try:
            found = arena.search_arena(path)
        except EdgeDeployError as exc:
            row["rejected"] = _reason(exc.message)
            say(f"  {rel}: rejected")
            rows.append(row)
            continue
        emitted = arena.DEFAULT_MARGIN.apply(found.minimum)
        model = load(path)
        with model_file(model) as mf:
            below, at_emitted = _works(mf, found.minimum - 16), _works(mf, emitted)
            inputs = golden.random_inputs(model, count=2)
            outputs = golden.run_tflm(mf, inputs, arena=found.minimum)
            row["litert"] = [c.to_dict() for c in litert_check.check(mf, inputs, outputs)]
        row.update(
            minimum=found.minimum,
            recorded=found.recorded,
            emitted=emitted,
            ratio=round(emitted / found.minimum, 4),
            emitted_works=at_emitted,
            minus_16_fails=not below,
            attempts=found.attempts,
            search_s=found.seconds,
        )
        if rel in UPSTREAM:
            row["upstream"], row["upstream_source"] = UPSTREAM[rel]
        if rel in DEVICE_M4:
            row["device_m4"] = DEVICE_M4[rel]
            row["device_over_host"] = round(DEVICE_M4[rel] / found.minimum, 3)
        say(f"  {rel}: {found.minimum:,} B ({row['search_s']} s)")
        rows.append(row)
    return rows


def _median_s(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(ref: Path, repeats: int) -> list[dict[str, Any]]:
    biggest = max(ref.rglob("*.tflite"), key=lambda p: p.stat().st_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp, "blob16m.bin")
        blob.write_bytes(os.urandom(16 * 1024 * 1024))
        for src, label in ((biggest, str(biggest.relative_to(ref))), (blob, "random 16 MiB")):
            data = src.read_bytes()
            out = Path(tmp, "out.cc")

            def ours(data: bytes = data, out: Path = out) -> None:
                out.write_bytes(carray.model_data(data, name="m", about=["bench"]).source)

            def xxd(src: Path = src, out: Path = out) -> None:
                with out.open("wb") as fh:
                    subprocess.run(["xxd", "-i", str(src)], stdout=fh, check=True)

            row: dict[str, Any] = {"input": label, "bytes": len(data)}
            row["ours_s"] = round(_median_s(ours, repeats), 4)
            row["format_only_s"] = round(
                _median_s(lambda d=data: carray.format_bytes(d), repeats), 4
            )
            if shutil.which("xxd"):
                row["xxd_s"] = round(_median_s(xxd, repeats), 4)
                row["speedup"] = round(row["xxd_s"] / row["ours_s"], 2)
            say(f"  {label}: ours {row['ours_s']} s, xxd {row.get('xxd_s')} s")
            rows.append(row)
    return rows


def _litert(c: dict[str, Any]) -> str:
    if c["status"] in ("rejected", "crashed"):
        return c["status"]
    if c["status"] == "exact":
        return f"exact ({c['compared']})"
    return f"{c['mismatches']}/{c['compared']} differ, max {c['max_abs_diff']:.3g}"


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def readme(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['when']} on this machine ({result['machine']}); tflite-micro "
        f"{result['tflite_micro']}, 64-bit host. 2 shared cores: times are indicative.",
        "",
    ]
    if result.get("arenas"):
        lines += [
            "Arena: smallest size (16-byte steps) with which the tflite-micro interpreter allocates "
            "*and* invokes the model; the size 16 B below it was checked to fail. *emitted* = "
            "minimum + 4 % (the default margin). *recorded* = TFLM's own RecordingMicroAllocator "
            "figure. *upstream*: what the original project hard-codes. *M4 device*: the "
            "figure measured on a 32-bit Cortex-M4 build (reference README: `arena_used_bytes()`; "
            "issue 5). *vs LiteRT*: TFLM's outputs against ai-edge-litert's reference "
            "(BUILTIN_REF) and optimized (default, XNNPACK) kernels on 2 random inputs.",
            "",
            "| model | bytes | minimum | recorded | emitted | emitted/min | works / −16 fails | upstream | M4 device (÷ host min) | search s | vs LiteRT ref | vs LiteRT opt |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["arenas"]:
            if "rejected" in r:
                lines.append(
                    f"| {r['model']} | {r['bytes']:,} | rejected: {r['rejected']} " + "|" * 10
                )
                continue
            up = f"{r['upstream']:,} ({r['upstream_source']})" if "upstream" in r else "-"
            dev = f"{r['device_m4']:,} ({r['device_over_host']})" if "device_m4" in r else "-"
            ok = (
                ("yes" if r["emitted_works"] else "NO")
                + " / "
                + ("yes" if r["minus_16_fails"] else "NO")
            )
            lines.append(
                f"| {r['model']} | {r['bytes']:,} | {r['minimum']:,} | {_kb(r['recorded'])} | "
                f"{r['emitted']:,} | {r['ratio']:.3f} | {ok} | {up} | {dev} | {r['search_s']} | "
                + " | ".join(_litert(c) for c in r["litert"])
                + " |"
            )
        ok = [r for r in result["arenas"] if "minimum" in r]
        worst = max(r["ratio"] for r in ok)
        lines += [
            "",
            f"{len(ok)} models run, {len(result['arenas']) - len(ok)} rejected; emitted/min at most "
            f"{worst:.3f} (target ≤ 1.05); every emitted arena works: "
            f"{all(r['emitted_works'] for r in ok)}; every minimum is tight: "
            f"{all(r['minus_16_fails'] for r in ok)}.",
            "",
        ]
    if result.get("speed"):
        lines += [
            "C array speed: the whole `<name>_model_data.cc` rendered and written vs "
            f"`xxd -i MODEL > out` (median of {result['repeats']} runs).",
            "",
            "| input | bytes | edgedeploy s | (formatting only) s | xxd -i s | xxd / ours |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["speed"]:
            lines.append(
                f"| {r['input']} | {r['bytes']:,} | {r['ours_s']} | {r['format_only_s']} | "
                f"{r.get('xxd_s', '-')} | {r.get('speedup', '-')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.run emit")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-arenas", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    args = p.parse_args(argv)
    ref = reference_dir()
    from importlib.metadata import version

    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "tflite_micro": version("tflite-micro"),
        "repeats": args.repeats,
    }
    if not args.no_arenas:
        say("arenas:")
        result["arenas"] = arenas(ref)
    if not args.no_speed:
        say("C array speed:")
        result["speed"] = speed(ref, args.repeats)
    write_result("emit", result)
    update_readme("emit", readme(result))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
