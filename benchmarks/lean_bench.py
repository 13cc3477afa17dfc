"""Lean model bytes for TFLM (``python -m benchmarks.run lean [-- --sets reference,mbv3]``).

Per model: file bytes, constant bytes, overhead (file − constant) before and after
:func:`toolchain.emit.lean.lean_model`, the byte budget of both, and whether the outputs are
unchanged: the tflite-micro interpreter on the full and the lean model (3 seeded random
inputs, bit-identical required), and LiteRT (reference kernels) on the full model and on
the LiteRT-compatible lean variant (``reduce_zero_points=False``).

Sets (``--sets``):

* ``reference`` — every .tflite in ``../shared/reference`` that TFLM runs: the MLPerf Tiny
  references as MLPerf gives them, TFLM's examples, Arm ML-Zoo, Coral;
* ``mbv3`` — a MobileNetV3-style net (inverted residuals, squeeze-excite, hardswish, 64×64,
  29,498 parameters with BatchNorm folded) and the same net pruned by half
  (``toolchain.prune``, structured, ratio 0.5), converted with the default recipe;
* ``zoo`` — the project's zoo (``toolchain.zoo.ZOO``) converted;
* ``arch`` — the architecture suite (``toolchain.zoo.mobile.SUITE``) converted;
* ``peer`` — ``../shared/peer_models`` (TorchScript) converted.

Conversions go through the convert cache (``.edgedeploy_cache``), so a rerun only pays for
what changed. Writes ``benchmarks/results/lean.json`` and the ``lean`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

RESULT = "lean"
SETS = ("reference", "mbv3", "zoo", "arch", "peer")
#: reference files TFLM cannot run (custom Ethos-U op, float/hybrid, uint8) or LiteRT-only
_SKIP = ("vela", "float32", "fp32", "quant.tflite_uint8")


def random_samples(model: Any, rng: np.random.Generator, count: int) -> list[list[np.ndarray]]:
    """``count`` samples (one array per model input, in order) drawn from ``rng``: integers
    uniform over the whole type range, floats standard normal."""
    out = []
    for _ in range(count):
        sample = []
        for t in model.inputs:
            dt = np.dtype(t.dtype)
            if dt.kind in "iu":
                info = np.iinfo(dt)
                sample.append(rng.integers(info.min, info.max + 1, size=t.shape).astype(dt))
            else:
                sample.append(rng.standard_normal(t.shape).astype(dt))
        out.append(sample)
    return out


def tflm_outputs(data: bytes, inputs: list[list[np.ndarray]], n_out: int) -> list[np.ndarray]:
    """Every output of the tflite-micro interpreter on model ``data``, per sample in order
    (interpreter reset between samples)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data, arena_size=64 << 20)
    outs: list[np.ndarray] = []
    for sample in inputs:
        it.reset()
        for i, a in enumerate(sample):
            it.set_input(a, i)
        it.invoke()
        outs.extend(it.get_output(j).copy() for j in range(n_out))
    return outs


def litert_outputs(data: bytes, inputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Every output of LiteRT (reference kernels) on model ``data``, per sample in order
    (variables reset between samples)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    outs: list[np.ndarray] = []
    for sample in inputs:
        it.reset_all_variables()
        for d, a in zip(it.get_input_details(), sample, strict=True):
            it.set_tensor(d["index"], a)
        it.invoke()
        outs.extend(it.get_tensor(d["index"]).copy() for d in it.get_output_details())
    return outs


def _isolated(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a forked child: an interpreter that crashes (SVDF models crash
    LiteRT's reference kernels here) becomes a result string instead of killing the run."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target() -> None:
        child.send(fn(*args))

    proc = ctx.Process(target=target)
    proc.start()
    child.close()  # so a crashed child gives EOF instead of a wait
    result = None
    try:
        if parent.poll(600):
            result = parent.recv()
    except EOFError:
        pass
    proc.join(10)
    if result is None:
        return f"interpreter crashed (exit code {proc.exitcode})"
    return result


def _tflm(data: bytes, inputs: list[list[np.ndarray]], n_out: int) -> list[np.ndarray] | str:
    try:
        return tflm_outputs(data, inputs, n_out)
    except Exception as exc:  # noqa: BLE001 - recorded as the result
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def _litert(data: bytes, inputs: list[list[np.ndarray]]) -> list[np.ndarray] | str:
    try:
        return litert_outputs(data, inputs)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def _same(a: list[np.ndarray] | str, b: list[np.ndarray] | str) -> bool | str:
    """True/False, or why it could not be compared (``n/a: ...`` when the runtime cannot
    run even the full model)."""
    if isinstance(a, str):
        return f"n/a: the full model fails too: {a}"
    if isinstance(b, str):
        return f"lean model fails: {b}"
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def measure(name: str, data: bytes, group: str) -> dict[str, Any]:
    from toolchain.emit.lean import lean_model
    from toolchain.tflite_budget import byte_budget
    from toolchain.tflite_model import TFLiteModel

    full = TFLiteModel.from_bytes(data, source=name)
    t = time.perf_counter()
    lm = lean_model(full)
    lean_s = time.perf_counter() - t
    lean = TFLiteModel.from_bytes(lm.data)
    compat = lean_model(full, reduce_zero_points=False)
    b0, b1 = byte_budget(full), byte_budget(lean)
    inputs = random_samples(full, np.random.default_rng(0), 3)
    n_out = len(full.outputs)
    tflm_full = _isolated(_tflm, full.data, inputs, n_out)
    lite_full = _isolated(_litert, full.data, inputs)
    over0 = full.size - b0["constant_data"]
    over1 = lean.size - b1["constant_data"]
    return {
        "group": group,
        "model": name,
        "bytes_before": full.size,
        "bytes_after": lean.size,
        "bytes_after_litert_compatible": len(compat.data),
        "constant_bytes": b0["constant_data"],
        "constant_bytes_after": b1["constant_data"],
        "overhead_before": over0,
        "overhead_after": over1,
        "overhead_ratio": round(over1 / over0, 3) if over0 else None,
        "budget_before": b0,
        "budget_after": b1,
        "tflm_identical": _same(tflm_full, _isolated(_tflm, lean.data, inputs, n_out)),
        "litert_identical_compatible_variant": _same(
            lite_full, _isolated(_litert, compat.data, inputs)
        ),
        "litert_runs_lean": not isinstance(_isolated(_litert, lean.data, inputs[:1]), str),
        "lean_seconds": round(lean_s, 3),
        "stats": lm.stats.to_dict(),
    }


def reference_models() -> list[tuple[str, bytes]]:
    ref = common.reference_dir()
    out = []
    for p in sorted(ref.rglob("*.tflite")):
        rel = p.relative_to(ref).as_posix()
        if any(s in rel for s in _SKIP):
            continue
        out.append((rel, p.read_bytes()))
    return out


def mbv3_net(pruned: bool) -> Any:
    from torch import nn

    from toolchain.zoo import mobile

    cfg: list[mobile.Cfg] = [
        (3, 8, 2, 1, True, False), (3, 16, 2, 4, False, False), (3, 16, 1, 3, False, False),
        (5, 24, 2, 4, True, True), (5, 24, 1, 3, True, True), (5, 32, 1, 3, True, True),
    ]  # fmt: skip
    # squeeze-excite gated by a sigmoid: the hard-sigmoid gate converts to RELU_0_TO_1,
    # which the tflite-micro Python interpreter does not register (no TFLM check possible)
    net = mobile.InvertedNet(
        8, cfg, 72, stem_act=nn.Hardswish, default_act=nn.ReLU, se_gate=nn.Sigmoid
    )
    net = mobile.realistic(net, 64, seed=21)
    if not pruned:
        return net
    from toolchain.prune.core import prune_model

    res = prune_model(net, ratio=0.5, example_inputs=net.example_inputs)
    return res.model


def _params(net: Any) -> int:
    from torch import nn

    n = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            n += m.weight.numel() + m.weight.shape[0]
    return int(n)


def _convert(
    net: Any, calib: np.ndarray, work: Path, name: str, shape: list[int] | None = None
) -> bytes | str:
    from toolchain.convert import convert

    try:
        shapes = None if shape is None else [shape]
        res = convert(net, calib=calib, out_dir=work / name, cache=True, input_shapes=shapes)
    except Exception as exc:  # noqa: BLE001 - a model that does not convert is a result
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return (work / name / "model_int8.tflite").read_bytes() if res else b""


def converted(sets: list[str], work: Path) -> list[tuple[str, str, bytes | str, dict[str, Any]]]:
    """(group, name, .tflite bytes or the conversion error, extra facts) per converted model."""
    from toolchain.zoo import mobile

    out: list[tuple[str, str, bytes | str, dict[str, Any]]] = []
    if "mbv3" in sets:
        calib = mobile.image_batch(64, 64, seed=100).numpy()
        for pruned in (False, True):
            net = mbv3_net(pruned)
            name = "mbv3_se_hswish_64" + ("_pruned50" if pruned else "")
            common.say(f"lean: converting {name}")
            out.append(("mbv3", name, _convert(net, calib, work, name), {"params": _params(net)}))
    if "zoo" in sets:
        from benchmarks.arch_suite import MLPERF, model_and_data
        from toolchain import zoo

        for entry in zoo.ZOO:
            common.say(f"lean: converting zoo {entry.name}")
            if entry.name in MLPERF:
                net, calib, _, _ = model_and_data(entry.name, None, 64)
            else:
                from toolchain.zoo import digits

                net, calib = zoo.build(entry.name), digits.calibration()[:64]
            out.append(("zoo", entry.name, _convert(net, calib, work, entry.name), {}))
    if "arch" in sets:
        for e in mobile.SUITE:
            common.say(f"lean: converting arch {e.name}")
            net = getattr(mobile, e.name)(e.size)
            calib = mobile.image_batch(64, e.size, seed=100).numpy()
            out.append(("arch", e.name, _convert(net, calib, work, "arch_" + e.name), {}))
    if "peer" in sets:
        import sys

        peer = common.reference_dir().parent / "peer_models"
        sys.path.insert(0, str(peer))
        from make_suite import digits_images

        manifest = json.loads((peer / "manifest.json").read_text())
        entries = manifest if isinstance(manifest, list) else manifest.get("models", [])
        for m in entries:
            f = peer / m["file"]
            size = int(m["input_shape"][-1])
            common.say(f"lean: converting peer {f.stem}")
            calib = digits_images(size, "train")[0][:64]
            out.append(
                (
                    "peer",
                    f.stem,
                    _convert(str(f), calib, work, "peer_" + f.stem, m["input_shape"]),
                    {},
                )
            )
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run lean")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma list of {', '.join(SETS)}")
    ap.add_argument("--work", default=str(common.ROOT / ".edgedeploy_cache" / "lean_bench"))
    args = ap.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    if "reference" in sets:
        for rel, data in reference_models():
            common.say(f"lean: {rel}")
            rows.append(measure(rel, data, "reference"))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for group, name, data, extra in converted(sets, work):
        if isinstance(data, str):
            failed.append({"group": group, "model": name, "error": data})
            continue
        rows.append({**measure(name, data, group), **extra})
    mb = {r["model"]: r for r in rows if r["group"] == "mbv3"}
    summary: dict[str, Any] = {
        "models": len(rows),
        "max_overhead_ratio": max((r["overhead_ratio"] or 0) for r in rows) if rows else None,
        "over_half": [r["model"] for r in rows if (r["overhead_ratio"] or 0) > 0.5],
        "tflm_not_identical": [
            r["model"]
            for r in rows
            if r["tflm_identical"] is not True and not str(r["tflm_identical"]).startswith("n/a")
        ],
        "tflm_cannot_run_full_model": [
            r["model"] for r in rows if str(r["tflm_identical"]).startswith("n/a")
        ],
    }
    if {"mbv3_se_hswish_64", "mbv3_se_hswish_64_pruned50"} <= set(mb):
        full, half = mb["mbv3_se_hswish_64"], mb["mbv3_se_hswish_64_pruned50"]
        summary["mbv3_pruned_lean_over_unpruned_emitted"] = round(
            half["bytes_after"] / full["bytes_before"], 3
        )
        summary["mbv3_pruned_full_over_unpruned_full"] = round(
            half["bytes_before"] / full["bytes_before"], 3
        )
        summary["mbv3_params"] = [full.get("params"), half.get("params")]
    result = {
        "benchmark": RESULT,
        "command": "python -m benchmarks.run lean -- --sets " + ",".join(sets),
        "host": platform.platform(),
        "summary": summary,
        "rows": rows,
        "conversion_failures": failed,
    }
    common.write_result(RESULT, result)
    common.update_readme(RESULT, readme(result))
    common.say(json.dumps(summary))
    return 1 if summary["tflm_not_identical"] else 0


def _short(v: Any) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "**no**"
    return "n/a" if str(v).startswith("n/a") else str(v)[:40]


def readme(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = result["rows"]
    ours = [r for r in rows if r["group"] != "reference"]
    lines = [
        "## Lean model bytes",
        "",
        f"`{result['command']}` — raw: `benchmarks/results/lean.json` (host: {result['host']}). "
        "Bytes of the .tflite before and after `edgedeploy emit --lean` (docs/emit.md); "
        "*constant* = buffer data (weights, biases); *overhead* = file − constant. "
        "*TFLM*: tflite-micro interpreter outputs on 3 seeded random inputs, full vs lean, bit "
        "for bit (n/a: the interpreter cannot run even the full model). *LiteRT*: reference "
        "kernels, full model vs the LiteRT-compatible lean variant (`reduce_zero_points=False`;"
        " LiteRT refuses the default lean file when it has per-channel tensors).",
        "",
        f"- {s['models']} models; TFLM outputs differ on none "
        f"(`tflm_not_identical`: {s['tflm_not_identical']}); the interpreter cannot run the "
        f"full model for {len(s['tflm_cannot_run_full_model'])} "
        "(uint8 Coral model; RELU_0_TO_1, which the tflite-micro Python package does not "
        "register; GATHER with int64 indices; STRIDED_SLICE over 4 dimensions).",
    ]
    if ours:
        lo = min(r["overhead_ratio"] for r in ours)
        hi = max(r["overhead_ratio"] for r in ours)
        lines.append(
            f"- Models we convert ({len(ours)}: MobileNetV3-style net, zoo, architecture "
            f"suite, peer models): overhead after / before {lo:.2f}–{hi:.2f}."
        )
    if "mbv3_pruned_lean_over_unpruned_emitted" in s:
        lines.append(
            f"- MobileNetV3-style net (SE, hardswish, 64×64, {s['mbv3_params'][0]:,} "
            f"parameters) pruned by half ({s['mbv3_params'][1]:,} parameters): its lean file "
            f"is {s['mbv3_pruned_lean_over_unpruned_emitted']}× the unpruned net's emitted "
            f"file of today (full pruned file: {s['mbv3_pruned_full_over_unpruned_full']}×)."
        )
    lines.append(
        f"- Overhead above 0.5× of before ({len(s['over_half'])}): "
        + ", ".join(m.rsplit("/", 1)[-1] for m in s["over_half"])
        + " — reference files (TFLM examples, Coral's LSTM) that carry few names and little metadata; what is left is "
        "the schema structure TFLM reads."
    )
    lines += [
        "",
        "| set | model | file before | file after | constant | overhead before | after | "
        "ratio | TFLM | LiteRT |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['model']} | {r['bytes_before']:,} | {r['bytes_after']:,} | "
            f"{r['constant_bytes']:,} | {r['overhead_before']:,} | {r['overhead_after']:,} | "
            f"{r['overhead_ratio']} | {_short(r['tflm_identical'])} | "
            f"{_short(r['litert_identical_compatible_variant'])} |"
        )
    lines.append("")
    for f in result["conversion_failures"]:
        lines.append(f"- not converted ({f['group']}): {f['model']}: {f['error'][:120]}")
    return "\n".join(lines) + "\n"
