"""``edgedeploy prune MODEL --ratio R --out DIR``: a smaller dense model + prune_report.json.

With ``--calib`` the unpruned and pruned models are also converted to int8 (what pruning
saved once deployed); with ``--target`` (or ``--flash-bytes``/``--ram-bytes``) and no
``--ratio`` the ratio is searched to fit the budget; ``--sensitivity`` prunes each layer
group alone and plots the metric.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from toolchain.cli import ui
from toolchain.errors import UsageError
from toolchain.fsutil import to_json
from toolchain.project import FINETUNE_LOSSES, MODEL_FORMATS, PRUNE_IMPORTANCE, PRUNE_METHODS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="remove channels so the deployed model really shrinks; fit a model to a budget",
        description="Writes DIR/model_pruned.pt2 (or .pt) and DIR/prune_report.json (all files "
        "or none). MODEL: path/file.py:factory, package.module:factory, model.pt or model.pt2. "
        "DATA (PyTorch layout, samples first): .npz with x/y (inputs/labels), .npy, or "
        "path/file.py:function returning (x, y).",
    )
    p.add_argument("model", help="the PyTorch model")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--ratio", type=float, metavar="R", help="share of channels to remove, [0, 1)")
    p.add_argument(
        "--input-shape", action="append", metavar="SHAPE", help="e.g. 1,3,32,32; once per input"
    )
    p.add_argument("--weights", metavar="FILE", help="a state_dict to load (weights_only)")
    p.add_argument("--format", choices=MODEL_FORMATS, default="pt2", help="model file")
    w = p.add_argument_group("what to prune")
    w.add_argument("--method", choices=PRUNE_METHODS, default="structured")
    w.add_argument(
        "--importance",
        choices=PRUNE_IMPORTANCE,
        default="l1",
        help="channel ranking (default l1; taylor needs --train)",
    )
    w.add_argument(
        "--layer-ratio",
        action="append",
        default=[],
        metavar="NAME=R",
        help="ratio for one layer (and the layers coupled with it); repeatable",
    )
    w.add_argument("--keep", action="append", default=[], metavar="NAME", help="never prune NAME")
    w.add_argument(
        "--keep-first", action="store_true", help="keep the first conv/linear layers (and groups)"
    )
    w.add_argument(
        "--keep-last", action="store_true", help="also keep the layers feeding the output layers"
    )
    w.add_argument("--round-to", type=int, metavar="N", help="keep a multiple of N channels")
    w.add_argument("--global", dest="global_ranking", action="store_true", help="rank globally")
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--train", metavar="DATA", help="training data: fine-tune after pruning")
    f.add_argument("--train-labels", metavar="L", help="class labels of --train")
    f.add_argument("--epochs", type=int, default=3, help="built-in loop epochs (default 3)")
    f.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    f.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    f.add_argument("--loss", choices=FINETUNE_LOSSES, default="auto")
    f.add_argument("--finetune-fn", metavar="MOD:FN", help="your own fn(model) -> model")
    v = p.add_argument_group("validation and conversion")
    v.add_argument("--val", metavar="DATA", help="validation data (metric before/after)")
    v.add_argument("--labels", metavar="L", help="class labels of --val")
    v.add_argument(
        "--sensitivity",
        nargs="?",
        const="0.25,0.5,0.75",
        metavar="RATIOS",
        help="per-layer sensitivity at RATIOS (default 0.25,0.5,0.75); needs --val",
    )
    v.add_argument("--calib", metavar="DATA", help="calibration data: also convert to int8")
    v.add_argument("--no-cache", action="store_true", help="convert even if cached")
    b = p.add_argument_group("fit to a budget (searches the ratio; needs --calib)")
    b.add_argument("--target", metavar="NAME", help="target profile whose flash/RAM to fit")
    b.add_argument("--flash-bytes", type=int, metavar="N", help="flash budget for the model")
    b.add_argument("--ram-bytes", type=int, metavar="N", help="RAM budget for the arena")
    b.add_argument("--flash-reserve", type=int, default=0, metavar="N", help="flash for the rest")
    b.add_argument("--ram-reserve", type=int, default=0, metavar="N", help="RAM for the rest")
    b.add_argument("--max-accuracy-drop", type=float, metavar="PTS", help="int8 vs float, points")
    b.add_argument("--min-sqnr", type=float, metavar="DB", help="int8 vs unpruned float, dB")
    b.add_argument("--max-ratio", type=float, default=0.9, help="largest ratio tried (0.9)")
    p.add_argument("--json", action="store_true", help="print prune_report.json")
    p.set_defaults(func=run)


def _layer_ratios(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--layer-ratio {item!r} is not NAME=R", hint="e.g. stack1.conv1=0.25")
    return out


def _ratios(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        vals = ()
    if not vals:
        raise UsageError(f"--sensitivity {text!r} is not a list of ratios", hint="e.g. 0.25,0.5")
    return vals


def run(args: argparse.Namespace) -> int:
    from toolchain.modelsrc import parse_shape
    from toolchain.prune import Budget, FinetuneOptions, fit, prune

    fitting = args.target is not None or args.flash_bytes is not None or args.ram_bytes is not None
    if not fitting and args.ratio is None and args.sensitivity is None:
        raise UsageError(
            "nothing to do",
            hint="give --ratio R, a budget (--target/--flash-bytes/--ram-bytes) or --sensitivity",
        )
    if fitting and args.ratio is not None:
        raise UsageError("give either --ratio or a budget (--target/--flash-bytes/--ram-bytes)")
    if fitting and args.calib is None:
        raise UsageError("fitting a budget converts each candidate: give --calib DATA")
    if (args.max_accuracy_drop is not None or args.min_sqnr is not None) and not fitting:
        raise UsageError("--max-accuracy-drop/--min-sqnr apply to budget fitting (--target)")
    common: dict[str, Any] = {
        "weights": args.weights,
        "input_shapes": [parse_shape(s) for s in args.input_shape] if args.input_shape else None,
        "val": args.val,
        "labels": args.labels,
        "train": args.train,
        "train_labels": args.train_labels,
        "model_format": args.format,
        "method": args.method,
        "importance": args.importance,
        "layer_ratios": _layer_ratios(args.layer_ratio),
        "keep": args.keep,
        "keep_first": args.keep_first,
        "keep_last": args.keep_last,
        "round_to": args.round_to,
        "global_ranking": args.global_ranking,
        "finetune_options": FinetuneOptions(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss
        ),
        "callback": args.finetune_fn,
    }
    with ui.progress() as prog:
        if fitting:
            if args.target is not None:
                budget = Budget.for_target(
                    args.target, flash_reserve=args.flash_reserve, ram_reserve=args.ram_reserve
                )
            else:
                budget = Budget(
                    args.flash_bytes, args.ram_bytes, args.flash_reserve, args.ram_reserve
                )
            fit(
                args.model,
                calib=args.calib,
                budget=budget,
                out_dir=args.out,
                max_accuracy_drop=args.max_accuracy_drop,
                min_sqnr=args.min_sqnr,
                max_ratio=args.max_ratio,
                progress=prog,
                **common,
            )
        else:
            prune(
                args.model,
                ratio=args.ratio,
                out_dir=args.out,
                calib=args.calib,
                cache=not args.no_cache,
                sensitivity_ratios=_ratios(args.sensitivity) if args.sensitivity else None,
                progress=prog,
                **common,
            )
    report = json.loads((Path(args.out) / "prune_report.json").read_text())
    if args.json:
        sys.stdout.write(to_json(report))
        return 0
    _print_summary(report, args.out)
    return 0


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"{v:,}"


def _print_summary(r: dict[str, Any], out: str) -> None:
    c = ui.console
    if r.get("method"):
        t = Table(title=f"pruning ({r['method']}, ratio {r['ratio']})", title_justify="left")
        for col in ("", "before", "after", "after/before"):
            t.add_column(col, justify="right")
        rows = [
            ("parameters", "params_before", "params_after"),
            ("non-zero parameters", "nonzero_params_before", "nonzero_params_after"),
            ("MACs", "macs_before", "macs_after"),
            ("int8 TFLite bytes", "tflite_bytes_before", "tflite_bytes_after"),
            ("TFLM arena bytes", "arena_bytes_before", "arena_bytes_after"),
        ]
        for label, kb, ka in rows:
            if kb in r:
                ratio = f"{r[ka] / r[kb]:.3f}" if r[kb] else "-"
                t.add_row(label, _num(r[kb]), _num(r[ka]), ratio)
        m = r.get("metric")
        if m:
            t.add_row(f"float {m['name']}", _num(m["before"]), _num(m["after"]), "")
        i8 = r.get("int8")
        if i8:
            t.add_row(f"int8 {i8['metric']}", _num(i8["before"]), _num(i8["after"]), "")
        c.print(t)
        if r.get("note"):
            c.print(f"[yellow]note[/]: {r['note']}")
    sens = r.get("sensitivity")
    if sens:
        t = Table(title=f"sensitivity ({sens['metric']}, baseline {_num(sens['baseline'])})")
        t.add_column("group (root layer)")
        t.add_column("channels", justify="right")
        for ratio in sens["ratios"]:
            t.add_column(f"-{ratio:.0%}", justify="right")
        for row in sens["groups"]:
            t.add_row(row["root"], str(row["channels"]), *(_num(v) for v in row["metric"]))
        c.print(t)
    bud = r.get("budget")
    if bud:
        t = Table(title="budget search", title_justify="left")
        for col in ("ratio", "int8 bytes", "arena (+margin)", "accuracy drop", "fits", "good"):
            t.add_column(col, justify="right")
        for cand in bud["candidates"]:
            t.add_row(
                f"{cand['ratio']:.3f}",
                _num(cand["tflite_bytes"]),
                _num(cand["arena_recommended_bytes"]),
                _num(cand["accuracy_drop_pts"]),
                "yes" if cand["fits"] else "no",
                "yes" if cand["good_enough"] else "no",
            )
        c.print(t)
        c.print(f"chosen ratio: {bud['chosen_ratio']}")
    c.print(f"wrote {out}/prune_report.json")
