"""Host check: do TFLM's outputs match LiteRT's on the golden inputs?

Two comparisons, both run in the :mod:`sandbox` (LiteRT can abort on odd models):

* ``reference`` — LiteRT with its reference kernels (``OpResolverType.BUILTIN_REF``). TFLM's
  kernels are ports of these, so the outputs should be bit-exact; a mismatch is worth a look.
* ``optimized`` — LiteRT as users run it (optimized kernels plus the default XNNPACK
  delegate). Rounding differs a little; the report gives the histogram of |difference|.

A model LiteRT refuses (person_detect.tflite: "quantized_dimension must be in range [0, 1)")
gives status ``rejected`` with LiteRT's reason; a crash gives ``crashed``. Neither raises:
this is a report, not a gate.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from toolchain.emit import sandbox

log = logging.getLogger(__name__)

KERNELS = ("reference", "optimized")
_INT_BUCKETS = 8  # |diff| 0..8 counted exactly, larger ones together
_FLOAT_EDGES = (0.0, 1e-6, 1e-4, 1e-2, 1.0)


@dataclass(frozen=True)
class LiteRTComparison:
    """TFLM vs LiteRT (``kernels``) over every output value of every golden sample."""

    kernels: str
    status: str  # exact | mismatch | rejected | crashed
    reason: str = ""
    compared: int = 0
    mismatches: int = 0
    max_abs_diff: float = 0.0
    histogram: dict[str, int] = field(default_factory=dict)  # |TFLM - LiteRT| → count

    @property
    def exact(self) -> bool:
        return self.status == "exact"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.status in ("rejected", "crashed"):
            return f"LiteRT ({self.kernels} kernels) {self.status} the model: {self.reason}"
        share = 100.0 * (self.compared - self.mismatches) / max(self.compared, 1)
        return (
            f"TFLM vs LiteRT {self.kernels} kernels: {self.status}, {share:.1f}% of "
            f"{self.compared} values equal, max |diff| {self.max_abs_diff:g}"
        )


def histogram(diffs: np.ndarray, *, integer: bool) -> dict[str, int]:
    """|difference| counts (non-zero only): integers as "0".."8" and ">8"; floats in ranges."""
    if integer:
        c = Counter(np.minimum(diffs.astype(np.int64), _INT_BUCKETS + 1).tolist())
        return {
            (str(k) if k <= _INT_BUCKETS else f">{_INT_BUCKETS}"): int(v)
            for k, v in sorted(c.items())
        }
    out: dict[str, int] = {}
    n = int(np.count_nonzero(diffs == 0))
    if n:
        out["0"] = n
    for lo, hi in zip(_FLOAT_EDGES, _FLOAT_EDGES[1:], strict=False):
        n = int(np.count_nonzero((diffs > lo) & (diffs <= hi)))
        if n:
            out[f"({lo:g}, {hi:g}]"] = n
    n = int(np.count_nonzero(diffs > _FLOAT_EDGES[-1]))
    if n:
        out[f">{_FLOAT_EDGES[-1]:g}"] = n
    return out


def compare_outputs(
    kernels: str, tflm: Sequence[np.ndarray], litert: Sequence[np.ndarray]
) -> LiteRTComparison:
    """Compare two output lists (same order, samples on axis 0)."""
    diffs, integer = [], True
    for a, b in zip(tflm, litert, strict=True):
        if a.shape != b.shape:
            return LiteRTComparison(
                kernels, "mismatch", reason=f"output shapes differ: {a.shape} vs {b.shape}"
            )
        integer &= a.dtype.kind in "iub"
        diffs.append(np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(-1))
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    bad = int(np.count_nonzero(d))
    return LiteRTComparison(
        kernels=kernels,
        status="exact" if bad == 0 else "mismatch",
        compared=int(d.size),
        mismatches=bad,
        max_abs_diff=float(d.max()) if d.size else 0.0,
        histogram=histogram(d, integer=integer),
    )


def check(
    mf: sandbox.ModelFile,
    inputs: Sequence[np.ndarray],
    tflm_outputs: Sequence[np.ndarray],
    *,
    kernels: Sequence[str] = KERNELS,
) -> list[LiteRTComparison]:
    """Run LiteRT with each kind of ``kernels`` on ``inputs`` and compare with TFLM's outputs."""
    results = []
    for k in kernels:
        try:
            outs, reply = sandbox.run_samples("litert_run", mf, inputs, resolver=k)
        except sandbox.SandboxCrash as exc:
            results.append(LiteRTComparison(k, "crashed", reason=exc.message))
            continue
        if outs is None:
            reason = str(reply.get("error", "")).split(": ", 1)[-1]
            results.append(LiteRTComparison(k, "rejected", reason=_first_sentence(reason)))
            continue
        results.append(compare_outputs(k, tflm_outputs, outs))
    for r in results:
        log.info("%s", r.summary())
    return results


def _first_sentence(text: str) -> str:
    """LiteRT repeats its reason once per tensor; keep the first statement."""
    head = text.split(".Tensor ")[0].split("\n")[0].strip()
    return head[:300] + ("." if head and not head.endswith(".") else "")
