"""``edgedeploy convert MODEL --calib DATA --out DIR``: PyTorch → int8 .tflite + report.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from toolchain.cli import ui
from toolchain.errors import UsageError
from toolchain.fsutil import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a PyTorch model to a full-integer int8 .tflite and measure its fidelity",
        description="Writes DIR/model_int8.tflite and DIR/report.json (both or neither). "
        "MODEL: path/file.py:factory, package.module:factory, model.pt (TorchScript) or "
        "model.pt2 (torch.export). DATA (PyTorch layout, samples first): .npy, .npz (arrays "
        "by input name), a folder of images, or path/file.py:function.",
    )
    p.add_argument("model", help="the PyTorch model (see above)")
    p.add_argument("--calib", required=True, metavar="DATA", help="calibration data")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--val", metavar="DATA", help="validation data (default: the calibration data)")
    p.add_argument("--labels", metavar="L", help="class labels of --val (.npy, .txt, f.npz:KEY)")
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="SHAPE",
        help="input shape, batch first, e.g. 1,3,32,32; repeat once per input",
    )
    p.add_argument("--weights", metavar="FILE", help="a state_dict to load (weights_only)")
    q = p.add_argument_group("quantization")
    q.add_argument(
        "--activations",
        choices=("int8", "int16", "mixed"),
        default="int8",
        help="int8 (default), int16 activations with int8 weights (int16x8), or mixed: "
        "int8 with int16x8 islands where measured to help (see --mixed-target-sqnr)",
    )
    q.add_argument(
        "--mixed-target-sqnr",
        type=float,
        metavar="DB",
        help="mixed: add int16 islands until the outputs' input-dependent SQNR on calibration "
        "samples reaches this (default 30 dB, or --min-sqnr + 1 when given)",
    )
    q.add_argument(
        "--mixed-budget",
        type=float,
        metavar="F",
        help="mixed: at most this fraction more .tflite bytes than the int8 model "
        "(default 0.1, QuantOptions.mixed_budget)",
    )
    q.add_argument(
        "--int16-headroom",
        type=float,
        metavar="F",
        help="with --activations int16: widen every calibrated activation range F-fold "
        "(1 = the calibration min/max; default 4, QuantOptions.int16_headroom)",
    )
    q.add_argument(
        "--input-type",
        choices=("int8", "uint8", "int16", "float32"),
        help="input tensor type (default: the activation type)",
    )
    q.add_argument(
        "--output-type",
        choices=("int8", "uint8", "int16", "float32"),
        help="output tensor type (default: the activation type)",
    )
    q.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor instead of per output channel",
    )
    q.add_argument(
        "--per-channel-dense",
        action="store_true",
        help="per-channel weights for dense (FULLY_CONNECTED) layers too (default: per "
        "tensor, the TFLM/MLPerf convention: smaller file and arena)",
    )
    q.add_argument(
        "--calib-samples",
        type=int,
        default=200,
        metavar="N",
        help="use at most N calibration samples (default 200)",
    )
    q.add_argument(
        "--val-samples",
        type=int,
        default=1000,
        metavar="N",
        help="compare at most N validation samples (default 1000)",
    )
    q.add_argument(
        "--keep-transposes",
        action="store_true",
        help="do not fold layout TRANSPOSE ops into linear weights",
    )
    r = p.add_argument_group("rewrites and accuracy techniques (docs/convert.md)")
    r.add_argument(
        "--plain",
        action="store_true",
        help="the plain recipe: no rewrites, no techniques, no fallbacks",
    )
    r.add_argument(
        "--rewrites",
        metavar="LIST",
        help="comma-separated ONNX rewrites to apply (default: all; 'none' for none)",
    )
    r.add_argument("--equalize", action="store_true", help="cross-layer equalization (exact)")
    r.add_argument(
        "--bias-correction", action="store_true", help="correct the int8 weight-error bias"
    )
    r.add_argument(
        "--range-margin",
        type=float,
        metavar="F",
        help="widen calibrated int8 activation ranges by this fraction (0..1)",
    )
    r.add_argument(
        "--calibration-range",
        choices=("minmax", "mse"),
        help="int8 activation ranges: the calibration min/max (default) or each narrowed to "
        "its int8 error optimum on the calibration data",
    )
    r.add_argument(
        "--weight-rounding",
        choices=("none", "bias", "gptq"),
        help="int8 weight rounding chosen on the calibration data: 'gptq' (error-"
        "compensating, per layer), 'bias' (bias correction of nearest rounding) or 'none' "
        "(default; a missed --min-sqnr/--max-accuracy-drop retries with gptq)",
    )
    r.add_argument(
        "--no-rounding-fallback",
        action="store_true",
        help="do not retry with gptq weight rounding when int8 misses a fidelity gate",
    )
    r.add_argument(
        "--no-mixed-fallback",
        action="store_true",
        help="do not retry with mixed precision (int16 islands) before int16x8 everywhere",
    )
    r.add_argument(
        "--weight-split",
        type=float,
        metavar="DB",
        help="give the layers whose int8 weights limit the output most two-term weights "
        "(W = int8 grid part + residual, two layers and an ADD; exact in float) until the "
        "weights-only SQNR on the calibration data is predicted to reach DB",
    )
    r.add_argument(
        "--weight-split-budget",
        type=float,
        metavar="F",
        help="at most this fraction of the model's bytes added by --weight-split (default 0.1)",
    )
    r.add_argument(
        "--no-split-fallback",
        action="store_true",
        help="do not retry with --weight-split when int16x8 misses a fidelity gate",
    )
    r.add_argument(
        "--no-int16-fallback",
        action="store_true",
        help="do not retry with int16x8 activations when int8 misses --min-sqnr",
    )
    d = p.add_argument_group("image folders")
    d.add_argument(
        "--mean",
        metavar="M",
        help="per-channel mean after scaling to [0,1], e.g. 0.485,0.456,0.406",
    )
    d.add_argument("--std", metavar="S", help="per-channel std, e.g. 0.229,0.224,0.225")
    g = p.add_argument_group("gates and limits")
    g.add_argument(
        "--min-sqnr",
        type=float,
        metavar="DB",
        help="fail (exit 3) when any output's SQNR is below DB",
    )
    g.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="PTS",
        help="fail (exit 3) when int8 accuracy is more than PTS points below float",
    )
    g.add_argument(
        "--onnx2tf-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds onnx2tf may take (default 600)",
    )
    g.add_argument(
        "--quantize-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds quantization may take (default 900)",
    )
    g.add_argument("--no-cache", action="store_true", help="convert even if cached")
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache folder (default $EDGEDEPLOY_CACHE_DIR or ./.edgedeploy_cache)",
    )
    p.add_argument("--json", action="store_true", help="print report.json instead of tables")
    p.set_defaults(func=run)


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        vals = ()
    if not vals:
        raise UsageError(f"{what} {text!r} is not a list of numbers", hint="e.g. 0.5,0.5,0.5")
    return vals


def _data(spec: str | None, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> Any:
    if spec is None:
        return None
    if (mean or std) and Path(spec).is_dir():
        from toolchain.data import ImageFolder

        return ImageFolder(Path(spec), mean=mean or (0.0,), std=std or (1.0,))
    return spec


def run(args: argparse.Namespace) -> int:
    from toolchain.convert import QuantOptions, convert
    from toolchain.modelsrc import parse_shape

    shapes = [parse_shape(s) for s in args.input_shape] if args.input_shape else None
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    if (mean or std) and not any(
        a is not None and Path(a).is_dir() for a in (args.calib, args.val)
    ):
        raise UsageError("--mean/--std apply to image folders only")
    options = QuantOptions(
        activations=args.activations,
        input_dtype=args.input_type,
        output_dtype=args.output_type,
        per_channel=not args.per_tensor,
        per_channel_dense=args.per_channel_dense,
        calibration_samples=args.calib_samples,
        validation_samples=args.val_samples,
        onnx2tf_timeout_s=args.onnx2tf_timeout,
        quantize_timeout_s=args.quantize_timeout,
        fold_transposes=not args.keep_transposes,
        mixed_target_sqnr=args.mixed_target_sqnr,
        **({} if args.mixed_budget is None else {"mixed_budget": args.mixed_budget}),
        **({} if args.int16_headroom is None else {"int16_headroom": args.int16_headroom}),
    )
    strategy = _strategy(args)
    with ui.progress() as prog:
        result = convert(
            args.model,
            calib=_data(args.calib, mean, std),
            out_dir=args.out,
            input_shapes=shapes,
            val=_data(args.val, mean, std),
            labels=args.labels,
            options=options,
            min_sqnr=args.min_sqnr,
            max_accuracy_drop=args.max_accuracy_drop,
            cache=not args.no_cache,
            progress=prog,
            weights=args.weights,
            cache_dir=args.cache_dir,
            strategy=strategy,
        )
    if args.json:
        sys.stdout.write(to_json(result.report))
        return 0
    _print_summary(result)
    return 0


def _strategy(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from toolchain.convert.strategy import Strategy

    base = Strategy.plain() if args.plain else Strategy()
    changes: dict[str, Any] = {}
    if args.rewrites is not None:
        names = (
            ()
            if args.rewrites.strip() == "none"
            else tuple(n.strip() for n in args.rewrites.split(",") if n.strip())
        )
        changes["rewrites"] = names
    if args.equalize:
        changes["equalize"] = True
    if args.bias_correction:
        changes["bias_correction"] = True
    if args.range_margin is not None:
        changes["range_margin"] = args.range_margin
    if args.calibration_range is not None:
        changes["calibration_range"] = args.calibration_range
    if args.no_int16_fallback:
        changes["int16_fallback"] = False
    if args.no_mixed_fallback:
        changes["mixed_fallback"] = False
    if args.weight_rounding is not None:
        changes["weight_rounding"] = args.weight_rounding
    if args.no_rounding_fallback:
        changes["rounding_fallback"] = False
    if args.weight_split is not None:
        changes["weight_split"] = args.weight_split
    if args.weight_split_budget is not None:
        changes["weight_split_budget"] = args.weight_split_budget
    if args.no_split_fallback:
        changes["split_fallback"] = False
    return replace(base, **changes)


def _fallback_line(attempt: str, fb: dict[str, Any]) -> str:
    """What the precision fallback was for and what it costs against int8."""
    i8 = fb.get("int8") or {}

    def pct(k: str) -> str:
        return f" ({fb[k]:+.1f} %)" if fb.get(k) is not None else ""

    return (
        f"fallback: {attempt}. int8 had top-1 drop {i8.get('accuracy_drop')} points, "
        f"SQNR {i8.get('sqnr_db')} dB, {i8.get('tflite_bytes')} B, arena {i8.get('arena_bytes')}"
        f" B; this model: {fb.get('bytes')} B{pct('extra_bytes_pct')}, arena "
        f"{fb.get('arena_bytes')} B{pct('extra_arena_pct')}"
    )


def _mixed_line(mp: dict[str, Any]) -> str:
    """What mixed precision chose and what it cost against the int8 model."""
    if not mp.get("used"):
        return f"mixed precision: int8 kept ({mp.get('how') or mp.get('reason')})"
    arena = (
        f", arena {mp['arena_int8']} -> {mp['arena']} B ({mp['extra_arena_pct']:+.1f} %)"
        if mp.get("extra_arena_pct") is not None
        else ""
    )
    return (
        f"mixed precision: {mp['int16_tensors']} int16 tensors ({mp['int16_ops']} ops, "
        f"{mp['quantize_added']} QUANTIZE), calibration SQNR {mp['sqnr_before_db']} -> "
        f"{mp['sqnr_after_db']} dB (target {mp['target_sqnr_db']:g}), {mp['bytes_int8']} -> "
        f"{mp['bytes']} B ({mp['extra_bytes_pct']:+.1f} %){arena}, {mp['seconds']['total']} s"
    )


def _print_summary(result: Any) -> None:
    r = result.report
    c = ui.console
    io = Table(title="inputs and outputs (feed these bytes)", title_justify="left")
    for col in ("", "name", "TFLite #", "shape", "layout", "dtype", "scale", "zero point"):
        io.add_column(col)
    for kind, specs in (("in", result.inputs), ("out", result.outputs)):
        for s in specs:
            io.add_row(
                kind,
                s.name,
                str(s.tflite_index),
                "×".join(map(str, s.shape)),
                f"{s.layout} (from {s.torch_layout})",
                s.dtype,
                "-" if s.scale is None else f"{s.scale:.6g}",
                "-" if s.zero_point is None else str(s.zero_point),
            )
    if r.get("accuracy"):  # a classifier with labels: top-1 first, it is what users ask
        a = r["accuracy"]
        c.print(
            f"top-1 accuracy ({a['output']}, {a['samples']} labelled samples): float "
            f"{a['float']:.2f}%, int8 {a['int8']:.2f}% (drop {a['drop']:.2f} points)",
            highlight=False,
        )
    fid = Table(
        title=f"int8 vs float on {r['data']['validation']['samples']} samples "
        f"({r['data']['validation']['source']})",
        title_justify="left",
    )
    for col in ("output", "top-1 agree", "SQNR dB", "input-dep. SQNR dB", "cosine", "max abs err"):
        fid.add_column(col)
    for name, f in r["fidelity"].items():
        t1 = f.get("top1_agreement")
        share = f.get("input_dependent_power")
        varying = f.get("sqnr_input_dependent_db")
        fid.add_row(
            name,
            "-" if t1 is None else f"{100 * t1:.1f}%",
            f"{f['sqnr_db']}",
            ("- (constant output)" if share == 0.0 else "-")
            if varying is None
            else f"{varying} ({100 * (share or 0):.0f}% of power)",
            f"{f['cosine']:.6f}",
            f"{f['max_abs_err']:.4g}",
        )
    c.print(fid)
    c.print(io)
    if r.get("worst_layers"):
        wl = Table(title="layers losing the most", title_justify="left")
        for col in ("op", "layer (PyTorch module)", "ONNX node", "SQNR dB", "loses dB"):
            wl.add_column(col)
        for w in r["worst_layers"]:
            wl.add_row(
                w["op"],
                w.get("module") or "-",
                w.get("onnx_node") or "-",
                str(w["sqnr_db"]),
                str(w["drop_db"]),
            )
        c.print(wl)
    lint = r["lint"]
    c.print("ops: " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()), highlight=False)
    c.print(
        "TRANSPOSE {TRANSPOSE}, QUANTIZE {QUANTIZE}, DEQUANTIZE {DEQUANTIZE}, PAD {PAD}".format(
            **lint
        )
        + f" (transposes folded: {r.get('transposes_folded', 0)})",
        highlight=False,
    )
    conv = r.get("conversion")
    if conv:
        c.print(
            f"path: {conv['frontend']} ({conv['attempt']}), {conv['activations']} activations; "
            f"rewrites: {', '.join(conv['rewrites_applied']) or 'none'}",
            highlight=False,
        )
        split = (conv.get("techniques") or {}).get("weight_split")
        if split and split.get("chosen"):
            wo = split.get("weights_only_db") or {}
            c.print(
                f"weight split: {len(split['chosen'])} layers as two int8 terms, weights-only "
                f"SQNR {wo.get('before')} -> {wo.get('after')} dB (calibration data), about "
                f"{split.get('added_bytes_estimate', 0):,} bytes more",
                highlight=False,
            )
        fb = conv.get("precision_fallback")
        if fb:
            c.print(_fallback_line(conv["attempt"], fb), highlight=False)
        mp = conv.get("mixed_precision")
        if mp:
            c.print(_mixed_line(mp), highlight=False)
    t = r["timings_s"]
    c.print("times (s): " + ", ".join(f"{k} {v:g}" for k, v in t.items()), highlight=False)
    c.print(
        f"[green]wrote[/] {result.tflite_path} ({result.tflite_bytes:,} bytes) and "
        f"{result.report_path}" + (" [dim](cached)[/]" if result.cached else ""),
        highlight=False,
    )
