"""Compiled runtime over the zoo and the architecture suite, int8 and int16x8
(``python -m benchmarks.run compile-suite``).

Every zoo model (:data:`toolchain.zoo.ZOO`, seeded random weights) and every model of the
architecture suite (:data:`toolchain.zoo.mobile.SUITE`) is converted by our converter
(default :class:`~toolchain.convert.strategy.Strategy`) with int8 and with int16x8
activations, then ``edgedeploy compile``-d. What compiles is built with the host gcc and run
on random inputs (plus all-min and all-max) against the tflite-micro Python interpreter
(TFLM's reference kernels): every output value must be equal. What does not compile records
compile's error (operator, layer, reason). Conversions go through the converter's cache, so a
rerun only pays for what changed.

    .venv/bin/python -m benchmarks.run compile-suite -- [--models a,b] [--activations int16]
        [--size 64] [--inputs 4] [--peer] [--merge]

``--peer`` runs the third-party models of ``../shared/peer_models`` instead
(``$EDGEDEPLOY_PEER_MODELS``; see :mod:`benchmarks.peer_suite`), int8 only: each converted
like the peer suite does (default strategy, the first 64 digits training images as
calibration), rows named ``peer/<model>``; a model whose conversion is not clean (lint
problems, float or TRANSPOSE/QUANTIZE/DEQUANTIZE ops left) is recorded as such and not
compiled, since the issue only asks for what converts cleanly.

Results: ``benchmarks/results/compile_suite.json`` and the ``compile-suite`` section of
benchmarks/README.md. :func:`check_model` is also what ``tests/host/test_compile_suite.py``
runs on a few models.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULT = "compile_suite"
CALIB = 32


def model_names() -> list[str]:
    """The zoo's models, then the architecture suite's."""
    from toolchain.zoo import ZOO
    from toolchain.zoo.mobile import SUITE

    return [m.name for m in ZOO] + [m.name for m in SUITE]


PEER = "peer/"


def peer_names() -> list[str]:
    """``peer/<model>`` for every model of the peer suite folder (none without it)."""
    from benchmarks import peer_suite

    folder = peer_suite.peer_dir()
    if not (folder / "manifest.json").is_file():
        return []
    return [PEER + e["model"] for e in peer_suite.manifest(folder)]


def convert_peer(name: str, work: Path, *, cache: bool = True) -> tuple[Path, bool]:
    """Convert peer model ``peer/<model>`` (int8, as the peer suite does); (path, clean)."""
    from benchmarks import peer_suite
    from toolchain.convert import convert

    folder = peer_suite.peer_dir()
    entry = next(e for e in peer_suite.manifest(folder) if PEER + e["model"] == name)
    shape = [int(v) for v in entry["input_shape"]]
    calib, _, _ = peer_suite.digits_data(folder, shape[-1])
    out = work / name.replace("/", "_")
    res = convert(str(folder / entry["file"]), input_shapes=[shape], calib=calib, out_dir=out,
                  cache=cache)  # fmt: skip
    from benchmarks import common

    return out / "model_int8.tflite", bool(common.conversion_fields(res.report)["clean"])


def model_and_calib(name: str, size: int | None, calib: int = CALIB) -> tuple[Any, np.ndarray]:
    """The PyTorch model (seeded weights) and calibration data for zoo or suite model ``name``;
    ``size`` overrides a suite model's input size."""
    import torch

    from toolchain import zoo
    from toolchain.zoo import mobile

    torch.manual_seed(0)
    if name in {m.name for m in zoo.ZOO}:
        entry = zoo.get(name)
        model = zoo.build(name).eval()
        rng = np.random.default_rng(0)
        shape = (calib, *entry.input_shape[1:])
        if name == "digits":
            from toolchain.zoo import digits

            return model, np.asarray(digits.calibration(), np.float32)[:calib]
        if len(shape) == 4 and shape[1] == 3:  # images: 0..255 like the MLPerf data
            return model, rng.uniform(0, 255, size=shape).astype(np.float32)
        return model, rng.normal(0, 1, size=shape).astype(np.float32)
    entry = mobile.suite_model(name)
    px = size or entry.size
    model = getattr(mobile, name)(px)
    return model, mobile.image_batch(calib, px, seed=100).numpy()


def convert_model(
    name: str, activations: str, work: Path, *, size: int | None = None, cache: bool = True
) -> Path:
    """Convert ``name`` with ``activations`` ("int8" or "int16"); the .tflite path."""
    from toolchain.convert import QuantOptions, convert

    model, calib = model_and_calib(name, size)
    out = work / f"{name}_{activations}"
    convert(model, calib=calib, out_dir=out, cache=cache,
            options=QuantOptions(activations=activations))  # fmt: skip
    return out / "model_int8.tflite"


def _inputs(shape: tuple[int, ...], dtype: np.dtype, n: int, seed: int) -> list[np.ndarray]:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    out = [np.full(shape, info.min, dtype), np.full(shape, info.max, dtype)]
    out += [rng.integers(info.min, info.max + 1, size=shape, dtype=dtype) for _ in range(n)]
    return out


class _Reference:
    """The tflite-micro interpreter (TFLM's reference kernels); LiteRT with its reference
    kernels when TFLM cannot run the model (e.g. int64 GATHER positions): ``kind`` says which."""

    def __init__(self, path: Path) -> None:
        from tflite_micro.python.tflite_micro import runtime

        try:
            self.tflm: Any = runtime.Interpreter.from_file(str(path), arena_size=32 << 20)
            self.kind = "tflm"
        except RuntimeError:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            self.tflm = None
            self.lite = Interpreter(model_path=str(path),
                                    experimental_op_resolver_type=OpResolverType.BUILTIN_REF)  # fmt: skip
            self.lite.allocate_tensors()
            self.kind = "litert-ref"

    def __call__(self, xs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
        if self.tflm is not None:
            for i, x in enumerate(xs):
                self.tflm.set_input(x, i)
            self.tflm.invoke()
            return [self.tflm.get_output(i) for i in range(n_out)]
        ins, outs = self.lite.get_input_details(), self.lite.get_output_details()
        for d, x in zip(ins, xs, strict=True):
            self.lite.set_tensor(d["index"], x)
        self.lite.invoke()
        return [self.lite.get_tensor(outs[i]["index"]) for i in range(n_out)]


def check_model(path: Path, name: str, work: Path, *, inputs: int = 4) -> dict[str, Any]:
    """Compile ``path``; when it compiles, build it with the host gcc and compare every output
    with the tflite-micro interpreter (LiteRT's reference kernels when TFLM cannot run the
    model) on ``inputs`` random inputs plus all-min and all-max.

    The row: ops (counts), compiled (bool), error (compile's message when not), and when
    compiled: bit_exact, mismatches, arena / lower bound / TFLM greedy bytes, constants."""
    from toolchain.compile import compile_model, hostrun
    from toolchain.errors import CompileError
    from toolchain.tflite_model import TFLiteModel

    m = TFLiteModel.from_file(path)
    row: dict[str, Any] = {"ops": m.op_histogram()}
    row["tflite_bytes"] = path.stat().st_size
    try:
        cm = compile_model(m, out_dir=work / f"{name}_c", name=name)
    except CompileError as exc:
        row.update(compiled=False, error=exc.message)
        return row
    lib = hostrun.build([cm], work / f"{name}.so")
    run = hostrun.Runner(lib, cm.name)
    reference = _Reference(path)
    per_input = [_inputs(tuple(t["shape"]), np.dtype(t["dtype"]), inputs, seed=k)
                 for k, t in enumerate(cm.inputs)]  # fmt: skip
    outs = [(tuple(t["shape"]), np.dtype(t["dtype"])) for t in cm.outputs]
    mismatches = 0
    for k in range(len(per_input[0])):
        xs = [p[k] for p in per_input]
        wants = reference(xs, len(outs))
        for want, got in zip(wants, run(xs, outs), strict=True):
            mismatches += int(np.count_nonzero(want != got))
    row.update(
        compiled=True,
        bit_exact=mismatches == 0,
        mismatches=mismatches,
        runs=len(per_input[0]),
        reference=reference.kind,
        activations=cm.inputs[0]["dtype"],
        arena_bytes=cm.arena_bytes,
        lower_bound_bytes=cm.plan["lower_bound_bytes"],
        tflm_greedy_bytes=cm.plan["tflm_greedy_bytes"],
        weights_bytes=cm.weights_bytes,
    )
    return row


def run_one(name: str, activations: str, work: Path, size: int | None, inputs: int) -> dict:
    t = time.perf_counter()
    clean = True
    try:
        if name.startswith(PEER):
            path, clean = convert_peer(name, work)
        else:
            path = convert_model(name, activations, work, size=size)
    except Exception as exc:  # noqa: BLE001 - a failed conversion is a result here
        return {"converted": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "time_s": round(time.perf_counter() - t, 1)}  # fmt: skip
    if not clean:
        return {"converted": True, "clean": False, "compiled": False,
                "error": "the conversion is not clean (float or T/Q/D operators left)",
                "time_s": round(time.perf_counter() - t, 1)}  # fmt: skip
    # one library per model and activation type: dlopen returns a loaded path's old library
    cname = f"{name.replace('/', '_')}_{activations}"
    row = {"converted": True, **check_model(path, cname, work, inputs=inputs)}
    row["time_s"] = round(time.perf_counter() - t, 1)
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date']} on {result['machine']} (`python -m benchmarks.run "
        "compile-suite`): each model converted by our converter (seeded random weights, default "
        "strategy), `edgedeploy compile`-d, built with the host gcc and compared with the "
        f"tflite-micro interpreter on {result['inputs']} random inputs plus all-min and all-max. "
        "Arena: ours / TFLM greedy on the same tensors (bytes); int16x8 needs about twice "
        "the int8 arena. Conversion failed: TFLiteConverter has no int16x8 HARD_SWISH."
        + (
            " Rows `peer/…`: the trained third-party models of `../shared/peer_models` "
            "(`--peer`), converted as `peer-suite` converts them, int8 only."
            if any(n.startswith(PEER) for n in result["models"])
            else ""
        ),
        "",
        "| model | " + " | ".join(result["activations"]) + " |",
        "|---|" + "---|" * len(result["activations"]),
    ]
    for name in result["models"]:
        cells = []
        for act in result["activations"]:
            r = result["rows"].get(act, {}).get(name)
            if r is None:
                cells.append("-")
            elif not r.get("converted"):
                cells.append("conversion failed")
            elif r.get("clean") is False:
                cells.append("conversion not clean (not compiled)")
            elif not r["compiled"]:
                why = r["error"].split("): ", 1)[-1].split(" (int16x8: ")[0]
                cells.append("not compiled: " + why.replace("|", "/"))
            else:
                ok = "bit-exact" if r["bit_exact"] else f"**{r['mismatches']} values differ**"
                if r.get("reference", "tflm") != "tflm":
                    ok += " (vs LiteRT's reference kernels: TFLM cannot run it)"
                cells.append(f"{ok}, arena {r['arena_bytes']:,} / {r['tflm_greedy_bytes']:,}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    s = result["summary"]

    def unclean(a: str) -> str:
        n = s[a].get("not_clean")
        return f", {n} not clean" if n else ""

    lines += ["", " ".join(f"{a}: {s[a]['bit_exact']} of {s[a]['converted']} converted models "
                           f"compile and are bit-exact ({s[a]['not_compiled']} not compiled"
                           f"{unclean(a)})." for a in result["activations"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks import common
    from benchmarks.common import say, update_readme, write_result

    ap = argparse.ArgumentParser(prog="benchmarks.run compile-suite")
    ap.add_argument("--models", default="", help="comma-separated (default: zoo + suite)")
    ap.add_argument("--activations", default="int8,int16")
    ap.add_argument("--size", type=int, default=None, help="input size of the suite models")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--peer", action="store_true",
                    help="the peer_models suite instead (int8; rows peer/<model>)")  # fmt: skip
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="update these models' rows in the existing result file")  # fmt: skip
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or (
        peer_names() if args.peer else model_names()
    )
    acts = [a for a in args.activations.split(",") if a]
    if args.peer:
        names = [n if n.startswith(PEER) else PEER + n for n in names]
        acts = ["int8"]  # the peer suite converts with int8 (its own default)
    rows: dict[str, dict[str, Any]] = {a: {} for a in acts}
    with tempfile.TemporaryDirectory(prefix="compile-suite-") as tmp:
        for name in names:
            for act in acts:
                row = run_one(name, act, Path(tmp), args.size, args.inputs)
                rows[act][name] = row
                say(f"{name} {act}: " + (
                    "bit-exact" if row.get("bit_exact") else
                    row.get("error", f"{row.get('mismatches')} mismatches")))  # fmt: skip
    if args.merge and (common.RESULTS / f"{RESULT}.json").is_file():
        old = json.loads((common.RESULTS / f"{RESULT}.json").read_text())
        for a in acts:
            rows[a] = {**old["rows"].get(a, {}), **rows[a]}
        for a in old["activations"]:  # keep the other columns (a --peer run is int8 only)
            rows.setdefault(a, old["rows"].get(a, {}))
        acts = list(dict.fromkeys(old["activations"] + acts))
        names = old["models"] + [n for n in names if n not in old["models"]]
    summary = {
        a: {
            "converted": sum(1 for r in rows[a].values() if r.get("converted")),
            "bit_exact": sum(1 for r in rows[a].values() if r.get("bit_exact")),
            "not_compiled": sum(
                1
                for r in rows[a].values()
                if r.get("converted") and r.get("clean", True) and not r["compiled"]
            ),
            "not_clean": sum(1 for r in rows[a].values() if r.get("clean") is False),
        }
        for a in acts
    }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "inputs": args.inputs,
        "size": args.size,
        "models": names,
        "activations": acts,
        "rows": rows,
        "summary": summary,
    }
    write_result(RESULT, result)
    if not args.no_readme:
        update_readme("compile-suite", markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
