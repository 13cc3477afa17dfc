"""Compiled runtime with CMSIS-NN (``edgedeploy compile --cmsis-nn``) vs our own kernels and
TFLM + CMSIS-NN, on QEMU mps2-an386 (Cortex-M4F), side by side in one run.

For each model: the compiled firmware with our own kernels and the compiled firmware calling
the user's CMSIS-NN checkout are both built here (arm-none-eabi-gcc) and measured in QEMU
(``-icount shift=0``: guest instructions, flash, RAM = data+bss+stack high water, arena,
bit-exactness against the host TFLM interpreter's outputs on the golden vectors). The TFLM
figures are the hand-built TFLM firmwares recorded in ``benchmarks/results/qemu_firmware.json``
(not rebuilt here).

    EDGEDEPLOY_CMSIS_NN=/path/to/CMSIS-NN \\
      .venv/bin/python -m benchmarks.cmsisnn_qemu [--models kws,ic,vww,ad,person_detect]
      [--cores lm3s6965evb,mps2-an500]

Writes ``benchmarks/results/cmsisnn_qemu.json`` and the ``compiled-cmsisnn`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, reference_dir, say, update_readme, write_result
from benchmarks.compiled_qemu import MODELS, TARGET, tflm_rows
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.qemu import qemu_version
from toolchain.compile.cmsisnn import open_checkout
from toolchain.compile.perlayer import MIN_GAIN
from toolchain.errors import EdgeDeployError
from toolchain.firmware import make_firmware
from toolchain.targets import load_target

TFLM_LIBRARY = "m4fp-rwl-cmsisnn"
#: the issue's target for compiled + CMSIS-NN
TARGET_RATIO = 0.95


def _one(
    model: Path, out: Path, cmsis_nn: str | None, ops: str = "all", target: str = TARGET
) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = make_firmware(
            target=target, out_dir=out, model=model, runtime="compiled", build=True,
            cmsis_nn=cmsis_nn, cmsis_nn_ops=ops,
        )  # fmt: skip
    except EdgeDeployError as exc:
        return {"error": f"{type(exc).__name__}: {exc.message}"}
    assert res.build is not None and res.project.compiled is not None
    r = run_bench(
        load_target(target), model, BenchOptions(runs=1, warmup=1, firmware=res.build.elf)
    )
    mem = r.memory or {}
    check = r.output_check
    comp = res.project.compiled
    return {
        "instructions": r.samples[0],
        "bit_exact": bool(check and check.bit_exact),
        "compared_values": check.compared_values if check else 0,
        "flash_bytes": mem.get("flash_used_bytes"),
        "ram_bytes": mem.get("ram_measured_bytes"),
        "stack_peak_bytes": mem.get("stack_peak_bytes"),
        "arena_bytes": comp["arena_bytes"],
        "lower_bound_bytes": (comp.get("plan") or {}).get("lower_bound_bytes"),
        "cmsis_nn_ops": len((comp.get("cmsis_nn") or {}).get("ops") or []),
        "n_ops": comp.get("n_ops"),
        "per_op": [{"name": o.name, "instructions": o.per_inference} for o in r.per_op],
        "choice": (comp.get("cmsis_nn") or {}).get("choice"),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _x(a: float | None, b: float | None, target: float | None = None) -> str:
    if a is None or not b:
        return "—"
    v = a / b
    mark = "" if target is None else (" ✓" if v <= target else " ✗")
    return f"{v:.3f}×{mark}"


def _n(v: Any) -> str:
    return "—" if v is None else f"{v:,.0f}"


def readme(result: dict[str, Any]) -> str:
    cn = result["cmsis_nn"]
    lines = [
        f"Measured {result['date']} on this machine ({result['qemu']}, mps2-an386 Cortex-M4F, "
        "`-icount shift=0`: guest instructions per inference, identical run to run). Both "
        'compiled columns are built in the same run from the same .tflite: "own" = '
        "`edgedeploy compile` with our kernels (select.py's fast kernels on this DSP core); "
        '"+ CMSIS-NN" = `--cmsis-nn` with CMSIS-NN '
        f"{cn['describe'] or ''} (arm_nnfunctions.h V.{cn['revision']}, the commit TFLM "
        "downloads; fetched outside the project, compiled into the firmware at `-O2`) running "
        'every operator it has; "auto" = `--cmsis-nn-ops auto`: per layer, the kernel (ours or '
        "CMSIS-NN's) that measured fewer instructions on that layer in QEMU for this core "
        "(and at least 1,000 fewer, else the extra CMSIS-NN code in flash is not worth it; "
        "toolchain/compile/perlayer.py; measured afresh in this run, empty cache). TFLM + "
        f"CMSIS-NN: the hand-built firmware in benchmarks/results/qemu_firmware.json (library "
        f"`{TFLM_LIBRARY}`, not rebuilt here; none for AD). RAM = .data + .bss + measured "
        "stack peak (TFLM's figure: its linked RAM incl. the reserved stack and heap). "
        f"✓/✗: the issue's target for compiled + CMSIS-NN (≤ {TARGET_RATIO}× TFLM + CMSIS-NN "
        "instructions).",
        "",
        "| model | own instr. | + CMSIS-NN (all) | + CMSIS-NN (auto) | TFLM + CMSIS-NN "
        "| all vs TFLM+CMSIS-NN | auto vs TFLM+CMSIS-NN | own vs TFLM+CMSIS-NN "
        "| ops on CMSIS-NN all / auto | flash B own / all / auto / TFLM | RAM B own / all / "
        "auto / TFLM linked | arena B own / all / auto (TFLM used) | bit-exact own / all / "
        "auto |",
        "|---|" + "---:|" * 11 + "---|",
    ]
    for row in result["rows"]:
        own, cm, t = row.get("own") or {}, row.get("cmsis") or {}, row.get("tflm") or {}
        au = row.get("auto") or {}
        errs = " ".join(x["error"] for x in (own, cm, au) if "error" in x)
        if errs:
            lines.append(f"| {row['model']} | {errs} |" + " |" * 11)
            continue
        yes = ("yes" if x["bit_exact"] else "NO" for x in (own, cm, au))
        lines.append(
            f"| {row['model']} | {_n(own['instructions'])} | {_n(cm['instructions'])} | "
            f"{_n(au['instructions'])} | {_n(t.get('instructions'))} | "
            f"{_x(cm['instructions'], t.get('instructions'), TARGET_RATIO)} | "
            f"{_x(au['instructions'], t.get('instructions'), TARGET_RATIO)} | "
            f"{_x(own['instructions'], t.get('instructions'))} | "
            f"{cm['cmsis_nn_ops']} / {au['cmsis_nn_ops']} of {cm['n_ops']} | "
            f"{_n(own['flash_bytes'])} / {_n(cm['flash_bytes'])} / {_n(au['flash_bytes'])} / "
            f"{_n(t.get('flash_bytes'))} | "
            f"{_n(own['ram_bytes'])} / {_n(cm['ram_bytes'])} / {_n(au['ram_bytes'])} / "
            f"{_n(t.get('ram_bytes'))} | "
            f"{_n(own['arena_bytes'])} / {_n(cm['arena_bytes'])} / {_n(au['arena_bytes'])} "
            f"({_n(t.get('arena_used_bytes'))}) | {' / '.join(yes)} |"
        )
    cores = result.get("cores") or []
    if cores:
        lines += [
            "",
            "KWS on the other QEMU cores (same run; no TFLM + CMSIS-NN firmware was built for "
            "them): instructions per inference, ops on CMSIS-NN in brackets.",
            "",
            "| target (core) | own | + CMSIS-NN (all) | + CMSIS-NN (auto) | auto / own | "
            "auto / all | bit-exact own / all / auto |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for c in cores:
            own, cm, au = c["own"], c["cmsis"], c["auto"]
            if any("error" in x for x in (own, cm, au)):
                errs = " ".join(x["error"] for x in (own, cm, au) if "error" in x)
                lines.append(f"| {c['target']} | {errs} |" + " |" * 5)
                continue
            yes = ("yes" if x["bit_exact"] else "NO" for x in (own, cm, au))
            lines.append(
                f"| {c['target']} ({c['core']}) | {_n(own['instructions'])} | "
                f"{_n(cm['instructions'])} ({cm['cmsis_nn_ops']}) | "
                f"{_n(au['instructions'])} ({au['cmsis_nn_ops']}) | "
                f"{_x(au['instructions'], own['instructions'])} | "
                f"{_x(au['instructions'], cm['instructions'])} | {' / '.join(yes)} |"
            )
    pd = next((r for r in result["rows"] if r["key"] == "person_detect"), None)
    choice = ((pd or {}).get("auto") or {}).get("choice") or {}
    if choice.get("layers"):
        kinds = [o["name"] for o in pd["own"]["per_op"]]  # type: ignore[index]
        lines += [
            "",
            f"Per layer, person_detect on {TARGET} (the counts `--cmsis-nn-ops auto` measured, "
            "every layer its own call, no split execution): instructions of our kernel and "
            "CMSIS-NN's, and the one chosen.",
            "",
            "| op | kind | own | CMSIS-NN | CMSIS-NN / own | chosen |",
            "|---:|---|---:|---:|---:|---|",
        ]
        for i, c in sorted(choice["layers"].items(), key=lambda kv: int(kv[0])):
            o, m = c["own"], c["cmsis-nn"]
            kind = kinds[int(i)] if int(i) < len(kinds) else "?"
            lines.append(
                f"| {i} | {kind} | {_n(o)} | {_n(m)} | {_x(m, o)} | "
                f"{'CMSIS-NN' if o - m >= MIN_GAIN else 'own'} |"
            )
    lines += [
        "",
        "Reproduce (CMSIS-NN is yours: clone ARM-software/CMSIS-NN and check out 4ab83cc3):",
        "",
        "    EDGEDEPLOY_CMSIS_NN=/path/to/CMSIS-NN .venv/bin/python -m benchmarks.cmsisnn_qemu",
        "",
        "or one model: `edgedeploy compile MODEL --target mps2-an386 --out DIR --cmsis-nn "
        "/path/to/CMSIS-NN [--cmsis-nn-ops auto] --report --measure`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.cmsisnn_qemu", description=__doc__)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cmsis-nn", default=os.environ.get("EDGEDEPLOY_CMSIS_NN"))
    ap.add_argument("--cores", default="lm3s6965evb,mps2-an500",
                    help="QEMU targets KWS is also measured on (own / all / auto)")  # fmt: skip
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--readme-only", action="store_true")
    args = ap.parse_args(argv)
    if args.readme_only:
        data = json.loads((RESULTS / "cmsisnn_qemu.json").read_text())
        update_readme("compiled-cmsisnn", readme(data))
        return 0
    if not args.cmsis_nn:  # like the benchmarks that need ../shared: say so and skip
        say(
            "cmsisnn: skipped, no CMSIS-NN checkout (ARM-software/CMSIS-NN at 4ab83cc3): set "
            "EDGEDEPLOY_CMSIS_NN or pass --cmsis-nn DIR"
        )
        return 0
    checkout = open_checkout(args.cmsis_nn)
    ref = reference_dir()
    tflm = tflm_rows(TFLM_LIBRARY)
    rows = []
    cores = []
    with tempfile.TemporaryDirectory(prefix="cmsisnn-qemu-") as tmp:
        # auto measures per layer afresh: an empty per-layer count cache for this run
        os.environ["EDGEDEPLOY_CACHE_DIR"] = str(Path(tmp) / "cache")
        for key in [k.strip() for k in args.models.split(",") if k.strip()]:
            name, rel = MODELS[key]
            model = ref / rel
            say(f"{key}: own kernels, then CMSIS-NN, on {TARGET}")
            own = _one(model, Path(tmp) / f"{key}-own", None)
            cm = _one(model, Path(tmp) / f"{key}-cmsis", args.cmsis_nn)
            auto = _one(model, Path(tmp) / f"{key}-auto", args.cmsis_nn, "auto")
            t = tflm.get(rel)
            rows.append({"key": key, "model": name, "file": rel, "own": own, "cmsis": cm, "auto": auto,
                         "tflm": None if t is None else {
                             k: t.get(k) for k in ("instructions", "flash_bytes", "ram_bytes",
                                                   "arena_bytes", "arena_used_bytes")}})  # fmt: skip
            say(f"  own {own.get('instructions')}, CMSIS-NN {cm.get('instructions')}, auto "
                f"{auto.get('instructions')}, bit-exact {own.get('bit_exact')}/"
                f"{cm.get('bit_exact')}/{auto.get('bit_exact')}")  # fmt: skip
        for target in [c.strip() for c in args.cores.split(",") if c.strip()]:
            model = ref / MODELS["kws"][1]
            say(f"kws on {target}: own, CMSIS-NN all, auto")
            row = {
                "target": target,
                "core": load_target(target).cpu.core,
                "own": _one(model, Path(tmp) / f"kws-{target}-own", None, target=target),
                "cmsis": _one(
                    model, Path(tmp) / f"kws-{target}-cmsis", args.cmsis_nn, target=target
                ),  # fmt: skip
                "auto": _one(
                    model, Path(tmp) / f"kws-{target}-auto", args.cmsis_nn, "auto", target=target
                ),  # fmt: skip
            }
            cores.append(row)
            say(f"  own {row['own'].get('instructions')}, all {row['cmsis'].get('instructions')}, "
                f"auto {row['auto'].get('instructions')}")  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "target": TARGET,
        "qemu": qemu_version(),
        "cmsis_nn": checkout.to_dict(),
        "tflm_source": f"benchmarks/results/qemu_firmware.json, library {TFLM_LIBRARY}",
        "rows": rows,
        "cores": cores,
    }
    result["cmsis_nn"]["path"] = "(user's checkout)"
    write_result("cmsisnn_qemu", result)
    if not args.no_readme:
        update_readme("compiled-cmsisnn", readme(result))
    ok = all(r[k].get("bit_exact") for r in rows + cores for k in ("own", "cmsis", "auto"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
