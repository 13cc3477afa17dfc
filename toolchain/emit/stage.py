"""``emit``: a .tflite model → C arrays, op resolver, arena size, golden vectors, memory report.

The one public entry point of the emit stage; ``edgedeploy emit`` is a thin layer over it.
Everything is checked before anything is written, and all files are written through
:func:`toolchain.fsutil.staged_outputs`: a failure (bad input, a model TFLM rejects, a model
over the target's budget, Ctrl-C) leaves the output directory as it was.

Files (``<name>`` defaults to the model file's stem, made a C identifier):

* ``<name>_model_data.h/.cc`` — the flatbuffer (TFLM convention) and the arena constants
  ``k<Name>TensorArenaSize`` (recommended, with margin) and ``k<Name>TensorArenaMinSize``.
* ``<name>_op_resolver.h`` — ``<Name>OpResolver`` and ``Register<Name>Ops()``.
* ``<name>_golden.h/.cc`` and ``golden.npz`` — unless ``golden_count=0``.
* ``<name>_tensors.json`` — with ``lean`` (the default except for phone and Linux targets):
  the tensor, subgraph and operator names the lean flatbuffer no longer carries
  (:mod:`toolchain.emit.lean`).
* ``emit_report.json`` — everything above as data, plus the LiteRT check and memory report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.emit import arena as arena_lib
from toolchain.emit import carray, cnames, footprint, golden, litert_check, resolver
from toolchain.emit import lean as lean_lib
from toolchain.emit.model_input import ModelLike, load, model_file
from toolchain.errors import EmitError, TFLiteModelError, UsageError
from toolchain.fsutil import check_output_path, staged_outputs, to_json, writing_to
from toolchain.progress import ProgressFn, no_progress
from toolchain.targets import Target, load_target
from toolchain.tflite_budget import byte_budget
from toolchain.tflite_model import TFLiteModel

log = logging.getLogger(__name__)

REPORT_NAME = "emit_report.json"
#: target kinds whose runtime is LiteRT (it reads signature defs): they keep the full model.
FULL_MODEL_KINDS = ("android", "linux")
GOLDEN_NPZ = "golden.npz"
_STEPS = 6


@dataclass(frozen=True)
class EmitSymbols:
    """File names (relative to the output directory) and C++ names (namespace-qualified)
    that firmware needs to bind the emitted model."""

    model_header: str
    model_source: str
    model_array: str
    model_size: str
    arena_size: str
    arena_min_size: str
    resolver_header: str
    resolver_type: str
    resolver_register: str
    op_count: str
    golden_header: str | None = None
    golden_source: str | None = None
    golden_npz: str | None = None
    tensor_names: str | None = None


@dataclass(frozen=True)
class EmitResult:
    """What :func:`emit` wrote and found. ``report`` is the content of ``emit_report.json``."""

    out_dir: Path
    name: str
    files: tuple[Path, ...]
    arena_size: int  # the emitted constant: minimum + margin, bytes
    arena: arena_lib.ArenaSearch
    margin: arena_lib.ArenaMargin
    resolver: resolver.ResolverSpec
    golden: golden.GoldenSet | None
    litert: tuple[litert_check.LiteRTComparison, ...]
    memory: footprint.MemoryReport
    symbols: EmitSymbols
    report: dict[str, Any] = field(repr=False)
    lean: lean_lib.LeanStats | None = None  # None: the model was emitted as given


def check_integer_only(model: TFLiteModel) -> None:
    """Raise :class:`TFLiteModelError` when ``model`` computes in float (``inspect`` calls
    it "not integer-only"): the emitted arena, footprint and benchmarks assume int8."""
    from toolchain.convert.graphlint import lint

    floats = lint(model).float_ops
    if floats:
        raise TFLiteModelError(
            f"{model.source}: not an integer-only model ({len(floats)} op(s) compute in "
            f"float, e.g. {floats[0]})",
            hint="convert it to full-integer int8 with edgedeploy convert; to emit the float "
            "model anyway (TFLM's float kernels: larger and slower), pass --allow-float",
        )


def emit(
    model: ModelLike,
    *,
    out_dir: str | os.PathLike[str],
    name: str | None = None,
    target: str | Target | None = None,
    namespace: str | None = None,
    section: str | None = None,
    golden_data: golden.GoldenData | None = None,
    golden_count: int = golden.DEFAULT_COUNT,
    golden_seed: int = golden.DEFAULT_SEED,
    arena_margin: arena_lib.ArenaMargin | str = arena_lib.DEFAULT_MARGIN,
    check_litert: bool = True,
    allow_float: bool = False,
    lean: bool | None = None,
    progress: ProgressFn = no_progress,
) -> EmitResult:
    """Emit the embedded artifacts of ``model`` into ``out_dir``.

    ``name``: C symbol stem (default: the file stem made an identifier). ``target``: a
    profile name/path or :class:`Target`; with one, the memory report is checked against its
    budgets. ``namespace`` (``a::b``) wraps every declaration; ``section`` puts the model
    array into that linker section. ``golden_data``: .npy/.npz or arrays for the golden
    vectors (else ``golden_count`` random samples from ``golden_seed``); ``golden_count=0``
    writes no golden files and skips the LiteRT check. ``arena_margin``: ``"4%"``,
    ``"512"``, ``"4%+256"`` or an :class:`ArenaMargin`. ``lean``: write the flatbuffer
    without what TFLM never reads (:mod:`toolchain.emit.lean`; names go to
    ``<name>_tensors.json``); default: lean unless the target is a phone or Linux board
    (LiteRT reads the signature defs). The arena and golden vectors are measured on the
    bytes written; a lean model's TFLM outputs are checked bit-identical to the full
    model's on the golden inputs (EmitError otherwise); the LiteRT check runs the full
    model (LiteRT rejects a zero-point vector shorter than its scales).

    A model that computes in float (not a full-integer model, as ``inspect`` shows) is
    refused unless ``allow_float``.

    Raises (nothing is written in every case): UsageError (bad name, namespace, section,
    margin, count), InputFileError / TFLiteModelError (missing file, not a TFLite flatbuffer,
    a model the TFLM interpreter rejects — the message names the op or reason), EmitError (an
    op TFLM has no kernel for, interpreter crash), TargetError (unknown target), DataError
    (unusable golden data), BudgetError (the model does not fit the target).
    """
    if golden_count < 0:
        raise UsageError(f"golden count must be 0 or more, got {golden_count}")
    check_output_path(out_dir, option="--out")
    margin = (
        arena_lib.ArenaMargin.parse(arena_margin) if isinstance(arena_margin, str) else arena_margin
    )
    if name is not None:  # options fail before the model is read
        cnames.check_identifier(name)
    if namespace:
        cnames.check_namespace(namespace)
    if section:
        cnames.check_section(section)
    parsed = load(model)
    if not allow_float:
        check_integer_only(parsed)
    stem = Path(parsed.source).stem if not parsed.source.startswith("<") else "model"
    sym = name if name is not None else cnames.sanitize(stem)
    tgt = load_target(target) if isinstance(target, str) else target
    use_lean = lean if lean is not None else (tgt is None or tgt.kind not in FULL_MODEL_KINDS)
    full = parsed
    lean_result: lean_lib.LeanModel | None = None
    if use_lean:
        lean_result = lean_lib.lean_model(full)
        parsed = TFLiteModel.from_bytes(lean_result.data, source=f"<lean {full.source}>")
    spec = resolver.resolver_spec(parsed)
    if golden_count and golden_data is not None:  # bad data fails before the slow steps
        # the full model: golden .npz arrays may be named like its input tensors
        inputs, source = golden.load_inputs(full, golden_data, count=golden_count)
    elif golden_count:
        inputs = golden.random_inputs(full, count=golden_count, seed=golden_seed)
        source = (
            f"{golden_count} random sample(s), numpy default_rng(seed={golden_seed}) "
            "- not real data"
        )
    progress("emit", 1, _STEPS)

    search = arena_lib.search_arena(parsed)
    arena_size = margin.apply(search.minimum)
    progress("emit", 2, _STEPS)

    gset: golden.GoldenSet | None = None
    comparisons: list[litert_check.LiteRTComparison] = []
    if golden_count:
        with model_file(parsed) as mf:
            outputs = golden.run_tflm(mf, inputs, arena=search.minimum)
        gset = golden.GoldenSet(source, tuple(inputs), tuple(outputs))
        progress("emit", 3, _STEPS)
        if check_litert:  # LiteRT runs the full model (it rejects reduced zero points)
            with model_file(full) as mf:
                comparisons = litert_check.check(mf, inputs, outputs)
    if lean_result is not None:  # the lean model must compute exactly what the full one does
        if gset is not None:
            check_in, lean_out = list(gset.inputs), list(gset.outputs)
        else:
            check_in = golden.random_inputs(full, count=2, seed=golden_seed)
            with model_file(parsed) as mf:
                lean_out = golden.run_tflm(mf, check_in, arena=search.minimum)
        with model_file(full) as mf:
            _check_lean(mf, check_in, lean_out, arena=2 * search.minimum + (1 << 20))
    progress("emit", 4, _STEPS)

    memory = footprint.memory_report(
        model_bytes=parsed.size,
        arena_bytes=arena_size,
        golden_bytes=gset.nbytes() if gset else 0,
        ops=spec.ops,
        target=tgt,
    )
    memory.check()  # BudgetError before anything is written

    about = [
        f"{Path(full.source).name}: {full.size} bytes, sha256 {full.sha256}",
        f"edgedeploy {__version__}",
    ]
    if lean_result is not None:
        about.insert(
            1,
            f"lean for TFLM (names in {sym}_tensors.json): {parsed.size} bytes, "
            f"sha256 {parsed.sha256}",
        )
    arena_text = (
        f"\n// Tensor arena for tflite::MicroInterpreter, in bytes: the smallest arena with which\n"
        f"// the host TFLM interpreter allocates and invokes this model, {search.minimum} B, plus\n"
        f"// a margin of {margin}. Measured on a 64-bit host; a 32-bit MCU needs less (docs/emit.md).\n"
        f"constexpr unsigned int k{cnames.camel(sym)}TensorArenaSize = {arena_size};\n"
        f"constexpr unsigned int k{cnames.camel(sym)}TensorArenaMinSize = {search.minimum};\n"
    )
    md = carray.model_data(
        parsed.data,
        name=sym,
        about=about,
        header_extra=arena_text,
        namespace=namespace,
        section=section,
    )
    files: dict[str, bytes] = {md.header_name: md.header, md.source_name: md.source}
    rname, rtext = resolver.header(spec, name=sym, about=about, namespace=namespace)
    files[rname] = rtext
    gh: str | None = None
    gc: str | None = None
    if gset is not None:
        (gh, ghb), (gc, gcb) = golden.c_files(
            gset, full, name=sym, about=about, namespace=namespace
        )
        files[gh], files[gc] = ghb, gcb
        files[GOLDEN_NPZ] = golden.npz_bytes(gset)
    names_file: str | None = None
    if lean_result is not None:
        names_file = f"{sym}_tensors.json"
        files[names_file] = to_json(lean_result.names).encode("utf-8")
    progress("emit", 5, _STEPS)
    ns = carray.Namespace.of(namespace)
    cam = cnames.camel(sym)
    symbols = EmitSymbols(
        model_header=md.header_name,
        model_source=md.source_name,
        model_array=md.array_symbol,
        model_size=md.size_symbol,
        arena_size=ns.qualify(f"k{cam}TensorArenaSize"),
        arena_min_size=ns.qualify(f"k{cam}TensorArenaMinSize"),
        resolver_header=rname,
        resolver_type=ns.qualify(f"{cam}OpResolver"),
        resolver_register=ns.qualify(f"Register{cam}Ops"),
        op_count=ns.qualify(f"k{cam}OpCount"),
        golden_header=gh,
        golden_source=gc,
        golden_npz=GOLDEN_NPZ if gset else None,
        tensor_names=names_file,
    )

    report: dict[str, Any] = {
        "schema": 1,
        "edgedeploy": __version__,
        "model": {
            "path": full.source,
            "bytes": full.size,
            "sha256": full.sha256,
            "ops": full.op_histogram(),
        },
        "lean": None
        if lean_result is None
        else {
            **lean_result.stats.to_dict(),
            "sha256": parsed.sha256,
            "budget_before": byte_budget(full),
            "budget_after": byte_budget(parsed),
            "tflm_outputs_identical": True,  # checked above, EmitError otherwise
        },
        "name": sym,
        "namespace": namespace,
        "section": section,
        "arena": {
            **search.to_dict(),
            "margin": str(margin),
            "size": arena_size,
            "measured_on": "tflite-micro Python interpreter, 64-bit host",
        },
        "symbols": asdict(symbols),
        "resolver": {"count": spec.count, "ops": list(spec.ops), "methods": list(spec.methods)},
        "golden": None
        if gset is None
        else {
            "count": gset.count,
            "source": gset.source,
            "inputs": [list(a.shape[1:]) for a in gset.inputs],
            "outputs": [list(a.shape[1:]) for a in gset.outputs],
        },
        "litert_check": [c.to_dict() for c in comparisons],
        "memory": memory.to_dict(),
        "files": sorted([*files, REPORT_NAME]),
    }
    files[REPORT_NAME] = to_json(report).encode("utf-8")

    out = Path(out_dir)
    with writing_to(out, option="--out"), staged_outputs(out) as stage:
        for fname, data in files.items():
            (stage / fname).write_bytes(data)
    progress("emit", 6, _STEPS)
    log.info("emitted %d files for %s into %s", len(files), sym, out)
    return EmitResult(
        out_dir=out,
        name=sym,
        files=tuple(sorted(out / f for f in files)),
        arena_size=arena_size,
        arena=search,
        margin=margin,
        resolver=spec,
        golden=gset,
        litert=tuple(comparisons),
        memory=memory,
        symbols=symbols,
        report=report,
        lean=None if lean_result is None else lean_result.stats,
    )


def _check_lean(mf: Any, inputs: list[Any], lean_outputs: list[Any], *, arena: int) -> None:
    """EmitError unless the full model's TFLM outputs equal the lean model's bit for bit."""
    import numpy as np

    full_outputs = golden.run_tflm(mf, inputs, arena=arena)
    for k, (a, b) in enumerate(zip(full_outputs, lean_outputs, strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b):
            raise EmitError(
                f"the lean model's TFLM outputs differ from the full model's (output {k})",
                hint="emit with --no-lean and report this model: a lean rule does not hold",
            )
