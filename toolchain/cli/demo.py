"""``edgedeploy demo`` (``make demo``): the whole chain on the bundled digits example.

Runs ``examples/digits/edgedeploy.toml`` — a small CNN trained on scikit-learn's digits,
pruned, quantized, emitted, compiled to plain C and built into a firmware image for the QEMU
Cortex-M4 board mps2-an386, then measured in QEMU (instructions, flash, RAM, outputs
bit-exact) — into ``out/demo`` and prints where the report is. No board, no TFLM library and
no network needed: arm-none-eabi-gcc and qemu-system-arm (scripts/install-system-deps.sh).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from toolchain.cli import ui
from toolchain.cli.run import add_run_arguments, run_and_report, with_options

#: the bundled example (in the source tree; not part of an installed wheel)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits" / "edgedeploy.toml"
DEFAULT_OUT = Path("out") / "demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled example end to end (digits CNN → compiled mps2-an386 firmware → "
        "QEMU)",
        description=f"Runs {EXAMPLE.relative_to(EXAMPLE.parents[2])} into {DEFAULT_OUT} "
        "(same options as `edgedeploy run`): the model is compiled to plain C, built for "
        "mps2-an386 and measured in QEMU. --bench-target host-compiled or host-tflm measures "
        "on this machine instead.",
    )
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.errors import InputFileError
    from toolchain.project import load_project

    if not EXAMPLE.is_file():
        raise InputFileError(
            f"the demo project is not here: {EXAMPLE}",
            hint="the demo runs from a source checkout of edgedeploy (make demo)",
        )
    if args.out is None:
        args.out = str(DEFAULT_OUT)
    t0 = time.perf_counter()
    # a library only when given here: the demo is the no-library (compiled) path otherwise
    rc = run_and_report(with_options(load_project(EXAMPLE), args, env=False), args)
    if not args.json:
        ui.console.print(f"demo finished in {time.perf_counter() - t0:.0f} s", highlight=False)
    return rc
