"""``--cmsis-nn-ops auto``: per layer, our kernel or CMSIS-NN's, whichever measures faster.

For every layer CMSIS-NN could take (:data:`.cmsisnn.OPS`), :func:`choose` compares the
instructions our kernel and CMSIS-NN's kernel spend on that layer's exact shape and constants
on the target's core, and hands the layer to CMSIS-NN only where CMSIS-NN saves at least
:data:`MIN_GAIN` instructions (smaller gains are not worth the CMSIS-NN code in flash).

The counts are measured, not modelled: the model is built twice as compiled firmware for the
QEMU board that stands in for the target's core (:data:`QEMU_BOARD`: Cortex-M3 → lm3s6965evb,
M4 → mps2-an386, M7 → mps2-an500, M33 → mps2-an505), once with our kernels and once with
CMSIS-NN for every operator it has, both without split execution so that every operator is
its own call, and run under ``-icount shift=0`` (:func:`.measure.measure_layers`: guest
instructions per operator through the device protocol, identical run to run). Each count is
stored in a small JSON cache (:data:`CACHE_FILE` in ``$EDGEDEPLOY_CACHE_DIR``, default
``./.edgedeploy_cache``) under ``board | fingerprint | layer signature | kernel``: the layer
signature hashes the operator's kind, kernel and every field of the lowered layer (shapes,
strides, quantisation, constant bytes), the fingerprint hashes our kernel sources and kernel
selection code and the CMSIS-NN checkout's revision and ``git describe``. A second compile of
the same layers on the same core is then free, and the choice is reproducible from the cache.

Without QEMU (``qemu-system-arm`` not on PATH), for a core no QEMU board stands in for, for a
model given as bytes, or with ``EDGEDEPLOY_CMSIS_NN_MEASURE=0``, the choice falls back to the
static per-core rule :data:`STATIC_RULE` (operator kinds measured faster with CMSIS-NN on that
core); cached counts are still used where every candidate layer has them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolchain.compile import cmsisnn as _cmsisnn
from toolchain.compile.ir import ConstArray, Graph, Op
from toolchain.errors import CompileError

if TYPE_CHECKING:
    from toolchain.targets import Target

log = logging.getLogger(__name__)

CACHE_FILE = "cmsisnn-layers.json"
SCHEMA = 1
MEASURE_ENV = "EDGEDEPLOY_CMSIS_NN_MEASURE"
#: the candidates compared per layer
OWN, CMSIS = "own", "cmsis-nn"
KERNELS = (OWN, CMSIS)
#: the QEMU board measured for a core
QEMU_BOARD = {
    "cortex-m3": "lm3s6965evb",
    "cortex-m4": "mps2-an386",
    "cortex-m7": "mps2-an500",
    "cortex-m33": "mps2-an505",
}
#: without measurements: the operator kinds CMSIS-NN takes, per core. Cores with the DSP
#: extension (M4/M7, KWS/IC/VWW/AD/person_detect on mps2-an386): average pooling and the
#: same-shape ADD (CMSIS-NN's were faster on every model; our conv/depthwise/FC kernels on
#: all but a few layers). Cortex-M3 (no DSP; KWS on lm3s6965evb): CMSIS-NN's plain-C
#: convolution, depthwise, FC and pooling paths beat our portable fast kernels.
STATIC_RULE: dict[str, frozenset[str]] = {
    "cortex-m3": frozenset(
        {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "ADD"}
    ),
}
STATIC_DEFAULT = _cmsisnn.OPS_AUTO
#: a layer goes to CMSIS-NN only when it saves at least this many instructions per inference:
#: below that, the CMSIS-NN code it pulls into flash is not worth it (measured on mps2-an386:
#: CMSIS-NN's softmax saved 80-120 instructions for about 3.5 KB of flash on KWS, its FC 200
#: on VWW's last layer)
MIN_GAIN = 1000

#: ``measure(board, kernel)`` → instructions per operator, graph order, for the model compiled
#: with our kernels (``kernel == OWN``) or with CMSIS-NN for every operator it has
Measure = Callable[[str, str], Sequence[float]]


@dataclass(frozen=True)
class Choice:
    """Which ops (indices) go to CMSIS-NN, and how that was decided: ``measured`` (counts
    measured now, at least partly), ``cached`` (every count from the cache) or ``static``
    (:data:`STATIC_RULE`; ``reason`` says why). ``counts``: op index → kernel → instructions."""

    indices: frozenset[int]
    how: str
    board: str | None
    counts: dict[int, dict[str, float]] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "how": self.how,
            "board": self.board,
            "reason": self.reason,
            "layers": {str(i): c for i, c in sorted(self.counts.items())},
        }


def candidates(graph: Graph) -> list[Op]:
    """The ops CMSIS-NN could take (before :func:`.cmsisnn.apply`)."""
    return [
        op
        for op in graph.ops
        if op.kind in _cmsisnn.OPS and op.kernel and not op.parts and op.func in _cmsisnn._TAKE
    ]


def _hash_value(h: Any, v: Any) -> None:
    if isinstance(v, ConstArray):
        a = np.ascontiguousarray(v.values)
        h.update(f"C{v.ctype}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        h.update(f"A{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(v, (list, tuple)):
        h.update(b"[")
        for x in v:
            _hash_value(h, x)
        h.update(b"]")
    else:
        h.update(f"{type(v).__name__}:{v!r};".encode())


def layer_signature(graph: Graph, op: Op) -> str:
    """sha256 of what decides a layer's cost: kind, kernel, every field (constants by their
    bytes) and the shapes/types of its tensors."""
    h = hashlib.sha256()
    h.update(f"{op.kind}|{op.kernel}|{op.func}|{op.struct}|".encode())
    for k in sorted(op.fields):
        h.update(k.encode() + b"=")
        _hash_value(h, op.fields[k])
    for t in (*op.inputs, *op.outputs):
        tt = graph.tensors[t]
        h.update(f"T{tt.shape}{tt.dtype}{tt.scale!r}{tt.zero_point};".encode())
    return h.hexdigest()


def fingerprint(checkout: _cmsisnn.Checkout) -> str:
    """sha256 of the code the counts depend on: our kernel sources, the lowering/selection and
    CMSIS-NN glue code, and the checkout's revision and ``git describe``."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    files = sorted((here / "kernels").glob("*.[ch]"))
    files += [here / n for n in ("select.py", "cmsisnn.py", "lower.py")]
    for p in files:
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    h.update(f"{checkout.revision}|{checkout.describe}".encode())
    return h.hexdigest()


def default_cache_path() -> Path:
    """``$EDGEDEPLOY_CACHE_DIR/cmsisnn-layers.json`` (default ``./.edgedeploy_cache``)."""
    from toolchain.convert.cache import default_dir

    return default_dir() / CACHE_FILE


def _load_cache(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable per-layer count cache %s: %s", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return {}
    counts = data.get("counts")
    if not isinstance(counts, dict):
        return {}
    return {str(k): float(v) for k, v in counts.items() if isinstance(v, (int, float))}


def _save_cache(path: Path, counts: dict[str, float]) -> None:
    from toolchain.fsutil import atomic_write_text, to_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, to_json({"schema": SCHEMA, "counts": counts}))
    except OSError as exc:
        log.warning("could not write the per-layer count cache %s: %s", path, exc)


def _key(board: str, fp: str, sig: str, kernel: str) -> str:
    return f"{board}|{fp[:20]}|{sig}|{kernel}"


def static_choice(graph: Graph, core: str, reason: str, board: str | None) -> Choice:
    """:data:`STATIC_RULE` for ``core``."""
    kinds = STATIC_RULE.get(core, STATIC_DEFAULT)
    idx = frozenset(op.index for op in candidates(graph) if op.kind in kinds)
    log.info("--cmsis-nn-ops auto: static rule for %s (%s)", core, reason)
    return Choice(indices=idx, how="static", board=board, reason=reason)


def _default_measure(model: Path, checkout: _cmsisnn.Checkout) -> Measure | str:
    """The QEMU measurer, or why there is none."""
    if os.environ.get(MEASURE_ENV, "").strip() == "0":
        return f"{MEASURE_ENV}=0"
    import shutil

    from toolchain.bench.qemu import QEMU

    if shutil.which(QEMU) is None:
        return f"{QEMU} not found"

    def measure(board: str, kernel: str) -> Sequence[float]:
        from toolchain.compile.measure import measure_layers

        kw: dict[str, Any] = {}
        if kernel == CMSIS:
            kw = {"cmsis_nn": checkout.path, "cmsis_nn_ops": "all"}
        log.info("measuring %s per layer with %s kernels in QEMU %s", model.name, kernel, board)
        r = measure_layers(model, board, patch="off", **kw)
        if r.bit_exact is False:
            raise CompileError(
                f"measuring {model.name} with {kernel} kernels on {board}: the output is not "
                "bit-exact with the TFLM interpreter",
                hint="report this; use --cmsis-nn-ops all or a list meanwhile",
            )
        return r.per_op

    return measure


def choose(
    graph: Graph,
    *,
    target: Target,
    checkout: _cmsisnn.Checkout,
    model: str | os.PathLike[str] | None,
    cache_path: str | os.PathLike[str] | None = None,
    measure: Measure | None = None,
) -> Choice:
    """Per layer of the lowered ``graph`` (before :func:`.cmsisnn.apply`): CMSIS-NN where its
    kernel measured at least :data:`MIN_GAIN` fewer instructions than ours on ``target``'s
    core (see the module doc).
    ``measure``: the measurer (default: QEMU, see :func:`.measure.measure_layers`); counts
    missing from the cache are measured with it and stored. Raises CompileError when a
    measurement fails or disagrees with the graph."""
    core = target.cpu.core
    board = QEMU_BOARD.get(core)
    cands = candidates(graph)
    if not cands:
        return Choice(indices=frozenset(), how="cached", board=board)
    if board is None:
        return static_choice(graph, core, f"no QEMU board for {core}", None)
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    fp = fingerprint(checkout)
    sigs = {op.index: layer_signature(graph, op) for op in cands}
    cache = _load_cache(path)
    missing = [k for k in KERNELS if any(_key(board, fp, s, k) not in cache for s in sigs.values())]
    how = "cached"
    if missing:
        if measure is None:
            m = (
                _default_measure(Path(model), checkout)
                if model is not None and Path(model).is_file()
                else "the model is not a file"
            )
            if isinstance(m, str):
                return static_choice(graph, core, m + "; no cached counts", board)
            measure = m
        for kernel in missing:
            per_op = list(measure(board, kernel))
            if len(per_op) != len(graph.ops):
                raise CompileError(
                    f"measuring per layer with {kernel} kernels on {board} gave "
                    f"{len(per_op)} operator counts for a graph of {len(graph.ops)}"
                )
            for i, s in sigs.items():
                cache[_key(board, fp, s, kernel)] = float(per_op[i])
        _save_cache(path, cache)
        how = "measured"
    counts = {i: {k: cache[_key(board, fp, s, k)] for k in KERNELS} for i, s in sigs.items()}
    idx = frozenset(i for i, c in counts.items() if c[OWN] - c[CMSIS] >= MIN_GAIN)
    log.info(
        "--cmsis-nn-ops auto on %s (%s): CMSIS-NN for ops %s", board, how, sorted(idx) or "none"
    )
    return Choice(indices=idx, how=how, board=board, counts=counts)
