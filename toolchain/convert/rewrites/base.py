"""The contract every ONNX rewrite follows, and the equivalence check that enforces it.

A :class:`Rewrite` has three steps, run by :func:`apply`:

* ``requires(g)`` — the places it applies to (empty: it does not apply, nothing changes);
* ``call(g, matches)`` — change the graph; returns how many places it changed;
* ``ensures(g)`` — a structural post-condition (e.g. "no Erf left"): a message, or None.

After ``call``, :func:`apply` checks the rewritten model against the one before it with
onnxruntime on seeded random inputs: every output must agree within ``tolerance`` (relative
to the output's magnitude). ``exact`` says what equivalence the rewrite promises, in words
("bit-exact", "exact up to float rounding", ...); a rewrite that fails its check is undone
and recorded as ``rejected`` — the conversion goes on without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from toolchain.convert.rewrites.graph import Graph

log = logging.getLogger(__name__)

CHECK_SAMPLES = 2


@dataclass
class RewriteRecord:
    """What one rewrite did (one entry of ``report.json``'s ``conversion.rewrites``)."""

    name: str
    applied: int = 0
    exact: str = ""
    max_rel_err: float | None = None
    rejected: str | None = None
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "applied": self.applied,
            "exact": self.exact,
            "max_rel_err": self.max_rel_err,
            "rejected": self.rejected,
            "details": self.details[:8],
        }


class Rewrite:
    """Base class; subclasses set ``name``, ``exact``, ``tolerance`` and the three steps."""

    name: str = ""
    exact: str = "exact up to float rounding"
    #: max |after − before| / max(|before|, 1e-6) over the check inputs
    tolerance: float = 1e-4
    #: what the rewrite is for (one line, for docs and --help)
    purpose: str = ""

    def requires(self, g: Graph) -> list[Any]:
        raise NotImplementedError

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        """Change the graph at ``matches``; one description per changed place."""
        raise NotImplementedError

    def ensures(self, g: Graph) -> str | None:
        """A broken post-condition, in words; None when it holds."""
        return None


def apply(model: onnx.ModelProto, rewrite: Rewrite) -> tuple[onnx.ModelProto, RewriteRecord]:
    """Run ``rewrite`` on a copy of ``model``; the new model (or the old one when the
    rewrite does not apply or fails its checks) and the record."""
    rec = RewriteRecord(rewrite.name, exact=rewrite.exact)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    g = Graph(work)
    matches = rewrite.requires(g)
    if not matches:
        return model, rec
    try:
        rec.details = rewrite.call(g, matches)
        g.prune()
        broken = rewrite.ensures(g)
        if broken:
            raise RewriteCheckFailed(f"post-condition: {broken}")
        rec.max_rel_err = equivalence(model, work, tolerance=rewrite.tolerance)
    except RewriteCheckFailed as exc:
        log.warning("rewrite %s rejected: %s", rewrite.name, exc)
        rec.rejected, rec.details = str(exc), []
        return model, rec
    rec.applied = len(rec.details)
    log.info("rewrite %s: %d place(s), max rel err %.2g", rewrite.name, rec.applied,
             rec.max_rel_err or 0.0)  # fmt: skip
    return work, rec


class RewriteCheckFailed(Exception):
    """A rewrite broke its post-condition or changed what the model computes."""


def equivalence(before: onnx.ModelProto, after: onnx.ModelProto, *, tolerance: float) -> float:
    """Run both models on seeded random inputs; the largest relative output difference.

    Raises :class:`RewriteCheckFailed` above ``tolerance`` or when ``after`` does not run.
    """
    inputs = _random_inputs(before)
    try:
        ref = _run(before, inputs)
    except Exception as exc:  # noqa: BLE001 - nothing to compare against: trust the structure
        log.debug("equivalence check skipped, the model before does not run: %s", exc)
        return 0.0
    try:
        got = _run(after, inputs)
    except Exception as exc:
        raise RewriteCheckFailed(f"the rewritten model does not run: {exc}") from exc
    worst = 0.0
    for r, q in zip(ref, got, strict=True):
        if r.shape != q.shape:
            raise RewriteCheckFailed(f"output shape changed {r.shape} -> {q.shape}")
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1e-6)
        err = float(np.max(np.abs(r.astype(np.float64) - q))) / scale if r.size else 0.0
        worst = max(worst, err)
    if worst > tolerance:
        raise RewriteCheckFailed(f"outputs differ by {worst:.3g} (relative) > {tolerance:g}")
    return float(f"{worst:.3g}")


def _random_inputs(model: onnx.ModelProto) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inits = {t.name for t in model.graph.initializer}
    samples = []
    for _ in range(CHECK_SAMPLES):
        feed = {}
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            shape = [max(1, d.dim_value) for d in tt.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            if np.issubdtype(dtype, np.floating):
                feed[vi.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feed[vi.name] = rng.integers(0, 4, shape).astype(dtype)
        samples.append(feed)
    return samples


def _run(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs: list[list[np.ndarray]] = []
    for feed in samples:
        outs.append([np.asarray(o) for o in sess.run(None, feed)])
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]
