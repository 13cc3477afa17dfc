"""The model part of a TFLM firmware project, produced by the emit stage.

:func:`emit_model` runs emit into the project's ``model/`` folder (C array, op resolver
header, arena size, golden vectors) and returns what the firmware template needs to bind
them: file and symbol names, the arena size, the input sizes, the operator list and the
model's SHA-256 (which the firmware reports in HELLO so the host can tell a firmware built
for another model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import BudgetError
from toolchain.targets import Target
from toolchain.tflite_model import TFLiteModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelArtifacts:
    """The emitted model files (names relative to ``directory``) and their C symbols."""

    directory: Path
    name: str
    files: tuple[str, ...]
    model_header: str
    model_array: str
    resolver_header: str
    resolver_type: str
    resolver_register: str
    arena_bytes: int
    sha256: str
    model_bytes: int
    input_bytes: int
    ops: tuple[str, ...]  # the main subgraph's operators in execution order
    golden_npz: str | None

    def relocated(self, directory: Path) -> ModelArtifacts:
        return replace(self, directory=directory)

    def binding_context(self) -> dict[str, Any]:
        """Values for ``include/model_binding.h.j2``."""
        digest = bytes.fromhex(self.sha256)
        return {
            "model_name": self.name,
            "model_header": self.model_header,
            "model_array": self.model_array,
            "resolver_header": self.resolver_header,
            "resolver_type": self.resolver_type,
            "resolver_register": self.resolver_register,
            "arena_bytes": self.arena_bytes,
            "model_sha256_bytes": ", ".join(f"0x{b:02x}" for b in digest),
            "model_sha256": self.sha256,
            "n_ops": len(self.ops),
            "ops_text": ",".join(dict.fromkeys(self.ops)),
        }


def check_budget(arts: ModelArtifacts, target: Target) -> None:
    """Fail early when the model array alone exceeds flash, or the arena alone exceeds RAM
    (the linked image is checked precisely after the build)."""
    mem = target.memory
    flash = mem.flash_bytes or 0
    if flash and arts.model_bytes > flash:
        raise BudgetError(
            f"model {arts.name}: {arts.model_bytes:,} B of flatbuffer do not fit "
            f"{target.name}'s {flash:,} B of flash (before any code)",
            hint="prune or shrink the model, or choose a target with more flash",
        )
    check_arena(arts.name, arts.arena_bytes, target)


def check_arena(
    name: str, arena_bytes: int, target: Target, *, what: str = "its tensor arena"
) -> None:
    """BudgetError when the arena of model ``name`` exceeds the RAM ``target`` has left after
    its stack and heap (the TFLM and the compiled firmware both)."""
    mem = target.memory
    ram_left = mem.ram_bytes - mem.stack_bytes - mem.heap_bytes
    if arena_bytes > ram_left:
        raise BudgetError(
            f"model {name}: {what} needs {arena_bytes:,} B but "
            f"{target.name} has {ram_left:,} B of RAM left after stack and heap "
            f"({mem.ram_bytes:,} B in all)",
            hint="prune or shrink the model, or choose a target with more RAM",
        )


def emit_model(
    model: Path, model_dir: Path, target: Target, *, allow_float: bool = False
) -> ModelArtifacts:
    """Emit ``model`` into ``model_dir`` for ``target`` (C array, op resolver, arena size
    with the emit stage's margin, golden vectors) and describe the result.

    The emit stage's own LiteRT cross-check is not repeated here (``edgedeploy emit`` does
    it); the golden outputs come from the host TFLM interpreter, which is what the device is
    compared with. Raises the emit stage's errors, and :class:`BudgetError` when the model
    does not fit the target.
    """
    from toolchain.emit import emit

    tfl = TFLiteModel.from_file(model)
    result = emit(
        tfl, out_dir=model_dir, target=target, check_litert=False, allow_float=allow_float
    )
    sym = result.symbols
    input_bytes = sum(
        int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize for t in tfl.inputs
    )
    arts = ModelArtifacts(
        directory=Path(model_dir),
        name=result.name,
        files=tuple(sorted(p.name for p in result.files)),
        model_header=sym.model_header,
        model_array=sym.model_array,
        resolver_header=sym.resolver_header,
        resolver_type=sym.resolver_type,
        resolver_register=sym.resolver_register,
        arena_bytes=result.arena_size,
        sha256=tfl.sha256,
        model_bytes=tfl.size,
        input_bytes=input_bytes,
        ops=tuple(op.name for op in tfl.main.operators),
        golden_npz=sym.golden_npz,
    )
    check_budget(arts, target)
    log.info(
        "model %s: %d B, arena %d B, %d ops",
        arts.name,
        arts.model_bytes,
        arts.arena_bytes,
        len(arts.ops),
    )
    return arts
