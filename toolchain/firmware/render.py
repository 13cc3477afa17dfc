"""Render a Cortex-M firmware project for a target from ``firmware_templates/``.

The template is a real, buildable project (``firmware_templates/cortex-m/``): every file is
copied byte for byte except the few ``*.j2`` files, which are rendered with Jinja2 and
``StrictUndefined`` from the target profile (``config.mk``, ``linker.ld``,
``include/target_config.h``, and for the TFLM firmware ``include/model_binding.h``). The
device-protocol library (``firmware_templates/common/edp/``) is copied into ``edp/``, and for
the compiled-model firmware the model's EDP backend (``firmware_templates/common/compiled/``,
shared with the host build) into ``compiled/``. The
model (C array, op resolver, arena size, golden vectors) comes from the emit stage and is
written into ``model/`` by it; it never passes through the template engine.

Rendering is deterministic: the same target, model, library and options give byte-identical
files (no timestamps, sorted iteration). Nothing is written unless everything rendered
(:func:`toolchain.fsutil.staged_outputs`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from toolchain.errors import FirmwareError, InputFileError, TargetError, UsageError
from toolchain.firmware import libcheck
from toolchain.firmware.model import ModelArtifacts, check_arena, emit_model
from toolchain.fsutil import to_json
from toolchain.targets import Target

if TYPE_CHECKING:
    from toolchain.compile import CompiledModel
    from toolchain.compile.ir import Graph

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "firmware_templates"
EDP_DIR = TEMPLATES_DIR / "common" / "edp"
#: the compiled model's EDP backend, shared with the host build (copied into ``compiled/``)
COMPILED_DIR = TEMPLATES_DIR / "common" / "compiled"
FW_KINDS = ("compiled", "tflm", "selftest")
#: Model runtimes of a benchmark firmware: the compiled model (``edgedeploy compile``, no
#: TFLM) or the TFLM interpreter with a hand-built library.
RUNTIMES = ("compiled", "tflm")
#: Input bytes the self-test firmware's one tensor has (docs/protocol.md, fw_kind 1).
SELFTEST_TENSOR_BYTES = 4096
#: Files of the template that only the TFLM firmware uses.
_TFLM_ONLY = ("include/model_binding.h.j2", "src/tflm_main.cc")
#: Files of the template that only the compiled-model firmware uses.
_COMPILED_ONLY = ("include/compiled_binding.h.j2", "src/compiled_main.c")
#: The C name the compiled model gets inside a firmware project (model/model.h, model_init...).
COMPILED_NAME = "model"
#: Written by render, read back by build and the runners: what the project was made from.
MANIFEST = "edgedeploy_firmware.json"


@dataclass(frozen=True)
class TflmLibrary:
    """A TFLM static library and the include directories its headers need."""

    lib: Path
    includes: tuple[Path, ...]
    check: libcheck.LibraryCheck


@dataclass(frozen=True)
class FirmwareProject:
    """A rendered project: where it is and what it was rendered from."""

    path: Path
    target: Target
    fw: str  # "compiled", "tflm" or "selftest"
    files: tuple[str, ...]
    model: Path | None = None
    model_artifacts: ModelArtifacts | None = None
    tflm: TflmLibrary | None = None
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    compiled: dict[str, Any] | None = None  # the compiler's CompiledModel.to_dict()

    def relocated(self, path: Path) -> FirmwareProject:
        """The same project after its directory moved to ``path``."""
        arts = self.model_artifacts.relocated(path / "model") if self.model_artifacts else None
        return replace(self, path=path, model_artifacts=arts)


def _c_string(value: object) -> str:
    """A C string literal for ``value`` (escaped; ASCII only)."""
    text = str(value)
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= code < 127:
            out.append(ch)
        else:
            out.append(f"\\{code & 0xFF:03o}" if code < 256 else "?")
    out.append('"')
    return "".join(out)


def _env(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["c_string"] = _c_string
    return env


def template_dir_for(target: Target) -> Path:
    """``firmware_templates/<target.firmware.template>``; raises TargetError if missing."""
    if target.firmware is None:
        raise TargetError(
            f"target {target.name} ({target.kind}) has no [firmware] table: "
            "firmware is built for MCU targets only",
            hint="choose an MCU target (edgedeploy targets --kind mcu)",
        )
    d = TEMPLATES_DIR / target.firmware.template
    if not (d / "Makefile").is_file():
        raise TargetError(
            f"target {target.name}: firmware template {target.firmware.template!r} not found "
            f"in {TEMPLATES_DIR}",
            hint="available templates: "
            + ", ".join(
                sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / "Makefile").is_file())
            ),
        )
    return d


def _make_path(p: Path, what: str) -> str:
    """An absolute path safe to write into a Makefile variable."""
    s = str(p.resolve())
    if re.search(r"[\s$#\"'\\;`]", s):
        raise UsageError(
            f"{what} path {s!r} contains a space or shell/make meta-character",
            hint="move or link it to a plain path (letters, digits, / . _ - + only)",
        )
    return s


#: Where TFLM's headers find flatbuffers/gemmlowp/ruy, relative to a tflite-micro checkout
#: (its own Makefile's downloads) or a tree made by TFLM's create_tflm_tree.py.
_TFLM_SUBDIRS = (
    "tensorflow/lite/micro/tools/make/downloads/flatbuffers/include",
    "tensorflow/lite/micro/tools/make/downloads/gemmlowp",
    "tensorflow/lite/micro/tools/make/downloads/ruy",
    "third_party/flatbuffers/include",
    "third_party/gemmlowp",
    "third_party/ruy",
)


def resolve_tflm_includes(includes: Sequence[Path]) -> tuple[Path, ...]:
    """The include directories for TFLM's headers: the given ones, plus flatbuffers/gemmlowp/
    ruy found under them. Raises :class:`InputFileError` when the TFLM or flatbuffers headers
    cannot be found there."""
    dirs: list[Path] = []
    for inc in includes:
        p = Path(inc).resolve()
        if not p.is_dir():
            raise InputFileError(f"TFLM include directory {inc}: no such directory")
        dirs.append(p)
        dirs.extend(p / sub for sub in _TFLM_SUBDIRS if (p / sub).is_dir())
    unique = tuple(dict.fromkeys(dirs))
    need = {
        "tensorflow/lite/micro/micro_interpreter.h": "the tflite-micro source root",
        "flatbuffers/flatbuffers.h": "flatbuffers' include directory",
    }
    for header, what in need.items():
        if not any((d / header).is_file() for d in unique):
            raise InputFileError(
                f"{header} not found under the TFLM include directories "
                f"({', '.join(map(str, unique)) or 'none given'})",
                hint=f"pass --tflm-include with {what} (the tflite-micro checkout the library "
                "was built from finds flatbuffers/gemmlowp/ruy under it by itself)",
            )
    return unique


def open_tflm_library(lib: Path, includes: Sequence[Path], target: Target) -> TflmLibrary:
    """Check ``lib`` against ``target`` (:func:`libcheck.require_compatible`) and find its
    headers (:func:`resolve_tflm_includes`)."""
    check = libcheck.require_compatible(Path(lib), target)
    if not includes:
        raise UsageError(
            "--tflm-lib needs --tflm-include: the tflite-micro source root the library was "
            "built from (its headers must match the library)"
        )
    return TflmLibrary(lib=check.path, includes=resolve_tflm_includes(includes), check=check)


def _target_context(target: Target, fw: str) -> dict[str, Any]:
    fwspec, mem, cpu = target.firmware, target.memory, target.cpu
    if fwspec is None:
        raise TargetError(f"target {target.name} has no [firmware] table")
    if mem.flash_bytes is None:
        raise TargetError(f"target {target.name}: [memory] flash_bytes is required for firmware")
    if fwspec.board in ("mps2-cmsdk", "lm3s-pl011") and fwspec.uart_base is None:
        raise TargetError(f"target {target.name}: board {fwspec.board} needs [firmware] uart_base")
    qemu = target.transport.kind == "qemu"
    fpu = "" if cpu.fpu == "none" or cpu.float_abi == "soft" else f" {cpu.fpu}"
    return {
        "target_name": target.name,
        "target_source": Path(target.source).name if target.source else target.name,
        "board": fwspec.board,
        "board_src": fwspec.board.replace("-", "_"),
        "cpu_desc": f"{cpu.core}{fpu} {cpu.float_abi}-float",
        "cpu_flags": " ".join(cpu.gcc_flags()),
        "clock_hz": cpu.clock_hz,
        "baud": target.transport.baud,
        "uart_base": None if fwspec.uart_base is None else f"0x{fwspec.uart_base:08X}",
        "uart_irq": fwspec.uart_irq,
        "semihosting": int(fwspec.semihosting_exit),
        "has_dwt": int(fwspec.has_dwt),
        "qemu_icount": int(qemu),
        "icount_shift": target.transport.qemu_icount_shift,
        "flash_origin": f"0x{mem.flash_origin:08X}",
        "flash_bytes": mem.flash_bytes,
        "ram_origin": f"0x{mem.ram_origin:08X}",
        "ram_bytes": mem.ram_bytes,
        "stack_bytes": mem.stack_bytes,
        "heap_bytes": mem.heap_bytes,
        "fw": fw,
    }


@dataclass(frozen=True)
class RuntimeChoice:
    """How a benchmark firmware runs its model (:func:`choose_runtime`)."""

    name: str
    #: why: "asked for", "a TFLM library was given", or what the compiler found
    why: str
    #: the model lowered while checking that the compiler supports it (auto choice of
    #: "compiled" only), for :func:`compile_into` so that it is not lowered twice
    lowered: Graph | None = field(default=None, repr=False, compare=False)


def choose_runtime(
    model: str | os.PathLike[str], runtime: str | None, *, tflm_lib: bool = False
) -> RuntimeChoice:
    """The runtime of a benchmark firmware of ``model``: ``runtime`` when given
    (``"compiled"`` or ``"tflm"``); else ``"tflm"`` when a TFLM library was given
    (``tflm_lib``); else ``"compiled"`` when the compiler supports every operator of the
    model (:func:`toolchain.compile.lower_or_problems`), else ``"tflm"``."""
    if runtime is None and tflm_lib:
        return RuntimeChoice("tflm", "a TFLM library was given")
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise UsageError(
                f"unknown firmware runtime {runtime!r}", hint="compiled or tflm (docs/firmware.md)"
            )
        return RuntimeChoice(runtime, "asked for")
    from toolchain.compile import lower_or_problems

    lowered = lower_or_problems(Path(model))
    if not isinstance(lowered, list):
        return RuntimeChoice(
            "compiled", "the compiler supports every operator of the model", lowered
        )
    missing = lowered
    why = "the compiler lacks " + "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else "")
    log.info("runtime tflm for %s: %s", model, why)
    return RuntimeChoice("tflm", why)


def render_into(
    dest: Path,
    *,
    target: Target,
    model: str | os.PathLike[str] | None,
    selftest: bool,
    tflm_lib: str | os.PathLike[str] | None,
    tflm_include: Sequence[str | os.PathLike[str]],
    allow_float: bool = False,
    runtime: str | None = None,
    cmsis_nn: str | os.PathLike[str] | None = None,
    cmsis_nn_ops: str = "all",
    patch: str = "auto",
) -> FirmwareProject:
    """Render the project for ``target`` straight into ``dest`` (callers stage it:
    :func:`toolchain.firmware.make_firmware`).

    ``selftest=True`` renders the self-test firmware (no model, no TFLM); otherwise ``model``
    (a .tflite) is required and ``runtime`` says how it runs (:func:`choose_runtime`; None:
    compiled when the compiler supports every operator, else tflm):

    * ``"compiled"``: ``edgedeploy compile`` writes the model as plain C into ``model/``
      (:func:`toolchain.compile.compile_model`; an unsupported operator raises its error,
      which names the operator and points at ``--runtime tflm``), plus ``model/golden.npz``;
      no TFLM library is involved. With ``cmsis_nn`` (the user's CMSIS-NN checkout) the
      operators CMSIS-NN has call it (:mod:`toolchain.compile.cmsisnn`) and ``config.mk``'s
      ``CMSIS_NN`` points the build at the checkout's sources.
    * ``"tflm"``: the model goes through the emit stage into ``model/`` and is checked
      against the target's flash/RAM budget (:class:`~toolchain.errors.BudgetError`).
      ``tflm_lib``/``tflm_include`` are optional (the project can be built later with
      ``make TFLM_LIB=...``); when given, the library is checked against the target first
      (:class:`~toolchain.errors.LibraryMismatchError`).
    """
    tdir = template_dir_for(target)
    if selftest and model is not None:
        raise UsageError("--selftest renders the self-test firmware, which takes no model")
    if not selftest and model is None:
        raise UsageError(
            "a model is needed for the benchmark firmware (--model MODEL.tflite)",
            hint="or render the self-test firmware with --selftest",
        )
    choice: RuntimeChoice | None = None
    if selftest:
        fw = "selftest"
    else:
        assert model is not None
        choice = choose_runtime(model, runtime, tflm_lib=tflm_lib is not None)
        fw = choice.name
    tflm: TflmLibrary | None = None
    if cmsis_nn is not None and fw != "compiled":
        raise UsageError(
            "--cmsis-nn is for the compiled runtime (the TFLM library brings its own kernels)",
            hint="add --runtime compiled, or drop --cmsis-nn",
        )
    if fw == "compiled" and tflm_lib is not None:
        raise UsageError(
            "--runtime compiled uses no TFLM library; drop --tflm-lib (or use --runtime tflm)"
        )
    if fw == "tflm" and tflm_lib is not None:
        tflm = open_tflm_library(Path(tflm_lib), [Path(p) for p in tflm_include], target)
    elif fw == "tflm" and tflm_include:
        raise UsageError("--tflm-include without --tflm-lib")

    ctx = _target_context(target, fw)
    ctx["tflm_lib"] = _make_path(tflm.lib, "TFLM library") if tflm else ""
    ctx["tflm_includes"] = (
        " ".join(_make_path(p, "TFLM include") for p in tflm.includes) if tflm else ""
    )
    arts: ModelArtifacts | None = None
    compiled: dict[str, Any] | None = None
    model_path: Path | None = None
    golden_rel: str | None = None
    arena_bytes: int | None = None
    model_sha: str | None = None
    model_files: list[str] = []
    if model is not None and fw == "compiled":
        model_path = Path(model).resolve()
        compiled = compile_into(
            model_path,
            dest / "model",
            target,
            patch=patch,
            lowered=choice.lowered if choice else None,
            cmsis_nn=cmsis_nn,
            cmsis_nn_ops=cmsis_nn_ops,
        )
        if compiled["report"].get("cmsis_nn"):
            ctx["cmsis_nn"] = _make_path(Path(compiled["report"]["cmsis_nn"]["path"]), "CMSIS-NN")
        ctx.update(compiled["binding"])
        # the arena keeps the inputs (compile_into): the device receives them in place
        ctx["max_input_bytes"] = 0
        golden_rel = f"model/{COMPILED_GOLDEN}"
        arena_bytes = compiled["arena_bytes"]
        model_sha = compiled["model_sha256"]
        model_files = compiled["files"]
    elif model is not None:
        model_path = Path(model).resolve()
        arts = emit_model(model_path, dest / "model", target, allow_float=allow_float)
        ctx["max_input_bytes"] = max(arts.input_bytes, 1)
        ctx.update(arts.binding_context())
        ctx["tflm_desc"] = tflm.check.describe() if tflm else "set at build time (TFLM_LIB)"
        golden_rel = f"model/{arts.golden_npz}" if arts.golden_npz else None
        arena_bytes = arts.arena_bytes
        model_sha = arts.sha256
        model_files = list(arts.files)
    else:
        ctx["max_input_bytes"] = SELFTEST_TENSOR_BYTES

    skip = {
        "selftest": (*_TFLM_ONLY, *_COMPILED_ONLY),
        "tflm": _COMPILED_ONLY,
        "compiled": _TFLM_ONLY,
    }[fw]
    env = _env(tdir)
    written: list[str] = []
    for src in sorted(p for p in tdir.rglob("*") if p.is_file()):
        rel = src.relative_to(tdir).as_posix()
        if rel in skip:
            continue
        if rel.endswith(".j2"):
            out_rel = rel[:-3]
            try:
                text = env.get_template(rel).render(**ctx)
            except jinja2.TemplateError as exc:
                raise FirmwareError(f"rendering {rel} for {target.name} failed: {exc}") from exc
            _write(dest / out_rel, text.encode("utf-8"))
        else:
            out_rel = rel
            _write(dest / out_rel, src.read_bytes())
        written.append(out_rel)
    for src in sorted(EDP_DIR.glob("*.[ch]")):
        _write(dest / "edp" / src.name, src.read_bytes())
        written.append(f"edp/{src.name}")
    if fw == "compiled":
        for src in sorted(COMPILED_DIR.glob("*.[ch]")):
            _write(dest / "compiled" / src.name, src.read_bytes())
            written.append(f"compiled/{src.name}")
    written.extend(f"model/{n}" for n in model_files)

    manifest = {
        "target": target.name,
        "fw": fw,
        "model": str(model_path) if model_path else None,
        "model_sha256": model_sha,
        "arena_bytes": arena_bytes,
        "golden": golden_rel,
        "tflm_library": tflm.check.to_dict() if tflm else None,
        "files": sorted(written),
    }
    if choice is not None:
        manifest["runtime"] = {"name": fw, "why": choice.why}
    if compiled is not None:
        manifest["compiled"] = compiled["report"]
    _write(dest / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    written.append(MANIFEST)
    log.info("rendered %s firmware for %s: %d files", fw, target.name, len(written))
    return FirmwareProject(
        path=dest,
        target=target,
        fw=fw,
        files=tuple(sorted(written)),
        model=model_path,
        model_artifacts=arts,
        tflm=tflm,
        manifest=manifest,
        compiled=compiled["report"] if compiled else None,
    )


def _compiled_report(d: dict[str, Any]) -> dict[str, Any]:
    """The compiler's figures for the manifest and reports: no absolute paths (the project is
    staged, then moved) and no per-layer table."""
    keep = ("name", "arena_bytes", "n_ops", "ops", "model_sha256", "plan", "weights_bytes",
            "model_bytes", "kernels", "cmsis_nn")  # fmt: skip
    out: dict[str, Any] = json.loads(to_json({k: d[k] for k in keep if k in d}))
    out["sources"] = sorted(Path(p).name for p in d.get("sources") or ())
    return out


#: Golden vectors written next to the compiled model (same format as the emit stage's).
COMPILED_GOLDEN = "golden.npz"


def compiled_binding(cm: CompiledModel, model_name: str) -> dict[str, Any]:
    """The values of ``include/compiled_binding.h.j2`` for the compiled model ``cm`` (C name
    :data:`COMPILED_NAME`): shared by the MCU firmware and the host-compiled device."""
    plan = cm.plan or {}
    desc = f"edgedeploy compile: {cm.n_ops} ops, static arena {cm.arena_bytes} B"
    if plan.get("tflm_greedy_bytes"):
        desc += f" (TFLM greedy plan {plan['tflm_greedy_bytes']} B)"
    if cm.keep_inputs:
        desc += ", inputs kept in place"
    return {
        "model_name": model_name,
        "model_sha256": cm.model_sha256,
        "n_ops": cm.n_ops,
        "arena_bytes": cm.arena_bytes,
        "c_name": COMPILED_NAME,
        "ops_text": ",".join(dict.fromkeys(cm.ops)),
        "compiled_desc": desc,
    }


def compile_into(
    model: Path,
    model_dir: Path,
    target: Target,
    *,
    cmsis_nn: str | os.PathLike[str] | None = None,
    cmsis_nn_ops: str = "all",
    patch: str = "auto",
    lowered: Graph | None = None,
) -> dict[str, Any]:
    """Compile ``model`` into ``model_dir`` (C name :data:`COMPILED_NAME`) with
    :func:`toolchain.compile.compile_model` (``lowered``: the model already lowered, see
    :class:`RuntimeChoice`), write golden vectors (seeded random inputs, the
    host TFLM interpreter's outputs: the compiled code is bit-exact with TFLM's reference
    kernels) and check the arena against the target's RAM. Returns ``binding`` (values for
    ``include/compiled_binding.h.j2``), ``report`` (the compiler's), ``files`` (names in
    ``model_dir``), ``input_bytes``, ``arena_bytes`` and ``model_sha256``."""
    from toolchain.compile import compile_model
    from toolchain.emit import golden
    from toolchain.emit.arena import recommended_arena
    from toolchain.emit.model_input import model_file
    from toolchain.tflite_model import TFLiteModel

    tfl = TFLiteModel.from_file(model)
    cm = compile_model(
        tfl,
        out_dir=model_dir,
        name=COMPILED_NAME,
        target=target,
        patch=patch,
        lowered=lowered,
        cmsis_nn=cmsis_nn,
        cmsis_nn_ops=cmsis_nn_ops,
        keep_inputs=True,
    )
    check_arena(model.name, cm.arena_bytes, target, what="the compiled model's arena")
    inputs = golden.random_inputs(tfl, count=golden.DEFAULT_COUNT, seed=golden.DEFAULT_SEED)
    with model_file(tfl) as mf:
        outputs = golden.run_tflm(mf, inputs, arena=recommended_arena(tfl))
    gset = golden.GoldenSet(
        f"{golden.DEFAULT_COUNT} random sample(s), numpy default_rng(seed={golden.DEFAULT_SEED})",
        tuple(inputs),
        tuple(outputs),
    )
    _write(model_dir / COMPILED_GOLDEN, golden.npz_bytes(gset))
    input_bytes = sum(int(a[0].nbytes) for a in inputs)
    binding = compiled_binding(cm, model.stem)
    files = sorted(p.name for p in model_dir.iterdir() if p.is_file())
    log.info("compiled %s: %d ops, arena %d B", model.name, cm.n_ops, cm.arena_bytes)
    return {
        "binding": binding,
        "report": _compiled_report(cm.to_dict()),
        "files": files,
        "input_bytes": input_bytes,
        "arena_bytes": cm.arena_bytes,
        "model_sha256": cm.model_sha256,
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_manifest(project_dir: Path) -> dict[str, Any]:
    """The manifest a rendered project carries; raises InputFileError when it is absent."""
    p = Path(project_dir) / MANIFEST
    try:
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"{project_dir} is not a firmware project rendered by edgedeploy ({MANIFEST}: {exc})",
            hint="render one with: edgedeploy firmware --target NAME ...",
        ) from exc
    return data
