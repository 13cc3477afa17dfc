"""The emit stage: a .tflite model → embedded C artifacts for TFLite Micro.

Public API (keyword-only options; see each function's docstring for what it raises):

* :func:`emit` → :class:`EmitResult` — write ``<name>_model_data.h/.cc``,
  ``<name>_op_resolver.h``, ``<name>_golden.h/.cc``, ``golden.npz`` and ``emit_report.json``.
* :func:`minimum_arena` / :func:`recommended_arena` / :func:`search_arena` — the smallest
  working tensor arena on the host TFLM interpreter (cached by sha256), with or without the
  margin.
* :mod:`.carray` (C arrays), :mod:`.resolver` (op resolver), :mod:`.golden`,
  :mod:`.litert_check`, :mod:`.footprint` (memory report), :mod:`.sandbox` (the interpreter
  helper process) for callers that need one piece.
"""

from toolchain.emit.arena import (
    DEFAULT_MARGIN,
    ArenaMargin,
    ArenaSearch,
    minimum_arena,
    recommended_arena,
    search_arena,
)
from toolchain.emit.stage import EmitResult, EmitSymbols, emit

__all__ = [
    "DEFAULT_MARGIN",
    "ArenaMargin",
    "ArenaSearch",
    "EmitResult",
    "EmitSymbols",
    "emit",
    "minimum_arena",
    "recommended_arena",
    "search_arena",
]
