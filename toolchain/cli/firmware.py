"""``edgedeploy firmware --target NAME --model MODEL.tflite --out DIR [--runtime compiled|tflm]
[--build]``: a Cortex-M firmware project (compiled model, TFLM benchmark or self-test),
rendered and optionally built."""

from __future__ import annotations

import argparse
import os
import sys

from rich.table import Table

from toolchain.cli import ui
from toolchain.fsutil import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "firmware",
        help="render (and build) a model benchmark firmware for a microcontroller target",
        description="Renders a buildable firmware project for the target into DIR: the model "
        "compiled to plain C (--runtime compiled, the default when the compiler supports "
        "every operator: no TFLM library needed) or through the emit stage for the TFLM "
        "interpreter (--runtime tflm), linker script and board support from the target "
        "profile. With --build it is built with arm-none-eabi-gcc (ELF/BIN/HEX under "
        "DIR/build/<fw>/) and its flash/RAM use is checked against the target's budget (exit 4 "
        "when it does not fit). The TFLM library (--tflm-lib) is built by you with TFLM's own "
        "Makefile (docs/tflm-library.md) and checked against the target's CPU and float ABI. "
        "Nothing is written to DIR unless everything succeeds.",
    )
    p.add_argument("--target", required=True, metavar="NAME", help="MCU target profile")
    p.add_argument("--model", metavar="MODEL", help="the .tflite model (not with --selftest)")
    p.add_argument("--out", required=True, metavar="DIR", help="project folder")
    p.add_argument(
        "--runtime",
        choices=("compiled", "tflm"),
        default=None,
        help="how the model runs: compiled (plain C from `edgedeploy compile`, no library) or "
        "tflm (the TFLM interpreter, needs --tflm-lib to build). Default: compiled when every "
        "operator is supported and no --tflm-lib is given, else tflm",
    )
    p.add_argument(
        "--selftest",
        action="store_true",
        help="the self-test firmware (no TFLM, no model): protocol, ticks, UART echo",
    )
    p.add_argument(
        "--tflm-lib",
        metavar="LIB",
        default=os.environ.get("EDGEDEPLOY_TFLM_LIB"),
        help="libtensorflow-microlite.a built for this CPU (default: $EDGEDEPLOY_TFLM_LIB)",
    )
    p.add_argument(
        "--tflm-include",
        metavar="DIR",
        action="append",
        help="TFLM include directory: the tflite-micro checkout the library was built from "
        "(flatbuffers etc. are found under it); repeatable (default: $EDGEDEPLOY_TFLM_INCLUDE)",
    )
    p.add_argument(
        "--cmsis-nn",
        metavar="DIR",
        help="your checkout of ARM-software/CMSIS-NN: the compiled model calls CMSIS-NN for "
        "the operators it has and the build compiles its sources from DIR (implies --runtime "
        "compiled; docs/compile.md)",
    )
    p.add_argument(
        "--cmsis-nn-ops",
        metavar="OPS",
        default="all",
        help="with --cmsis-nn: which operators CMSIS-NN runs: all (default), auto (where it "
        "measured faster than our kernels on the M4F: AVERAGE_POOL_2D, ADD) or a "
        "comma-separated list (CONV_2D,DEPTHWISE_CONV_2D,FULLY_CONNECTED,AVERAGE_POOL_2D,"
        "MAX_POOL_2D,SOFTMAX,ADD,MUL)",
    )
    p.add_argument("--build", action="store_true", help="build the image with arm-none-eabi-gcc")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel compile jobs")
    p.add_argument(
        "--allow-float",
        action="store_true",
        help="accept a model that computes in float (refused by default: not integer-only)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.errors import UsageError
    from toolchain.firmware import make_firmware

    includes = args.tflm_include
    if includes is None and os.environ.get("EDGEDEPLOY_TFLM_INCLUDE"):
        includes = os.environ["EDGEDEPLOY_TFLM_INCLUDE"].split(os.pathsep)
    runtime = args.runtime
    if args.cmsis_nn is not None:
        if args.selftest:
            raise UsageError("--selftest has no model; drop --cmsis-nn")
        if runtime == "tflm":
            raise UsageError(
                "--cmsis-nn is for the compiled runtime (a TFLM library brings its own kernels)",
                hint="drop --runtime tflm or --cmsis-nn",
            )
        runtime = "compiled"
    tflm_lib = None if args.selftest or runtime == "compiled" else args.tflm_lib
    if args.selftest and args.model:
        raise UsageError("--selftest takes no --model")
    if args.selftest and args.runtime:
        raise UsageError("--selftest has no model runtime; drop --runtime")
    with ui.progress() as prog:
        result = make_firmware(
            target=args.target,
            out_dir=args.out,
            model=args.model,
            selftest=args.selftest,
            runtime=runtime,
            tflm_lib=tflm_lib,
            tflm_include=() if tflm_lib is None else (includes or ()),
            build=args.build,
            jobs=args.jobs,
            allow_float=args.allow_float,
            progress=prog,
            cmsis_nn=args.cmsis_nn,
            cmsis_nn_ops=args.cmsis_nn_ops,
        )
    if args.json:
        sys.stdout.write(to_json(result.to_dict()))
        return 0
    c = ui.console
    proj = result.project
    c.print(
        f"[bold]{proj.fw}[/] firmware for [bold]{proj.target.name}[/]: "
        f"{len(proj.files)} files in {proj.path}",
        highlight=False,
    )
    if proj.model_artifacts is not None:
        m = proj.model_artifacts
        c.print(
            f"model {m.name}: {m.model_bytes:,} B, arena {m.arena_bytes:,} B, "
            f"{len(m.ops)} ops, sha256 {m.sha256[:16]}",
            highlight=False,
        )
    if proj.compiled is not None:
        cm = proj.compiled
        why = (proj.manifest.get("runtime") or {}).get("why", "")
        c.print(
            f"[green]compiled runtime[/] ({why}): {cm.get('n_ops')} ops, static arena "
            f"{cm.get('arena_bytes', 0):,} B, no TFLM library",
            highlight=False,
        )
    if proj.tflm is not None:
        c.print(f"[green]TFLM library fits the target[/]: {proj.tflm.check.describe()}")
    elif proj.fw == "tflm":
        c.print(
            "no TFLM library given: build with make TFLM_LIB=... TFLM_INCLUDES=... "
            "(docs/tflm-library.md)",
            highlight=False,
        )
    if result.build is None:
        if not args.build:
            c.print(
                f"build it with: make -C {proj.path}"
                + (f" FW={proj.fw}" if proj.fw != "tflm" else ""),
                highlight=False,
            )
        return 0
    b = result.build
    mem = b.memory
    t = Table(title=f"image {b.elf}", title_justify="left")
    for col in ("", "used", "budget", "share"):
        t.add_column(col, justify="right")
    for what, used, budget in (
        ("flash", mem.flash_used, mem.flash_budget),
        ("RAM", mem.ram_used, mem.ram_budget),
    ):
        share = f"{used / budget:.1%}" if budget else "-"
        t.add_row(what, f"{used:,} B", "-" if budget is None else f"{budget:,} B", share)
    c.print(t)
    for w in b.warnings:
        ui.console_err.print(f"[yellow]warning[/]: {w}", highlight=False)
    return 0
