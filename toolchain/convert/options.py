"""Quantization options of the convert stage (a frozen, validated dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from toolchain.errors import UsageError

ACTIVATIONS = ("int8", "int16", "mixed")
#: I/O types allowed with each activation type (a mixed model: int8, or int16 I/O taken
#: from the int16x8 model).
IO_DTYPES = {
    "int8": ("int8", "uint8", "float32"),
    "int16": ("int16", "float32"),
    "mixed": ("int8", "uint8", "int16", "float32"),
}
#: the I/O type of each activation type when none is given
_IO_DEFAULT = {"int8": "int8", "int16": "int16", "mixed": "int8"}
#: mixed precision: the target SQNR (dB, calibration samples) when none is given
MIXED_TARGET_SQNR = 30.0
#: mixed precision: the default budget (fraction of the int8 model's .tflite bytes)
MIXED_BUDGET = 0.10
ONNX_OPSET = 17
#: calibration range methods (:mod:`toolchain.convert.calibrate`): the converter's min/max,
#: or each int8 activation range narrowed to its error optimum on the calibration data
RANGE_METHODS = ("minmax", "mse")
#: default int16x8 range headroom (see QuantOptions.int16_headroom; benchmarks/README.md,
#: section peer-int16-headroom)
INT16_HEADROOM = 4.0


@dataclass(frozen=True)
class QuantOptions:
    """How to quantize.

    * ``activations``: ``"int8"`` (full int8) or ``"int16"`` (int16 activations with int8
      weights, "int16x8"; slower on MCUs, more accurate) or ``"mixed"`` (int8 with int16
      activation islands where they are measured to help, :mod:`toolchain.convert.mixed`).
    * ``mixed_target_sqnr``: mixed precision stops adding int16 tensors once the output
      SQNR on calibration samples reaches this (dB; None: :data:`MIXED_TARGET_SQNR`).
    * ``mixed_budget``: mixed precision adds at most this fraction of the int8 model's
      .tflite bytes.
    * ``input_dtype`` / ``output_dtype``: the model's I/O tensor types; None means the
      activation type. ``uint8`` and ``float32`` I/O add a QUANTIZE/DEQUANTIZE at the edge.
    * ``per_channel``: per-output-channel weight scales for convolutions (default) or one
      scale per tensor everywhere.
    * ``per_channel_dense``: per-channel scales for dense (FULLY_CONNECTED) layers too.
      Off by default, the TFLM / MLPerf Tiny convention: a per-channel dense layer stores a
      float scale and an int64 zero point per output unit in the file and makes TFLM keep
      per-channel multipliers in the arena (the MLPerf FC autoencoder: 1.14x the bytes and
      4.75x the arena of per-tensor dense layers). Needs ``per_channel``.
    * ``calibration_samples``: at most this many calibration samples are used.
    * ``validation_samples``: at most this many validation samples are compared.
    * ``onnx2tf_timeout_s`` / ``quantize_timeout_s``: limits for those stages (seconds).
    * ``fold_transposes``: fold layout-only TRANSPOSE ops into linear weights.
    * ``int16_headroom``: with int16 activations (and the int16 model that ``mixed``
      takes its islands from), every calibrated activation range is
      widened this many times (1 = the calibration min/max): int16 has 15 bits, so 2x-4x
      costs 1-2 bits of resolution and keeps inputs beyond the calibration data from
      clipping (:func:`toolchain.convert.calibrate.int16_ranges`). No effect on int8.
    """

    activations: str = "int8"
    input_dtype: str | None = None
    output_dtype: str | None = None
    per_channel: bool = True
    per_channel_dense: bool = False
    calibration_samples: int = 200
    validation_samples: int = 1000
    onnx2tf_timeout_s: float = 600.0
    quantize_timeout_s: float = 900.0
    fold_transposes: bool = True
    mixed_target_sqnr: float | None = None
    mixed_budget: float = MIXED_BUDGET
    int16_headroom: float = INT16_HEADROOM

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise UsageError(
                f"activations {self.activations!r} is not supported",
                hint=f"choose one of {', '.join(ACTIVATIONS)}",
            )
        allowed = IO_DTYPES[self.activations]
        for what, v in (("input", self.input_dtype), ("output", self.output_dtype)):
            if v is not None and v not in allowed:
                raise UsageError(
                    f"{what} type {v!r} does not go with {self.activations} activations",
                    hint=f"choose one of {', '.join(allowed)}",
                )
        if self.per_channel_dense and not self.per_channel:
            raise UsageError(
                "per-channel dense layers need per-channel weights",
                hint="drop --per-tensor, or drop --per-channel-dense",
            )
        for what, n in (
            ("calibration_samples", self.calibration_samples),
            ("validation_samples", self.validation_samples),
        ):
            if n < 1:
                raise UsageError(f"{what} must be at least 1 (got {n})")
        if not self.mixed_budget >= 0:
            raise UsageError(
                f"the mixed-precision budget must be 0 or more (got {self.mixed_budget})",
                hint="give a fraction of the int8 model's bytes, e.g. --mixed-budget 0.1",
            )
        if self.mixed_target_sqnr is not None and not self.mixed_target_sqnr > 0:
            raise UsageError(
                f"the mixed-precision target SQNR must be positive (got {self.mixed_target_sqnr})"
            )
        if not 1.0 <= self.int16_headroom <= 64.0:
            raise UsageError(
                f"int16 headroom {self.int16_headroom} is not between 1 and 64",
                hint="give a factor such as 2 or 4 (1 = the calibration ranges)",
            )
        if self.onnx2tf_timeout_s <= 0 or self.quantize_timeout_s <= 0:
            raise UsageError("timeouts must be positive")

    @property
    def io_input(self) -> str:
        return self.input_dtype or _IO_DEFAULT[self.activations]

    @property
    def io_output(self) -> str:
        return self.output_dtype or _IO_DEFAULT[self.activations]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_dtype"], d["output_dtype"] = self.io_input, self.io_output
        return d

    def cache_dict(self) -> dict[str, Any]:
        """The options that change the produced model (not timeouts)."""
        d = self.to_dict()
        d.pop("onnx2tf_timeout_s")
        d.pop("quantize_timeout_s")
        if self.activations == "int8":
            d.pop("int16_headroom")  # int8 keys stay what they were (int16 and mixed use it)
        if self.activations != "mixed":  # the int8/int16 keys stay what they were
            d.pop("mixed_target_sqnr")
            d.pop("mixed_budget")
        return d
