"""Training and validation data for fine-tuning, sensitivity analysis and budget search.

Data is in PyTorch layout (N first, then the model's input shape without its batch dim):

* a :class:`Dataset` or a tuple ``(x, y)`` / ``(x,)`` / a bare array ``x`` (numpy or torch);
* ``.npz`` with the inputs under ``x`` / ``inputs`` / ``data`` / ``images`` and the labels or
  targets under ``y`` / ``labels`` / ``targets`` / ``target`` (or exactly two arrays: inputs
  first); ``.npy`` with inputs only;
* ``module:fn`` or ``path/file.py:fn`` — a function returning any of the above, or a dict with
  the keys above.

Labels are optional: integer labels mean classification (cross-entropy, accuracy), float
targets mean regression (MSE); with no labels the metric compares against the unpruned model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolchain import safeload
from toolchain.data import check_class_ids
from toolchain.errors import DataError
from toolchain.pyref import load_object, user_code

_X_KEYS = ("x", "inputs", "data", "images")
_Y_KEYS = ("y", "labels", "targets", "target")


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (float32, N first) and optional ``y`` (int64 labels or float32 targets)."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def is_classification(self) -> bool:
        return self.y is not None and self.y.dtype.kind in "iu"


DataSpec = Dataset | tuple[Any, ...] | np.ndarray | torch.Tensor | str | Path | Mapping[str, Any]


def load(spec: DataSpec, *, labels: Any = None, what: str = "data") -> Dataset:
    """Load ``spec`` (see the module docstring) into a :class:`Dataset`.

    ``labels`` (an array, or integer class labels in any form :func:`toolchain.data.load_labels`
    reads: ``.npy``, ``.txt``, ``file.npz:key``, ``module:fn``) overrides labels in ``spec``.
    Raises :class:`DataError` (missing file, unknown keys, empty, NaN/inf, N mismatch).
    """
    x, y = _resolve(spec, what)
    xa = _array(x)
    if labels is not None and isinstance(labels, str | Path) and xa is not None:
        from toolchain.data import load_labels  # .npy, .txt/.csv, file.npz:key, module:fn

        y = load_labels(labels, n=len(xa), what=f"{what} labels")
    elif labels is not None:
        y = labels
    if xa is None or xa.ndim < 1 or len(xa) == 0:
        raise DataError(f"{what}: no inputs (empty or missing array)")
    if xa.dtype.kind not in "fiub":
        raise DataError(f"{what}: inputs have dtype {xa.dtype}; numbers expected")
    xa = xa.astype(np.float32, copy=False)
    if not np.isfinite(xa).all():
        raise DataError(f"{what}: inputs contain NaN or inf", hint="clean or normalise the data")
    ya = _array(y)
    if ya is not None:
        if len(ya) != len(xa):
            raise DataError(f"{what}: {len(xa)} inputs but {len(ya)} labels/targets")
        if ya.dtype.kind in "iub":
            ya = ya.astype(np.int64)
        elif ya.dtype.kind == "f":
            if not np.isfinite(ya).all():
                raise DataError(f"{what}: labels/targets contain NaN or inf")
            ya = ya.astype(np.float32)
        else:
            raise DataError(f"{what}: labels have dtype {ya.dtype}; integers or floats expected")
    return Dataset(xa, ya)


def _array(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _resolve(spec: Any, what: str) -> tuple[Any, Any]:
    if isinstance(spec, Dataset):
        return spec.x, spec.y
    if isinstance(spec, np.ndarray | torch.Tensor):
        return spec, None
    if isinstance(spec, tuple | list):
        if not 1 <= len(spec) <= 2:
            raise DataError(f"{what}: expected (inputs, labels), got a sequence of {len(spec)}")
        return spec[0], spec[1] if len(spec) == 2 else None
    if isinstance(spec, Mapping):
        return _from_mapping(spec, what)
    if isinstance(spec, str | Path):
        text = str(spec)
        path = Path(text)
        if path.suffix in (".npz", ".npy") or path.exists():
            return _resolve(_read_file(path, what), what)
        if ":" in text:
            return _resolve(_call(text, what), what)
        raise DataError(f"{what}: {text!r} is neither a file nor a module:function spec")
    raise DataError(f"{what}: cannot use a {type(spec).__name__} as data")


def _read_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{what}: file not found: {path}")
    return safeload.load_numpy(path, what=what)


def _from_mapping(d: Mapping[str, Any], what: str) -> tuple[Any, Any]:
    x = next((d[k] for k in _X_KEYS if k in d), None)
    y = next((d[k] for k in _Y_KEYS if k in d), None)
    if x is None and len(d) == 2:
        x, y = list(d.values())
    if x is None:
        raise DataError(
            f"{what}: no inputs among keys {sorted(d)}",
            hint=f"name the inputs one of {', '.join(_X_KEYS)} and the labels one of {', '.join(_Y_KEYS)}",
        )
    return x, y


def _call(spec: str, what: str) -> Any:
    """Call the function named by ``module:fn`` / ``path/file.py:fn`` (no arguments)."""
    fn = load_object(spec, what=what, error=DataError)
    if not callable(fn):
        raise DataError(f"{what}: {spec} is not a function")
    try:
        with user_code(f"{what}: {spec}", DataError):
            return fn()
    except DataError:
        raise
    except Exception as exc:  # user code
        raise DataError(f"{what}: {spec} raised {type(exc).__name__}: {exc}") from exc


def check_inputs(data: Dataset, input_shape: tuple[int, ...], *, what: str) -> None:
    """Raise :class:`DataError` unless each sample of ``data`` has the model's input shape."""
    want = tuple(input_shape[1:])
    got = tuple(data.x.shape[1:])
    if got != want:
        raise DataError(
            f"{what}: samples have shape {got} but the model takes {want} "
            f"(input shape {tuple(input_shape)}, batch first)",
            hint="give data in PyTorch layout, N first: e.g. N×" + "×".join(map(str, want)),
        )


def check_targets(data: Dataset, output_shape: tuple[int, ...], *, what: str) -> None:
    """Check labels against the model output: class ids in range, or targets of its shape."""
    if data.y is None:
        return
    if data.is_classification:
        check_class_ids(data.y, output_shape, what=what)
        return
    if tuple(data.y.shape[1:]) != tuple(output_shape[1:]):
        raise DataError(
            f"{what}: targets have shape {tuple(data.y.shape[1:])} per sample but the model "
            f"outputs {tuple(output_shape[1:])}"
        )
