"""MCU firmware in QEMU: the self-test firmware on every QEMU board, and — with TFLM libraries
built by TFLM's own Makefile (docs/tflm-library.md) — the real TFLM benchmark firmware for the
MLPerf Tiny / TFLM reference models, in guest *instructions* per inference.

    .venv/bin/python -m benchmarks.run qemu -- [--tflm-lib LABEL=LIB ...]
        [--soft-tflm-lib LABEL=LIB ...] [--tflm-include DIR] [--target mps2-an386]
        [--models kws,ic,vww,person_detect] [--runs 3] [--warmup 1] [--skip-selftest]

``--tflm-lib`` (a library for ``--target`` as it is) and ``--soft-tflm-lib`` (one built with
TFLM's ``TARGET_ARCH=cortex-m4``, soft float, run on a soft-float variant of ``--target``) may
be given several times; LABEL names the library in the table (default: its TFLM ``gen/``
folder). Without either, ``$EDGEDEPLOY_TFLM_LIB``. Each library's kernels (reference or
CMSIS-NN) are read from the library itself and pick the issue's figures to compare with (a
hand-written firmware on mps2-an386 with TFLM built for cortex-m4). Writes
``benchmarks/results/qemu_firmware.json`` and the ``qemu-firmware`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import reference_dir, say, update_readme, write_result
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.qemu import QemuProcess, qemu_version
from toolchain.firmware import check_library, make_firmware
from toolchain.protocol import DeviceClient
from toolchain.targets import Target, load_target

BOARDS = ("mps2-an386", "mps2-an500", "mps2-an505", "lm3s6965evb")
MODELS = {
    "kws": ("KWS DS-CNN", "mlperf_tiny/kws/kws_ref_model.tflite"),
    "ic": ("IC ResNet-8", "mlperf_tiny/ic/pretrainedResnet_quant.tflite"),
    "vww": ("VWW MobileNetV1 0.25", "mlperf_tiny/vww/vww_96_int8.tflite"),
    "person_detect": ("person_detect", "tflm_models/person_detection/person_detect.tflite"),
}
#: issue 5: hand-written firmware on mps2-an386, TFLM for cortex-m4, M instructions/inference
ISSUE_INSTRUCTIONS = {
    "reference": {"kws": 42.2e6, "ic": 105.7e6, "vww": 99.3e6, "person_detect": 95.2e6},
    "cmsis-nn": {"kws": 7.58e6, "ic": 29.8e6, "vww": 23.8e6, "person_detect": 22.6e6},
}
ISSUE_ARENA = {"kws": 22_772, "ic": 54_340, "vww": 100_660}
SELFTEST_INSTRUCTIONS = 200_000  # selftest_main.c: 8 * 25,000


def _idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds QEMU burns while the firmware waits for the host for ``seconds``."""

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    return round(cpu() - before, 2)


def selftest_row(board: str, root: Path) -> dict[str, Any]:
    target = load_target(board)
    t0 = time.monotonic()
    fw = make_firmware(target=target, out_dir=root / board, selftest=True, build=True)
    assert fw.build is not None
    build_s = time.monotonic() - t0
    sessions: list[dict[str, Any]] = []
    rng = random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(4096))
    for _ in range(2):
        t0 = time.monotonic()
        with QemuProcess(target, fw.build.elf) as q:
            c = DeviceClient(q.connect(), timeout_s=5.0)
            if not c.wait_boot(10.0):
                raise SystemExit(f"{board}: no BOOT from the self-test firmware")
            boot_s = time.monotonic() - t0
            h = c.hello()
            t1 = time.monotonic()
            for _ in range(20):
                c.echo(data[:1000])
            echo_ms = (time.monotonic() - t1) / 20 * 1000
            t1 = time.monotonic()
            c.upload_input(0, data)
            upload_s = time.monotonic() - t1
            ticks = c.run(warmup=1, runs=8)
            idle_cpu_s = _idle_cpu(q.proc.pid if q.proc else 0, 2.0)
        sessions.append(
            {
                "ticks": ticks,
                "per_step": h.ticks_per_tick_count,
                "calibration": h.info.get("ticks", ""),
                "boot_s": round(boot_s, 3),
                "echo_1000B_ms": round(echo_ms, 2),
                "upload_4096B_s": round(upload_s, 3),
                "session_s": round(time.monotonic() - t0, 2),
                "qemu_cpu_s_while_idle_2s": idle_cpu_s,
            }
        )
    a, b = sessions
    return {
        "board": board,
        "core": target.cpu.core,
        "clock_hz": target.cpu.clock_hz,
        "flash_bytes": fw.build.memory.flash_used,
        "ram_bytes": fw.build.memory.ram_used,
        "build_s": round(build_s, 1),
        "instructions_per_step": a["per_step"],
        "run_instructions": sorted({t * a["per_step"] for t in a["ticks"]}),
        "identical_across_runs": a["ticks"] == b["ticks"],
        "sessions": sessions,
    }


def soft_float_variant(target_name: str, root: Path) -> Target:
    """``target_name`` running soft-float code (for TFLM built with TARGET_ARCH=cortex-m4):
    a profile written for this benchmark only."""
    path = root / f"{target_name}-soft-float.toml"
    path.write_text(
        f'name = "{target_name}-soft-float"\nextends = "{target_name}"\n'
        f'description = "{target_name} with -mfloat-abi=soft code (benchmark only)"\n'
        '[cpu]\nfpu = "none"\nfloat_abi = "soft"\n',
        encoding="utf-8",
    )
    return load_target(str(path))


def tflm_rows(
    libs: dict[str, tuple[Path, Target]],
    include: Path,
    models: list[str],
    runs: int,
    warmup: int,
    root: Path,
) -> list[dict[str, Any]]:
    ref = reference_dir()
    rows = []
    for label, (lib, target) in libs.items():
        check = check_library(lib, target)
        kernels = "cmsis-nn" if check.cmsis_nn else "reference"
        for key in models:
            title, rel = MODELS[key]
            say(f"qemu: {title} with the {label} library on {target.name}")
            t0 = time.monotonic()
            fw = make_firmware(
                target=target,
                out_dir=root / f"{label}-{key}",
                model=ref / rel,
                tflm_lib=lib,
                tflm_include=[include],
                build=True,
            )
            assert fw.build is not None
            build_s = time.monotonic() - t0
            results = []
            for _ in range(2):
                t0 = time.monotonic()
                r = run_bench(
                    target,
                    ref / rel,
                    BenchOptions(runs=runs, warmup=warmup, firmware=fw.build.elf, timeout_s=300),
                )
                results.append((r, time.monotonic() - t0))
            (r, wall), (r2, _) = results
            s, chk = r.summary, r.output_check
            if s is None or chk is None:
                raise SystemExit(f"{title}: no summary/output check")
            issue = ISSUE_INSTRUCTIONS[kernels].get(key)
            issue_arena = ISSUE_ARENA.get(key)
            used = int(r.memory["arena_used_bytes"])
            rows.append(
                {
                    "library": label,
                    "kernels": kernels,
                    "float_abi": target.cpu.float_abi,
                    "target": target.name,
                    "library_desc": check.describe(),
                    "library_path": str(lib),
                    "model": title,
                    "file": rel,
                    "instructions": s.median,
                    "samples": r.samples,
                    "identical_inferences": len(set(r.samples)) == 1,
                    "identical_across_runs": r.samples == r2.samples,
                    "issue_instructions": issue,
                    "vs_issue": None if issue is None else s.median / issue - 1,
                    "arena_bytes": int(r.memory["arena_bytes"]),
                    "arena_used_bytes": used,
                    "issue_arena": issue_arena,
                    "arena_vs_issue": None if issue_arena is None else used / issue_arena - 1,
                    "flash_bytes": r.memory.get("flash_used_bytes"),
                    "ram_bytes": r.memory.get("ram_used_bytes"),
                    "bit_exact": chk.bit_exact,
                    "compared_values": chk.compared_values,
                    "per_op": [
                        {"name": op.name, "instructions": op.per_inference, "share": op.share}
                        for op in r.per_op
                    ],
                    "build_s": round(build_s, 1),
                    "bench_wall_s": round(wall, 1),
                    "warnings": r.warnings,
                }
            )
    return rows


def _gen_dir(path: str | None) -> str:
    """`` (TFLM `gen/<folder>`)`` for a library's path: TFLM names that folder for its
    TARGET_ARCH, BUILD_TYPE and kernels; empty for a result without the path."""
    return "" if not path else f" (TFLM `gen/{Path(path).parent.parent.name}`)"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date']} on this machine ({result['qemu']}, arm-none-eabi-gcc "
        f"12.2, `-icount {result['icount']}`); 2 shared cores. Counts are guest instructions "
        "(SysTick steps × instructions per step), never time.",
        "",
        "Self-test firmware (no TFLM): RUN = a busy loop of 200,000 instructions "
        "(+ call overhead), 8 runs after 1 warm-up, two separate QEMU runs.",
        "",
        "| board | core | instr./SysTick step (calibrated) | RUN instructions | same in 2nd QEMU run | "
        "flash B | RAM B | boot s | ECHO 1000 B ms | upload 4 KiB s | QEMU CPU s, 2 s idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["selftest"]:
        s = r["sessions"][0]
        lines.append(
            f"| {r['board']} | {r['core']} | {r['instructions_per_step']} | "
            f"{', '.join(f'{v:,}' for v in r['run_instructions'])} | "
            f"{'yes' if r['identical_across_runs'] else 'NO'} | {r['flash_bytes']:,} | "
            f"{r['ram_bytes']:,} | {s['boot_s']} | {s['echo_1000B_ms']} | {s['upload_4096B_s']} | "
            f"{s['qemu_cpu_s_while_idle_2s']} |"
        )
    if result["tflm"]:
        lines += [
            "",
            f"TFLM benchmark firmware on {result['target']} ({result['runs']} runs after "
            f"{result['warmup']} warm-up, two QEMU runs each); issue = the hand-written "
            "firmware's figures from issue 5.",
            "",
            "| model | library | kernels | float ABI | M instructions | issue | diff | "
            "arena used B | issue arena | diff | flash B | RAM B | outputs vs host TFLM | "
            "identical runs |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["tflm"]:
            issue, issue_arena = r["issue_instructions"], r["issue_arena"]
            lines.append(
                f"| {r['model']} | {r['library']} | {r['kernels']} | {r['float_abi']} | "
                f"{r['instructions'] / 1e6:.2f} | "
                f"{'-' if issue is None else f'{issue / 1e6:g}'} | {_pct(r['vs_issue'])} | "
                f"{r['arena_used_bytes']:,} | "
                f"{'-' if issue_arena is None else f'{issue_arena:,}'} | "
                f"{_pct(r['arena_vs_issue'])} | {r['flash_bytes']:,} | {r['ram_bytes']:,} | "
                f"{'bit-identical' if r['bit_exact'] else 'DIFFER'} ({r['compared_values']}) | "
                f"{'yes' if r['identical_inferences'] and r['identical_across_runs'] else 'NO'} |"
            )
        libs = sorted(
            {
                (r["library"], r["library_desc"], _gen_dir(r.get("library_path")))
                for r in result["tflm"]
            }
        )
        lines += ["", *[f"- {label}: {desc}{gen}" for label, desc, gen in libs]]
    else:
        lines += ["", "TFLM firmware: not run (no TFLM library given; docs/tflm-library.md)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.run qemu")
    p.add_argument("--tflm-lib", action="append", default=[], metavar="LABEL=LIB")
    p.add_argument(
        "--soft-tflm-lib",
        action="append",
        default=[],
        metavar="LABEL=LIB",
        help="a library built with TARGET_ARCH=cortex-m4 (soft float), run on a soft-float "
        "variant of --target",
    )
    p.add_argument("--tflm-include", default=os.environ.get("EDGEDEPLOY_TFLM_INCLUDE"))
    p.add_argument("--target", default="mps2-an386")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--skip-selftest", action="store_true")
    args = p.parse_args(argv)
    target = load_target(args.target)
    with tempfile.TemporaryDirectory(prefix="edgedeploy-qemu-bench-") as tmp:
        root = Path(tmp)
        libs: dict[str, tuple[Path, Target]] = {}
        for items, tgt in (
            (args.tflm_lib, target),
            (
                args.soft_tflm_lib,
                soft_float_variant(args.target, root) if args.soft_tflm_lib else target,
            ),
        ):
            for item in items:
                label, _, path = item.rpartition("=")
                libs[label or Path(path).parent.parent.name] = (Path(path), tgt)
        if not libs and os.environ.get("EDGEDEPLOY_TFLM_LIB"):
            libs["EDGEDEPLOY_TFLM_LIB"] = (Path(os.environ["EDGEDEPLOY_TFLM_LIB"]), target)
        if libs and not args.tflm_include:
            raise SystemExit("--tflm-include (or EDGEDEPLOY_TFLM_INCLUDE) is needed with a library")
        selftest = [] if args.skip_selftest else [selftest_row(b, root) for b in BOARDS]
        tflm = (
            tflm_rows(
                libs,
                Path(args.tflm_include or "."),
                [m for m in args.models.split(",") if m],
                args.runs,
                args.warmup,
                root,
            )
            if libs
            else []
        )
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "qemu": qemu_version(),
        "icount": "shift=0,align=off,sleep=off",
        "target": args.target,
        "runs": args.runs,
        "warmup": args.warmup,
        "selftest": selftest,
        "tflm": tflm,
    }
    write_result("qemu_firmware", result)
    update_readme("qemu-firmware", render(result))
    say(render(result))
    return 0
