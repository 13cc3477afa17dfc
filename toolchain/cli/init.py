"""``edgedeploy init [--model SPEC ...]``: write a commented starter ``edgedeploy.toml``."""

from __future__ import annotations

import argparse

from toolchain.cli import ui


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented starter project file (edgedeploy.toml) for a model",
        description="Writes OUT (default ./edgedeploy.toml): the given settings filled in, every "
        "other one as a commented-out line with its default and allowed values. Then edit it "
        "and `edgedeploy run`. Format: docs/project.md.",
    )
    p.add_argument(
        "--model",
        default="model.py:build",
        metavar="SPEC",
        help="path/file.py:factory, package.module:factory, model.pt or model.pt2",
    )
    p.add_argument("--name", help="project name (default: the folder's name)")
    p.add_argument("--input-shape", action="append", metavar="SHAPE", help="e.g. 1,3,32,32")
    p.add_argument("--calib", default="calib.npy", metavar="DATA", help="calibration data")
    p.add_argument("--val", metavar="DATA", help="validation data")
    p.add_argument("--labels", metavar="L", help="class labels of --val")
    p.add_argument("--train", metavar="DATA", help="fine-tuning data (after pruning)")
    p.add_argument("--train-labels", metavar="L", help="labels of --train")
    p.add_argument("--prune", type=float, metavar="R", help="pruning ratio, [0, 1)")
    p.add_argument("--target", default="mps2-an386", metavar="NAME", help="deployment target")
    p.add_argument(
        "--bench-target",
        metavar="NAME",
        help="where to measure (default: the target itself when it is a QEMU board, else "
        "host-compiled for a physical microcontroller, host-tflm for a phone or Linux board)",
    )
    p.add_argument("--out", default="edgedeploy.toml", metavar="FILE", help="file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.modelsrc import parse_shape
    from toolchain.starter import default_bench_target, write_starter
    from toolchain.targets import load_target

    for t in (args.target, args.bench_target):
        if t is not None:
            load_target(t)  # an unknown target fails here, with the known ones listed
    if args.bench_target is None:
        args.bench_target = default_bench_target(args.target)
    path = write_starter(
        args.out,
        force=args.force,
        model=args.model,
        name=args.name,
        input_shapes=[parse_shape(s) for s in args.input_shape] if args.input_shape else None,
        calibration=args.calib,
        validation=args.val,
        validation_labels=args.labels,
        train=args.train,
        train_labels=args.train_labels,
        target=args.target,
        bench_target=args.bench_target,
        prune_ratio=args.prune,
    )
    ui.console.print(f"wrote {path}: edit it, then run [bold]edgedeploy run {path}[/]")
    return 0
