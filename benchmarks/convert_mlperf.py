"""Converter vs the MLPerf Tiny references (``python -m benchmarks.run convert``).

For each MLPerf Tiny model: the zoo's PyTorch port with the reference trained weights is
converted by :func:`toolchain.convert.convert` with calibration data, and compared with the
reference int8 model (``../shared/reference/mlperf_tiny``): op histogram, bytes, smallest
TFLM arena, SQNR of our int8 against our float PyTorch model, SQNR of the reference int8
against the same float model, and how our int8 outputs agree with the reference int8 outputs
on the same inputs. Then speed: a cold ``edgedeploy convert`` against the hand recipe
(:mod:`benchmarks.hand_recipe`), side by side, and an unchanged (cached) re-run.

Results: ``benchmarks/results/convert_mlperf.json`` and the markdown table that
``benchmarks/README.md`` carries between the ``convert-mlperf`` markers (rewritten by a run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

NAME = "convert"
RESULT = "convert_mlperf"
SPEC = "toolchain.zoo.mlperf_tiny:{}"
SQNR_TARGET_DB = 38.0
BYTES_TOLERANCE = 0.05
ARENA_TOLERANCE = 1.05
LAYOUT_OPS = common.LAYOUT_OPS
ARENA_METHOD = (
    "toolchain.emit.arena.search_arena: smallest arena (16-byte steps) with which the "
    "tflite-micro interpreter allocates and invokes"
)


@dataclass(frozen=True)
class Case:
    """One row: a port, the weights it gets, its data, and the reference int8 model."""

    key: str
    title: str
    factory: str
    weights: str | None  # relative to mlperf_tiny/; None = PyTorch's initialisation (seed 0)
    reference: str  # reference int8 .tflite, relative to mlperf_tiny/
    data: str  # "ic" | "vww" | "kws" | "ad"
    #: True when the weights are the ones the reference int8 model was quantized from
    same_weights: bool
    sqnr_target: bool  # the ≥ 38 dB target applies (ResNet-8 / DS-CNN)
    note: str = ""
    per_channel_dense: bool = False  # QuantOptions.per_channel_dense


CASES: tuple[Case, ...] = (
    Case("ic", "IC ResNet-8", "resnet8", "ic/pretrainedResnet.h5",
         "ic/pretrainedResnet_quant.tflite", "ic", True, True),
    Case("kws", "KWS DS-CNN", "ds_cnn", "kws/kws_ref_model_float32.tflite",
         "kws/kws_ref_model.tflite", "kws", True, True,
         "weights of the float32 .tflite (the run the int8 reference was made from; its "
         "CONV_2D filters are stored int8 per tensor, dequantized here)"),
    Case("kws-savedmodel", "KWS DS-CNN (SavedModel)", "ds_cnn",
         "kws/kws_ref_model_savedmodel", "kws/kws_ref_model.tflite", "kws", False, True,
         "the SavedModel is another training run than the reference .tflite files"),
    Case("vww", "VWW MobileNetV1-0.25", "mobilenet_v1_025", "vww/vww_96.h5",
         "vww/vww_96_int8.tflite", "vww", True, False),
    Case("ad", "AD FC autoencoder", "fc_autoencoder", "ad/ad01_fp32.tflite",
         "ad/ad01_int8.tflite", "ad", True, False,
         "weights of ad01_fp32.tflite = ad01.h5 without the biases of the Dense layers "
         "before BatchNorm, which the reference conversion dropped"),
    Case("ad-per-channel-dense", "AD FC autoencoder, per-channel dense", "fc_autoencoder",
         "ad/ad01_fp32.tflite", "ad/ad01_int8.tflite", "ad", True, False,
         "QuantOptions(per_channel_dense=True): per-channel FULLY_CONNECTED weights (the "
         "earlier default; the reference, like the default now, quantizes dense layers "
         "per tensor)", per_channel_dense=True),
    Case("ic-init", "IC ResNet-8, untrained", "resnet8", None,
         "ic/pretrainedResnet_quant.tflite", "ic", False, True,
         "PyTorch's default initialisation (seed 0): the converter's numerics without the "
         "trained weights' activation ranges"),
    Case("kws-init", "KWS DS-CNN, untrained", "ds_cnn", None, "kws/kws_ref_model.tflite",
         "kws", False, True, "PyTorch's default initialisation (seed 0)"),
    Case("ad-h5", "AD FC autoencoder (.h5)", "fc_autoencoder", "ad/ad01.h5",
         "ad/ad01_int8.tflite", "ad", False, False,
         "ad01.h5 as trained (with those biases): a slightly different function"),
)  # fmt: skip

#: How calibration / validation inputs are made (see toolchain.zoo.mlperf_data).
DATA_SOURCES = {
    "ic": "crops of 6 natural photographs (not CIFAR-10, which is not here), 32×32, 0..255",
    "vww": "crops of the same 6 photographs (2 with people; not COCO), 96×96, 0..1",
    "kws": "MFCCs (MLPerf KWS front end) of real 1 s speech clips: TFLM yes/no/noise/silence, "
    "SWW marvin, windows of SWW's 10 s speech+music mix; random ±100 ms shifts",
    "ad": "real: the 196 log-mel windows of normal_id_01_00000000 (even → calibration, "
    "odd → validation)",
}


def make_data(kind: str, reference_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, validation) arrays in PyTorch layout; disjoint seeds / windows."""
    from toolchain.zoo import mlperf_data as d

    if kind == "ic":
        return d.ic_images(reference_dir, count=200, seed=0), d.ic_images(
            reference_dir, count=100, seed=1
        )
    if kind == "vww":
        return d.vww_images(reference_dir, count=100, seed=0), d.vww_images(
            reference_dir, count=50, seed=1
        )
    if kind == "kws":
        return d.kws_features(reference_dir, count=100, seed=0), d.kws_features(
            reference_dir, count=60, seed=1
        )
    windows = d.ad_windows(reference_dir)
    return windows[0::2].copy(), windows[1::2].copy()


def run_reference_int8(path: Path, x: np.ndarray) -> np.ndarray:
    """The reference int8 model on PyTorch-layout float inputs → dequantized outputs."""
    from toolchain.convert.runtime import make_interpreter

    interp = make_interpreter(path.read_bytes())
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    xs = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    results = []
    for sample in xs:
        q = np.clip(np.round(sample / s_in + z_in), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        y = interp.get_tensor(out["index"])[0].astype(np.float32)
        results.append((y - z_out) * s_out)
    return np.stack(results)


def sqnr_db(ref: np.ndarray, y: np.ndarray) -> float:
    noise = float(((ref - y) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((ref**2).sum()) / noise)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def _pre_softmax_sqnr(report: dict[str, Any]) -> float | None:
    layers = report.get("layers") or []
    for prev, cur in zip(layers, layers[1:], strict=False):
        if cur.get("op") == "SOFTMAX":
            return prev.get("sqnr_db")
    return None


def _ops(path: Path) -> dict[str, int]:
    from toolchain.tflite_model import TFLiteModel

    return dict(sorted(TFLiteModel.from_file(path).op_histogram().items()))


def prepare(case: Case, reference_dir: Path, work: Path) -> tuple[Path, Path, Path, Any]:
    """Weights as a state_dict, calibration and validation .npy; returns them + the model."""
    import torch

    from toolchain.zoo import mlperf_tiny

    mlperf = reference_dir / "mlperf_tiny"
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    source = None if case.weights is None else mlperf / case.weights
    model = getattr(mlperf_tiny, case.factory)(weights=source)
    weights = work / f"{case.key}.pt"
    torch.save(model.state_dict(), weights)
    calib, val = make_data(case.data, reference_dir)
    calib_path, val_path = work / f"{case.data}_calib.npy", work / f"{case.data}_val.npy"
    np.save(calib_path, calib)
    np.save(val_path, val)
    return weights, calib_path, val_path, model


def measure(case: Case, reference_dir: Path, work: Path, cache_dir: Path) -> dict[str, Any]:
    """Convert one case and compare it with the reference int8 model."""
    import torch

    from toolchain.convert import QuantOptions, convert, run_tflite
    from toolchain.emit.arena import search_arena

    weights, calib_path, val_path, model = prepare(case, reference_dir, work)
    ref_path = reference_dir / "mlperf_tiny" / case.reference
    t = time.perf_counter()
    result = convert(
        SPEC.format(case.factory),
        weights=weights,
        calib=calib_path,
        val=val_path,
        out_dir=work / case.key,
        cache_dir=cache_dir,
        options=QuantOptions(per_channel_dense=case.per_channel_dense),
    )
    wall = time.perf_counter() - t
    val = np.load(val_path)
    with torch.no_grad():
        floats = model(torch.from_numpy(val)).numpy()
    ours = run_tflite(result, val)[0]
    ref = run_reference_int8(ref_path, val)
    ours_ops, ref_ops = _ops(result.tflite_path), _ops(ref_path)
    ours_arena = search_arena(result.tflite_path).minimum
    ref_arena = search_arena(ref_path).minimum
    ref_bytes = ref_path.stat().st_size
    row: dict[str, Any] = {
        "case": case.key,
        "title": case.title,
        "weights": case.weights,
        "same_weights_as_reference": case.same_weights,
        "note": case.note,
        "data": DATA_SOURCES[case.data],
        "calibration_samples": int(np.load(calib_path, mmap_mode="r").shape[0]),
        "validation_samples": int(val.shape[0]),
        "bytes": {"ours": result.tflite_bytes, "reference": ref_bytes,
                  "ratio": result.tflite_bytes / ref_bytes},
        "arena": {"ours": ours_arena, "reference": ref_arena,
                  "ratio": ours_arena / ref_arena, "method": ARENA_METHOD},
        "ops": {"ours": ours_ops, "reference": ref_ops},
        "layout_ops": {op: ours_ops.get(op, 0) for op in LAYOUT_OPS},
        "sqnr_db": {
            "ours_vs_float": sqnr_db(floats, ours),
            "reference_vs_float": sqnr_db(floats, ref),
            "ours_vs_reference": sqnr_db(ref, ours),
            "report": result.min_sqnr_db(),
            "report_pre_softmax": _pre_softmax_sqnr(result.report),
        },
        "max_abs_err": {"ours_vs_float": float(np.abs(ours - floats).max()),
                        "ours_vs_reference": float(np.abs(ours - ref).max())},
        "timings_s": result.report.get("timings_s", {}),
        "convert_wall_s": wall,
        "cached": result.cached,
    }  # fmt: skip
    if case.data == "ad":
        full = np.load(calib_path), val
        x_all = np.concatenate(full)
        mse = {
            "float": _ad_score(x_all, model),
            "ours": float(np.mean((x_all - run_tflite(result, x_all)[0]) ** 2)),
            "reference": float(np.mean((x_all - run_reference_int8(ref_path, x_all)) ** 2)),
        }
        row["ad_mean_mse_196_windows"] = mse
    else:
        row["top1_agreement"] = {
            "ours_vs_float": agreement(ours, floats),
            "reference_vs_float": agreement(ref, floats),
            "ours_vs_reference": agreement(ours, ref),
        }
    row["targets"] = _targets(case, row)
    return row


def _ad_score(x: np.ndarray, model: Any) -> float:
    import torch

    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    return float(np.mean((x - y) ** 2))


def _targets(case: Case, row: dict[str, Any]) -> dict[str, bool]:
    out = {
        "no_layout_ops": not any(row["layout_ops"].values()),
        "bytes_le_1.05x": row["bytes"]["ratio"] <= 1 + BYTES_TOLERANCE,
        "arena_le_1.05x": row["arena"]["ratio"] <= ARENA_TOLERANCE,
    }
    if case.sqnr_target:
        out["sqnr_ge_38db"] = row["sqnr_db"]["ours_vs_float"] >= SQNR_TARGET_DB
    return out


# --- speed --------------------------------------------------------------------------------


def _edgedeploy_cmd() -> tuple[list[str], str]:
    """How to run a cold conversion from a fresh process: the CLI if it has ``convert``."""
    exe = Path(sys.executable).with_name("edgedeploy")
    try:
        from toolchain.cli import COMMANDS

        has_cli = "toolchain.cli.convert" in COMMANDS and exe.exists()
    except ImportError:
        has_cli = False
    if has_cli:
        return [str(exe), "-q", "convert"], "edgedeploy convert (CLI)"
    code = (
        "import sys; from toolchain.convert import convert; "
        "a=sys.argv[1:]; convert(a[0], weights=a[1], calib=a[2], out_dir=a[3])"
    )
    return [sys.executable, "-c", code], "python -c 'toolchain.convert.convert(...)'"


def speed(case: Case, reference_dir: Path, work: Path, repeats: int) -> dict[str, Any]:
    """Hand recipe vs a cold edgedeploy conversion vs an unchanged re-run, interleaved."""
    weights, calib_path, _, _ = prepare(case, reference_dir, work / "speed")
    base, how = _edgedeploy_cmd()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    spec = SPEC.format(case.factory)
    runs: dict[str, list[float]] = {
        "hand_recipe": [],
        "edgedeploy_cold": [],
        "edgedeploy_cached": [],
    }
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    hits: list[bool | None] = []
    hand_steps: list[dict[str, float]] = []
    load = []
    for _ in range(repeats):
        load.append(os.getloadavg()[0])
        with tempfile.TemporaryDirectory(prefix="bench-hand-") as tmp:
            cmd = [sys.executable, "-m", "benchmarks.hand_recipe", spec, "--weights",
                   str(weights), "--calib", str(calib_path), "--out", tmp]  # fmt: skip
            secs, cpu_s, out = _timed(cmd, env)
            runs["hand_recipe"].append(secs)
            cpu["hand_recipe"].append(cpu_s)
            hand_steps.append(common.last_json_line(out))
        with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
            cenv = dict(env, EDGEDEPLOY_CACHE_DIR=str(Path(tmp) / "cache"))
            if base[0] == sys.executable:
                cmd = [*base, spec, str(weights), str(calib_path), str(Path(tmp) / "out")]
            else:
                cmd = [*base, spec, "--weights", str(weights), "--calib", str(calib_path),
                       "--out", str(Path(tmp) / "out")]  # fmt: skip
            for kind in ("edgedeploy_cold", "edgedeploy_cached"):
                secs, cpu_s, out = _timed(cmd, cenv)
                runs[kind].append(secs)
                cpu[kind].append(cpu_s)
            # The CLI says "(cached)" on a hit; a miss (e.g. a source file edited between the
            # two runs) makes the sample meaningless, so it is recorded as such.
            hits.append("(cached)" in out if base[0] != sys.executable else None)
    if any(h is False for h in hits):
        common.say("[convert] warning: a re-run missed the cache; its sample is left out")
        keep = [h is not False for h in hits]
        runs["edgedeploy_cached"] = [
            v for v, k in zip(runs["edgedeploy_cached"], keep, strict=True) if k
        ]
        cpu["edgedeploy_cached"] = [
            v for v, k in zip(cpu["edgedeploy_cached"], keep, strict=True) if k
        ]
        if not runs["edgedeploy_cached"]:
            raise RuntimeError("every re-run missed the cache: was the source edited meanwhile?")
    med = {k: float(np.median(v)) for k, v in runs.items()}
    return {
        "case": case.key,
        "how": how,
        "repeats": repeats,
        "runs_s": runs,
        "median_s": med,
        "cpu_s": cpu,
        "median_cpu_s": {k: float(np.median(v)) for k, v in cpu.items()},
        "hand_recipe_steps_s": hand_steps,
        "rerun_cache_hits": hits,
        "ratio_cold_vs_hand": med["edgedeploy_cold"] / med["hand_recipe"],
        "loadavg_1min_at_start": load,
        "cpus": os.cpu_count(),
        "targets": {
            "cold_le_0.8x_hand": med["edgedeploy_cold"] <= 0.8 * med["hand_recipe"],
            "cached_le_2s": med["edgedeploy_cached"] <= 2.0,
        },
    }


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the process tree, stdout) of running ``cmd``."""
    cpu, t = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    secs = time.perf_counter() - t
    cpu = _cpu_children() - cpu
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return secs, cpu, proc.stdout


# --- report -------------------------------------------------------------------------------


def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("✅" if ok else "❌")


def _fmt_ops(ops: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in ops.items())


def markdown(result: dict[str, Any]) -> str:
    """The README section body (tables) for one benchmark result."""
    lines = [
        f"Measured {result['date']} on {result['machine']} "
        f"(`python -m benchmarks.run convert`; raw numbers: "
        f"[results/{RESULT}.json](results/{RESULT}.json)).",
        "",
        "| model (weights) | bytes ours / ref | arena ours / ref (B) | SQNR ours vs float "
        "(dB) | SQNR ref int8 vs float (dB) | ours vs ref int8 | T/Q/DQ | targets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["cases"]:
        s = r["sqnr_db"]
        pre = s.get("report_pre_softmax")
        sq = f"{s['ours_vs_float']:.1f}" + (f" (logits {pre:.1f})" if pre is not None else "")
        if "top1_agreement" in r:
            vs = (f"top-1 {100 * r['top1_agreement']['ours_vs_reference']:.0f} %, "
                  f"SQNR {s['ours_vs_reference']:.1f} dB")  # fmt: skip
        else:
            m = r["ad_mean_mse_196_windows"]
            vs = (f"MSE {m['ours']:.3f} vs {m['reference']:.3f} "
                  f"(float {m['float']:.3f})")  # fmt: skip
        if not r["same_weights_as_reference"]:
            vs += " ‡"
        tq = "/".join(str(r["layout_ops"][k]) for k in LAYOUT_OPS)
        targets = " ".join(f"{k} {_yes(v)}" for k, v in r["targets"].items())
        lines.append(
            f"| {r['title']} (`{Path(r['weights'] or 'random init').name}`) "
            f"| {r['bytes']['ours']:,} / {r['bytes']['reference']:,} ({r['bytes']['ratio']:.3f}) "
            f"| {r['arena']['ours']:,} / {r['arena']['reference']:,} ({r['arena']['ratio']:.3f}) "
            f"| {sq} | {s['reference_vs_float']:.1f} | {vs} | {tq} | {targets} |"
        )
    lines += ["", "‡ different weights from the reference int8 model (see notes).", ""]
    lines += ["Op histograms (ours | reference):", ""]
    for r in result["cases"]:
        if not r["same_weights_as_reference"] or r["case"] == "ad-per-channel-dense":
            continue
        lines.append(
            f"- {r['title']}: {_fmt_ops(r['ops']['ours'])} | {_fmt_ops(r['ops']['reference'])}"
        )
    lines += ["", "Stage times of the conversions (s, cold, from report.json):", ""]
    stages = sorted({k for r in result["cases"] for k in r["timings_s"]} - {"total"})
    lines.append("| model | " + " | ".join(stages) + " | total |")
    lines.append("|---" * (len(stages) + 2) + "|")
    for r in result["cases"]:
        t = r["timings_s"]
        cells = " | ".join(f"{t[k]:.1f}" if k in t else "" for k in stages)
        lines.append(f"| {r['case']} | {cells} | {t.get('total', float('nan')):.1f} |")
    sp = result.get("speed")
    if sp:
        m, c = sp["median_s"], sp.get("median_cpu_s", {})

        def cpu(k: str) -> str:
            return f" ({c[k]:.1f} CPU s)" if k in c else ""

        lines += [
            "",
            f"Speed, {sp['case']} ({sp['how']}; median of {sp['repeats']} interleaved runs, "
            f"{sp['cpus']} CPUs shared, 1-min load average at start "
            f"{', '.join(f'{x:.1f}' for x in sp['loadavg_1min_at_start'])}; wall seconds, "
            "CPU seconds of the whole process tree in brackets):",
            "",
            "| hand recipe | edgedeploy cold | ratio (target ≤ 0.8) | "
            "unchanged re-run (target ≤ 2 s) |",
            "|---|---|---|---|",
            f"| {m['hand_recipe']:.1f}{cpu('hand_recipe')} | "
            f"{m['edgedeploy_cold']:.1f}{cpu('edgedeploy_cold')} | "
            f"{sp['ratio_cold_vs_hand']:.2f} {_yes(sp['targets']['cold_le_0.8x_hand'])} | "
            f"{m['edgedeploy_cached']:.2f}{cpu('edgedeploy_cached')} "
            f"{_yes(sp['targets']['cached_le_2s'])} |",
        ]
        hits = sp.get("rerun_cache_hits") or []
        missed = sum(h is False for h in hits)
        if missed:
            lines += [
                "",
                f"The unchanged re-run is the median of {len(hits) - missed} run(s): {missed} "
                f"of {len(hits)} re-runs missed the cache and were left out.",
            ]
    lines += ["", "Data:", ""]
    lines += [f"- {k.upper()}: {v}" for k, v in DATA_SOURCES.items()]
    notes = [f"- {r['title']}: {r['note']}" for r in result["cases"] if r["note"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run convert", description=__doc__)
    p.add_argument("--cases", default=",".join(c.key for c in CASES),
                   help="comma-separated subset of: " + ", ".join(c.key for c in CASES))  # fmt: skip
    p.add_argument("--speed-case", default="ic", help="case for the speed race ('' = none)")
    p.add_argument("--repeats", type=int, default=2, help="speed races (interleaved)")
    p.add_argument("--work", type=Path, default=common.ROOT / "build" / "bench" / NAME)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    p.add_argument("--speed-only", action="store_true",
                   help="rerun only the speed race; keep the saved case results")  # fmt: skip
    p.add_argument("--render-only", action="store_true",
                   help="rewrite the README section from results/convert_mlperf.json")  # fmt: skip
    a = p.parse_args(argv)
    if a.render_only or a.speed_only:
        saved = json.loads((common.RESULTS / f"{RESULT}.json").read_text())
        if a.speed_only:
            key = a.speed_case or "ic"
            case = {c.key: c for c in CASES}[key]
            common.say(f"[convert] speed race on {key} ({a.repeats} repeats)")
            saved["speed"] = speed(case, common.reference_dir(), a.work, a.repeats)
            common.write_result(RESULT, saved)
        common.update_readme("convert-mlperf", markdown(saved))
        return 0
    reference_dir = common.reference_dir()
    wanted = [k for k in a.cases.split(",") if k]
    unknown = set(wanted) - {c.key for c in CASES}
    if unknown:
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    by_key = {c.key: c for c in CASES}
    work: Path = a.work
    if work.exists():
        shutil.rmtree(work)
    cache_dir = work / "cache"
    rows = []
    for key in wanted:
        common.say(f"[convert] {by_key[key].title}: converting and comparing")
        rows.append(measure(by_key[key], reference_dir, work / "cases", cache_dir))
    result: dict[str, Any] = {
        "benchmark": RESULT,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}",
        "cases": rows,
    }
    if a.speed_case:
        common.say(f"[convert] speed race on {a.speed_case} ({a.repeats} repeats)")
        result["speed"] = speed(by_key[a.speed_case], reference_dir, work, a.repeats)
    common.write_result(RESULT, result)
    if not a.no_readme and set(wanted) == set(by_key) and a.speed_case:
        common.update_readme("convert-mlperf", markdown(result))
    sys.stdout.write(markdown(result))
    return 0
