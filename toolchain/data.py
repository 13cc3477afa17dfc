"""Calibration and validation data, in PyTorch layout (batch first, channels second).

A data source (:data:`DataLike`) is one of:

* a numpy array (one input) or a list/tuple of arrays (one per input, in ``forward`` order)
  or a mapping input name → array; each array is ``(N, *sample_shape)``;
* ``file.npy`` (one input) or ``file.npz`` (arrays by input name, else in order; keys such as
  ``y``/``labels`` are ignored when they are not input names);
* a folder of images (:class:`ImageFolder` for mean/std; sub-folders give class labels),
  resized to the input's height and width;
* ``path/file.py:fn`` or ``module:fn``: ``fn()`` returns or yields arrays (one sample or a
  batch each; a tuple/list/dict of them for several inputs).

:func:`load_data` checks everything and raises :class:`~toolchain.errors.DataError` with what
was wrong: missing or empty data, wrong shape, a non-numeric dtype, NaN or infinite values.
Integer arrays are accepted and converted to float32 unchanged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from toolchain import pyref, safeload
from toolchain.errors import DataError, InputFileError

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LABEL_KEYS = ("y", "label", "labels", "target", "targets")


@dataclass(frozen=True)
class ImageFolder:
    """A folder of images, scaled to [0, 1] then normalised: ``(x / 255 - mean) / std``.

    ``mean``/``std`` have one value or one per channel. Images are converted to RGB (3
    channels) or grayscale (1), resized (bilinear) to the model input's H×W, and read in
    sorted path order. When every image sits in a sub-folder, the sorted sub-folder names are
    the classes and give labels.
    """

    path: Path
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if any(s == 0 for s in self.std):
            raise DataError(f"{self.path}: std must not be 0", hint="e.g. --std 0.229,0.224,0.225")


DataLike: TypeAlias = (
    str | Path | np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray] | ImageFolder
)


@dataclass(frozen=True)
class Dataset:
    """Checked data: one float32 array ``(N, *sample_shape)`` per model input."""

    arrays: tuple[np.ndarray, ...]
    source: str
    labels: np.ndarray | None = None  # from an image folder's sub-folders

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def sample(self, i: int) -> tuple[np.ndarray, ...]:
        """Sample ``i`` of every input, with a batch dimension of 1."""
        return tuple(a[i : i + 1] for a in self.arrays)


def load_data(
    data: DataLike,
    *,
    inputs: Sequence[tuple[str, Shape]],
    what: str = "calibration data",
    limit: int | None = None,
) -> Dataset:
    """Read ``data`` for a model whose inputs are ``(name, shape)`` (batch-1 shapes).

    ``limit`` keeps the first ``limit`` samples. Raises DataError / InputFileError.
    """
    names = [n for n, _ in inputs]
    desc = _describe(data)
    labels = None
    raw: list[Any]
    if isinstance(data, ImageFolder):
        raw_imgs, labels = _read_images(data, inputs, what, limit)
        raw = [raw_imgs]
    elif isinstance(data, str | Path):
        raw, labels = _read_spec(data, inputs, what, limit)
    elif isinstance(data, np.ndarray):
        raw = [data]
    elif isinstance(data, Mapping):
        raw = _by_name(dict(data), names, f"{what} ({desc})")
    elif isinstance(data, Sequence) and not isinstance(data, str):
        raw = list(data)
    else:
        raise DataError(f"{what}: cannot use a {type(data).__name__} as data")
    if len(raw) != len(inputs):
        raise DataError(
            f"{what} ({desc}): {len(raw)} array(s) for a model with {len(inputs)} input(s) "
            f"({', '.join(names)})",
            hint="give one array per input (an .npz with one array per input name)",
        )
    arrays = tuple(
        _check(a, name, shape, f"{what} ({desc})")
        for a, (name, shape) in zip(raw, inputs, strict=True)
    )
    counts = {a.shape[0] for a in arrays}
    if len(counts) != 1:
        raise DataError(
            f"{what} ({desc}): inputs have different sample counts {sorted(counts)}",
            hint="every input needs the same number of samples",
        )
    if limit is not None and limit > 0:
        arrays = tuple(a[:limit] for a in arrays)
        labels = labels[:limit] if labels is not None else None
    return Dataset(arrays=arrays, source=desc, labels=labels)


def load_labels(labels: Any, *, n: int, what: str = "labels") -> np.ndarray:
    """Integer class labels, one per validation sample: an array, .npy, .txt/.csv,
    ``file.npz[:key]`` or ``module:fn``. Raises DataError when they do not fit."""
    desc = _describe(labels)
    if isinstance(labels, str | Path):
        text = str(labels)
        path = Path(text).expanduser()
        if path.is_file():
            if path.suffix in (".txt", ".csv"):
                try:
                    arr = np.array(
                        [int(float(x)) for x in path.read_text().replace(",", " ").split()]
                    )
                except ValueError as exc:
                    raise DataError(f"{what} ({desc}): not a list of integers: {exc}") from exc
            else:
                arr = _npz_single(path, what) if path.suffix == ".npz" else _load_npy(path, what)
        elif ".npz:" in text and Path(text.rsplit(":", 1)[0]).is_file():
            file, key = text.rsplit(":", 1)
            arr = _npz_key(Path(file), key, what)
        elif pyref.split(text) is not None:
            arr = _call_fn(text, what)
        else:
            raise InputFileError(f"{what}: file not found: {text}", hint="check the path")
    else:
        arr = labels
    try:
        a = np.asarray(arr)
    except Exception as exc:  # ragged or exotic objects
        raise DataError(f"{what} ({desc}): not an array of integers") from exc
    if a.ndim == 2 and a.shape[1] > 1 and a.shape[0] == n:  # one-hot
        a = a.argmax(axis=1)
    if a.ndim > 1 and not (a.ndim == 2 and a.shape[1] == 1):
        raise DataError(
            f"{what} ({desc}): labels have shape {a.shape}; expected one class id per "
            f"validation sample, shape ({n},) (or one-hot ({n}, classes))",
            hint="save the labels as a 1-D integer array",
        )
    a = a.reshape(-1)
    if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.all(np.isfinite(a))):
        raise DataError(f"{what} ({desc}): labels must be integers, got {a.dtype}")
    if a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise DataError(f"{what} ({desc}): labels must be whole numbers (class indices)")
    if len(a) != n:
        raise DataError(
            f"{what} ({desc}): {len(a)} labels for {n} validation samples",
            hint="give exactly one label per validation sample",
        )
    if a.size and a.min() < 0:
        raise DataError(f"{what} ({desc}): negative class index {int(a.min())}")
    return a.astype(np.int64)


def check_class_ids(labels: np.ndarray, output_shape: Sequence[int], *, what: str) -> None:
    """Raise :class:`DataError` unless ``labels`` are one class id per sample in
    ``[0, classes)`` of a classifier output of shape ``(N, classes)`` (shared by ``convert``'s
    accuracy gate and ``prune``'s accuracy metric)."""
    shape = tuple(int(s) for s in output_shape)
    if len(shape) != 2:
        raise DataError(
            f"{what}: integer labels need a classifier output (N, classes); the model "
            f"outputs {shape}",
            hint="labels (and an accuracy gate) need a classifier; leave them out otherwise",
        )
    n = shape[1]
    a = np.asarray(labels)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if a.ndim != 1 or lo < 0 or hi >= n:
        raise DataError(
            f"{what}: labels must be one class id per sample in [0, {n}); got shape "
            f"{a.shape}, range [{lo}, {hi}]",
            hint=f"the model has {n} classes: check that these labels belong to this model "
            "and data (0-based class indices)",
        )


def fingerprint(data: Any) -> str | None:
    """A content hash of a data source without interpreting it, or None when that needs
    running user code (``module:fn``). Used for cache keys; a sequence of arrays (such as
    :attr:`Dataset.arrays`) hashes each array's dtype, shape and bytes."""
    h = hashlib.sha256()
    if data is None:
        h.update(b"none")
    elif isinstance(data, ImageFolder):
        h.update(repr((data.mean, data.std)).encode())
        if not _hash_path(h, data.path):
            return None
    elif isinstance(data, str | Path):
        text = str(data)
        path = Path(text).expanduser()
        if path.exists():
            _hash_path(h, path)
        elif ".npz:" in text and Path(text.rsplit(":", 1)[0]).is_file():
            _hash_path(h, Path(text.rsplit(":", 1)[0]))
            h.update(text.rsplit(":", 1)[1].encode())
        else:
            return None
    elif isinstance(data, np.ndarray):
        _hash_array(h, data)
    elif isinstance(data, Mapping):
        for k in sorted(data):
            h.update(str(k).encode())
            _hash_array(h, np.asarray(data[k]))
    elif isinstance(data, Sequence):
        for a in data:
            _hash_array(h, np.asarray(a))
    else:
        return None
    return h.hexdigest()


# --- reading ----------------------------------------------------------------------------------


def _describe(data: Any) -> str:
    if isinstance(data, ImageFolder):
        return str(data.path)
    if isinstance(data, str | Path):
        return str(data)
    if isinstance(data, np.ndarray):
        return f"array {data.shape} {data.dtype}"
    return type(data).__name__


def _read_spec(
    spec: str | Path, inputs: Sequence[tuple[str, Shape]], what: str, limit: int | None
) -> tuple[list[Any], np.ndarray | None]:
    text = str(spec)
    path = Path(text).expanduser()
    names = [n for n, _ in inputs]
    if path.is_dir():
        imgs, labels = _read_images(ImageFolder(path), inputs, what, limit)
        return [imgs], labels
    if path.is_file():
        if path.suffix == ".npy":
            return [_load_npy(path, what)], None
        if path.suffix == ".npz":
            z = _load_npz(path, what)
            return _by_name(z, names, f"{what} ({text})"), None
        raise DataError(
            f"{what}: {text}: unknown data file type {path.suffix!r}",
            hint="use .npy, .npz, a folder of images, or path/file.py:function",
        )
    if pyref.split(text) is not None and path.suffix != ".npy":
        return _from_fn(text, inputs, what, limit), None
    raise InputFileError(
        f"{what}: not found: {text}",
        hint="give a .npy/.npz file, a folder of images, or path/file.py:function",
    )


def _load_npy(path: Path, what: str) -> np.ndarray:
    arr = safeload.load_numpy(path, what=what)
    if isinstance(arr, dict):
        raise DataError(f"{what}: {path} is an .npz archive, not an .npy array")
    return arr


def _load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    arrays = safeload.load_numpy(path, what=what)
    if not isinstance(arrays, dict):
        raise DataError(f"{what}: cannot read {path} as an .npz archive (it is an .npy array)")
    return arrays


def _npz_key(path: Path, key: str, what: str) -> np.ndarray:
    z = _load_npz(path, what)
    if key not in z:
        raise DataError(f"{what}: {path} has no array {key!r} (it has {', '.join(z)})")
    return np.asarray(z[key])


def _npz_single(path: Path, what: str) -> np.ndarray:
    z = _load_npz(path, what)
    keys = [k for k in z if k in LABEL_KEYS] or list(z)
    if len(keys) != 1:
        raise DataError(
            f"{what}: {path} holds several arrays ({', '.join(z)})",
            hint=f"name one: {path}:KEY",
        )
    return np.asarray(z[keys[0]])


def _by_name(d: dict[str, Any], names: list[str], what: str) -> list[Any]:
    if all(n in d for n in names):
        return [d[n] for n in names]
    keys = [k for k in d if k not in LABEL_KEYS]
    if len(keys) == len(names) and not any(k in names for k in keys):
        return [d[k] for k in keys]
    raise DataError(
        f"{what}: arrays {', '.join(d) or '(none)'} do not match the model inputs "
        f"{', '.join(names)}",
        hint="name the arrays after the inputs (np.savez(f, " + "=..., ".join(names) + "=...))",
    )


def _read_images(
    folder: ImageFolder, inputs: Sequence[tuple[str, Shape]], what: str, limit: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image, UnidentifiedImageError

    if len(inputs) != 1 or len(inputs[0][1]) != 4 or inputs[0][1][1] not in (1, 3):
        raise DataError(
            f"{what}: an image folder fits a model with one (1, C, H, W) input, C = 1 or 3",
            hint="use .npy/.npz data for other models",
        )
    _, c, h, w = inputs[0][1]
    root = folder.path
    if not root.is_dir():
        raise InputFileError(f"{what}: folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"{what}: no images in {root}",
            hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES[:5])}, ...",
        )
    labels = None
    if all(len(p.relative_to(root).parts) == 2 for p in files):
        classes = sorted({p.parent.name for p in files})
        labels = np.array([classes.index(p.parent.name) for p in files], dtype=np.int64)
    if limit is not None and limit > 0:
        files = files[:limit]
        labels = labels[:limit] if labels is not None else None
    mean = np.array(_per_channel(folder.mean, c, "mean"), dtype=np.float32).reshape(c, 1, 1)
    std = np.array(_per_channel(folder.std, c, "std"), dtype=np.float32).reshape(c, 1, 1)
    out = np.empty((len(files), c, h, w), dtype=np.float32)
    for i, p in enumerate(files):
        try:
            with Image.open(p) as img:
                im = img.convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{what}: cannot read image {p}: {exc}") from exc
        a = a.reshape(h, w, c).transpose(2, 0, 1)
        out[i] = (a - mean) / std
    return out, labels


def _per_channel(v: Sequence[float], c: int, what: str) -> list[float]:
    vals = [float(x) for x in v]
    if len(vals) == 1:
        return vals * c
    if len(vals) != c:
        raise DataError(f"{what} has {len(vals)} values for {c} channels", hint="give 1 or C")
    return vals


def _call_fn(spec: str, what: str) -> Any:
    fn = pyref.load_object(spec, what=what, error=DataError)
    try:
        with pyref.user_code(f"{what}: {spec}", DataError):
            return fn() if callable(fn) else fn
    except DataError:
        raise
    except Exception as exc:  # the user's data function
        raise DataError(f"{what}: {spec} raised {type(exc).__name__}: {exc}") from exc


def _from_fn(
    spec: str, inputs: Sequence[tuple[str, Shape]], what: str, limit: int | None
) -> list[Any]:
    names = [n for n, _ in inputs]
    got = _call_fn(spec, what)
    if isinstance(got, np.ndarray | Mapping) or (
        isinstance(got, tuple | list) and got and all(isinstance(a, np.ndarray) for a in got)
    ):
        items: Iterable[Any] = [got]
    elif isinstance(got, Iterable):
        items = got
    else:
        raise DataError(f"{what}: {spec} returned {type(got).__name__}, not arrays")
    per_input: list[list[np.ndarray]] = [[] for _ in names]
    count = 0
    try:
        for item in items:
            if isinstance(item, Mapping):
                parts = _by_name(dict(item), names, f"{what} ({spec})")
            elif isinstance(item, tuple | list) and len(names) > 1:
                parts = list(item)
            else:
                parts = [item]
            if len(parts) != len(names):
                raise DataError(
                    f"{what}: {spec} yielded {len(parts)} array(s) per item for "
                    f"{len(names)} input(s)"
                )
            for lst, p in zip(per_input, parts, strict=True):
                lst.append(np.asarray(p))
            count += 1
            if limit is not None and 0 < limit <= count:
                break
    except DataError:
        raise
    except Exception as exc:  # the user's generator
        raise DataError(f"{what}: {spec} raised {type(exc).__name__}: {exc}") from exc
    if not count:
        raise DataError(f"{what}: {spec} yielded nothing", hint="it must yield arrays")
    return [_stack(lst, tuple(sh[1:])) for lst, (_, sh) in zip(per_input, inputs, strict=True)]


def _stack(parts: list[np.ndarray], sample: Shape) -> Any:
    """Items that are single samples or batches → one (N, *sample) array.

    An item of another shape is returned alone so that :func:`_check` reports it.
    """
    batches = []
    for p in parts:
        if tuple(p.shape) == sample:
            p = p[None]
        if tuple(p.shape[1:]) != sample:
            return p
        batches.append(p)
    return np.concatenate(batches) if len(batches) > 1 else batches[0]


def _check(a: Any, name: str, shape: Shape, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists
        raise DataError(f"{what}: input {name!r}: not an array ({exc})") from exc
    sample = tuple(shape[1:])
    if arr.dtype.kind not in "fiu":
        raise DataError(
            f"{what}: input {name!r} has dtype {arr.dtype}; numbers are needed",
            hint="save float32 arrays (integers are accepted too)",
        )
    if arr.ndim == len(sample) and tuple(arr.shape) == sample and arr.size:
        arr = arr[None]  # a single sample without its batch axis
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise DataError(f"{what}: input {name!r} is empty", hint="give at least one sample")
    if tuple(arr.shape[1:]) != sample:
        raise DataError(
            f"{what}: input {name!r} has shape {tuple(arr.shape)}; expected (N, "
            f"{', '.join(map(str, sample))}) for a model input of shape {shape}",
            hint="data is in PyTorch layout, samples first (e.g. N,3,32,32 for images)",
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad.reshape(arr.shape[0], -1).any(axis=1))[0][0])
            kinds = []
            if np.isnan(arr).any():
                kinds.append("NaN")
            if np.isinf(arr).any():
                kinds.append("inf")
            raise DataError(
                f"{what}: input {name!r} has {int(bad.sum())} {'/'.join(kinds)} value(s), "
                f"first in sample {first}",
                hint="clean the data; calibration needs finite values",
            )
    else:
        log.info("%s: input %r is %s; converted to float32 unchanged", what, name, arr.dtype)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _hash_array(h: Any, a: np.ndarray) -> None:
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())


def _hash_path(h: Any, path: Path) -> bool:
    if path.is_file():
        h.update(path.name.encode())
        h.update(path.read_bytes())
        return True
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
        return True
    return False
