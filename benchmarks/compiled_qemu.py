"""The compiled runtime on QEMU: the MLPerf Tiny references (KWS, IC, VWW, AD) compiled to
plain C (``edgedeploy compile``), built into the mps2-an386 firmware with arm-none-eabi-gcc
alone and measured in QEMU (``-icount shift=0``): instructions per inference, flash
(text+rodata+data), RAM (.data + .bss + the painted stack's high-water mark), the static
arena and the planner's figures — next to the TFLM firmware with TFLM's reference kernels on
the same .tflite files, as recorded in ``benchmarks/results/qemu_firmware.json`` (library
``m4fp-rwl-ref``: hard-float, ``release_with_logs``, built by hand outside the project; no
TFLM library is built here).

    .venv/bin/python -m benchmarks.run compiled -- [--models kws,ic,vww,ad] [--runs 3]

With TFLM libraries built by hand (docs/tflm-library.md) — ``--tflm-lib-ref LIB``,
``--tflm-lib-cmsisnn LIB`` and ``--tflm-include DIR``, or the environment variables
``EDGEDEPLOY_TFLM_LIB_REF``, ``EDGEDEPLOY_TFLM_LIB_CMSISNN`` and ``EDGEDEPLOY_TFLM_INCLUDE`` —
the TFLM firmwares are built and measured live in the same run (their painted stack's
high-water mark included, so TFLM's RAM is its real data + bss + stack peak), and each
firmware's outputs are read back and compared with the compiled firmware's; without them
the TFLM figures are the recorded rows of ``qemu_firmware.json``. The results say which.

Writes ``benchmarks/results/compiled_qemu.json`` and the ``compiled-qemu`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, reference_dir, say, update_readme, write_result
from toolchain.bench import run_bench
from toolchain.bench.mcu import bench_inputs
from toolchain.bench.options import BenchOptions
from toolchain.bench.qemu import QemuProcess, qemu_version
from toolchain.errors import EdgeDeployError
from toolchain.firmware import check_library, make_firmware
from toolchain.protocol import DeviceClient
from toolchain.targets import Target, load_target
from toolchain.tflite_model import TFLiteModel

TARGET = "mps2-an386"
MODELS = {
    "kws": ("KWS DS-CNN", "mlperf_tiny/kws/kws_ref_model.tflite"),
    "ic": ("IC ResNet-8", "mlperf_tiny/ic/pretrainedResnet_quant.tflite"),
    "vww": ("VWW MobileNetV1 0.25", "mlperf_tiny/vww/vww_96_int8.tflite"),
    "ad": ("AD FC autoencoder", "mlperf_tiny/ad/ad01_int8.tflite"),
    "person_detect": ("person_detect", "tflm_models/person_detection/person_detect.tflite"),
}
#: the TFLM rows compared with: reference kernels, hard float, release_with_logs
TFLM_LIBRARY = "m4fp-rwl-ref"
#: the issue's targets for this first part
TARGETS = {"flash": 0.6, "ram": 0.8, "instructions": 1.0}


def tflm_rows(library: str = TFLM_LIBRARY) -> dict[str, dict[str, Any]]:
    """The recorded TFLM firmware rows of ``results/qemu_firmware.json`` for ``library`` on
    mps2-an386, by model file name (empty when the file is missing)."""
    path = RESULTS / "qemu_firmware.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {
        r["file"]: r
        for r in data.get("tflm", [])
        if r.get("library") == library and r.get("target") == TARGET
    }


def _tflm_figures(row: dict[str, Any], target_mem: Any) -> dict[str, Any]:
    """The TFLM firmware's figures: its linked RAM counts the reserved stack and heap; the
    data+bss part alone is a lower bound of what it really uses (its stack peak was not
    measured)."""
    reserved = target_mem.stack_bytes + target_mem.heap_bytes
    return {
        "instructions": row["instructions"],
        "flash_bytes": row["flash_bytes"],
        "ram_linked_bytes": row["ram_bytes"],
        "ram_data_bss_bytes": row["ram_bytes"] - reserved,
        "arena_bytes": row["arena_bytes"],
        "arena_used_bytes": row["arena_used_bytes"],
        "source": f"benchmarks/results/qemu_firmware.json, library {TFLM_LIBRARY}",
    }


def measure(key: str, ref: Path, runs: int, work: Path) -> dict[str, Any]:
    name, rel = MODELS[key]
    model = ref / rel
    row: dict[str, Any] = {"key": key, "model": name, "file": rel}
    t0 = time.perf_counter()
    try:
        res = make_firmware(
            target=TARGET, out_dir=work / key, model=model, runtime="compiled", build=True
        )
    except EdgeDeployError as exc:
        row["error"] = f"{type(exc).__name__}: {exc.message}"
        say(f"  {key}: {row['error']}")
        return row
    row["build_s"] = round(time.perf_counter() - t0, 1)
    assert res.build is not None and res.project.compiled is not None
    row["_elf"] = str(res.build.elf)  # for the output comparison; not written out
    plan = res.project.compiled.get("plan") or {}
    t1 = time.perf_counter()
    r = run_bench(
        load_target(TARGET),
        model,
        BenchOptions(runs=runs, warmup=1, firmware=res.build.elf, timeout_s=600.0),
    )
    again = run_bench(
        load_target(TARGET),
        model,
        BenchOptions(runs=1, warmup=0, firmware=res.build.elf, timeout_s=600.0),
    )
    row["bench_wall_s"] = round(time.perf_counter() - t1, 1)
    mem = r.memory
    check = r.output_check
    row.update(
        {
            "instructions": r.samples[0],
            "samples": r.samples,
            "identical_inferences": len(set(r.samples)) == 1,
            "identical_across_runs": again.samples[0] == r.samples[0],
            "bit_exact": bool(check and check.bit_exact),
            "compared_values": check.compared_values if check else 0,
            "inputs": r.environment.get("inputs"),
            "flash_bytes": mem["flash_used_bytes"],
            "ram_linked_bytes": mem["ram_used_bytes"],
            "ram_data_bss_bytes": mem["ram_data_bss_bytes"],
            "stack_peak_bytes": mem["stack_peak_bytes"],
            "ram_bytes": mem["ram_measured_bytes"],
            "arena_bytes": res.project.compiled["arena_bytes"],
            "plan": plan,
            "ops": res.project.compiled.get("n_ops"),
            "per_op": [
                {"name": o.name, "instructions": o.per_inference, "share": o.share}
                for o in r.per_op
            ],
            "sections": {
                k: v["size"]
                for k, v in mem["sections"].items()
                if k in (".text", ".data", ".bss", ".ARM.exidx")
            },
            "warnings": r.warnings,
        }
    )
    say(
        f"  {key}: {row['instructions']:,.0f} instructions, flash {row['flash_bytes']:,} B, "
        f"RAM {row['ram_bytes']:,} B (stack peak {row['stack_peak_bytes']:,}), "
        f"bit-exact {row['bit_exact']}"
    )
    return row


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def compare(rows: list[dict[str, Any]], live: dict[str, dict[str, Any]] | None = None) -> None:
    """``row["tflm"]``: TFLM reference kernels, from ``live`` (key -> :func:`measure_tflm`)
    when measured in this run, else the recorded row."""
    tflm = tflm_rows()
    mem = load_target(TARGET).memory
    for row in rows:
        t = tflm.get(row["file"])
        lv = (live or {}).get(row["key"])
        if lv is not None and "error" not in lv and "error" not in row:
            row["tflm"] = lv
            row["vs_tflm"] = {
                "instructions": _ratio(row["instructions"], lv["instructions"]),
                "flash": _ratio(row["flash_bytes"], lv["flash_bytes"]),
                "ram_vs_real": _ratio(row["ram_bytes"], lv["ram_bytes"]),
                "ram_vs_linked": _ratio(row["ram_bytes"], lv["ram_linked_bytes"]),
                "ram_vs_data_bss": _ratio(row["ram_bytes"], lv["ram_data_bss_bytes"]),
                "arena": _ratio(row["arena_bytes"], lv["arena_used_bytes"]),
            }
            continue
        if t is None or "error" in row:
            row["tflm"] = None
            continue
        tf = _tflm_figures(t, mem)
        row["tflm"] = tf
        row["vs_tflm"] = {
            "instructions": _ratio(row["instructions"], tf["instructions"]),
            "flash": _ratio(row["flash_bytes"], tf["flash_bytes"]),
            "ram_vs_linked": _ratio(row["ram_bytes"], tf["ram_linked_bytes"]),
            "ram_vs_data_bss": _ratio(row["ram_bytes"], tf["ram_data_bss_bytes"]),
            "arena": _ratio(row["arena_bytes"], tf["arena_used_bytes"]),
        }


# --- TFLM measured live (libraries built by hand, given on the command line or in env) ------

#: kernels -> (label of the recorded qemu_firmware.json rows, env variable of a live library)
TFLM_KINDS = {
    "ref": ("m4fp-rwl-ref", "EDGEDEPLOY_TFLM_LIB_REF"),
    "cmsisnn": ("m4fp-rwl-cmsisnn", "EDGEDEPLOY_TFLM_LIB_CMSISNN"),
}


def _links_malloc(elf: Path) -> bool:
    """Whether the image links newlib's malloc (heap use would come on top of the RAM
    figure, which counts .data + .bss + the stack peak only)."""
    out = subprocess.run(
        ["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return any(line.split()[-1] in ("malloc", "_malloc_r") for line in out.splitlines() if line)


def firmware_outputs(
    target: Target, elf: Path, model_path: Path
) -> tuple[list[Any], dict[str, str]]:
    """Run ``elf`` once in QEMU on the benchmark's input (the same seeded sample
    :func:`run_bench` uses) and read its outputs back, for a firmware-to-firmware check;
    with the HELLO info the firmware gives after that inference."""
    model = TFLiteModel.from_file(model_path)
    inputs, _ = bench_inputs(model, None)
    with QemuProcess(target, elf) as q:
        c = DeviceClient(q.connect(), timeout_s=10.0)
        if not c.wait_boot(60.0):
            raise SystemExit(f"{elf}: no BOOT from the firmware")
        c.hello()
        for i, x in enumerate(inputs):
            c.upload_input(i, x.tobytes())
        c.run(warmup=0, runs=1, timeout=600.0)
        outs = [c.read_output_array(i) for i in range(len(model.outputs))]
        return outs, dict(c.hello().info)


def measure_tflm(
    key: str, ref: Path, runs: int, work: Path, lib: Path, include: Path, kind: str
) -> dict[str, Any]:
    """The TFLM firmware (``edgedeploy firmware --runtime tflm``) for one model, built with
    ``lib`` and measured like :func:`measure`: instructions, flash, RAM = .data + .bss + the
    painted stack's high-water mark (tflm_main.cc paints it at boot), arena used."""
    _, rel = MODELS[key]
    model = ref / rel
    target = load_target(TARGET)
    check = check_library(lib, target)
    out: dict[str, Any] = {
        "kernels": "cmsis-nn" if check.cmsis_nn else "reference",
        "library_desc": check.describe(),
        "library_path": str(lib),
        "source": f"measured live in this run: {lib}",
    }
    t0 = time.perf_counter()
    try:
        res = make_firmware(
            target=target,
            out_dir=work / f"tflm-{kind}-{key}",
            model=model,
            runtime="tflm",
            tflm_lib=lib,
            tflm_include=[include],
            build=True,
        )
    except EdgeDeployError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.message}"
        say(f"  {key} TFLM {kind}: {out['error']}")
        return out
    assert res.build is not None
    out["build_s"] = round(time.perf_counter() - t0, 1)
    opts = BenchOptions(runs=runs, warmup=1, firmware=res.build.elf, timeout_s=600.0)
    r = run_bench(target, model, opts)
    again = run_bench(
        target, model, BenchOptions(runs=1, warmup=0, firmware=res.build.elf, timeout_s=600.0)
    )
    mem, chk = r.memory, r.output_check
    if "stack_peak_bytes" not in mem:
        raise SystemExit(f"{key}: the TFLM firmware reported no stack_peak_bytes in HELLO")
    out.update(
        {
            "instructions": r.samples[0],
            "samples": r.samples,
            "identical_inferences": len(set(r.samples)) == 1,
            "identical_across_runs": again.samples[0] == r.samples[0],
            "bit_exact": bool(chk and chk.bit_exact),
            "compared_values": chk.compared_values if chk else 0,
            "flash_bytes": mem["flash_used_bytes"],
            "ram_linked_bytes": mem["ram_used_bytes"],
            "ram_data_bss_bytes": mem["ram_data_bss_bytes"],
            "stack_peak_bytes": mem["stack_peak_bytes"],
            "stack_reserved_bytes": mem.get("stack_reserved_bytes"),
            "stack_saturated": mem["stack_peak_bytes"] >= mem.get("stack_reserved_bytes", 1 << 30),
            "ram_bytes": mem["ram_measured_bytes"],
            "arena_bytes": mem["arena_bytes"],
            "arena_used_bytes": mem["arena_used_bytes"],
            # the same firmware with its arena cut to what TFLM used (edgedeploy sizes it
            # with a margin): TFLM's smallest RAM for this model
            "ram_tight_arena_bytes": mem["ram_measured_bytes"]
            - (mem["arena_bytes"] - mem["arena_used_bytes"]),
            "links_malloc": _links_malloc(res.build.elf),
            "sections": {
                k: v["size"]
                for k, v in mem["sections"].items()
                if k in (".text", ".data", ".bss", ".ARM.exidx")
            },
            "warnings": r.warnings,
            "_elf": str(res.build.elf),
        }
    )
    say(
        f"  {key} TFLM {kind}: {out['instructions']:,.0f} instructions, flash "
        f"{out['flash_bytes']:,} B, RAM {out['ram_bytes']:,} B (data+bss "
        f"{out['ram_data_bss_bytes']:,} + stack peak {out['stack_peak_bytes']:,}), arena used "
        f"{out['arena_used_bytes']:,} B, bit-exact vs host {out['bit_exact']}"
    )
    return out


def tflm_libraries(args: argparse.Namespace) -> tuple[dict[str, Path], Path | None]:
    """The live TFLM libraries (kind -> path) and the include directory from the options,
    else the environment; a library without an include directory is a usage error."""
    libs = {}
    for kind, (_, env) in TFLM_KINDS.items():
        v = getattr(args, f"tflm_lib_{kind}") or os.environ.get(env)
        if v:
            libs[kind] = Path(v)
    inc = args.tflm_include or os.environ.get("EDGEDEPLOY_TFLM_INCLUDE")
    if libs and not inc:
        raise SystemExit(
            "a live TFLM library needs --tflm-include (or EDGEDEPLOY_TFLM_INCLUDE): the "
            "tflite-micro checkout it was built from"
        )
    for p in [*libs.values(), *([Path(inc)] if inc else [])]:
        if not p.exists():
            raise SystemExit(f"{p}: no such file or directory")
    return libs, Path(inc) if inc else None


def compare_live(rows: list[dict[str, Any]], live: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Per row and kernel set: the TFLM figures (live when measured, else the recorded row),
    the ratios ours / TFLM (RAM against TFLM's real RAM when its stack peak was measured),
    and whether the compiled and TFLM firmwares' outputs are identical."""
    mem = load_target(TARGET).memory
    for kind, (label, _) in TFLM_KINDS.items():
        recorded = tflm_rows(label)
        for row in rows:
            if "error" in row:
                continue
            t = live.get(kind, {}).get(row["key"])
            if t is None and row["file"] in recorded:
                t = _tflm_figures(recorded[row["file"]], mem)
                t["source"] = f"benchmarks/results/qemu_firmware.json, library {label}"
            if t is None or "error" in t:
                row[f"tflm_{kind}"] = t
                continue
            row[f"tflm_{kind}"] = t
            row[f"vs_tflm_{kind}"] = {
                "instructions": _ratio(row["instructions"], t["instructions"]),
                "flash": _ratio(row["flash_bytes"], t["flash_bytes"]),
                "ram_vs_real": _ratio(row["ram_bytes"], t.get("ram_bytes")),
                "ram_vs_real_tight_arena": _ratio(row["ram_bytes"], t.get("ram_tight_arena_bytes")),
                "ram_vs_linked": _ratio(row["ram_bytes"], t["ram_linked_bytes"]),
                "ram_vs_data_bss": _ratio(row["ram_bytes"], t["ram_data_bss_bytes"]),
                "arena_vs_used": _ratio(row["arena_bytes"], t["arena_used_bytes"]),
            }


def outputs_vs_compiled(
    rows: list[dict[str, Any]], live: dict[str, dict[str, dict[str, Any]]], ref: Path
) -> None:
    """Read the outputs of the compiled and each live TFLM firmware back on the same input
    and record whether they are identical (``outputs_equal_compiled``)."""
    target = load_target(TARGET)
    for row in rows:
        if "error" in row or "_elf" not in row:
            continue
        model = ref / row["file"]
        mine, _ = firmware_outputs(target, Path(row["_elf"]), model)
        for kind, per_key in live.items():
            t = per_key.get(row["key"])
            if not t or "_elf" not in t:
                continue
            theirs, info = firmware_outputs(target, Path(t["_elf"]), model)
            if "heap_used_bytes" in info:
                t["heap_used_bytes"] = int(info["heap_used_bytes"])
            same = len(mine) == len(theirs) and all(
                a.shape == b.shape and bool((a == b).all())
                for a, b in zip(mine, theirs, strict=True)
            )
            t["outputs_equal_compiled"] = same
            t["outputs_compared_values"] = int(sum(a.size for a in mine))
            say(f"  {row['key']}: TFLM {kind} outputs == compiled firmware's: {same}")


def _strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_private(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_strip_private(v) for v in obj]
    return obj


def readme_live(result: dict[str, Any]) -> list[str]:
    """The side-by-side table: compiled vs TFLM reference vs TFLM + CMSIS-NN, RAM against
    TFLM's real RAM (data + bss + its measured stack peak) where it was measured."""
    srcs = result.get("tflm_sources") or {}
    lines = [
        "",
        "Side by side with TFLM ("
        + "; ".join(f"{k}: {v}" for k, v in srcs.items())
        + "). RAM is .data + .bss + the painted stack's measured high-water mark for every "
        "firmware (TFLM's firmware paints its stack at boot too; its peak includes "
        "AllocateTensors). ✓/✗: issue 12's targets against TFLM reference (instructions ≤ "
        f"{TARGETS['instructions']}×, flash ≤ {TARGETS['flash']}×, RAM ≤ {TARGETS['ram']}×) "
        "and issue 13's against TFLM + CMSIS-NN (instructions ≤ 1.0×, flash ≤ 0.5×, RAM ≤ "
        "0.75×).",
        "",
        "| model | instr. compiled | TFLM ref | ratio | TFLM+CMSIS-NN | ratio | flash B compiled "
        "| TFLM ref | ratio | TFLM+CMSIS-NN | ratio | RAM B compiled | TFLM ref (data+bss+stack) "
        "| ratio | TFLM+CMSIS-NN (data+bss+stack) | ratio | arena B compiled / TFLM ref used / "
        "CMSIS-NN used | outputs = compiled (ref / CMSIS-NN) |",
        "|---|" + "---:|" * 16 + "---|",
    ]
    targets = {
        "ref": (TARGETS["instructions"], TARGETS["flash"], TARGETS["ram"]),
        "cmsisnn": (1.0, 0.5, 0.75),
    }
    for r in result["rows"]:
        if "error" in r:
            continue
        cells = [r["model"], _n(r["instructions"])]
        flash = [_n(r["flash_bytes"])]
        ram = [_n(r["ram_bytes"])]
        arena = [_n(r["arena_bytes"])]
        same = []
        for kind in TFLM_KINDS:
            t = r.get(f"tflm_{kind}") or {}
            v = r.get(f"vs_tflm_{kind}") or {}
            ti, tf, tr = targets[kind] if t and "error" not in t else (None, None, None)
            cells += [_n(t.get("instructions")), _x(v.get("instructions"), ti)]
            flash += [_n(t.get("flash_bytes")), _x(v.get("flash"), tf)]
            if t.get("ram_bytes") is not None:
                ram += [
                    f"{_n(t['ram_bytes'])} ({_n(t['ram_data_bss_bytes'])} + "
                    f"{_n(t['stack_peak_bytes'])})",
                    _x(v.get("ram_vs_real"), tr)
                    + (
                        f" ({_x(v['ram_vs_real_tight_arena'])} of TFLM cut to its used arena)"
                        if v.get("ram_vs_real_tight_arena")
                        else ""
                    ),
                ]
            else:
                ram += [f"≥ {_n(t.get('ram_data_bss_bytes'))} (stack not measured)", "—"]
            arena.append(_n(t.get("arena_used_bytes")))
            eq = t.get("outputs_equal_compiled")
            same.append("—" if eq is None else ("yes" if eq else "NO"))
        lines.append(
            "| " + " | ".join(cells + flash + ram + [" / ".join(arena), " / ".join(same)]) + " |"
        )
    heap = [
        f"{r['key']} {kind} {_n(t['heap_used_bytes'])} B"
        for r in result["rows"]
        for kind in TFLM_KINDS
        if "heap_used_bytes" in (t := r.get(f"tflm_{kind}") or {})
    ]
    if heap:
        lines += [
            "",
            "TFLM heap used after an inference (newlib's malloc is linked, through stdio; "
            "`_sbrk(0)` read from HELLO): " + ", ".join(heap) + ".",
        ]
    lines.append("")
    return lines


def _n(v: Any) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _x(v: float | None, target: float | None = None) -> str:
    if v is None:
        return "—"
    mark = "" if target is None else (" ✓" if v <= target else " ✗")
    return f"{v:.2f}×{mark}"


def readme(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date']} on this machine ({result['qemu']}, {result['gcc']}: the "
        f"model's C at `-O2` except the kernel files whose layers do under 1 % of the model's "
        f"work (`-Os`, listed in the generated `model.mk`), the rest of the firmware at `-Os`, "
        f"linked with `-flto`; "
        f"`-icount shift=0`); 2 shared "
        f"cores. Counts are guest instructions, never time. "
        f"TFLM columns: the TFLM firmware with reference kernels on the same .tflite "
        f"({result['tflm_source']}"
        f"{'' if result.get('tflm_live') else ', measured 2026-11-28; not rebuilt here'}). "
        f"✓/✗: the issue's "
        f"targets (flash ≤ {TARGETS['flash']}×, RAM ≤ {TARGETS['ram']}×, instructions ≤ "
        f"{TARGETS['instructions']}× of TFLM).",
        "",
        "RAM: ours is .data + .bss + the painted stack's high-water mark. In this table two "
        "TFLM figures bracket its RAM: the linked image (data + bss + the 16 KiB stack and "
        "8 KiB heap the profile reserves; an upper bound) and data + bss alone (a lower bound)"
        + (
            "; TFLM's measured stack peak is in the side-by-side table below."
            if result.get("tflm_live")
            else ": TFLM's stack peak was not measured for these recorded rows."
        ),
        "",
        "| model | instructions | TFLM ref | ratio | flash B | TFLM | ratio | RAM B (data+bss+stack peak) "
        "| TFLM linked RAM | ratio | TFLM data+bss | ratio | arena B | TFLM arena used | bit-exact |",
        "|---|" + "---:|" * 14 + "---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | not built: {r['error']} |" + " |" * 14)
            continue
        t = r.get("tflm") or {}
        v = r.get("vs_tflm") or {}
        lines.append(
            f"| {r['model']} | {_n(r['instructions'])} | {_n(t.get('instructions'))} | "
            f"{_x(v.get('instructions'), TARGETS['instructions'] if t else None)} | "
            f"{_n(r['flash_bytes'])} | {_n(t.get('flash_bytes'))} | "
            f"{_x(v.get('flash'), TARGETS['flash'] if t else None)} | "
            f"{_n(r['ram_bytes'])} ({_n(r['ram_data_bss_bytes'])} + {_n(r['stack_peak_bytes'])}) | "
            f"{_n(t.get('ram_linked_bytes'))} | {_x(v.get('ram_vs_linked'), TARGETS['ram'] if t else None)} | "
            f"{_n(t.get('ram_data_bss_bytes'))} | "
            f"{_x(v.get('ram_vs_data_bss'), TARGETS['ram'] if t else None)} | "
            f"{_n(r['arena_bytes'])} | {_n(t.get('arena_used_bytes'))} | "
            f"{'yes' if r['bit_exact'] else 'NO'} ({r['compared_values']}) |"
        )
    lines += [
        "",
        "Planner (bytes): "
        + "; ".join(
            f"{r['model']}: ours {_n((r.get('plan') or {}).get('arena_bytes'))}, TFLM greedy "
            f"{_n((r.get('plan') or {}).get('tflm_greedy_bytes'))}, lower bound "
            f"{_n((r.get('plan') or {}).get('lower_bound_bytes'))}"
            for r in result["rows"]
            if "error" not in r
        )
        + ".",
        "",
        "Every inference of a run counted the same instructions and a second QEMU run the same "
        "again: "
        + ", ".join(
            f"{r['key']} {'yes' if r['identical_inferences'] and r['identical_across_runs'] else 'NO'}"
            for r in result["rows"]
            if "error" not in r
        )
        + ".",
        "",
    ]
    if result.get("tflm_sources"):
        lines += readme_live(result)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run compiled", description=__doc__)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--result", default="compiled_qemu", help="results/NAME.json to write")
    ap.add_argument("--section", default="compiled-qemu", help="README section to rewrite")
    ap.add_argument("--tflm-lib-ref", help="TFLM library, reference kernels (measured live)")
    ap.add_argument("--tflm-lib-cmsisnn", help="TFLM library built with CMSIS-NN (live)")
    ap.add_argument("--tflm-include", help="the tflite-micro checkout the libraries came from")
    ap.add_argument(
        "--readme-only", action="store_true", help="rewrite the README section from the results"
    )
    args = ap.parse_args(argv)
    if args.readme_only:
        update_readme(
            args.section, readme(json.loads((RESULTS / f"{args.result}.json").read_text()))
        )
        return 0
    ref = reference_dir()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    libs, include = tflm_libraries(args)
    rows = []
    live: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in libs}
    with tempfile.TemporaryDirectory(prefix="compiled-qemu-") as tmp:
        for key in keys:
            say(f"{key}: compile, build, measure on {TARGET}")
            rows.append(measure(key, ref, args.runs, Path(tmp)))
            for kind, lib in libs.items():
                assert include is not None
                say(f"{key}: TFLM firmware ({kind}, {lib}), build, measure on {TARGET}")
                live[kind][key] = measure_tflm(key, ref, args.runs, Path(tmp), lib, include, kind)
        if libs:
            outputs_vs_compiled(rows, live, ref)
    compare(rows, live.get("ref"))
    compare_live(rows, live)
    rows = _strip_private(rows)
    gcc = subprocess.run(
        ["arm-none-eabi-gcc", "-dumpfullversion"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "target": TARGET,
        "qemu": qemu_version(),
        "gcc": f"arm-none-eabi-gcc {gcc}",
        "runs": args.runs,
        "tflm_source": (
            f"measured live in this run with {libs['ref']}"
            if "ref" in libs
            else f"benchmarks/results/qemu_firmware.json, library {TFLM_LIBRARY}"
        ),
        "tflm_live": "ref" in libs,
        "tflm_sources": {
            kind: (
                f"measured live with {libs[kind]}"
                if kind in libs
                else f"recorded in benchmarks/results/qemu_firmware.json, library {label}"
            )
            for kind, (label, _) in TFLM_KINDS.items()
        },
        "targets": TARGETS,
        "rows": rows,
    }
    write_result(args.result, result)
    if not args.no_readme:
        update_readme(args.section, readme(result))
    return 0 if all(r.get("bit_exact") for r in rows if "error" not in r) else 1


if __name__ == "__main__":
    raise SystemExit(main())
