"""The stages of ``edgedeploy run``, in order: prune → convert → validate → emit → firmware →
bench (:data:`STAGES`). Each is a thin adapter over the stage's own library
(:mod:`toolchain.prune`, :mod:`toolchain.convert`, :mod:`toolchain.emit`,
:mod:`toolchain.firmware`, :mod:`toolchain.bench`) with three parts:

* ``skip(ctx)`` — None when the stage runs for this project, else the reason it does not
  (pruning disabled, a target that needs no C arrays...), which the report shows;
* ``key(ctx)`` — everything the stage's result depends on, as JSON-ready data (hashed into the
  cache key; None when some input cannot be hashed, then the stage always runs);
* ``run(ctx, work, dest)`` — do the work into the folder ``work`` (moved to ``dest`` when it
  succeeded) and return a :class:`StageOutput`.

Stages hand artifacts on through ``ctx.outputs[<stage>]`` (files by role, e.g. ``tflite``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import pyref
from toolchain.artifacts import StageOutput
from toolchain.convert import cache as convert_cache
from toolchain.errors import BenchmarkError, ConversionError, FidelityError, FirmwareError
from toolchain.fsutil import atomic_write_json, sha256_file
from toolchain.pipeline import cache
from toolchain.progress import ProgressFn
from toolchain.project import Project
from toolchain.targets import Target, load_target

log = logging.getLogger(__name__)

#: validation samples the validate stage runs through TFLM and LiteRT (and hands to emit),
#: at most; and at most this many bytes of them
VALIDATE_SAMPLES = 500
VALIDATE_BYTES = 16 * 1024 * 1024
SAMPLES_NPZ = "samples.npz"


@dataclass
class Context:
    """What stages see: the project, the outputs of the stages before, the progress callback."""

    project: Project
    out_dir: Path
    progress: ProgressFn
    outputs: dict[str, StageOutput] = field(default_factory=dict)
    _targets: dict[str, Target] = field(default_factory=dict)

    def target(self, name: str | None = None) -> Target:
        ref = name or self.project.target.name
        if ref not in self._targets:
            self._targets[ref] = load_target(ref)
        return self._targets[ref]

    def output(self, stage: str) -> StageOutput | None:
        """The output of an earlier stage that ran (or came from the cache); None if skipped."""
        return self.outputs.get(stage)

    def sub(self, stage: str) -> ProgressFn:
        """A progress callback for the stage's own steps (``"<stage>: <step>"``)."""
        return lambda step, done, total: self.progress(f"{stage}: {step}", done, total)


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    skip: Callable[[Context], str | None]
    key: Callable[[Context], dict[str, Any] | None]
    run: Callable[[Context, Path, Path], StageOutput]


# --- fingerprints -----------------------------------------------------------------------------


def source_fingerprint(spec: str | Path | None) -> Any:
    """A content hash of a model or data source without running it: files and folders by
    content, ``module:fn`` by the source files of its folder (see :func:`pyref.source_files`).
    None for no source; raises :class:`_Unhashable` when it cannot be had."""
    if spec is None:
        return None
    from toolchain import data as data_mod

    fp = data_mod.fingerprint(str(spec))
    if fp is not None:
        return fp
    part = pyref.source_fingerprint(str(spec))
    if part is None:
        raise _Unhashable(str(spec))
    return part


class _Unhashable(Exception):
    """A stage input whose content cannot be hashed without running it (the stage always runs)."""


#: the code (under toolchain/, or ../ for project folders) that makes each stage's artifacts;
#: a change there invalidates the stage's cache
_CONVERT_CODE = convert_cache.CODE
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "prune": ("prune", "zoo", "emit/arena.py", "emit/sandbox.py", "emit/worker.py", *_CONVERT_CODE),
    "convert": _CONVERT_CODE,
    "validate": ("emit", "convert/runtime.py", "artifacts.py", "data.py", "pyref.py"),
    "emit": ("emit", "targets.py", "tflite_model.py"),
    "firmware": ("firmware", "compile", "emit", "targets.py", "../firmware_templates"),
    "bench": ("bench", "devices", "protocol", "transports", "targets.py", "emit/golden.py"),
}


def _keyed(
    stage: str,
) -> Callable[[Callable[[Context], dict[str, Any]]], Callable[[Context], dict[str, Any] | None]]:
    """Make a key function: None when an input cannot be hashed; the code of the stage
    (:data:`STAGE_CODE`, plus this module) added."""

    def wrap(fn: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any] | None]:
        def key(ctx: Context) -> dict[str, Any] | None:
            try:
                parts = fn(ctx)
            except _Unhashable as exc:
                log.info("cannot hash %s: the %s stage runs every time", exc, stage)
                return None
            return {**parts, "code": cache.code_version((*STAGE_CODE[stage], "pipeline/stages.py"))}

        return key

    return wrap


def _target_fingerprint(t: Target) -> dict[str, Any]:
    return {"name": t.name, "profile": dict(t.raw)}


def _converter_versions() -> dict[str, str]:
    return dict(convert_cache.versions())


def _data_keys(ctx: Context, *names: str) -> dict[str, Any]:
    d = ctx.project.data
    return {n: source_fingerprint(getattr(d, n)) for n in names}


def _upstream(ctx: Context, *stages: str) -> dict[str, str | None]:
    return {s: (o.digest if (o := ctx.output(s)) is not None else None) for s in stages}


def _file_key(path: Path) -> str:
    return sha256_file(path) if path.is_file() else str(path)


def converted(ctx: Context) -> tuple[Path, dict[str, Any]]:
    """The int8 model and the convert report the convert stage left."""
    conv = ctx.output("convert")
    tfl = conv.path("tflite") if conv else None
    if conv is None or tfl is None or conv.report is None:
        raise ConversionError("the convert stage left no int8 model", hint="run it again")
    return tfl, conv.report


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# --- prune ------------------------------------------------------------------------------------


def _prune_skip(ctx: Context) -> str | None:
    if not ctx.project.prune.enabled:
        return "pruning is off ([prune] has no ratio, or enabled = false)"
    return None


@_keyed("prune")
def _prune_key(ctx: Context) -> dict[str, Any]:
    p = ctx.project
    parts: dict[str, Any] = {
        "model": source_fingerprint(p.model.source),
        "weights": source_fingerprint(p.model.weights),
        "input_shapes": p.model.input_shapes,
        "prune": p.to_dict()["prune"],
        "finetune_fn": source_fingerprint(p.prune.finetune_fn),
        "quantization": p.quantization.options.cache_dict(),
        "versions": _converter_versions(),
        **_data_keys(
            ctx, "calibration", "validation", "validation_labels", "train", "train_labels"
        ),
    }
    if p.prune.fit:
        parts["target"] = _target_fingerprint(ctx.target())
    return parts


def _prune_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    from toolchain.prune import Budget, FinetuneOptions, fit, prune

    p, pr = ctx.project, ctx.project.prune
    common: dict[str, Any] = {
        "weights": p.model.weights,
        "input_shapes": p.model.input_shapes,
        "val": p.data.validation,
        "labels": p.data.validation_labels,
        "train": p.data.train,
        "train_labels": p.data.train_labels,
        "model_format": pr.model_format,
        "method": pr.method,
        "importance": pr.importance,
        "layer_ratios": dict(pr.layer_ratios),
        "keep": list(pr.keep),
        "keep_first": pr.keep_first,
        "keep_last": pr.keep_last,
        "round_to": pr.round_to,
        "global_ranking": pr.global_ranking,
        "finetune_options": FinetuneOptions(
            epochs=pr.epochs, batch_size=pr.batch_size, lr=pr.lr, loss=pr.loss
        ),
        "callback": pr.finetune_fn,
        "convert_options": p.quantization.options,
        "progress": ctx.sub("prune"),
    }
    if pr.fit:
        t = ctx.target()
        fit(
            p.model.source,
            calib=p.data.calibration,
            budget=Budget(t.memory.flash_bytes, t.memory.ram_bytes),
            out_dir=work,
            max_accuracy_drop=pr.max_accuracy_drop,
            min_sqnr=pr.min_sqnr_db,
            max_ratio=pr.max_ratio,
            **common,
        )
    else:
        prune(p.model.source, ratio=pr.ratio, out_dir=work, calib=p.data.calibration, **common)
    report = _read_json(work / "prune_report.json")
    files = {"report": "prune_report.json", "tflite": "model_int8.tflite"}
    files["convert_report"] = "report.json"
    if report and report.get("model_file"):
        files["model"] = str(report["model_file"])
    return StageOutput(report=report, files=files)


# --- convert ----------------------------------------------------------------------------------


@_keyed("convert")
def _convert_key(ctx: Context) -> dict[str, Any]:
    p = ctx.project
    parts: dict[str, Any] = {
        "pruned": _upstream(ctx, "prune")["prune"],
        "quantization": p.quantization.options.cache_dict(),
        "versions": _converter_versions(),
        **_data_keys(ctx, "calibration", "validation", "validation_labels"),
    }
    if parts["pruned"] is None:
        parts["model"] = source_fingerprint(p.model.source)
        parts["weights"] = source_fingerprint(p.model.weights)
        parts["input_shapes"] = p.model.input_shapes
    return parts


def _convert_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    p = ctx.project
    pruned = ctx.output("prune")
    notes: tuple[str, ...] = ()
    if pruned is not None and (tfl := pruned.path("tflite")) is not None:
        # The prune stage converted the pruned model with the same options and data.
        rep = pruned.path("convert_report")
        shutil.copy2(tfl, work / "model_int8.tflite")
        if rep is not None:
            shutil.copy2(rep, work / "report.json")
        notes = ("the pruned model, converted by the prune stage with these options",)
    else:
        from toolchain.convert import convert

        convert(
            p.model.source,
            calib=p.data.calibration,
            val=p.data.validation,
            labels=p.data.validation_labels,
            out_dir=work,
            input_shapes=p.model.input_shapes,
            weights=p.model.weights,
            options=p.quantization.options,
            progress=ctx.sub("convert"),
        )
    return StageOutput(
        report=_read_json(work / "report.json"),
        files={"tflite": "model_int8.tflite", "report": "report.json"},
        notes=notes,
    )


# --- validate ---------------------------------------------------------------------------------


@_keyed("validate")
def _validate_key(ctx: Context) -> dict[str, Any]:
    q = ctx.project.quantization
    return {
        "convert": _upstream(ctx, "convert")["convert"],
        "gates": [q.min_sqnr_db, q.max_accuracy_drop],
        "samples": VALIDATE_SAMPLES,
        **_data_keys(ctx, "calibration", "validation", "validation_labels"),
    }


def fidelity_gates(
    report: dict[str, Any], *, min_sqnr_db: float | None, max_drop: float | None
) -> list[dict[str, Any]]:
    """Check the convert report against the project's thresholds. Returns the checks made
    (``name``, ``value``, ``limit``, ``passed``); raises :class:`FidelityError` naming the first
    that failed and the layers that lose the most."""
    checks: list[dict[str, Any]] = []
    if min_sqnr_db is not None:
        for out, f in sorted((report.get("fidelity") or {}).items()):
            s = f.get("sqnr_db")
            checks.append(
                {
                    "name": f"SQNR of output {out!r} (dB)",
                    "value": s,
                    "limit": f"≥ {min_sqnr_db:g}",
                    "passed": s is not None and s >= min_sqnr_db,
                }  # fmt: skip
            )
    if max_drop is not None:
        acc = report.get("accuracy") or {}
        drop = acc.get("drop")
        checks.append(
            {
                "name": "accuracy drop, int8 vs float (points)",
                "value": drop,
                "limit": f"≤ {max_drop:g}",
                "passed": drop is not None and drop <= max_drop,
            }  # fmt: skip
        )
    failed = [c for c in checks if not c["passed"]]
    if failed:
        worst = ", ".join(
            f"{w.get('module') or w.get('op')} ({w['drop_db']:.1f} dB)"
            for w in (report.get("worst_layers") or [])[:3]
            if w.get("drop_db") is not None
        )
        c = failed[0]
        raise FidelityError(
            f"{c['name']} is {c['value']}, the project asks {c['limit']} ([quantization])",
            hint='try activations = "int16", more representative calibration data, or a '
            "smaller pruning ratio" + (f"; the layers losing the most: {worst}" if worst else ""),
        )
    return checks


def _validate_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    from toolchain import data as data_mod
    from toolchain.artifacts import TensorSpec
    from toolchain.emit import golden, litert_check
    from toolchain.emit.arena import recommended_arena
    from toolchain.emit.model_input import model_file
    from toolchain.tflite_model import TFLiteModel

    p, q = ctx.project, ctx.project.quantization
    tfl_path, creport = converted(ctx)
    prog = ctx.sub("validate")
    prog("fidelity gates", 0, 4)
    checks = fidelity_gates(creport, min_sqnr_db=q.min_sqnr_db, max_drop=q.max_accuracy_drop)
    ins = [TensorSpec.from_dict(d) for d in creport["inputs"]]
    outs = [TensorSpec.from_dict(d) for d in creport["outputs"]]
    source = p.data.validation or p.data.calibration
    ds = data_mod.load_data(
        source,
        inputs=[(s.name, s.torch_shape) for s in ins],
        what="validation data" if p.data.validation else "calibration data",
    )
    per_sample = max(1, sum(s.nbytes for s in ins))
    n = max(1, min(len(ds), VALIDATE_SAMPLES, VALIDATE_BYTES // per_sample))
    tfl_inputs = [
        np.stack([s.to_tflite(a[i : i + 1]) for i in range(n)])  # (n, *tensor shape)
        for s, a in zip(ins, ds.arrays, strict=True)
    ]
    labels = None
    if p.data.validation and p.data.validation_labels:
        labels = data_mod.load_labels(
            p.data.validation_labels, n=len(ds), what="validation labels"
        )[:n]
    prog("host TFLM", 1, 4)
    model = TFLiteModel.from_file(tfl_path)
    with model_file(model) as mf:
        tflm_outs = golden.run_tflm(mf, tfl_inputs, arena=recommended_arena(model))
        prog("LiteRT", 2, 4)
        comparisons = litert_check.check(mf, tfl_inputs, tflm_outs)
    prog("write", 3, 4)
    tflm: dict[str, Any] = {"samples": n, "source": ds.source}
    if labels is not None and outs:
        spec = outs[0]
        logits = np.concatenate([spec.from_tflite(tflm_outs[0][i]) for i in range(n)])
        tflm["accuracy"] = round(100.0 * float(np.mean(logits.argmax(-1) == labels)), 3)
    np.savez(work / SAMPLES_NPZ, **{f"input_{i}": a for i, a in enumerate(tfl_inputs)})
    report = {
        "gates": checks,
        "fidelity": creport.get("fidelity"),
        "accuracy": creport.get("accuracy"),
        "tflm": tflm,
        "litert_check": [c.to_dict() for c in comparisons],
    }
    atomic_write_json(work / "validate_report.json", report)
    # LiteRT's optimized kernels round differently by design; the reference kernels should not
    notes = tuple(c.summary() for c in comparisons if c.kernels == "reference" and not c.exact)
    prog("write", 4, 4)
    return StageOutput(
        report=report, files={"samples": SAMPLES_NPZ, "report": "validate_report.json"}, notes=notes
    )


# --- emit -------------------------------------------------------------------------------------


def _embedded_skip(ctx: Context) -> str | None:
    t = ctx.target()
    if t.kind not in ("mcu", "host"):
        return f"target {t.name} is a {t.kind} device: it runs the .tflite itself, no C arrays"
    return None


@_keyed("emit")
def _emit_key(ctx: Context) -> dict[str, Any]:
    p = ctx.project
    return {
        **_upstream(ctx, "convert", "validate"),
        "target": _target_fingerprint(ctx.target()),
        "options": [p.model.name or p.name, p.target.arena_margin, p.target.golden_count],
    }


def symbol_name(project: Project) -> str:
    """The C symbol stem: [model] name, else the project name made an identifier."""
    from toolchain.emit.cnames import sanitize

    return project.model.name or sanitize(project.name)


def _emit_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    from toolchain.emit import emit

    p = ctx.project
    tfl, _ = converted(ctx)
    val = ctx.output("validate")
    result = emit(
        tfl,
        out_dir=work,
        name=symbol_name(p),
        target=ctx.target(),
        golden_data=val.path("samples") if val else None,
        golden_count=p.target.golden_count,
        arena_margin=p.target.arena_margin,
        check_litert=False,  # the validate stage compared TFLM and LiteRT on more samples
        progress=ctx.sub("emit"),
    )
    files = {"report": "emit_report.json", "model_source": result.symbols.model_source}
    if result.symbols.golden_npz:
        files["golden"] = result.symbols.golden_npz
    return StageOutput(report=result.report, files=files)


# --- firmware ---------------------------------------------------------------------------------


def _firmware_skip(ctx: Context) -> str | None:
    t = ctx.target()
    if not ctx.project.firmware.enabled:
        return "firmware is off ([firmware] enabled = false)"
    if t.kind != "mcu":
        return f"target {t.name} is a {t.kind} device, not a microcontroller: no firmware"
    return None


@_keyed("firmware")
def _firmware_key(ctx: Context) -> dict[str, Any]:
    from toolchain.firmware.render import TEMPLATES_DIR

    fw = ctx.project.firmware
    return {
        **_upstream(ctx, "convert"),
        "target": _target_fingerprint(ctx.target()),
        "templates": cache.digest(cache.tree_digests(TEMPLATES_DIR)),
        "runtime": fw.runtime,
        "tflm_lib": sha256_file(fw.tflm_lib) if fw.tflm_lib else None,
        "tflm_include": [str(i) for i in fw.tflm_include],
    }


def _firmware_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    from toolchain.firmware import make_firmware

    fw = ctx.project.firmware
    tfl, _ = converted(ctx)
    # make_firmware chooses the runtime (and records why); the compiled runtime needs no
    # library, so it is always built; tflm only with a library
    with_lib = fw.runtime != "compiled" and fw.tflm_lib is not None
    result = make_firmware(
        target=ctx.target(),
        out_dir=work,
        model=tfl,
        runtime=fw.runtime,
        tflm_lib=fw.tflm_lib if with_lib else None,
        tflm_include=fw.tflm_include if with_lib else (),
        build="when-possible",
        jobs=fw.jobs,
        progress=ctx.sub("firmware"),
    )
    chosen = result.project.manifest["runtime"]
    runtime, why = chosen["name"], chosen["why"]
    files = {"project": "."}
    notes: list[str] = [f"runtime {runtime}: {why}"]
    # the paths as they will be once the folder is in place
    final = dataclasses.replace(
        result,
        project=result.project.relocated(dest),
        build=result.build.relocated(dest) if result.build else None,
    )
    report = final.to_dict()
    if result.build is not None:
        files["elf"] = result.build.elf.relative_to(work).as_posix()
        notes.extend(result.build.warnings)
    else:
        reason = (
            "no TFLM library given: set [firmware] tflm_lib and tflm_include (or "
            "--tflm-lib / $EDGEDEPLOY_TFLM_LIB) to a libtensorflow-microlite.a built for "
            f"{ctx.target().cpu.core} with TFLM's own Makefile (docs/tflm-library.md)"
        )
        report["build"] = {"skipped": reason}
        notes.append(f"firmware rendered, build skipped: {reason}")
    return StageOutput(report=report, files=files, notes=tuple(notes))


# --- bench ------------------------------------------------------------------------------------


def _bench_skip(ctx: Context) -> str | None:
    if not ctx.project.bench.enabled:
        return "benchmarking is off ([bench] enabled = false)"
    return None


def _bench_options(ctx: Context) -> dict[str, Any]:
    """BenchOptions keyword arguments (without progress) for the project."""
    b = ctx.project.bench
    t = ctx.target(ctx.project.bench_target)
    defaults = dict(t.raw.get("benchmark", {}))
    emitted, validated = ctx.output("emit"), ctx.output("validate")
    golden = (emitted.path("golden") if emitted else None) or (
        validated.path("samples") if validated else None
    )
    kw: dict[str, Any] = {
        "runs": b.runs if b.runs is not None else int(defaults.get("runs", 20)),
        "warmup": b.warmup if b.warmup is not None else int(defaults.get("warmup", 2)),
        "runner": b.runner,
        "port": b.port,
        "golden": golden,
        "profile_ops": b.profile_ops,
        "timeout_s": b.timeout_s,
        "adb_serial": b.adb_serial,
        "ssh_host": b.ssh_host,
        "ssh_key": b.ssh_key,
        "benchmark_binary": b.benchmark_binary,
        "threads": b.threads,
    }
    kind = b.runner or t.transport.kind
    fw = ctx.output("firmware")
    elf = fw.path("elf") if fw else None
    if kind == "qemu":
        if elf is None:
            raise FirmwareError(
                f"benchmarking on {t.name} under QEMU needs the built firmware image, and the "
                "firmware was not built (runtime tflm without a TFLM library)",
                hint='use [firmware] runtime = "compiled" when the compiler supports every '
                "operator, or set [firmware] tflm_lib/tflm_include (docs/tflm-library.md), or "
                'measure on the host: [bench] target = "host-compiled" or "host-tflm"',
            )
        if t.name != ctx.target().name:
            raise FirmwareError(
                f"the firmware was built for {ctx.target().name}, the benchmark runs on {t.name}",
                hint="use the same target for [target] and [bench], or host-tflm for [bench]",
            )
        kw["firmware"] = elf
    return {k: v for k, v in kw.items() if v is not None}


@_keyed("bench")
def _bench_key(ctx: Context) -> dict[str, Any]:
    kw = _bench_options(ctx)
    return {
        **_upstream(ctx, "convert", "emit", "firmware"),
        "target": _target_fingerprint(ctx.target(ctx.project.bench_target)),
        # files by content: the golden vectors and the image move with the output folder
        "options": {k: (_file_key(v) if isinstance(v, Path) else v) for k, v in kw.items()},
    }


def _bench_run(ctx: Context, work: Path, dest: Path) -> StageOutput:
    from toolchain.bench import BIT_EXACT_RUNNERS, run_bench
    from toolchain.bench.options import BenchOptions

    tfl, _ = converted(ctx)
    target = ctx.target(ctx.project.bench_target)
    options = BenchOptions(**_bench_options(ctx), progress=ctx.sub("bench"))
    result = run_bench(target, tfl, options)
    check = result.output_check
    if check is not None and not check.bit_exact and result.runner in BIT_EXACT_RUNNERS:
        raise BenchmarkError(
            f"the device's outputs are not bit-identical to the {check.reference}'s: "
            f"{check.mismatches} of {check.compared_values} values differ (max |diff| "
            f"{check.max_abs_diff:g})",
            hint="the firmware or its TFLM library computes something else; see "
            "`edgedeploy bench` for the full result",
        )
    result.write(work / "bench_report.json")
    return StageOutput(
        report=result.to_dict(),
        files={"report": "bench_report.json"},
        notes=tuple(result.warnings),
    )


STAGES: tuple[Stage, ...] = (
    Stage("prune", "prune + fine-tune", _prune_skip, _prune_key, _prune_run),
    Stage("convert", "convert to int8", lambda ctx: None, _convert_key, _convert_run),
    Stage("validate", "validate int8", lambda ctx: None, _validate_key, _validate_run),
    Stage("emit", "emit C arrays", _embedded_skip, _emit_key, _emit_run),
    Stage("firmware", "firmware project", _firmware_skip, _firmware_key, _firmware_run),
    Stage("bench", "benchmark", _bench_skip, _bench_key, _bench_run),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
