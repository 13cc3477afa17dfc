"""Which way a model is converted, and what is tried when that way fails.

A :class:`Strategy` (a user option of :func:`toolchain.convert.convert`) expands into a list
of :class:`Attempt` s, tried in order by :func:`run` until one succeeds:

1. the primary attempt: the ONNX rewrites (:mod:`toolchain.convert.rewrites`), the PyTorch
   accuracy techniques (:mod:`toolchain.convert.equalize`), onnx2tf with default options;
2. when onnx2tf fails (also: its float model differs from the ONNX model), or LiteRT
   cannot run its result: the fallback rewrites (:data:`rewrites.FALLBACK`: the tanh form
   of GELU for the builtin), then onnx2tf with the alternative options of
   :data:`ONNX2TF_ALTERNATIVES` (each once);
3. when the result misses ``min_sqnr`` or ``max_accuracy_drop`` and the rounding fallback
   is allowed: the same attempt with error-compensating weight rounding (``gptq``, see
   :mod:`toolchain.convert.weightround`: still int8 everywhere, the same bytes) — skipped
   when int8 missed ``min_sqnr`` by more than :data:`GPTQ_REACH_DB` (the next steps then
   keep the gptq rounding);
4. when that misses too and the mixed fallback is allowed: mixed precision (int16x8
   islands inside the int8 model, chosen by measurement, :mod:`toolchain.convert.mixed`;
   keeping the weight rounding), aiming at the gate plus a margin within a bytes budget;
5. when that misses too and int16 fallback is allowed: int16x8 activations everywhere
   (keeping the weight rounding); the report's ``conversion.precision_fallback`` then says
   what the attempt before measured and what the model costs more (bytes, TFLM arena);
6. when int16x8 (with its default range headroom) misses too: int16x8 without headroom;
7. when that misses too: the same with two-term weights for the layers whose int8
   weights limit the output (:mod:`toolchain.convert.weightsplit`; exact, costs bytes).

A second frontend (litert-torch) is not tried: it needs ai-edge-litert 2.3 (the pinned
stack has 2.1.0), JAX, torchao and transformers, and cannot share this environment; see
:data:`FRONTENDS`. The report's ``conversion`` section says which attempt produced the model
(path, onnx2tf options, activations, rewrites with their checks, techniques) and why the
attempts before it failed. When every attempt fails, the first error is raised with the
others appended — its message names the layer where the converter said it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from toolchain.convert import rewrites as rw
from toolchain.convert.options import RANGE_METHODS, QuantOptions
from toolchain.errors import (
    ConversionError,
    FidelityError,
    GraphLintError,
    Onnx2TfError,
    QuantizationError,
    UsageError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: onnx2tf keyword options tried, in order, after the first configuration fails. When the
#: fold-constants rewrite ran, the first configuration skips onnx2tf's own onnxsim pass
#: (``not_use_onnxsim``): the graph is simplified already, and onnxsim's optimizer would
#: fuse the explicit max-pool Pad back into the MaxPool (measured: ResNet-18 stem).
ONNX2TF_ALTERNATIVES: tuple[dict[str, Any], ...] = (
    {"enable_batchmatmul_unfold": True},
    {"disable_group_convolution": True},
)
FRONTENDS = {
    "onnx2tf": "available (onnx2tf 1.29 in the pinned stack)",
    "litert-torch": "not available: litert-torch 0.10 needs ai-edge-litert>=2.3 (pinned 2.1.0), "
    "litert-converter, torchao, jax and transformers; it would need its own environment",
}


#: the last weight rounding computed: (ONNX bytes, record) by (ONNX sha256, calibration
#: fingerprint, input names, method, per-channel options); reused by a later attempt
_ROUNDED: dict[tuple[Any, ...], tuple[bytes, dict[str, Any]]] = {}


def _retryable(exc: Exception) -> bool:
    """Whether another onnx2tf configuration may help: onnx2tf itself failed, or LiteRT
    could not run the result. An op without an int8 kernel or a float op stays so."""
    if isinstance(exc, Onnx2TfError):
        return True
    return isinstance(exc, QuantizationError) and "checking the int8 model" in exc.message


@dataclass(frozen=True)
class Strategy:
    """How to convert; the defaults are the measured best (see docs/convert.md).

    * ``rewrites``: ONNX rewrite names in order (None: :data:`rewrites.DEFAULT`; ``()``: none).
    * ``equalize``: cross-layer equalization of conv pairs across ReLU/identity (exact).
    * ``bias_correction``: empirical bias correction of int8 weight error (calibration data).
    * ``range_margin``: widen every calibrated int8 activation range by this fraction
      (:mod:`toolchain.convert.calibrate`; 0 = the converter's min/max).
    * ``calibration_range``: ``"minmax"`` (the converter's calibration) or ``"mse"``
      (each int8 activation range narrowed to its error optimum on the calibration data).
    * ``fallback``: try the alternative onnx2tf options when a stage fails.
    * ``weight_rounding``: ``"none"`` (the converter's nearest rounding), ``"bias"``
      (empirical bias correction of its mean error) or ``"gptq"`` (error-compensating
      rounding on the calibration data), in the ONNX weights (:mod:`weightround`).
    * ``rounding_fallback``: when a fidelity gate is missed with nearest rounding, try
      ``gptq`` rounding before int16x8 activations.
    * ``int16_fallback``: when ``min_sqnr`` is missed with int8, try int16x8 activations.
    * ``mixed_fallback``: before int16x8 everywhere, try mixed precision (int16 islands).
    * ``weight_split``: None (off) or a weights-only SQNR target in dB: the layers whose
      int8 weights limit the output most get two-term weights (:mod:`weightsplit`: exact,
      TFLM builtins, costs their weight bytes again) until the target is predicted or
      ``weight_split_budget`` (a fraction of the model's bytes, estimated) is spent.
    * ``split_fallback``: when int16x8 activations miss the gate too, try them with the
      weight split (target: ``min_sqnr`` + 6 dB, or 35 dB for an accuracy gate).
    """

    rewrites: tuple[str, ...] | None = None
    equalize: bool = False
    bias_correction: bool = False
    range_margin: float = 0.0
    calibration_range: str = "minmax"
    fallback: bool = True
    int16_fallback: bool = True
    weight_rounding: str = "none"
    rounding_fallback: bool = True
    mixed_fallback: bool = True
    weight_split: float | None = None
    weight_split_budget: float = 0.10
    split_fallback: bool = True

    def __post_init__(self) -> None:
        from toolchain.convert.weightround import METHODS

        if not 0.0 < self.weight_split_budget <= 1.0:
            raise UsageError(
                f"weight-split budget {self.weight_split_budget} is not in (0, 1]",
                hint="give the fraction of the model's bytes that may be added, e.g. 0.1",
            )

        if self.weight_rounding not in METHODS:
            raise UsageError(
                f"weight rounding {self.weight_rounding!r} is not known",
                hint=f"choose one of {', '.join(METHODS)}",
            )
        if not 0.0 <= self.range_margin <= 1.0:
            raise UsageError(f"range margin {self.range_margin} is not between 0 and 1")
        if self.calibration_range not in RANGE_METHODS:
            raise UsageError(
                f"calibration range {self.calibration_range!r} is not known",
                hint=f"choose one of {', '.join(RANGE_METHODS)}",
            )
        unknown = [n for n in (self.rewrites or ()) if n not in rw.KNOWN]
        if unknown:
            raise UsageError(
                f"unknown rewrite(s): {', '.join(unknown)}",
                hint=f"choose from {', '.join(rw.KNOWN)}",
            )

    @classmethod
    def plain(cls) -> Strategy:
        """The plain recipe: no rewrites, no techniques, no fallbacks."""
        return cls(rewrites=(), equalize=False, bias_correction=False, fallback=False,
                   int16_fallback=False, rounding_fallback=False,
                   mixed_fallback=False, split_fallback=False)  # fmt: skip

    @property
    def rewrite_names(self) -> tuple[str, ...]:
        return rw.DEFAULT if self.rewrites is None else tuple(self.rewrites)


@dataclass
class Attempt:
    """One way to convert: what :func:`toolchain.convert.pipeline` runs once."""

    options: QuantOptions
    rewrites: tuple[str, ...]
    equalize: bool
    bias_correction: bool
    range_margin: float = 0.0
    range_method: str = "minmax"
    onnx2tf: dict[str, Any] = field(default_factory=dict)
    why: str = "primary"
    weight_rounding: str = "none"
    #: weights-only SQNR target of the two-term weight split (None: off), and its budget
    weight_split: float | None = None
    weight_split_budget: float = 0.10
    # filled in while it runs
    rewrite_records: list[dict[str, Any]] = field(default_factory=list)
    techniques: dict[str, Any] = field(default_factory=dict)
    failed_before: list[dict[str, str]] = field(default_factory=list)
    #: what the int8 attempt this one replaces measured (see FidelityError.measured)
    fallback_from: dict[str, Any] | None = None

    def cache_dict(self) -> dict[str, Any]:
        """What changes the produced model (beyond the QuantOptions and the ONNX bytes)."""
        return {
            "rewrites": list(self.rewrites),
            "equalize": self.equalize,
            "bias_correction": self.bias_correction,
            "range_margin": self.range_margin,
            "range_method": self.range_method,
            "onnx2tf": self.onnx2tf,
            **({"weight_rounding": self.weight_rounding} if self.weight_rounding != "none" else {}),
            **(
                {"weight_split": [self.weight_split, self.weight_split_budget]}
                if self.weight_split is not None
                else {}
            ),
        }

    def record(self) -> dict[str, Any]:
        """The report's ``conversion`` section."""
        return {
            "path": "pytorch -> onnx (legacy exporter) -> rewrites -> onnx2tf -> TFLiteConverter",
            "frontend": "onnx2tf",
            "onnx2tf_options": self.onnx2tf,
            "activations": self.options.activations,
            "attempt": self.why,
            "rewrites": self.rewrite_records,
            "rewrites_applied": [r["name"] for r in self.rewrite_records if r["applied"]],
            "techniques": self.techniques,
            "range_margin": self.range_margin if self.options.activations != "int16" else None,
            "calibration_range": (
                self.range_method if self.options.activations != "int16" else None
            ),
            "weight_rounding": self.weight_rounding,
            "failed_attempts": self.failed_before,
            "precision_fallback": self.fallback_from,
            "frontends": FRONTENDS,
        }

    # --- the two hooks the pipeline calls ----------------------------------------------
    def prepare_model(self, loaded: Any, calib: Sequence[np.ndarray]) -> Any:
        """The model to export: ``loaded`` itself, or a copy with the PyTorch techniques
        applied (the float reference stays the user's model)."""
        if not (self.equalize or self.bias_correction):
            return loaded
        from toolchain.convert import equalize

        module, self.techniques = equalize.apply(
            copy.deepcopy(loaded.module),
            calib,
            equalize=self.equalize,
            bias_correction=self.bias_correction,
            per_channel=self.options.per_channel,
            per_channel_dense=self.options.per_channel_dense,
        )
        return replace(loaded, module=module)

    def round_weights(
        self, data: bytes, path: Path, calib: Sequence[np.ndarray], input_names: Sequence[str]
    ) -> bytes:
        """The ONNX bytes the converter gets: ``data`` with the weight rounding baked in
        (rewriting ``path`` too), or ``data`` itself. Its record goes to ``techniques``."""
        if self.weight_rounding == "none":
            return data
        from toolchain.convert import weightround
        from toolchain.data import fingerprint

        key = (
            hashlib.sha256(data).hexdigest(), fingerprint(list(calib)), tuple(input_names),
            self.weight_rounding, self.options.per_channel, self.options.per_channel_dense,
        )  # fmt: skip
        hit = _ROUNDED.get(key)
        if hit is not None:
            # the int16x8 fallback after a gptq attempt rounds the same ONNX weights on the
            # same data again: the same result (the rounding is deterministic), reused
            new, rec = hit[0], {**copy.deepcopy(hit[1]), "reused": True}
        else:
            new, rec = weightround.apply(
                data, calib, input_names, method=self.weight_rounding,
                per_channel=self.options.per_channel,
                per_channel_dense=self.options.per_channel_dense,
            )  # fmt: skip
            _ROUNDED.clear()  # one entry: the attempts of the conversion running now
            _ROUNDED[key] = (new, copy.deepcopy(rec))
        self.techniques = {**self.techniques, "weight_rounding": rec}
        if new is not data:
            path.write_bytes(new)
        return new

    def split_weights(
        self, data: bytes, path: Path, calib: Sequence[np.ndarray], input_names: Sequence[str]
    ) -> bytes:
        """``data`` with two-term weights for the layers :mod:`weightsplit` chooses
        (rewriting ``path`` too), or ``data`` itself. Its record goes to ``techniques``."""
        if self.weight_split is None:
            return data
        from toolchain.convert import weightsplit

        new, rec = weightsplit.apply(
            data, calib, input_names, target_db=self.weight_split,
            budget=self.weight_split_budget, per_channel=self.options.per_channel,
            per_channel_dense=self.options.per_channel_dense,
        )  # fmt: skip
        self.techniques = {**self.techniques, "weight_split": rec}
        if new is not data:
            path.write_bytes(new)
        return new

    def rewrite_onnx(self, data: bytes, path: Path) -> bytes:
        """Apply the rewrites to the exported ONNX bytes (rewriting ``path`` too)."""
        if not self.rewrites:
            return data
        new, recs = rw.rewrite_onnx(data, self.rewrites)
        self.rewrite_records = [r.to_dict() for r in recs]
        if new is not data:
            path.write_bytes(new)
        return new


def attempts(strategy: Strategy, options: QuantOptions) -> list[Attempt]:
    """The attempts for a conversion without a fidelity gate (fallbacks on errors)."""
    first: dict[str, Any] = (
        {"not_use_onnxsim": True} if "fold-constants" in strategy.rewrite_names else {}
    )
    base = Attempt(
        options=options,
        rewrites=rw.for_activations(strategy.rewrite_names, options.activations),
        equalize=strategy.equalize,
        bias_correction=strategy.bias_correction,
        range_margin=strategy.range_margin,
        range_method=strategy.calibration_range,
        onnx2tf=first,
        weight_rounding=strategy.weight_rounding,
        weight_split=strategy.weight_split,
        weight_split_budget=strategy.weight_split_budget,
    )
    out = [base]
    if strategy.fallback:
        # the rewrite fallbacks first: the GELU builtin is what onnx2tf most often gets
        # wrong (a float model that computes something else), the tanh form converts
        swapped = tuple(rw.FALLBACK.get(n, n) for n in base.rewrites)
        if swapped != base.rewrites:
            out.append(replace(base, rewrites=swapped, why=f"fallback rewrites {swapped}"))
        for alt in ONNX2TF_ALTERNATIVES:
            opts = {**first, **alt}
            out.append(replace(base, onnx2tf=opts, why=f"onnx2tf options {opts}"))
    return out


#: the most a gptq weight rounding is taken to add to an int8 model's plain SQNR (dB):
#: measured on the peer suite +0.1 to +1.2 dB (docs/convert-coverage.md), so an int8 model
#: that misses ``--min-sqnr`` by more goes on to more precision without the int8 gptq attempt
GPTQ_REACH_DB = 3.0


def _gptq_short_by(measured: dict[str, Any] | None, min_sqnr: float | None) -> float | None:
    """How far (dB) the int8 attempt missed ``min_sqnr`` when that is beyond what gptq
    rounding can add (:data:`GPTQ_REACH_DB`); None when gptq is worth an attempt."""
    sqnr = (measured or {}).get("sqnr_db")
    if min_sqnr is None or sqnr is None:
        return None
    short = float(min_sqnr) - float(sqnr)
    return short if short > GPTQ_REACH_DB else None


def mixed_options(options: QuantOptions) -> QuantOptions | None:
    """The mixed-precision variant of int8 ``options``; None otherwise. Its I/O types are the
    int16x8 variant's (:func:`int16_options`: int8 becomes int16, float32 stays), so the
    fallback's mixed attempt has the interface of the int16x8 attempt after it (an int8
    input's own rounding would cap it); uint8 I/O stays uint8."""
    if options.activations != "int8":
        return None
    io = {"int8": "int16"}
    return replace(
        options,
        activations="mixed",
        input_dtype=io.get(options.io_input, options.io_input),
        output_dtype=io.get(options.io_output, options.io_output),
    )


def int16_options(options: QuantOptions) -> QuantOptions | None:
    """The int16x8 variant of ``options``; None when the I/O types rule it out."""
    if options.activations not in ("int8", "mixed"):
        return None
    io = {options.io_input, options.io_output}
    if not io <= {"int8", "int16", "float32"}:  # int16: a mixed attempt's
        return None  # uint8 I/O has no int16 counterpart
    return replace(
        options,
        activations="int16",
        input_dtype="float32" if options.io_input == "float32" else "int16",
        output_dtype="float32" if options.io_output == "float32" else "int16",
    )


#: the weight split's target above a ``--min-sqnr`` gate (dB): weights then cost the
#: output about 1 dB of it
SPLIT_MARGIN_DB = 6.0


def _split_retry(
    strategy: Strategy,
    att: Attempt,
    gate: str,
    min_sqnr: float | None,
    max_accuracy_drop: float | None,
) -> Attempt | None:
    """The attempt after an int16x8 one that missed a gate: the same with two-term weights
    for the layers whose int8 weights limit the output (:mod:`weightsplit`); None when it
    does not apply. In int8 the split's extra rounded activation costs about what it gains
    (DLA-60: 14.3 -> 13.5 dB), so it follows int16x8 only."""
    from toolchain.convert.weightsplit import DEFAULT_TARGET_DB

    if not strategy.split_fallback or att.weight_split is not None:
        return None
    if att.options.activations != "int16" or (min_sqnr is None and max_accuracy_drop is None):
        return None
    target = DEFAULT_TARGET_DB if min_sqnr is None else min_sqnr + SPLIT_MARGIN_DB
    return replace(att, weight_split=target, techniques=dict(att.techniques),
                   why=f"int16x8 + weight split {target:g} dB (int16x8 missed {gate})",
                   fallback_from=copy.deepcopy(att.fallback_from))  # fmt: skip


def run(
    strategy: Strategy,
    options: QuantOptions,
    min_sqnr: float | None,
    once: Callable[[Attempt], T],
    max_accuracy_drop: float | None = None,
) -> T:
    """Try the attempts in order (see module doc); the first success's result."""
    errors: list[tuple[Attempt, ConversionError | FidelityError]] = []
    todo = attempts(strategy, options)
    i = 0
    while i < len(todo):
        att = todo[i]
        att.failed_before = [
            {"attempt": a.why, "error": f"{type(e).__name__}: {e.message[:300]}"} for a, e in errors
        ]
        try:
            return once(att)
        except FidelityError as exc:
            errors.append((att, exc))
            gate = "--min-sqnr" if "--min-sqnr" in exc.message else "--max-accuracy-drop"
            skipped = ""
            if (
                strategy.rounding_fallback
                and att.weight_rounding == "none"
                and att.options.activations == "int8"
                and (min_sqnr is not None or max_accuracy_drop is not None)
            ):
                short = _gptq_short_by(exc.measured, min_sqnr)
                more = (strategy.mixed_fallback and mixed_options(att.options) is not None) or (
                    strategy.int16_fallback and int16_options(att.options) is not None
                )
                if short is not None and more:
                    # gptq cannot close a gap this wide in int8: go on to the next
                    # precision at once, with the gptq rounding (one conversion fewer)
                    log.warning("int8 misses %s by %.1f dB; gptq rounding alone gains at most "
                                "~%g dB: trying more precision with it", gate, short,
                                GPTQ_REACH_DB)  # fmt: skip
                    att = replace(att, weight_rounding="gptq")
                    skipped = f"; by {short:.1f} dB: gptq int8 skipped"
                else:
                    log.warning("int8 misses %s; trying gptq weight rounding", gate)
                    todo = [replace(att, weight_rounding="gptq", techniques=dict(att.techniques),
                                    why=f"gptq weight rounding (int8 missed {gate})",
                                    fallback_from=copy.deepcopy(exc.measured))]  # fmt: skip
                    i = 0
                    continue
            optsm = mixed_options(att.options) if strategy.mixed_fallback else None
            if optsm is not None and (min_sqnr is not None or max_accuracy_drop is not None):
                log.warning("int8 misses %s; trying mixed precision (int16 islands)", gate)
                todo = [replace(att, options=optsm, why=f"mixed precision (int8 missed {gate}{skipped})",
                                techniques=dict(att.techniques),
                                fallback_from=copy.deepcopy(exc.measured))]  # fmt: skip
                i = 0
                continue
            if (
                att.options.activations == "int16"
                and att.options.int16_headroom != 1.0
                and att.weight_split is None
                and (min_sqnr is not None or max_accuracy_drop is not None)
            ):
                # the headroom that keeps held-out inputs from clipping costs some nets
                # more than it saves (timm ViT: 22.3 dB at 4x, 35.7 dB without)
                log.warning("int16x8 misses %s; trying it without range headroom", gate)
                todo = [replace(att, options=replace(att.options, int16_headroom=1.0),
                                why=f"int16x8 without range headroom (missed {gate})",
                                techniques=dict(att.techniques),
                                fallback_from=copy.deepcopy(att.fallback_from))]  # fmt: skip
                i = 0
                continue
            split = _split_retry(strategy, att, gate, min_sqnr, max_accuracy_drop)
            if split is not None:
                log.warning("int16x8 misses %s; trying two-term weights", gate)
                todo, i = [split], 0
                continue
            opts16 = int16_options(att.options) if strategy.int16_fallback else None
            if opts16 is None or (min_sqnr is None and max_accuracy_drop is None):
                break
            log.warning("%s misses %s; trying int16x8 activations", att.options.activations, gate)
            first_measured = att.fallback_from if att.options.activations == "mixed" else None
            todo = [replace(att, options=opts16, why=f"int16x8 (int8 missed {gate}{skipped})",
                            techniques=dict(att.techniques),
                            rewrites=rw.for_activations(att.rewrites, "int16"),
                            fallback_from=copy.deepcopy(first_measured or exc.measured))]  # fmt: skip
            i = 0
            continue
        except ConversionError as exc:
            stage = isinstance(exc, Onnx2TfError | QuantizationError | GraphLintError)
            if not stage and att.options.activations != "mixed":
                raise
            errors.append((att, exc))
            opts16 = int16_options(att.options) if strategy.int16_fallback else None
            if att.options.activations == "mixed" and opts16 is not None and not _retryable(exc):
                # the islands could not be made (e.g. LiteRT cannot run one): what the
                # mixed step stood for comes next, int16x8 everywhere
                log.warning("mixed precision failed (%s); trying int16x8 activations",
                            exc.message[:200])  # fmt: skip
                todo = [replace(att, options=opts16, why="int16x8 (mixed precision failed)",
                                techniques=dict(att.techniques),
                                rewrites=rw.for_activations(att.rewrites, "int16"),
                                fallback_from=copy.deepcopy(att.fallback_from))]  # fmt: skip
                i = 0
                continue
            if not _retryable(exc):
                break
            log.warning("conversion attempt '%s' failed: %s", att.why, exc.message[:200])
            i += 1
    first = errors[0][1]
    if len(errors) == 1:
        raise first
    tried = "\n".join(f"  - {a.why}: {type(e).__name__}: {e.message[:200]}" for a, e in errors[1:])
    message = f"{first.message}\nalso tried:\n{tried}"
    try:
        combined = type(first)(message, hint=first.hint)
    except TypeError:  # a subclass with more required arguments
        combined = ConversionError(message, hint=first.hint)
    raise combined from first
