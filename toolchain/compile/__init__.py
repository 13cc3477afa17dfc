"""The compiled runtime: an int8 .tflite model → a dependency-free C99 library.

Three parts, kept apart: :mod:`.lower` (the .tflite graph → a small typed IR with constant
shapes and precomputed quantization), :mod:`.planner` (static arena offsets), and
:mod:`.cwriter` (the model as straight-line kernel calls plus const weights). The kernels are
ordinary C sources in ``kernels/`` (one file per operator family), bit-exact with TFLite
Micro's reference kernels.

Python::

    from toolchain.compile import compile_model, supported
    cm = compile_model("model_int8.tflite", out_dir="out/compiled", name="kws", target="mps2-an386")
    cm.sources        # every .c file to build (all in cm.out_dir); -I cm.out_dir
    supported(path)   # [] when every operator has a kernel, else one line per problem
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.compile import cmsisnn as _cmsisnn
from toolchain.compile import inplace as _inplace
from toolchain.compile import lower as _lower
from toolchain.compile import patch as _patch
from toolchain.compile import perlayer as _perlayer
from toolchain.compile import select as _select
from toolchain.compile.cwriter import CWriter, kernel_dir, kernel_files
from toolchain.compile.ir import ConstArray, Graph, Split
from toolchain.compile.planner import ALIGN, Plan, band_key, check, plan, scratch_key
from toolchain.emit.cnames import check_identifier
from toolchain.errors import BudgetError, CompileError, UsageError
from toolchain.tflite_model import TFLiteModel

if TYPE_CHECKING:
    from toolchain.targets import Target

log = logging.getLogger(__name__)

__all__ = ["CompiledModel", "compile_model", "lower_or_problems", "supported"]


@dataclass(frozen=True)
class CompiledModel:
    """What :func:`compile_model` wrote and the figures around it."""

    name: str
    out_dir: Path
    header: Path
    sources: tuple[Path, ...]
    arena_bytes: int
    n_ops: int
    ops: tuple[str, ...]
    model_sha256: str
    plan: dict[str, Any]
    weights_bytes: int = 0
    model_bytes: int = 0
    kernels: tuple[str, ...] = ()
    files: tuple[Path, ...] = field(default=(), repr=False)
    #: one dict per operator: index, kind, summary, output_shape/offset/bytes, const_bytes
    layers: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    #: per graph input/output: name, dtype, shape, scale, zero_point, bytes, arena offset
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    #: the CMSIS-NN checkout used (path, revision, describe) and the ops it runs; None without
    cmsis_nn: dict[str, Any] | None = None
    #: the arena keeps the inputs intact through invoke (``compile_model(keep_inputs=True)``)
    keep_inputs: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out_dir", "header"):
            d[k] = str(d[k])
        d["sources"] = [str(p) for p in self.sources]
        d["files"] = [str(p) for p in self.files]
        d["ops"] = list(self.ops)
        d["kernels"] = list(self.kernels)
        d["layers"] = [dict(r) for r in self.layers]
        d["inputs"] = [dict(r) for r in self.inputs]
        d["outputs"] = [dict(r) for r in self.outputs]
        return d


def _load(model: str | os.PathLike[str] | TFLiteModel) -> TFLiteModel:
    if isinstance(model, TFLiteModel):
        return model
    return TFLiteModel.from_file(model)


def supported(model: str | os.PathLike[str] | TFLiteModel) -> list[str]:
    """What compile cannot handle in ``model``: one line per problem; [] = fully supported."""
    return _lower.unsupported(_load(model))


def lower_or_problems(model: str | os.PathLike[str] | TFLiteModel) -> Graph | list[str]:
    """``model`` lowered, or what compile cannot handle in it (as :func:`supported`). A graph
    can be handed to :func:`compile_model` (``lowered=``) so that the model is not lowered a
    second time; it is used up there (kernel selection and in-place planning change it)."""
    return _lower.lower_or_problems(_load(model))


def _lowered_of(m: TFLiteModel, lowered: Graph | None) -> Graph:
    """``m`` lowered, or ``lowered`` when a caller already lowered this same model."""
    if lowered is None:
        return _lower.lower(m)
    if lowered.model_sha256 != m.sha256:
        raise UsageError(
            "the lowered graph passed in is not of this model (its sha256 differs)",
            hint="lower the same model with toolchain.compile.lower_or_problems",
        )
    return lowered


def lower_and_plan(
    model: str | os.PathLike[str] | TFLiteModel,
    *,
    target: str | Target | None = None,
    kernels: str = "auto",
    in_place: bool = True,
    cmsis_nn: _cmsisnn.Checkout | None = None,
    cmsis_nn_ops: frozenset[str] = frozenset(_cmsisnn.OPS),
    patch: str = "auto",
    lowered: Graph | None = None,
    keep_inputs: bool = False,
    cmsis_nn_take: frozenset[int] | None = None,
) -> tuple[Graph, Plan]:
    """Lower, hand the operators CMSIS-NN has to it (with ``cmsis_nn``, see
    :mod:`.cmsisnn`), pick the kernels of the rest (:mod:`.select`), let element-wise
    operators work in place (:mod:`.inplace`, unless ``in_place`` is False), plan, and split
    the first layers into row bands where that makes the arena smaller (:mod:`.patch`;
    ``patch`` auto/on/off) without writing anything (raises CompileError when unsupported).
    ``lowered``: ``model`` already lowered (:func:`lower_or_problems`), taken as it is and
    changed in place. ``keep_inputs``: nothing is placed over the graph inputs (see
    :attr:`Graph.keep_inputs`), so a caller may write its inputs once and invoke many times
    (the benchmark firmware); when the inputs placed above the free plan take less, that
    layout is used. ``cmsis_nn_take``: only these op indices may go to CMSIS-NN (the
    per-layer choice of :mod:`.perlayer`)."""
    _patch.check_policy(patch)
    m = _load(model)
    lowered = _lowered_of(m, lowered)
    if cmsis_nn is not None:
        _cmsisnn.apply(lowered, cmsis_nn, target, cmsis_nn_ops, cmsis_nn_take)
    graph = _select.specialize(lowered, kernels=kernels, target=target)
    graph.keep_inputs = keep_inputs
    if in_place:
        _inplace.apply(graph)
    p = plan(graph)
    split, p = _patch.choose(graph, p, patch)
    if keep_inputs:
        split, p = _inputs_on_top_if_smaller(graph, split, p, patch)
    check(graph, p)
    return graph, p


def _inputs_on_top_if_smaller(
    graph: Graph, split: Split | None, kept: Plan, patch: str
) -> tuple[Split | None, Plan]:
    """The plan without kept inputs, with the inputs moved to fresh bytes above it, when that
    is smaller than ``kept`` (so keeping the inputs never costs more than their size); the
    chosen split is left in ``graph.split``."""
    kept_more = graph.more_splits
    graph.keep_inputs = False
    free_split, free = _patch.choose(graph, plan(graph), patch)
    graph.keep_inputs = True
    offsets = dict(free.offsets)
    top = free.arena_bytes
    for s in sorted({graph.storage(t) for t in graph.inputs}):
        offsets[s] = top
        top += -(-graph.tensors[s].nbytes // ALIGN) * ALIGN
    arena = max(-(-top // 16) * 16, 16)
    if arena >= kept.arena_bytes:
        graph.split, graph.more_splits = split, kept_more
        return split, kept
    graph.split = free_split
    return free_split, replace(
        free, offsets=offsets, arena_bytes=arena, heuristic=free.heuristic + "+inputs_on_top"
    )


def _check_budget(t: Target, arena: int, flash: int) -> None:
    mem = t.memory
    if arena + mem.stack_bytes > mem.ram_bytes:
        raise BudgetError(
            f"the model needs a {arena:,} B arena; with the {mem.stack_bytes:,} B stack that "
            f"target {t.name} reserves, it does not fit in {mem.ram_bytes:,} B of RAM",
            hint="prune or shrink the model, or pick a target with more RAM",
        )
    if mem.flash_bytes is not None and flash > mem.flash_bytes:
        raise BudgetError(
            f"the model's constant data is {flash:,} B but target {t.name} has "
            f"{mem.flash_bytes:,} B of flash",
            hint="prune or shrink the model, or pick a target with more flash",
        )


def compile_model(
    model: str | os.PathLike[str] | TFLiteModel,
    *,
    out_dir: str | os.PathLike[str],
    name: str = "model",
    target: str | Target | None = None,
    kernels: str = "auto",
    cmsis_nn: str | os.PathLike[str] | None = None,
    cmsis_nn_ops: str = "all",
    patch: str = "auto",
    lowered: Graph | None = None,
    keep_inputs: bool = False,
) -> CompiledModel:
    """Compile an int8 .tflite model to C sources in ``out_dir`` (replaced atomically).

    ``kernels``: ``auto`` (fast kernels where the target's CPU has the DSP extension, and M3),
    ``fast`` (everywhere, portable C without DSP) or ``ref`` (reference-order kernels only);
    see :mod:`toolchain.compile.select`. ``patch``: ``auto`` (run the first layers in row
    bands when that makes the arena smaller), ``on`` (whenever possible), ``off``; see
    :mod:`toolchain.compile.patch`. ``target``: a profile (or its name or .toml path): the
    kernel choice and the RAM/flash check. ``lowered``: the graph :func:`lower_or_problems`
    gave for this same model, so that it is not lowered twice (used up here).
    ``keep_inputs``: the planner places nothing over the inputs, so they survive invoke (the
    header then defines ``NAME_INPUTS_KEPT`` 1): the benchmark firmware receives its inputs
    straight into the arena and invokes many times without a copy of them; costs arena
    where the inputs would otherwise be reused (at most their size).

    ``cmsis_nn``: the root of the user's CMSIS-NN checkout; the operators CMSIS-NN has then
    call it, with its scratch buffers planned into the arena (:mod:`.cmsisnn`). Needs a
    Cortex-M ``target`` (its CPU decides which of the library's code paths, and so which
    scratch sizes, apply); the checkout's version is checked first (UsageError).
    ``cmsis_nn_ops``: which operators go to CMSIS-NN (:func:`.cmsisnn.parse_ops`: ``all``,
    ``auto`` = per layer, where CMSIS-NN's kernel measured fewer instructions than ours on
    this layer's shape on the target's core, :mod:`.perlayer`: measured in QEMU and cached,
    or a static per-core rule without QEMU; or a list of operator names).

    Raises CompileError (unsupported operator, float/hybrid model, unwritable output),
    UsageError (``name`` is no C identifier), BudgetError (over the target's RAM/flash),
    TFLiteModelError / InputFileError (not a readable .tflite).
    """
    check_identifier(name, what="model name")
    if name.startswith("edc_") or name == "edc":
        raise UsageError(
            f"model name {name!r} clashes with the runtime's edc_ prefix",
            hint="pick another --name",
        )
    ops = _cmsisnn.parse_ops(cmsis_nn_ops)
    if cmsis_nn is None and cmsis_nn_ops != "all":
        raise UsageError(
            "--cmsis-nn-ops without --cmsis-nn", hint="add --cmsis-nn /path/to/CMSIS-NN"
        )
    tgt: Target | None = None
    if target is not None:
        from toolchain.targets import load_target

        tgt = load_target(target) if isinstance(target, str) else target
    checkout = _open_cmsis_nn(cmsis_nn, tgt)
    m = _load(model)
    choice: _perlayer.Choice | None = None
    if checkout is not None and tgt is not None and cmsis_nn_ops.strip().lower() == "auto":
        lowered = _lowered_of(m, lowered)
        src = m.source if m.source and m.source != "<bytes>" else None
        if kernels == "auto":
            choice = _perlayer.choose(lowered, target=tgt, checkout=checkout, model=src)
        else:  # the measured counts are of the auto kernels
            choice = _perlayer.static_choice(
                lowered, tgt.cpu.core, f"kernels={kernels}", _perlayer.QEMU_BOARD.get(tgt.cpu.core)
            )
        ops = frozenset(_cmsisnn.OPS)
    graph, p = lower_and_plan(
        m,
        target=tgt,
        kernels=kernels,
        cmsis_nn=checkout,
        cmsis_nn_ops=ops,
        patch=patch,
        lowered=lowered,
        keep_inputs=keep_inputs,
        cmsis_nn_take=None if choice is None else choice.indices,
    )
    writer = CWriter(graph, p, name, Path(m.source).name if m.source else "<bytes>")
    texts = writer.files()
    weights_bytes = writer.consts.nbytes
    if tgt is not None:
        _check_budget(tgt, p.arena_bytes, weights_bytes)

    out = Path(out_dir)
    kfiles = kernel_files(graph)
    kdir = kernel_dir()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise CompileError(
            f"cannot write to {out}: {exc.strerror or exc}",
            hint="pick a writable --out folder",
        ) from exc
    try:
        for fname, text in texts.items():
            (tmp / fname).write_text(text, encoding="utf-8")
        for fname in kfiles:
            shutil.copyfile(kdir / fname, tmp / fname)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CompileError(
            f"cannot write to {out}: {exc.strerror or exc}",
            hint="pick a writable --out folder (an existing one is replaced as a whole)",
        ) from exc
    files = tuple(sorted(out / f for f in list(texts) + kfiles))
    sources = tuple(f for f in files if f.suffix == ".c")
    log.info(
        "compiled %s: %d ops, arena %d B, constants %d B",
        name,
        len(graph.ops),
        p.arena_bytes,
        weights_bytes,
    )
    return CompiledModel(
        name=name,
        out_dir=out,
        header=out / f"{name}.h",
        sources=sources,
        arena_bytes=p.arena_bytes,
        n_ops=len(graph.ops),
        ops=tuple(op.kind for op in graph.ops),
        model_sha256=graph.model_sha256,
        plan=p.report(),
        weights_bytes=weights_bytes,
        model_bytes=graph.model_bytes,
        kernels=tuple(graph.kernels()),
        files=files,
        layers=_layers(graph, p),
        inputs=tuple(_io(graph, p, t) for t in graph.inputs),
        outputs=tuple(_io(graph, p, t) for t in graph.outputs),
        cmsis_nn=None
        if checkout is None
        else {
            **checkout.to_dict(),
            "policy": cmsis_nn_ops,
            "ops": [op.index for op in graph.ops if op.kernel == _cmsisnn.KERNEL],
            **({} if choice is None else {"choice": choice.to_dict()}),
        },
        keep_inputs=keep_inputs,
    )


def _open_cmsis_nn(
    path: str | os.PathLike[str] | None, t: Target | None
) -> _cmsisnn.Checkout | None:
    if path is None:
        return None
    if t is None:
        raise UsageError(
            "--cmsis-nn needs a Cortex-M --target: its CPU decides CMSIS-NN's code paths and "
            "scratch sizes",
            hint="add e.g. --target mps2-an386",
        )
    if not t.cpu.is_cortex_m:
        raise UsageError(
            f"--cmsis-nn is for Cortex-M targets; {t.name} has a {t.cpu.core}",
            hint="drop --cmsis-nn for this target",
        )
    return _cmsisnn.open_checkout(path)


def _io(graph: Graph, p: Plan, t: int) -> dict[str, Any]:
    ten = graph.tensors[t]
    return {
        "name": ten.name,
        "dtype": ten.dtype,
        "shape": list(ten.shape),
        "scale": ten.scale,
        "zero_point": ten.zero_point,
        "bytes": ten.nbytes,
        "offset": p.offset(graph, t),
    }


def _layers(graph: Graph, p: Plan) -> tuple[dict[str, Any], ...]:
    rows = []
    block = {i: sp for sp in graph.splits() for i in sp.ops}
    for op in graph.ops:
        y = graph.tensors[op.outputs[0]]
        sp = block.get(op.index)
        split = sp is not None
        inner = sp is not None and split and op.index != sp.last
        rows.append(
            {
                "index": op.index,
                "kind": op.kind,
                "summary": op.summary,
                "kernel": op.func or "(alias)",
                "output_shape": "x".join(str(d) for d in y.shape),
                # a split block's inner outputs live in band buffers
                "output_offset": p.offsets[band_key(op.index)]
                if inner
                else p.offset(graph, y.index),
                "output_bytes": y.nbytes,
                "band_bytes": sp.buffer_bytes(sp.ops.index(op.index)) if sp and inner else 0,
                "const_bytes": sum(
                    v.nbytes
                    for call in op.calls()
                    for v in call.fields.values()
                    if isinstance(v, ConstArray)
                ),
                "scratch_bytes": op.scratch_bytes,
                "in_place": bool(op.kernel)
                and any(graph.storage(t) == graph.storage(y.index) for t in op.inputs),
                "scratch_offset": p.offsets.get(
                    scratch_key(sp.first if sp and split else op.index)
                ),
                "split": split,
            }
        )
    return tuple(rows)


def _replace_dir(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest``; an existing ``dest`` folder is swapped out, then removed."""
    if dest.exists() and not dest.is_dir():
        raise OSError(20, "exists and is not a folder")
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.rmdir(old)
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
