"""Compiled runtime: arena, constants and code size per MLPerf Tiny reference model, bit-exactness.

    .venv/bin/python -m benchmarks.run compile -- [--inputs 20] [--no-tflm-arena]

For each reference model: ``edgedeploy compile`` (time), our arena next to the lower bound,
TFLM's greedy planner on the same tensors (emulated, 16-byte alignment), the TFLM
interpreter's whole arena searched on the host (64-bit; ``edgedeploy emit``'s search) and the
TFLM arena measured on a Cortex-M4 (from the emit benchmark's table); constant data against
the .tflite size; the generated library built with arm-none-eabi-gcc -Os for a Cortex-M4
(text+data, bss — no firmware around it, so fwrt's QEMU figures are the full images); host
gcc -O2 build bit-exact with the tflite-micro interpreter on ``--inputs`` random inputs, and
the host time per inference of both; instructions per inference on QEMU mps2-an386 with a
minimal bare-metal harness (benchmarks/compile_qemu). Writes ``benchmarks/results/compile.json`` and the
``compile`` section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import reference_dir, say, update_readme, write_result
from benchmarks.emit_bench import DEVICE_M4
from toolchain.compile import CompiledModel, compile_model, hostrun

MODELS = {
    "KWS (DS-CNN)": "mlperf_tiny/kws/kws_ref_model.tflite",
    "IC (ResNet-8)": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "VWW (MobileNet)": "mlperf_tiny/vww/vww_96_int8.tflite",
    "AD (autoencoder)": "mlperf_tiny/ad/ad01_int8.tflite",
    "person_detect": "tflm_models/person_detection/person_detect.tflite",
}
#: TFLM with its reference kernels on mps2-an386, instructions per inference: measured from
#: outside the project with a hand-built TFLM library (../shared/FACTS.md, 2026-12-04).
TFLM_REF_INSTRUCTIONS = {
    "mlperf_tiny/kws/kws_ref_model.tflite": 43_040_200,
    "mlperf_tiny/ic/pretrainedResnet_quant.tflite": 107_402_520,
    "mlperf_tiny/vww/vww_96_int8.tflite": 100_255_520,
}
HARNESS = Path(__file__).resolve().parent / "compile_qemu"
ARM_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os",
             "-std=c99", "-ffunction-sections", "-fdata-sections")  # fmt: skip


def _arm_size(cm: CompiledModel, work: Path) -> dict[str, int] | None:
    """text/data/bss of the generated library's objects for a Cortex-M4 (-Os)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        return None
    totals = {"text": 0, "data": 0, "bss": 0, "kernels_text": 0}
    for src in cm.sources:
        obj = work / f"{cm.name}_{src.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, f"-I{cm.out_dir}", "-c", str(src),
                        "-o", str(obj)], check=True)  # fmt: skip
        out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[1].split()  # fmt: skip
        text, data, bss = int(out[0]), int(out[1]), int(out[2])
        totals["text"] += text
        totals["data"] += data
        totals["bss"] += bss
        if src.name.startswith("edc_"):
            totals["kernels_text"] += text
    return totals


def _qemu(cm: CompiledModel, work: Path) -> dict[str, int] | None:
    """Instructions per inference on QEMU mps2-an386 (-icount shift=0) with the minimal
    bare-metal harness in benchmarks/compile_qemu, and that image's sizes."""
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        return None
    elf = work / f"{cm.name}.elf"
    subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS[:-3], "-O2", "-std=c99", "-ffunction-sections",
                    "-fdata-sections", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    f"-I{cm.out_dir}", f"-DEDC_NAME={cm.name}", "-include", str(cm.header),
                    str(HARNESS / "harness.c"), *[str(p) for p in cm.sources],
                    "-T", str(HARNESS / "link.ld"), "-Wl,--gc-sections", "-o", str(elf)],
                   check=True)  # fmt: skip
    out = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-icount",
                          "shift=0,align=off,sleep=off", "-semihosting-config",
                          "enable=on,target=native", "-kernel", str(elf), "-monitor", "none",
                          "-serial", "none"], capture_output=True, text=True, timeout=600,
                         check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    text = out.stdout + out.stderr  # semihosting writes to QEMU's stderr when not on a tty
    calib = [int(line.split()[-1]) for line in text.splitlines() if line.startswith("calibration")]
    runs = [int(line.split()[-1]) for line in text.splitlines() if line.startswith("inference")]
    size = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1].split()  # fmt: skip
    per_tick = 400_000 / calib[0]
    return {
        "instructions": round(runs[-1] * per_tick),
        "runs_identical": int(len(set(runs[1:])) == 1),
        "image_text": int(size[0]),
        "image_data": int(size[1]),
        "image_bss": int(size[2]),
    }


def _tflm_host_arena(path: Path) -> int | None:
    from toolchain.emit.arena import minimum_arena
    from toolchain.errors import EdgeDeployError

    try:
        return minimum_arena(path)
    except EdgeDeployError:
        return None


def _bit_exact(path: Path, cm: CompiledModel, lib: Any, n: int) -> dict[str, Any]:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path), arena_size=8 << 20)
    run = hostrun.Runner(lib, cm.name)
    shape = tuple(int(d) for d in interp.get_input_details(0)["shape"])
    oshape = tuple(int(d) for d in interp.get_output_details(0)["shape"])
    rng = np.random.default_rng(0)
    equal = 0
    t_tflm = t_ours = 0.0
    for _ in range(n):
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        interp.set_input(x, 0)
        t0 = time.perf_counter()
        interp.invoke()
        t_tflm += time.perf_counter() - t0
        want = interp.get_output(0)
        got = run([x], [(oshape, np.int8)])[0]
        t0 = time.perf_counter()
        run.invoke()  # timing only (same input, already checked)
        t_ours += time.perf_counter() - t0
        equal += int(np.array_equal(want, got))
    return {
        "inputs": n,
        "bit_exact": equal,
        "host_ms_tflm_python": round(t_tflm / n * 1e3, 3),
        "host_ms_compiled": round(t_ours / n * 1e3, 3),
    }


def _kb(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _markdown(rows: list[dict[str, Any]], cmd: str) -> str:
    lines = [
        f"Measured with `{cmd}` ({rows[0]['host']}); raw: `benchmarks/results/compile.json`.",
        "Arena = activations only for the compiled code (no interpreter structures exist);",
        "TFLM's figures are its whole arena (tensors + interpreter structures), on the 64-bit",
        "host (searched) and on a Cortex-M4 (emit benchmark). Lower bound = largest sum of",
        "tensors live at one operator; TFLM greedy = TFLM's planner on the same tensors.",
        "Host ms: x86 timings of the host gcc -O2 build and of the tflite-micro Python",
        "interpreter's reference kernels, on a shared 2-core machine (noisy; the instruction",
        "counts below, from QEMU, are what the issue's target is about).",
        "",
        "| model | ops | arena | lower bound | TFLM greedy (same tensors) | TFLM arena host / M4 | constants / .tflite | Cortex-M4 -Os text+data (kernels) | host bit-exact | host ms/inf compiled / TFLM-py | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        arm = r.get("arm_m4")
        arm_s = "–" if not arm else f"{arm['text'] + arm['data']:,} ({arm['kernels_text']:,})"
        lines.append(
            f"| {r['label']} | {r['n_ops']} | {r['arena_bytes']:,} | {r['lower_bound_bytes']:,} "
            f"| {r['tflm_greedy_bytes']:,} | {_kb(r.get('tflm_arena_host'))} / "
            f"{_kb(r.get('tflm_arena_m4'))} | {r['weights_bytes']:,} / {r['model_bytes']:,} "
            f"| {arm_s} | {r['bit_exact']}/{r['inputs']} | {r['host_ms_compiled']} / "
            f"{r['host_ms_tflm_python']} | {r['compile_s']} |"
        )
    lines += [
        "",
        "QEMU mps2-an386 (`-icount shift=0`, instructions = SysTick ticks × 40, checked by a",
        "calibration loop in the harness), the model alone in a minimal bare-metal harness",
        "(`benchmarks/compile_qemu`, not the EDP firmware), against TFLM with its reference",
        "kernels on the same board (hand-built library, ../shared/FACTS.md):",
        "",
        "| model | instructions / inference | TFLM reference kernels | ratio | image text / bss |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        q = r.get("qemu_an386")
        if not q:
            continue
        ref = r.get("tflm_ref_instructions")
        ratio = f"{q['instructions'] / ref:.2f}×" if ref else "–"
        lines.append(
            f"| {r['label']} | {q['instructions']:,} | {_kb(ref)} | {ratio} "
            f"| {q['image_text']:,} / {q['image_bss']:,} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run compile")
    ap.add_argument("--inputs", type=int, default=20)
    ap.add_argument("--no-tflm-arena", action="store_true")
    args = ap.parse_args(argv)
    ref = reference_dir()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edc-bench-") as tmp:
        work = Path(tmp)
        cms = {}
        for label, rel in MODELS.items():
            path = ref / rel
            name = Path(rel).stem.replace("-", "_")
            t0 = time.perf_counter()
            cm = compile_model(path, out_dir=work / name, name=name)
            dt = time.perf_counter() - t0
            cms[label] = cm
            row: dict[str, Any] = {
                "label": label,
                "model": rel,
                "host": f"{platform.machine()} {platform.python_version()}",
                "compile_s": round(dt, 3),
                "n_ops": cm.n_ops,
                "arena_bytes": cm.arena_bytes,
                "lower_bound_bytes": cm.plan["lower_bound_bytes"],
                "tflm_greedy_bytes": cm.plan["tflm_greedy_bytes"],
                "heuristic": cm.plan["heuristic"],
                "weights_bytes": cm.weights_bytes,
                "model_bytes": cm.model_bytes,
                "tflm_arena_m4": DEVICE_M4.get(rel),
                "arm_m4": _arm_size(cm, work),
                "qemu_an386": _qemu(cm, work),
                "tflm_ref_instructions": TFLM_REF_INSTRUCTIONS.get(rel),
            }
            if not args.no_tflm_arena:
                row["tflm_arena_host"] = _tflm_host_arena(path)
            rows.append(row)
            say(f"  {label}: arena {cm.arena_bytes:,} B, constants {cm.weights_bytes:,} B")
        lib = hostrun.build(list(cms.values()), work / "models.so")
        for row in rows:
            row.update(_bit_exact(ref / row["model"], cms[row["label"]], lib, args.inputs))
            say(f"  {row['label']}: bit-exact {row['bit_exact']}/{row['inputs']}")
    write_result("compile", {"rows": rows})
    cmd = ".venv/bin/python -m benchmarks.run compile"
    if argv:
        cmd += " -- " + " ".join(argv)
    update_readme("compile", _markdown(rows, cmd))
    return 0 if all(r["bit_exact"] == r["inputs"] for r in rows) else 1
