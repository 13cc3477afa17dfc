"""Split ("patch-based") execution of the first layers (toolchain/compile/patch.py), measured.

For each MLPerf Tiny / TFLM reference model and QEMU board, the compiled-runtime firmware is
built twice, with the split off and with the default ``auto`` policy, and run in QEMU
(``-icount shift=0``): instructions per inference, flash, RAM (.data + .bss + the painted
stack's high-water mark), arena and the planner's lower bound, bit-exactness on the golden
vectors. When ``auto`` keeps every layer whole the second build is skipped (same firmware).

    .venv/bin/python -m benchmarks.run patch -- [--models vww,person_detect] \
        [--targets mps2-an386,mps2-an500,lm3s6965evb] [--no-readme]

Writes ``benchmarks/results/compiled_patch.json`` and the ``compiled-patch`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import reference_dir, say, update_readme, write_result
from toolchain.compile import lower_and_plan
from toolchain.compile.measure import measure_layers
from toolchain.errors import EdgeDeployError

MODELS = {
    "kws": "mlperf_tiny/kws/kws_ref_model.tflite",
    "ic": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "vww": "mlperf_tiny/vww/vww_96_int8.tflite",
    "ad": "mlperf_tiny/ad/ad01_int8.tflite",
    "person_detect": "tflm_models/person_detection/person_detect.tflite",
}
TARGETS = ("mps2-an386", "mps2-an500", "lm3s6965evb")


def _one(path: str, target: str, patch: str) -> dict[str, Any]:
    _, p = lower_and_plan(path, target=target, patch=patch)
    row: dict[str, Any] = {
        "patch": patch,
        "arena_bytes": p.arena_bytes,
        "lower_bound_bytes": p.lower_bound_bytes,
        "split": p.split,
    }
    try:
        c = measure_layers(path, target, patch=patch)
    except EdgeDeployError as exc:
        row["error"] = f"{type(exc).__name__}: {exc.message}"[:300]
        return row
    row.update(instructions=c.total, bit_exact=c.bit_exact, flash_bytes=c.flash_bytes,
               ram_bytes=c.ram_bytes)  # fmt: skip
    return row


def run(models: list[str], targets: list[str]) -> dict[str, Any]:
    ref = reference_dir()
    rows = []
    for target in targets:
        for key in models:
            path = str(ref / MODELS[key])
            t0 = time.perf_counter()
            off = _one(path, target, "off")
            auto = _one(path, target, "auto") if _applies(path, target) else dict(off, patch="auto")
            auto["split"] = lower_and_plan(path, target=target, patch="auto")[1].split
            rows.append({"model": key, "target": target, "off": off, "auto": auto})
            say(f"{target} {key}: off {off.get('instructions')} / auto {auto.get('instructions')}"
                f" ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return {"rows": rows}


def _applies(path: str, target: str) -> bool:
    return bool(lower_and_plan(path, target=target, patch="auto")[1].split.get("applied"))


def _fmt(v: Any) -> str:
    return f"{v:,.0f}" if isinstance(v, int | float) else "–"


def readme(result: dict[str, Any]) -> str:
    lines = [
        "| target | model | split (auto) | arena off → auto (lower bound) | RAM off → auto | "
        "instructions off → auto | ratio | flash off → auto | bit-exact |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        off, auto = r["off"], r["auto"]
        sp = auto["split"]
        how = (
            f"ops {sp['ops'][0]}..{sp['ops'][-1]}, {sp['bands']} bands × {sp['band_rows']} row"
            if sp.get("applied")
            else "not applied"
        )
        ratio = (
            f"{auto['instructions'] / off['instructions']:.4f}"
            if off.get("instructions") and auto.get("instructions")
            else "–"
        )
        exact = "/".join(
            "–" if x.get("error") else str(x.get("bit_exact", "–")) for x in (off, auto)
        )
        lines.append(
            f"| {r['target']} | {r['model']} | {how} | {_fmt(off['arena_bytes'])} → "
            f"{_fmt(auto['arena_bytes'])} ({_fmt(auto['lower_bound_bytes'])}) | "
            f"{_fmt(off.get('ram_bytes'))} → {_fmt(auto.get('ram_bytes'))} | "
            f"{_fmt(off.get('instructions'))} → {_fmt(auto.get('instructions'))} | {ratio} | "
            f"{_fmt(off.get('flash_bytes'))} → {_fmt(auto.get('flash_bytes'))} | {exact} |"
        )
    errors = [
        f"- {r['target']} {r['model']} ({x['patch']}): {x['error']}"
        for r in result["rows"]
        for x in (r["off"], r["auto"])
        if x.get("error")
    ]
    return "\n".join(lines + ([""] + errors if errors else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.compiled_patch")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.models.split(","), args.targets.split(","))
    write_result("compiled_patch", result)
    if not args.no_readme:
        update_readme("compiled-patch", readme(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
