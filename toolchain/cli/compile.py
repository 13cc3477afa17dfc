"""``edgedeploy compile MODEL.tflite --target T --out DIR``: the model as plain C (no interpreter)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from toolchain.cli import ui
from toolchain.fsutil import check_output_path, to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile an int8 .tflite to a dependency-free C99 library (no TFLM needed)",
        description="Writes <name>.h, <name>.c (the graph as straight-line kernel calls), "
        "<name>_weights.c (const data) and the kernel sources the model uses into DIR (all or "
        "nothing; an existing DIR is replaced). Outputs are bit-exact with TFLite Micro's "
        "reference kernels. With --target the arena and constant data are checked against the "
        "board's RAM and flash (exit 4 when they do not fit).",
    )
    p.add_argument("model", help="the int8 .tflite model")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--target", metavar="NAME", help="target profile (edgedeploy targets)")
    p.add_argument(
        "--name", metavar="NAME", help="C symbol prefix (default: the model file's stem)"
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="also print the per-layer plan and measure TFLM's arena for the same model",
    )
    p.add_argument(
        "--kernels",
        choices=("auto", "fast", "ref"),
        default="auto",
        help="auto: fast kernels where the target's CPU has the DSP extension, and on the M3 (default); "
        "fast: everywhere (portable C without DSP); ref: reference-order kernels only",
    )
    p.add_argument(
        "--cmsis-nn",
        metavar="DIR",
        help="your checkout of ARM-software/CMSIS-NN (needs a Cortex-M --target): the generated "
        "code calls CMSIS-NN for the operators it has, its scratch buffers planned into the "
        "arena; build DIR's Source/ with the model (docs/compile.md)",
    )
    p.add_argument(
        "--cmsis-nn-ops",
        metavar="OPS",
        default="all",
        help="with --cmsis-nn: which operators CMSIS-NN runs: all (default), auto (per layer, "
        "where its kernel measured fewer instructions than ours in QEMU on the target's core; "
        "counts cached in $EDGEDEPLOY_CACHE_DIR; a static per-core rule without QEMU) or a "
        "comma-separated list (CONV_2D,DEPTHWISE_CONV_2D,FULLY_CONNECTED,AVERAGE_POOL_2D,"
        "MAX_POOL_2D,SOFTMAX,ADD,MUL)",
    )
    p.add_argument(
        "--patch",
        choices=("auto", "on", "off"),
        default="auto",
        help="split (patch-based) execution of the first layers in row bands: auto: when it "
        "makes the arena smaller (default); on: whenever a run of conv/depthwise layers allows "
        "it; off: every layer whole",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="with --report and a QEMU --target: build the firmware, run it in QEMU and show "
        "the instructions of every layer",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.compile import compile_model
    from toolchain.emit.cnames import sanitize

    check_output_path(args.out, option="--out")  # a bad --out fails before the work
    name = args.name or sanitize(Path(args.model).stem)
    cm = compile_model(
        args.model,
        out_dir=args.out,
        name=name,
        target=args.target,
        kernels=args.kernels,
        cmsis_nn=args.cmsis_nn,
        cmsis_nn_ops=args.cmsis_nn_ops,
        patch=args.patch,
    )
    d = cm.to_dict()
    counts = None
    if args.report:
        d["plan"]["tflm_arena_bytes"] = _tflm_arena(args.model)
    if args.measure:
        from toolchain.compile.measure import measure_layers
        from toolchain.errors import UsageError

        if not args.target:
            raise UsageError("--measure needs a QEMU --target", hint="e.g. --target mps2-an386")
        if args.kernels != "auto":
            raise UsageError(
                "--measure builds the firmware with the target's automatic kernel choice",
                hint="drop --kernels (or leave out --measure)",
            )
        counts = measure_layers(
            args.model,
            args.target,
            patch=args.patch,
            cmsis_nn=args.cmsis_nn,
            cmsis_nn_ops=args.cmsis_nn_ops,
        )
        d["measured"] = {"target": counts.target, "instructions": counts.total,
                         "per_op": list(counts.per_op), "bit_exact": counts.bit_exact,
                         "flash_bytes": counts.flash_bytes, "ram_bytes": counts.ram_bytes}  # fmt: skip
    if args.json:
        sys.stdout.write(to_json(d))
        return 0
    c = ui.console
    plan = d["plan"]
    c.print(
        f"[bold]{cm.name}[/]: {len(cm.files)} files in {cm.out_dir}; {cm.n_ops} ops "
        f"({', '.join(sorted(set(cm.ops)))}); kernels: {', '.join(cm.kernels)}\n"
        f"arena {cm.arena_bytes:,} B (lower bound {plan['lower_bound_bytes']:,} B, "
        f"TFLM's greedy plan {plan['tflm_greedy_bytes']:,} B); constant data "
        f"{cm.weights_bytes:,} B (.tflite {cm.model_bytes:,} B)",
        highlight=False,
    )
    if cm.cmsis_nn is not None:
        cn = cm.cmsis_nn
        c.print(
            f"CMSIS-NN {cn['describe'] or 'checkout'} (arm_nnfunctions.h V.{cn['revision']}) "
            f"at {cn['path']} runs {len(cn['ops'])} of {cm.n_ops} ops; build its Source/ "
            f"with -isystem {cn['path']}/Include",
            highlight=False,
        )
        ch = cn.get("choice")
        if ch:
            how = {"measured": "measured now", "cached": "cached counts"}.get(ch["how"], "")
            c.print(
                f"--cmsis-nn-ops auto: per layer on {ch['board']} ({how})"
                if how
                else f"--cmsis-nn-ops auto: static rule ({ch['reason']})",
                highlight=False,
            )
    split = plan.get("split") or {}
    if "split_arena_bytes" in split:
        c.print(
            f"split execution ({split['policy']}): "
            + ("applied" if split["applied"] else f"not applied ({split.get('reason', '')})")
            + f"; operators {split['ops'][0]}..{split['ops'][-1]} in {split['bands']} bands of "
            f"{split['band_rows']} row(s), band buffers "
            f"{', '.join(f'{b:,}' for b in split['buffer_bytes'])} B: arena "
            f"{split['split_arena_bytes']:,} B (lower bound {split['split_lower_bound_bytes']:,} B)"
            f" vs whole layers {split['unsplit_arena_bytes']:,} B (lower bound "
            f"{split['unsplit_lower_bound_bytes']:,} B)",
            highlight=False,
        )
    elif split.get("reason"):
        c.print(f"split execution: {split['reason']}", highlight=False)
    if args.report:
        tflm = plan.get("tflm_arena_bytes")
        c.print(
            "TFLM interpreter arena for the same model (64-bit host, all structures): "
            + (f"{tflm:,} B" if tflm else "not measured"),
            highlight=False,
        )
        if counts is not None:
            c.print(
                f"measured in QEMU {counts.target}: {counts.total:,.0f} instructions per "
                f"inference, bit-exact with TFLM on the golden vectors: {counts.bit_exact}; "
                f"flash {counts.flash_bytes or 0:,} B, RAM {counts.ram_bytes or 0:,} B "
                "(data+bss+stack peak)",
                highlight=False,
            )
        t = Table(title="layers", title_justify="left")
        cols = ["#", "op", "layer", "kernel", "output", "arena offset", "bytes", "scratch",
                "constants"]  # fmt: skip
        if counts is not None:
            cols += ["instructions", "share"]
        for col in cols:
            t.add_column(col)
        for row in cm.layers:
            scratch = (
                f"{row['scratch_bytes']:,} @ {row['scratch_offset']}"
                if row["scratch_bytes"]
                else ""
            )
            cells = [
                str(row["index"]),
                row["kind"],
                row["summary"],
                row["kernel"]
                + (" (in place)" if row.get("in_place") else "")
                + (" (split)" if row.get("split") else ""),
                row["output_shape"],
                str(row["output_offset"]),
                f"band {row['band_bytes']:,}"
                if row.get("band_bytes")
                else f"{row['output_bytes']:,}",
                scratch,
                f"{row['const_bytes']:,}",
            ]
            if counts is not None:
                n = counts.per_op[row["index"]] if row["index"] < len(counts.per_op) else 0.0
                cells += [f"{n:,.0f}", f"{100 * n / counts.total:.1f} %" if counts.total else ""]
            t.add_row(*cells)
        c.print(t)
    return 0


def _tflm_arena(model: str) -> int | None:
    from toolchain.emit.arena import minimum_arena
    from toolchain.errors import EdgeDeployError

    try:
        return minimum_arena(model)
    except EdgeDeployError as exc:
        ui.console_err.print(f"[yellow]TFLM arena not measured[/]: {exc.message}")
        return None
