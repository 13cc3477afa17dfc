"""The convert stage end to end: PyTorch model + calibration data → int8 .tflite + report.

Order (explicit): cache lookup → load model → load data → export ONNX → [TF worker:
onnx2tf → quantize → check] → fold layout transposes → graph lint → validate (outputs,
accuracy, per layer) → report → write outputs → fidelity gates.

The TF worker process is started first, so TensorFlow imports while torch loads and the
model exports; the float reference outputs are computed while the worker converts. A cached
result (see :mod:`toolchain.convert.cache`) skips all of it; on the source-level key, neither
torch nor TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolchain import pyref
from toolchain.artifacts import ConvertResult, TensorSpec
from toolchain.convert import cache as cache_mod
from toolchain.convert import graphlint
from toolchain.convert.options import ONNX_OPSET, QuantOptions
from toolchain.errors import (
    ConversionError,
    FidelityError,
    ModelLoadError,
    QuantizationError,
    UsageError,
)
from toolchain.fsutil import (
    check_output_path,
    sha256_file,
    staged_outputs,
    to_json,
    writing_to,
)
from toolchain.progress import ProgressFn, no_progress
from toolchain.tflite_model import TFLiteModel

if TYPE_CHECKING:
    from toolchain.convert.strategy import Attempt, Strategy

log = logging.getLogger(__name__)

TFLITE_NAME = cache_mod.TFLITE_NAME
REPORT_NAME = cache_mod.REPORT_NAME
REPORT_SCHEMA = "edgedeploy.convert/1"
LAYER_SAMPLES = 16  # validation samples used for the per-layer table
KEEP_WORKDIR_ENV = "EDGEDEPLOY_KEEP_WORKDIR"


def convert(
    model: Any,
    *,
    calib: Any,
    out_dir: str | os.PathLike[str],
    input_shapes: Sequence[Sequence[int]] | None = None,
    val: Any = None,
    labels: Any = None,
    options: QuantOptions | None = None,
    min_sqnr: float | None = None,
    max_accuracy_drop: float | None = None,
    cache: bool = True,
    progress: ProgressFn | None = None,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    label_output: int = 0,
    strategy: Strategy | None = None,
) -> ConvertResult:
    """Convert a PyTorch model to a full-integer .tflite and measure what it cost.

    ``model``: an ``nn.Module``, ``path/file.py:factory``, ``package.module:factory``, a
    TorchScript ``.pt`` or a ``torch.export`` ``.pt2`` (see :mod:`toolchain.modelsrc`);
    ``weights`` a state_dict file. ``calib``/``val``: data in PyTorch layout (see
    :mod:`toolchain.data`); without ``val`` the calibration data is used for the fidelity
    numbers. ``labels``: class indices of the ``val`` samples (for accuracy; an image folder
    with class sub-folders brings its own); ``label_output`` is the output they refer to.

    Writes ``out_dir/model_int8.tflite`` and ``out_dir/report.json`` (both or neither).
    ``min_sqnr`` (dB, every output) and ``max_accuracy_drop`` (percentage points, needs
    labels) raise :class:`~toolchain.errors.FidelityError` when missed; nothing is written
    then (the result stays in the cache, so relaxing a threshold costs nothing).

    ``strategy`` (:class:`~toolchain.convert.strategy.Strategy`): rewrites, accuracy
    techniques and fallbacks (default: all measured to help; ``Strategy.plain()`` for none);
    the report's ``conversion`` section says which attempt produced the model.

    Raises the :mod:`toolchain.errors` classes: UsageError, InputFileError, ModelLoadError,
    DataError, ExportError, Onnx2TfError, QuantizationError, GraphLintError, FidelityError.
    """
    from toolchain.convert import reuse
    from toolchain.convert import strategy as strategy_mod

    with reuse.attempts_share():  # the attempts share the model, export, float reference
        return strategy_mod.run(
            strategy or strategy_mod.Strategy(),
            options if options is not None else QuantOptions(),
            min_sqnr,
            lambda attempt: _convert_once(
                model, calib=calib, out_dir=out_dir, input_shapes=input_shapes, val=val,
                labels=labels, min_sqnr=min_sqnr, max_accuracy_drop=max_accuracy_drop,
                cache=cache, progress=progress, weights=weights, cache_dir=cache_dir,
                label_output=label_output, attempt=attempt,
            ),
            max_accuracy_drop,
        )  # fmt: skip


def _convert_once(
    model: Any,
    *,
    calib: Any,
    out_dir: str | os.PathLike[str],
    input_shapes: Sequence[Sequence[int]] | None,
    val: Any,
    labels: Any,
    min_sqnr: float | None,
    max_accuracy_drop: float | None,
    cache: bool,
    progress: ProgressFn | None,
    weights: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    label_output: int,
    attempt: Attempt,
) -> ConvertResult:
    """One conversion attempt (see :func:`convert` and :mod:`toolchain.convert.strategy`)."""
    opts = attempt.options
    prog = progress or no_progress
    out = check_output_path(out_dir, option="--out")
    if cache and cache_dir:
        check_output_path(cache_dir, option="--cache-dir")
    from toolchain import modelsrc

    modelsrc.precheck(model, weights=weights)  # a refused file fails before anything starts
    if max_accuracy_drop is not None and labels is None and not _has_folder_labels(val):
        raise UsageError(
            "--max-accuracy-drop needs labels", hint="give --val DATA and --labels LABELS"
        )
    if labels is not None and val is None:
        raise UsageError("--labels belong to --val data", hint="give --val DATA as well")
    t0 = time.perf_counter()
    store = cache_mod.ConvertCache(Path(cache_dir) if cache_dir else None) if cache else None

    key1 = _source_key(model, weights, input_shapes, calib, val, labels, opts) if store else None
    if key1 is not None:  # the attempt (rewrites, techniques, onnx2tf options) is part of it
        key1 = cache_mod.make_key({"source": key1, "attempt": attempt.cache_dict(),
                                   **_mixed_key(opts, min_sqnr)})  # fmt: skip
    if store is not None and key1 is not None:
        hit = store.get(key1)
        if hit is not None:
            log.info("cache hit (%s): no conversion needed", key1)
            return _finish_cached(hit, out, min_sqnr, max_accuracy_drop, prog)

    workdir = Path(tempfile.mkdtemp(prefix="edgedeploy-convert-"))
    ok = False
    try:
        result = _convert_cold(
            model,
            calib=calib,
            val=val,
            labels=labels,
            out=out,
            opts=opts,
            input_shapes=input_shapes,
            weights=weights,
            store=store,
            key1=key1,
            workdir=workdir,
            prog=prog,
            t0=t0,
            min_sqnr=min_sqnr,
            max_accuracy_drop=max_accuracy_drop,
            label_output=label_output,
            attempt=attempt,
        )
        ok = True
        return result
    finally:
        if ok or not os.environ.get(KEEP_WORKDIR_ENV):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log.warning("work folder kept for inspection: %s", workdir)


# --- the cold path ----------------------------------------------------------------------------


@contextlib.contextmanager
def _stage(name: str, timings: dict[str, float], prog: ProgressFn) -> Iterator[None]:
    prog(name, 0, 1)
    t = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t, 3)
    prog(name, 1, 1)


def _convert_cold(
    model: Any,
    *,
    calib: Any,
    val: Any,
    labels: Any,
    out: Path,
    opts: QuantOptions,
    input_shapes: Sequence[Sequence[int]] | None,
    weights: Any,
    store: cache_mod.ConvertCache | None,
    key1: str | None,
    workdir: Path,
    prog: ProgressFn,
    t0: float,
    min_sqnr: float | None,
    max_accuracy_drop: float | None,
    label_output: int,
    attempt: Attempt,
) -> ConvertResult:
    from toolchain.convert import reuse
    from toolchain.convert.tfproc import TFWorker

    timings: dict[str, float] = {}
    shared = reuse.current()
    with shared.take_spare() or TFWorker(workdir) as worker:  # TF imports from here on
        with _stage("load model", timings, prog):
            from toolchain import modelsrc
            from toolchain.convert.export import onnx_fingerprint

            # the model is fixed for the conversion (model, weights, shapes): shared
            def load() -> Any:
                return modelsrc.load_model(model, weights=weights, input_shapes=input_shapes)

            loaded = shared.get(("load",), load)
        in_shapes = list(zip(loaded.input_names, loaded.input_shapes, strict=True))
        with _stage("load data", timings, prog):
            from toolchain import data as data_mod

            calib_ds = data_mod.load_data(
                calib, inputs=in_shapes, what="calibration data", limit=opts.calibration_samples
            )
            val_ds = (
                data_mod.load_data(
                    val, inputs=in_shapes, what="validation data", limit=opts.validation_samples
                )
                if val is not None
                else None
            )
            label_arr = None
            if labels is not None and val_ds is not None:
                label_arr = data_mod.load_labels(labels, n=len(val_ds))
            elif val_ds is not None and val_ds.labels is not None:
                label_arr = val_ds.labels
            if label_arr is not None and not 0 <= label_output < len(loaded.output_names):
                raise UsageError(f"label output {label_output} does not exist")
            if label_arr is not None:
                data_mod.check_class_ids(
                    label_arr, loaded.output_shapes[label_output], what="labels"
                )
            if max_accuracy_drop is not None and label_arr is None:
                raise UsageError("--max-accuracy-drop needs labels", hint="give --labels")
        with _stage("export", timings, prog):
            onnx_path = workdir / "model.onnx"
            onnx_bytes = _export_shared(shared, attempt, (loaded, load), calib_ds, onnx_path, opts)
        to_round = onnx_bytes
        if attempt.weight_split is not None:
            # two-term weights for the layers that limit the output (exact in float); the
            # converter gets them (onnx_path), onnx_bytes stays the float model
            with _stage("weight split", timings, prog):
                to_round = attempt.split_weights(
                    onnx_bytes, onnx_path, calib_ds.arrays, loaded.input_names
                )
        if attempt.weight_rounding != "none":
            # the converter gets the rounded weights (onnx_path); onnx_bytes stays the
            # float model the per-layer table and the export check compare against
            with _stage("weight rounding", timings, prog):
                attempt.round_weights(to_round, onnx_path, calib_ds.arrays, loaded.input_names)
        key2 = None
        if store is not None:
            key2 = cache_mod.make_key(
                {
                    "onnx": onnx_fingerprint(onnx_bytes),
                    "calib": data_mod.fingerprint(calib_ds.arrays),
                    "val": data_mod.fingerprint(val_ds.arrays) if val_ds is not None else None,
                    "labels": data_mod.fingerprint([label_arr]) if label_arr is not None else None,
                    "label_output": label_output,
                    "options": opts.cache_dict(),
                    "versions": cache_mod.versions(),
                    "attempt": attempt.cache_dict(),
                    **_mixed_key(opts, min_sqnr),
                }
            )
            hit = store.get(key2)
            if hit is not None:
                if key1 is not None:
                    store.link(key1, key2)
                return _finish_cached(hit, out, min_sqnr, max_accuracy_drop, prog)

        mixed_on = opts.activations == "mixed"
        np.savez(
            workdir / "calib.npz", **dict(zip(loaded.input_names, calib_ds.arrays, strict=True))
        )
        tflite_path = workdir / TFLITE_NAME
        strict_key, strict_known = _strict_lookup(onnx_path, attempt, calib_ds.arrays, store)
        worker.submit(
            {
                "onnx2tf_strict_known": strict_known,
                "workdir": str(workdir),
                "onnx": str(onnx_path),
                "onnx2tf": attempt.onnx2tf,
                "range_margin": attempt.range_margin,
                "range_method": attempt.range_method,
                "calib": str(workdir / "calib.npz"),
                "out": str(tflite_path),
                **({"out16": str(workdir / "model_int16.tflite")} if mixed_on else {}),
                "options": opts.to_dict(),
                "inputs": [{"name": n, "torch_shape": list(s)} for n, s in in_shapes],
                "outputs": [
                    {"name": n, "torch_shape": list(s)}
                    for n, s in zip(loaded.output_names, loaded.output_shapes, strict=True)
                ],
            }
        )

        # While the worker converts: the float reference.
        eval_ds = val_ds if val_ds is not None else calib_ds
        n_eval = min(len(eval_ds), opts.validation_samples)
        with _stage("float reference", timings, prog):
            from toolchain.convert import validate

            ref_key = ("reference", hashlib.sha256(onnx_bytes).hexdigest(), n_eval,
                       LAYER_SAMPLES, val_ds is not None, opts.calibration_samples,
                       opts.validation_samples)  # fmt: skip
            ref_outs, layer_samples, onnx_ref, export_err = shared.get(
                ref_key, lambda: _float_reference(loaded, eval_ds, n_eval, onnx_bytes)
            )
            mixed_data: tuple[list[np.ndarray], list[np.ndarray]] | None = None
            if mixed_on:  # float outputs on calibration samples (mixed precision chooses there)
                from toolchain.convert.mixed import MEASURE_SAMPLES

                n_mix = min(MEASURE_SAMPLES, len(calib_ds))
                mixed_data = (
                    [a[:n_mix] for a in calib_ds.arrays],
                    _torch_outputs(loaded, calib_ds.arrays, n_mix),
                )
        try:
            meta = worker.wait(
                onnx2tf_timeout_s=opts.onnx2tf_timeout_s,
                quantize_timeout_s=opts.quantize_timeout_s,
                progress=prog,
                timings=timings,
            )
        except QuantizationError as exc:
            raise _explain_quantize_error(exc, onnx_bytes) from exc
        if strict_known is None:
            _strict_record(strict_key, meta, store)
        timings["tf_import (overlapped)"] = round(worker.import_s or 0.0, 3)
    for k in ("onnx2tf", "quantize", "quantize int16"):
        if k in timings:
            timings[k] = round(timings[k], 3)

    data = tflite_path.read_bytes()
    if opts.activations == "int16":  # runtimes read scale/zero point only
        from toolchain.convert.mixed import strip_calibration_stats

        data = strip_calibration_stats(data)
    mixed_rec: dict[str, Any] | None = None
    if mixed_data is not None:
        with _stage("mixed precision", timings, prog):
            data, mixed_rec = _mixed(data, meta, loaded, mixed_data, opts, min_sqnr)
    folded, fold_check = 0, "not needed"
    if opts.fold_transposes:
        with _stage("fold transposes", timings, prog):
            data, meta, folded, fold_check = _fold(data, meta, loaded, layer_samples)
    parsed = TFLiteModel.from_bytes(data, source="int8 model")
    rounding = attempt.techniques.get("weight_rounding")
    if rounding and rounding.get("baked") is not None:
        from toolchain.convert import weightround

        rounding["in_model"] = weightround.check_baked(data, rounding)
        rounding.pop("baked")
    with _stage("lint", timings, prog):
        lint = graphlint.lint(parsed)
        graphlint.check(
            lint, source="the int8 model", where=lambda op: validate.onnx_origin(onnx_bytes, op)
        )
    ins, outs = _specs(parsed, meta, loaded)

    with _stage("validate", timings, prog):
        from toolchain.convert.runtime import run_tflite

        int8_outs = run_tflite(
            data, [a[:n_eval] for a in eval_ds.arrays], input_specs=ins, output_specs=outs
        )
        fid = {
            spec.name: validate.fidelity(r, q)
            for spec, r, q in zip(outs, ref_outs, int8_outs, strict=True)
        }
        acc: dict[str, Any] | None = None
        if label_arr is not None:
            lab = label_arr[:n_eval]
            acc = {
                "output": loaded.output_names[label_output],
                "samples": int(len(lab)),
                "float": round(validate.accuracy(ref_outs[label_output], lab), 3),
                "int8": round(validate.accuracy(int8_outs[label_output], lab), 3),
            }
            acc["drop"] = round(acc["float"] - acc["int8"], 3)
    if _misses_gate(fid, acc, min_sqnr, max_accuracy_drop):
        shared.start_spare()  # the next attempt's worker imports TF while this one ends
    with _stage("per-layer", timings, prog):
        rows = validate.layer_table(onnx_bytes, data, layer_samples, ins, onnx_ref=onnx_ref)
    timings["total"] = round(time.perf_counter() - t0, 3)

    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "model": {
            "source": loaded.source,
            "input_names": list(loaded.input_names),
            "output_names": list(loaded.output_names),
            "onnx_opset": ONNX_OPSET,
        },
        "tflite_bytes": len(data),
        "tflite_sha256": hashlib.sha256(data).hexdigest(),
        "ops": lint.ops,
        "lint": {**lint.counts, "problems": list(lint.problems)},
        "transposes_folded": folded,
        "fold_check": fold_check,
        "inputs": [s.to_dict() for s in ins],
        "outputs": [s.to_dict() for s in outs],
        "options": opts.to_dict(),
        "data": {
            "calibration": {"source": calib_ds.source, "samples": len(calib_ds)},
            "validation": {
                "source": eval_ds.source if val_ds is not None else "calibration data (no --val)",
                "samples": n_eval,
            },
        },
        "fidelity": fid,
        "conversion": attempt.record(),
        "accuracy": acc,
        "export_max_abs_err": export_err,
        "onnx2tf_max_rel_err": meta.get("onnx2tf_max_rel_err"),
        "layers": rows,
        "worst_layers": validate.worst_layers(rows),
        "timings_s": timings,
        "versions": cache_mod.versions(),
        "cache_key": key2,
    }
    # strict mode off first, on when that model failed onnx2tf or its float check (worker)
    report["conversion"]["onnx2tf_strict_mode"] = meta.get("onnx2tf_strict_mode")
    report["conversion"]["onnx2tf_strict_fallback"] = meta.get("onnx2tf_strict_fallback", [])
    if attempt.fallback_from:
        report["conversion"]["precision_fallback"] = _precision_cost(attempt.fallback_from, data)
    if mixed_rec is not None:
        report["conversion"]["mixed_precision"] = mixed_rec
    if store is not None and key2 is not None:
        store.put(key2, data, report)
        if key1 is not None:
            store.link(key1, key2)
    _gate(report, min_sqnr, max_accuracy_drop, data)
    return _write(out, data, report, ins, outs, cached=False)


def _misses_gate(
    fid: dict[str, Any], acc: dict[str, Any] | None, min_sqnr: float | None, max_drop: float | None
) -> bool:
    """Whether :func:`_check_gates` will raise for these figures (a fallback attempt follows)."""
    sq = [f.get("sqnr_db") for f in fid.values()]
    if min_sqnr is not None and any(s is not None and s < min_sqnr for s in sq):
        return True
    return max_drop is not None and acc is not None and acc["drop"] > max_drop


def _strict_lookup(
    onnx_path: Path, attempt: Attempt, calib: Sequence[np.ndarray], store: Any
) -> tuple[str, dict[str, Any] | None]:
    """The strict-mode memo's key for the graph the converter gets, and what it knows
    (see :mod:`toolchain.convert.strictmemo`; the cache folder holds it across processes)."""
    from toolchain.convert import strictmemo

    k = strictmemo.key(onnx_path.read_bytes(), attempt.onnx2tf, calib)
    known = strictmemo.lookup(k, store.root if store is not None else None)
    if known is not None:
        log.info("onnx2tf strict mode off failed on this graph before: strict mode on directly")
    return k, known


def _strict_record(k: str, meta: dict[str, Any], store: Any) -> None:
    from toolchain.convert import strictmemo

    strictmemo.record(k, meta, store.root if store is not None else None)


def _export_shared(
    shared: Any,
    attempt: Attempt,
    model: tuple[Any, Callable[[], Any]],
    calib_ds: Any,
    onnx_path: Path,
    opts: QuantOptions,
) -> bytes:
    """The exported, rewritten ONNX bytes (written to ``onnx_path``): computed once per
    conversion for the same rewrites and techniques (see :mod:`toolchain.convert.reuse`);
    a later attempt gets the same bytes and the same rewrite/technique records. The export
    itself is shared by every attempt with the same techniques: an attempt with other
    rewrites (the int16x8 one adds ``layernorm-centred``) rewrites the same export.

    ``model``: (the loaded model, a function loading it again). The exporter changes a
    TorchScript module it exports (measured: a second export of the same loaded
    MobileNetV2 gives other ONNX bytes than the first, a fresh load the first's again), so
    every export but the conversion's first gets a freshly loaded model, as each attempt
    did when it loaded its own."""
    from toolchain.convert.export import export_onnx

    techniques = attempt.equalize or attempt.bias_correction

    tech_key = ("raw export", attempt.equalize, attempt.bias_correction, opts.per_channel,
                opts.per_channel_dense, opts.calibration_samples)  # fmt: skip

    def export_raw() -> tuple[bytes, dict[str, Any]]:
        used = shared.get(("exported from the loaded model",), lambda: [False])
        loaded = model[1]() if used[0] else model[0]
        used[0] = True
        exported = attempt.prepare_model(loaded, calib_ds.arrays)  # techniques (a copy)
        return export_onnx(exported, onnx_path), copy.deepcopy(attempt.techniques)

    def make() -> tuple[bytes, list[dict[str, Any]], dict[str, Any]]:
        raw_hit = tech_key in shared
        raw, techs = shared.get(tech_key, export_raw, copy_out=True)
        if raw_hit:  # what export_raw would have done to this attempt
            onnx_path.write_bytes(raw)
            if techniques:
                attempt.techniques = techs
        data = attempt.rewrite_onnx(raw, onnx_path)
        return data, copy.deepcopy(attempt.rewrite_records), copy.deepcopy(attempt.techniques)

    key = ("export", tuple(attempt.rewrites), *tech_key[1:])
    hit = key in shared
    data, records, techs = shared.get(key, make, copy_out=True)
    if hit:  # what make() would have done to this attempt
        onnx_path.write_bytes(data)
        if attempt.rewrites:
            attempt.rewrite_records = records
        if techniques:
            attempt.techniques = techs
    return data


def _float_reference(
    loaded: Any, eval_ds: Any, n_eval: int, onnx_bytes: bytes
) -> tuple[list[np.ndarray], list[Any], dict[str, Any], float | None]:
    """PyTorch's outputs on the evaluation samples, the per-layer samples, the ONNX model's
    intermediates on them and the export error (ONNX vs PyTorch)."""
    from toolchain.convert import validate

    ref_outs = _torch_outputs(loaded, eval_ds.arrays, n_eval)
    layer_samples = [eval_ds.sample(i) for i in range(min(LAYER_SAMPLES, n_eval))]
    onnx_ref = validate.onnx_intermediates(onnx_bytes, layer_samples, loaded.input_names)
    export_err = _export_check(onnx_ref, loaded.output_names, ref_outs, len(layer_samples))
    return ref_outs, layer_samples, onnx_ref, export_err


def _torch_outputs(loaded: Any, arrays: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Float outputs of the PyTorch model on the first ``n`` samples, batched when it can."""
    import torch

    per: list[list[np.ndarray]] = []
    batch = 32
    i = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the TF worker is converting on the other cores meanwhile
    try:
        while i < n:
            j = min(n, i + batch)
            xs = [torch.from_numpy(a[i:j]) for a in arrays]
            try:
                outs = loaded.forward_outputs(xs)
                if any(o.shape[0] != j - i for o in outs):
                    raise ValueError("batch dimension changed")
            except Exception as exc:  # a model that only runs at batch 1: go sample by sample
                if batch == 1:
                    raise ModelLoadError(
                        f"{loaded.source}: the model fails on data sample {i}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                batch = 1
                continue
            per.append([o.detach().numpy().astype(np.float32) for o in outs])
            i = j
    finally:
        torch.set_num_threads(threads)
    return [np.concatenate([p[k] for p in per]) for k in range(len(per[0]))]


def _fold(
    data: bytes, meta: dict[str, Any], loaded: Any, samples: Sequence[tuple[np.ndarray, ...]]
) -> tuple[bytes, dict[str, Any], int, str]:
    """Fold layout transposes; keep the result only if it is bit-exact on ``samples``.

    Returns (model bytes, meta with updated perms, ops removed, check verdict).
    """
    import copy

    from toolchain.convert import layout
    from toolchain.convert.runtime import run_tflite

    fr = layout.fold_layout_transposes(data)
    if not fr.removed:
        return data, meta, 0, "not needed"
    new_meta = copy.deepcopy(meta)
    for kind, dropped, compose in (
        ("inputs", fr.input_perms, layout.compose_input_perm),
        ("outputs", fr.output_perms, layout.compose_output_perm),
    ):
        for m in new_meta[kind]:
            p = dropped.get(int(m["tflite_index"]))
            if p is not None:
                m["perm"] = list(compose(tuple(m["perm"]), p))
    before = _specs(TFLiteModel.from_bytes(data), meta, loaded)
    after = _specs(TFLiteModel.from_bytes(fr.data), new_meta, loaded)
    xs = [np.concatenate([s[k] for s in samples]) for k in range(len(loaded.input_names))]
    ref = run_tflite(data, xs, input_specs=before[0], output_specs=before[1])
    got = run_tflite(fr.data, xs, input_specs=after[0], output_specs=after[1])
    if all(np.array_equal(a, b) for a, b in zip(ref, got, strict=True)):
        return fr.data, new_meta, fr.removed, f"bit-exact on {len(samples)} samples"
    log.warning("folding layout transposes changed the outputs; kept the unfolded model")
    return data, meta, 0, "failed: outputs changed, transposes kept"


def _mixed(
    data: bytes,
    meta: dict[str, Any],
    loaded: Any,
    samples: tuple[list[np.ndarray], list[np.ndarray]],
    opts: QuantOptions,
    min_sqnr: float | None,
) -> tuple[bytes, dict[str, Any]]:
    """Mixed precision: int16 activation islands spliced into the int8 model ``data`` where
    they are measured to help (see :mod:`toolchain.convert.mixed`); (model, its record)."""
    from toolchain.convert import mixed

    info = meta.get("mixed_int16") or {}
    if "path" not in info:
        rec = {"used": False, "reason": f"no int16x8 model: {info.get('error', 'not made')}"}
        log.warning("mixed precision: %s; the int8 model stands", rec["reason"])
        return data, rec
    data16 = Path(info["path"]).read_bytes()
    target, measure = _mixed_target(opts, min_sqnr)
    ins, outs = _specs(TFLiteModel.from_bytes(data, source="int8 model"), meta, loaded)
    xs, ref = samples
    try:
        result = mixed.choose(
            data, data16, xs, ref, input_specs=ins, output_specs=outs, target_sqnr=target,
            budget=opts.mixed_budget, arena=_arena, measure=measure,
            io16=(opts.io_input == "int16", opts.io_output == "int16"),
        )  # fmt: skip
    except (RuntimeError, ValueError) as exc:  # LiteRT refused a spliced model
        raise ConversionError(f"mixed precision: LiteRT cannot run a spliced model: {exc}") from exc
    return result.data, result.record


def _mixed_target(opts: QuantOptions, min_sqnr: float | None) -> tuple[float, str]:
    """What mixed precision aims at: (SQNR in dB, measure): the option, else the
    ``--min-sqnr`` gate plus a margin on the plain SQNR the gate reads, else the default."""
    from toolchain.convert import mixed

    if opts.mixed_target_sqnr is not None:
        return float(opts.mixed_target_sqnr), "input-dependent"
    if min_sqnr is not None:
        return float(min_sqnr) + mixed.GATE_MARGIN_DB, "plain"
    return mixed.DEFAULT_TARGET_SQNR, "input-dependent"


def _mixed_key(opts: QuantOptions, min_sqnr: float | None) -> dict[str, Any]:
    """The cache-key part of a mixed conversion: its target depends on the gate."""
    return (
        {"mixed_target": list(_mixed_target(opts, min_sqnr))} if opts.activations == "mixed" else {}
    )


def _export_check(
    onnx_ref: dict[str, Any], names: Sequence[str], ref: Sequence[np.ndarray], k: int
) -> float | None:
    """Max |ONNX − PyTorch| over the outputs (a broken export shows here, not in SQNR)."""
    errs = []
    for name, r in zip(names, ref, strict=True):
        if name in onnx_ref:
            errs.append(float(np.max(np.abs(onnx_ref[name][2] - r[:k]))) if k else 0.0)
    return round(max(errs), 6) if errs else None


def _specs(
    parsed: TFLiteModel, meta: dict[str, Any], loaded: Any
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    def build(
        kind: str, names: Sequence[str], shapes: Sequence[tuple[int, ...]], tensors: Sequence[Any]
    ) -> tuple[TensorSpec, ...]:
        specs = []
        for k, (name, shape, m) in enumerate(zip(names, shapes, meta[kind], strict=True)):
            t = tensors[int(m["tflite_index"])]
            specs.append(
                TensorSpec(
                    name=name,
                    index=k,
                    tflite_index=int(m["tflite_index"]),
                    tflite_name=t.name,
                    shape=t.shape,
                    dtype=t.dtype,
                    scale=t.scale,
                    zero_point=t.zero_point,
                    torch_shape=tuple(shape),
                    perm=tuple(int(p) for p in m["perm"]),
                )
            )
        return tuple(specs)

    return (
        build("inputs", loaded.input_names, loaded.input_shapes, parsed.inputs),
        build("outputs", loaded.output_names, loaded.output_shapes, parsed.outputs),
    )


def _explain_quantize_error(exc: QuantizationError, onnx_bytes: bytes) -> QuantizationError:
    """Name the PyTorch layers behind the ops the converter refused."""
    ops = list(getattr(exc, "ops", []) or [])
    if not ops:
        return exc
    from toolchain.convert.validate import onnx_origin

    where = ", ".join(o for o in (onnx_origin(onnx_bytes, op) for op in ops) if o)
    layers = list(getattr(exc, "layers", []) or [])
    said = str(getattr(exc, "converter_said", "") or "").strip()
    msg = (
        f"int8 quantization failed: no int8 TFLite kernel for {', '.join(ops)}"
        + (f" at {where}" if where else "")
        + (f" (TF layer {', '.join(layers[:3])})" if layers and not where else "")
        + (f"; the converter said: {_first_error_line(said)}" if said else "")
    )
    return QuantizationError(
        msg,
        hint="replace that layer with one that has an int8 builtin (e.g. GELU(approximate="
        "'tanh') instead of exact GELU) or use --activations int16",
    )


def _first_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln[ln.index("error:") + len("error:") :].strip()
    return lines[0] if lines else ""


# --- cache, outputs, gates --------------------------------------------------------------------


def _has_folder_labels(val: Any) -> bool:
    from toolchain.data import ImageFolder

    return isinstance(val, ImageFolder) or (isinstance(val, str | Path) and Path(val).is_dir())


def _source_key(
    model: Any,
    weights: Any,
    input_shapes: Any,
    calib: Any,
    val: Any,
    labels: Any,
    opts: QuantOptions,
) -> str | None:
    """The key that needs neither torch nor TensorFlow; None when it cannot be had."""
    from toolchain import data as data_mod

    if not isinstance(model, str | Path):
        return None
    text = str(model)
    path = Path(text).expanduser()
    if path.is_file():
        model_part: Any = {"file": sha256_file(path)}
    else:
        model_part = pyref.source_fingerprint(text)
        if model_part is None:
            return None
    if weights is not None:
        if not Path(weights).is_file():
            return None
        model_part["weights"] = sha256_file(Path(weights))
    parts = {
        "model": model_part,
        "input_shapes": [list(s) for s in input_shapes] if input_shapes is not None else None,
        "calib": data_mod.fingerprint(calib),
        "val": data_mod.fingerprint(val),
        "labels": data_mod.fingerprint(labels),
        "options": opts.cache_dict(),
        "versions": cache_mod.versions(),
    }
    if (
        parts["calib"] is None
        or (val is not None and parts["val"] is None)
        or (labels is not None and parts["labels"] is None)
    ):
        return None
    return cache_mod.make_key(parts)


def _finish_cached(
    hit: tuple[Path, dict[str, Any]],
    out: Path,
    min_sqnr: float | None,
    max_accuracy_drop: float | None,
    prog: ProgressFn,
) -> ConvertResult:
    path, report = hit
    prog("cached", 1, 1)
    data = path.read_bytes()
    _gate(report, min_sqnr, max_accuracy_drop, data)
    ins = tuple(TensorSpec.from_dict(d) for d in report["inputs"])
    outs = tuple(TensorSpec.from_dict(d) for d in report["outputs"])
    return _write(out, data, report, ins, outs, cached=True)


def _write(
    out: Path,
    data: bytes,
    report: dict[str, Any],
    ins: tuple[TensorSpec, ...],
    outs: tuple[TensorSpec, ...],
    *,
    cached: bool,
) -> ConvertResult:
    with writing_to(out, option="--out"), staged_outputs(out) as stage:
        (stage / TFLITE_NAME).write_bytes(data)
        (stage / REPORT_NAME).write_text(to_json(report))
    return ConvertResult(
        tflite_path=out / TFLITE_NAME,
        report_path=out / REPORT_NAME,
        report=report,
        inputs=ins,
        outputs=outs,
        tflite_bytes=len(data),
        cached=cached,
    )


def _arena(data: bytes) -> int | None:
    """The host TFLM interpreter's minimum arena (None when it cannot run the model)."""
    from toolchain.emit.arena import minimum_arena
    from toolchain.errors import EdgeDeployError

    try:
        return minimum_arena(data)
    except EdgeDeployError as exc:
        log.warning("arena of the model not measured: %s", exc.message)
        return None


def _precision_cost(int8: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The int8 attempt's figures next to the fallback model's: what the precision cost."""
    arena = _arena(data)
    out: dict[str, Any] = {"int8": int8, "bytes": len(data), "arena_bytes": arena}
    if int8.get("tflite_bytes"):
        out["extra_bytes_pct"] = round(100.0 * (len(data) / int8["tflite_bytes"] - 1.0), 2)
    if int8.get("arena_bytes") and arena:
        out["extra_arena_pct"] = round(100.0 * (arena / int8["arena_bytes"] - 1.0), 2)
    return out


def _measured(report: dict[str, Any], data: bytes | None) -> dict[str, Any]:
    sq = [f.get("sqnr_db") for f in report["fidelity"].values() if f.get("sqnr_db") is not None]
    acc = report.get("accuracy") or {}
    return {
        "activations": report["options"]["activations"],
        "tflite_bytes": report["tflite_bytes"],
        "arena_bytes": _arena(data) if data is not None else None,
        "sqnr_db": min(sq) if sq else None,
        "accuracy": acc.get("int8"),
        "accuracy_drop": acc.get("drop"),
    }


def _gate(
    report: dict[str, Any],
    min_sqnr: float | None,
    max_drop: float | None,
    data: bytes | None = None,
) -> None:
    """Raise FidelityError (with what was measured) when a threshold is missed."""
    try:
        _check_gates(report, min_sqnr, max_drop)
    except FidelityError as exc:
        exc.measured = _measured(report, data)
        raise


def _check_gates(report: dict[str, Any], min_sqnr: float | None, max_drop: float | None) -> None:
    worst = report.get("worst_layers") or []
    worst_txt = ", ".join(
        f"{w.get('module') or w.get('onnx_node') or w['op']} ({w['drop_db']:.1f} dB)"
        for w in worst[:3]
        if w.get("drop_db") is not None
    )
    hint = "try --activations int16, per-channel weights, or more representative calibration data"
    if worst_txt:
        hint += f"; the layers losing the most: {worst_txt}"
    if min_sqnr is not None:
        for name, f in report["fidelity"].items():
            s = f.get("sqnr_db")
            if s is not None and s < min_sqnr:
                raise FidelityError(
                    f"output {name!r}: int8 SQNR {s:.2f} dB is below --min-sqnr {min_sqnr:g} dB",
                    hint=hint,
                )
    if max_drop is not None:
        acc = report.get("accuracy")
        if not acc:
            raise UsageError("--max-accuracy-drop needs labels", hint="give --labels")
        if acc["drop"] > max_drop:
            raise FidelityError(
                f"int8 accuracy {acc['int8']:.2f}% is {acc['drop']:.2f} points below float "
                f"({acc['float']:.2f}%), more than --max-accuracy-drop {max_drop:g}",
                hint=hint,
            )
