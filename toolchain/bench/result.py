"""The benchmark result schema, shared by every runner (MCU, QEMU, host-TFLM, ADB, SSH).

``bench_report.json`` is :meth:`BenchResult.to_dict`; ``SCHEMA_VERSION`` changes when a field
changes meaning. Latencies are kept in the unit the runner measured (``unit``): milliseconds
on phones and Linux boards, ticks/cycles on MCUs, *instructions* under QEMU (it does not
model time) — reports must show the unit and never convert instructions to time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bench.stats import Summary, summarize, trust_warnings
from toolchain.fsutil import atomic_write_json

SCHEMA_VERSION = 1
UNITS = ("ms", "us", "cycles", "instructions", "ticks")


@dataclass(frozen=True)
class OpTiming:
    """Time spent in one operator (or one operator type), per inference, in ``unit``."""

    name: str
    unit: str
    per_inference: float
    index: int | None = None
    share: float | None = None  # fraction of the total, 0..1


@dataclass(frozen=True)
class OutputCheck:
    """How the device's outputs for the golden inputs compare with the host reference."""

    reference: str  # what the device was compared with, e.g. "host tflite-micro interpreter"
    compared_values: int
    mismatches: int
    max_abs_diff: float
    bit_exact: bool


@dataclass
class BenchResult:
    """One benchmark of one model on one device."""

    runner: str
    target: str
    model: str
    model_sha256: str
    unit: str
    samples: list[float]
    warmup: int
    unit_note: str = ""
    per_op: list[OpTiming] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    output_check: OutputCheck | None = None
    device: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    summary: Summary | None = None
    #: how many inferences each sample stands for: 1 when every inference is timed; ``runs``
    #: when a sample is the mean of one process's runs (ADB benchmark_model rounds)
    runs_per_sample: int = 1

    @property
    def runs(self) -> int:
        """Measured inferences behind the samples (``len(samples) * runs_per_sample``)."""
        return len(self.samples) * self.runs_per_sample

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} not in {UNITS}")
        if self.summary is None and self.samples:
            self.summary = summarize(self.samples, self.unit)

    def add_trust_warnings(
        self, temp_before_c: float | None = None, temp_after_c: float | None = None
    ) -> None:
        """Append the statistical/thermal warnings of :func:`trust_warnings`."""
        if self.summary is not None:
            for w in trust_warnings(
                self.summary,
                temp_before_c=temp_before_c,
                temp_after_c=temp_after_c,
                runs_per_sample=self.runs_per_sample,
            ):
                if w not in self.warnings:
                    self.warnings.append(w)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        d["runs"] = self.runs  # inferences; len(samples) is the statistical sample count
        return d

    def write(self, path: str | Path) -> Path:
        """Write ``bench_report.json`` atomically."""
        return atomic_write_json(path, self.to_dict())
