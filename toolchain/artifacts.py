"""Typed things that pass between stages.

:class:`TensorSpec` describes one input or output of a converted model: where it sits in the
TFLite subgraph, its TFLite shape and type, its quantization, and how its layout relates to
the PyTorch tensor (``perm``: ``tflite_array = torch_array.transpose(perm)``). Later stages use
it to feed the right bytes (:meth:`TensorSpec.to_tflite`) and read results back
(:meth:`TensorSpec.from_tflite`). :class:`ConvertResult` is what the convert stage returns.
:class:`StageOutput` is what any pipeline stage (``toolchain.pipeline.stages``) produced and
:class:`StageRecord` how it went; ``toolchain.report`` builds report.json from them (they live
here so that the report does not import the pipeline).

Only numpy is imported here; nothing of torch or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import DataError

#: dimension letters of the PyTorch layout for each rank (batch first, channels second)
TORCH_LAYOUTS = {1: "N", 2: "NC", 3: "NCW", 4: "NCHW", 5: "NCDHW"}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float → integer as TFLite's QUANTIZE kernel does: ``round(x / scale) + zero_point``
    with halves rounded away from zero, saturated to the range of the integer ``dtype``."""
    info = np.iinfo(dtype)
    v = np.asarray(x).astype(np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def channels_last_perm(rank: int) -> tuple[int, ...]:
    """The permutation that takes a channels-first tensor to channels-last (identity below 3)."""
    if rank < 3:
        return tuple(range(rank))
    return (0, *range(2, rank), 1)


def layout_name(rank: int, perm: tuple[int, ...]) -> str:
    """``NHWC`` for rank 4 with ``perm`` (0, 2, 3, 1); ``d0d1..`` letters beyond rank 5."""
    letters = TORCH_LAYOUTS.get(rank)
    if letters is None:
        return ",".join(f"d{p}" for p in perm)
    return "".join(letters[p] for p in perm)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output, as the .tflite holds it and as PyTorch sees it.

    ``index`` is the position in the PyTorch model's inputs (or outputs); ``tflite_index``
    the position in the TFLite subgraph's inputs (or outputs), which is what
    ``interpreter.input(i)`` in TFLM and the LiteRT input details use. ``shape``/``dtype``
    are the TFLite tensor's; ``scale``/``zero_point`` are None for float tensors.
    """

    name: str
    index: int
    tflite_index: int
    tflite_name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None
    torch_shape: tuple[int, ...]
    perm: tuple[int, ...]
    layout: str = field(default="")
    torch_layout: str = field(default="")

    def __post_init__(self) -> None:
        rank = len(self.torch_shape)
        if not self.layout:
            object.__setattr__(self, "layout", layout_name(rank, self.perm))
        if not self.torch_layout:
            object.__setattr__(self, "torch_layout", layout_name(rank, tuple(range(rank))))

    @property
    def is_quantized(self) -> bool:
        return self.scale is not None

    @property
    def nbytes(self) -> int:
        """Bytes of one tensor in the TFLite model (what a device buffer needs)."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_tflite(self, x: np.ndarray) -> np.ndarray:
        """A float array in PyTorch layout (``torch_shape``) → the TFLite tensor's array.

        Transposes to the TFLite layout, then quantizes as TFLite's QUANTIZE kernel does
        (``round(x / scale) + zero_point``, halves away from zero) and saturates.
        Raises :class:`~toolchain.errors.DataError` when the shape does not match.
        """
        a = np.asarray(x)
        if tuple(a.shape) != self.torch_shape:
            raise DataError(
                f"input {self.name!r}: got shape {tuple(a.shape)}, expected {self.torch_shape} "
                f"({self.torch_layout}, PyTorch layout)"
            )
        a = np.transpose(a, self.perm)
        if self.scale is None:
            return np.ascontiguousarray(a, dtype=self.dtype)
        return np.ascontiguousarray(quantize(a, self.scale, self.zero_point or 0, self.dtype))

    def from_tflite(self, y: np.ndarray) -> np.ndarray:
        """The TFLite tensor's array → float32 in PyTorch layout (dequantized)."""
        a = np.asarray(y).reshape(self.shape)
        if self.scale is not None:
            a = (a.astype(np.float32) - np.float32(self.zero_point or 0)) * np.float32(self.scale)
        inv = tuple(int(i) for i in np.argsort(self.perm))
        return np.ascontiguousarray(np.transpose(a, inv), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "tflite_index": self.tflite_index,
            "tflite_name": self.tflite_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "layout": self.layout,
            "torch_shape": list(self.torch_shape),
            "torch_layout": self.torch_layout,
            "perm": list(self.perm),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(
            name=str(d["name"]),
            index=int(d["index"]),
            tflite_index=int(d["tflite_index"]),
            tflite_name=str(d.get("tflite_name", "")),
            shape=tuple(int(s) for s in d["shape"]),
            dtype=str(d["dtype"]),
            scale=None if d.get("scale") is None else float(d["scale"]),
            zero_point=None if d.get("zero_point") is None else int(d["zero_point"]),
            torch_shape=tuple(int(s) for s in d["torch_shape"]),
            perm=tuple(int(p) for p in d["perm"]),
            layout=str(d.get("layout", "")),
            torch_layout=str(d.get("torch_layout", "")),
        )


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`toolchain.convert.convert` produced.

    ``inputs``/``outputs`` are in PyTorch order (see :class:`TensorSpec` for the TFLite
    position). ``report`` is the content of ``report_path`` (report.json). ``cached`` is True
    when the result came from the conversion cache without converting again.
    """

    tflite_path: Path
    report_path: Path
    report: dict[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tflite_bytes: int
    cached: bool = False

    @property
    def out_dir(self) -> Path:
        return self.tflite_path.parent

    def min_sqnr_db(self) -> float | None:
        """The lowest per-output SQNR in the report (None when not measured)."""
        vals = [f.get("sqnr_db") for f in self.report.get("fidelity", {}).values()]
        nums = [float(v) for v in vals if v is not None]
        return min(nums) if nums else None


@dataclass(frozen=True)
class StageOutput:
    """What a stage produced: its report (goes into report.json under the stage's name), its
    files by role (relative to its folder), and notes a person should read (e.g. why the
    firmware was not built)."""

    report: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    folder: Path | None = None
    digest: str = ""  # cache.content_digest of the folder (set by the runner)

    def path(self, role: str) -> Path | None:
        """The absolute path of the file playing ``role``, or None."""
        rel = self.files.get(role)
        return None if rel is None or self.folder is None else self.folder / rel

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report, "files": self.files, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], folder: Path, digest: str) -> StageOutput:
        return cls(
            report=d.get("report"),
            files=dict(d.get("files") or {}),
            notes=tuple(d.get("notes") or ()),
            folder=folder,
            digest=digest,
        )


@dataclass(frozen=True)
class StageRecord:
    """How one stage went. ``seconds``: wall time this run (a cache lookup for ``cached``);
    ``built_seconds``: what building it took when it was built. ``error``: ``{type, message,
    hint, exit_code}`` for a failed stage."""

    name: str
    title: str
    status: str
    seconds: float = 0.0
    built_seconds: float | None = None
    folder: Path | None = None
    key: str | None = None
    notes: tuple[str, ...] = ()
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "built_seconds": None if self.built_seconds is None else round(self.built_seconds, 3),
            "folder": str(self.folder) if self.folder else None,
            "key": self.key,
            "notes": list(self.notes),
            "error": self.error,
        }
