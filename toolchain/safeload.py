"""Read user-supplied model and data files without ever running code they carry.

PyTorch's file formats are zip archives of *pickles*, and unpickling runs whatever callables
the pickle names (``os.system``, ``exec``...). ``torch.load(weights_only=True)`` restricts
that, but other loaders do not: ``torch.export.load`` retries a failed weights-only load as a
full unpickle, unpickles ``use_pickle`` weights and "opaque" constants with no restriction at
all, loads AOTInductor shared libraries, resolves graph call targets as any attribute path
under ``torch`` (``torch.os.system`` is one) and parses symbolic shape expressions with
``sympy.sympify`` (which is ``eval``). So every loader here *inspects first* and hands the
file to torch only when nothing in it can run code:

* every pickle in the file (each ``*.pkl`` member of a zip, and every nested ``torch.save``
  archive) is walked opcode by opcode with :mod:`pickletools` (nothing is unpickled): the
  callables it names (``GLOBAL``/``STACK_GLOBAL``/``INST``) must all be on an allow-list of
  tensor-rebuilding functions and storage types; extension-registry opcodes are refused;
* a ``.pt2`` may hold only JSON, raw tensor bytes and clean ``torch.save`` archives: compiled
  code (AOTInductor), pickled custom/opaque objects, graph nodes calling anything but
  registered operators (``torch.ops.*``), ``math`` and plain arithmetic, and symbolic
  expressions with anything but symbols, numbers and arithmetic are refused;
* a TorchScript archive's pickles may name only TorchScript types and torch's rebuild
  functions (TorchScript's own C++ unpickler also refuses anything else; this is the second
  lock on the door);
* ``.npy``/``.npz`` are read with ``allow_pickle=False``; object arrays are refused.

Zip archives with duplicate member names are refused (Python's zip reader and torch's could
then see different contents). Everything refused raises :class:`UnsafeFileError` naming the
file, the member and the callable, before torch sees the file.
"""

from __future__ import annotations

import io
import json
import logging
import pickletools
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.errors import DataError, InputFileError, ModelLoadError, UnsafeFileError

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

#: the largest member we read into memory to inspect (a pickle this big is not a model)
MAX_PICKLE_BYTES = 256 << 20

_STORAGES = [
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "ComplexFloatStorage",
    "ComplexDoubleStorage",
    "QInt8Storage",
    "QUInt8Storage",
    "QInt32Storage",
    "UntypedStorage",
    "TypedStorage",
]
_DTYPES = [
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "qint8",
    "quint8",
    "qint32",
    "float8_e4m3fn",
    "float8_e5m2",
    "uint16",
    "uint32",
    "uint64",
]

#: the callables a ``torch.save`` of tensors, state_dicts and tuples of tensors may name
TORCH_SAVE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch._utils", "_rebuild_sparse_tensor"),
        ("torch._utils", "_rebuild_meta_tensor_no_storage"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Tensor"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "per_tensor_affine"),
        ("torch", "per_channel_affine"),
        ("torch", "strided"),
        ("torch.serialization", "_get_layout"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("__builtin__", "set"),
        ("torch.storage", "UntypedStorage"),
        *(("torch", s) for s in _STORAGES),
        *(("torch", d) for d in _DTYPES),
    }
)


def _torchscript_global(module: str, name: str) -> bool:
    """Names a TorchScript pickle may use: its own ``__torch__`` types and torch's rebuilders."""
    if module == "__torch__" or module.startswith("__torch__."):
        return True
    if module == "torch.jit._pickle":
        return True
    return (module, name) in TORCH_SAVE_GLOBALS


# --- pickles ------------------------------------------------------------------------------

_STRING_OPS = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
    }
)
_UNRESOLVED = ("<unresolved>", "<computed name>")


def pickle_globals(data: bytes) -> Iterator[tuple[str, str]]:
    """The (module, name) of every callable/class one pickle names, without unpickling it.

    Walks the opcodes with a small stack model (after :func:`pickletools.dis`) so that
    ``STACK_GLOBAL`` is resolved from the strings really on the stack; a name that is not
    a literal string yields ``("<unresolved>", ...)``. Raises ``ValueError`` if the bytes are
    not one well-formed pickle.
    """
    mark = object()
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            yield module, attr
        elif name == "STACK_GLOBAL":
            if len(stack) < 2 or not all(isinstance(v, str) for v in stack[-2:]):
                yield _UNRESOLVED
            else:
                yield stack[-2], stack[-1]
        elif name in ("EXT1", "EXT2", "EXT4"):
            yield ("<copyreg extension>", str(arg))
        elif name == "STOP":
            return
        # the stack model
        if name == "MEMOIZE":  # stores the top without popping it
            if not stack:
                raise ValueError("MEMOIZE on an empty stack")
            memo[len(memo)] = stack[-1]
            continue
        if name == "DUP" and stack:
            stack.append(stack[-1])
            continue
        before, after = op.stack_before, op.stack_after
        numtopop = len(before)
        if pickletools.markobject in before or (name == "POP" and stack and stack[-1] is mark):
            while stack and stack[-1] is not mark:
                stack.pop()
            if not stack:
                raise ValueError(f"{name} without a MARK")
            stack.pop()
            numtopop = before.index(pickletools.markobject) if name != "POP" else 0
        if numtopop:
            if len(stack) < numtopop:
                raise ValueError(f"stack underflow at {name}")
            top = stack[-1]
            del stack[-numtopop:]
        else:
            top = stack[-1] if stack else None
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg or 0)] = top
        if name == "MARK":
            stack.append(mark)
        elif name in _STRING_OPS:
            stack.append(arg if isinstance(arg, str) else None)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg or 0)))
        else:
            stack.extend([None] * len(after))
    raise ValueError("the pickle has no STOP opcode")


def check_pickle(
    data: bytes, *, where: str, allowed: Callable[[str, str], bool], what: str
) -> None:
    """Refuse ``data`` (one pickle, ``where`` names it) unless every callable it names passes
    ``allowed``; ``what`` says what the file should have been (for the message)."""
    try:
        names = list(pickle_globals(data))
    except ValueError as exc:
        raise UnsafeFileError(
            f"{where}: not a well-formed pickle ({exc}); refused unread",
            hint=f"give {what}",
        ) from exc
    bad = sorted({f"{m}.{n}" for m, n in names if not allowed(m, n)})
    if bad:
        raise UnsafeFileError(
            f"{where}: refused: its pickle would call {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}, which can run arbitrary code "
            "(nothing of it was unpickled)",
            hint=f"only tensors and plain containers are accepted; give {what}, saved from "
            "code you trust",
        )


def _open_zip(data: bytes | Path, where: str, what: str) -> zipfile.ZipFile:
    try:
        z = zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputFileError(f"{where}: not a zip archive ({exc})", hint=f"give {what}") from exc
    names = z.namelist()
    if len(names) != len(set(names)):
        z.close()
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UnsafeFileError(
            f"{where}: refused: the archive holds several members named {dup[0]!r}",
            hint=f"give {what}, saved by torch itself",
        )
    return z


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    if info.file_size > MAX_PICKLE_BYTES:
        raise UnsafeFileError(
            f"{where}: member {info.filename} is {info.file_size} bytes; too large to inspect"
        )
    try:
        return z.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputFileError(f"{where}: member {info.filename} is corrupt ({exc})") from exc


def _torch_save_global(module: str, name: str) -> bool:
    """Names a ``torch.save`` pickle of tensors and plain containers may use."""
    return (module, name) in TORCH_SAVE_GLOBALS


def check_torch_save_archive(data: bytes | Path, *, where: str, what: str) -> None:
    """Refuse a ``torch.save`` zip archive unless its pickles name only
    :data:`TORCH_SAVE_GLOBALS`.

    The pre-2020 non-zip ``torch.save`` format is refused too (it is a run of bare pickles
    followed by raw bytes, which cannot be told apart safely)."""
    if isinstance(data, Path):
        _zip_check_file(data, what)
    elif not data.startswith(b"PK\x03\x04"):
        raise UnsafeFileError(
            f"{where}: not a zip-format torch.save archive; refused unread",
            hint=f"give {what} (torch.save has written zip archives since torch 1.6)",
        )
    with _open_zip(data, where, what) as z:
        pickles = [i for i in z.infolist() if i.filename.endswith(".pkl")]
        if not pickles:
            raise InputFileError(f"{where}: no pickle in the archive", hint=f"give {what}")
        for info in pickles:
            check_pickle(
                _read_member(z, info, where),
                where=f"{where} ({info.filename})",
                allowed=_torch_save_global,
                what=what,
            )


def _zip_check_file(path: Path, what: str) -> None:
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not found"
        raise InputFileError(f"{path}: {kind}", hint=f"give {what}")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        raise UnsafeFileError(
            f"{path}: not a zip archive (a bare pickle or another format); refused unread",
            hint=f"give {what}",
        )


# --- torch.export (.pt2) ------------------------------------------------------------------

_OP_TARGET = re.compile(r"torch\.ops\.(?!__)\w+\.(?!__)\w+(\.(?!__)\w+)?")
_SYM_TARGET = re.compile(r"torch\._?sym_\w+")
_MATH_TARGET = re.compile(r"math\.[a-z]\w*")
_OPERATOR_OK = frozenset(
    [
        "add",
        "sub",
        "mul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "neg",
        "pos",
        "abs",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and_",
        "or_",
        "xor",
        "not_",
        "invert",
        "lshift",
        "rshift",
        "getitem",
        "index",
        "truth",
    ]
)
_EXPR_OK = re.compile(r"[\w\s+\-*/%(),.<>=!&|~^]*")
_EXPR_NAMES = frozenset(
    [
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "Max",
        "Min",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "Pow",
        "Mul",
        "Add",
        "Integer",
        "Rational",
        "Float",
        "True",
        "False",
        "oo",
        "zoo",
        "nan",
        "Piecewise",
        "ITE",
        "sympy_max",
        "sympy_min",
    ]
)


def _target_ok(target: str) -> bool:
    if _OP_TARGET.fullmatch(target) or _SYM_TARGET.fullmatch(target):
        return True
    if _MATH_TARGET.fullmatch(target):
        return True
    if target.startswith("_operator."):
        return target[len("_operator.") :] in _OPERATOR_OK
    return False


def _expr_ok(expr: str) -> bool:
    if not _EXPR_OK.fullmatch(expr) or "__" in expr or re.search(r"\.\s*[A-Za-z_]", expr):
        return False
    for ident in re.findall(r"[A-Za-z_]\w*", expr):
        if ident not in _EXPR_NAMES and not re.fullmatch(r"[a-z]{1,3}\d+", ident):
            return False
    return True


def _check_graph_json(doc: Any, where: str) -> None:
    """Every node target and symbolic expression of a serialized ExportedProgram."""
    todo = [doc]
    while todo:
        obj = todo.pop()
        if isinstance(obj, dict):
            target = obj.get("target")
            if isinstance(target, str) and "inputs" in obj and not _target_ok(target):
                raise UnsafeFileError(
                    f"{where}: refused: a graph node calls {target!r}, which is not a "
                    "registered operator (loading would resolve and call it)",
                    hint="export the model again with torch.export.export from code you trust",
                )
            ranges = obj.get("range_constraints")
            if isinstance(ranges, dict):
                for sym in ranges:
                    # torch counts unbacked symbols up to the number in the name: "u10**12"
                    # would hang the load
                    if not re.fullmatch(r"[a-z_]{1,24}\d{1,6}", str(sym)):
                        raise UnsafeFileError(
                            f"{where}: refused: implausible shape symbol {str(sym)[:40]!r}",
                            hint="export the model again with torch.export.export",
                        )
            expr = obj.get("expr_str")
            if isinstance(expr, str) and not _expr_ok(expr):
                raise UnsafeFileError(
                    f"{where}: refused: symbolic shape expression {expr[:80]!r} is not "
                    "plain arithmetic (loading would evaluate it as Python)",
                    hint="export the model again with torch.export.export from code you trust",
                )
            todo.extend(obj.values())
        elif isinstance(obj, list):
            todo.extend(obj)


def check_pt2(path: Path) -> None:
    """Refuse a ``torch.export`` archive that carries anything able to run code."""
    what = "a .pt2 written by torch.export.save"
    _zip_check_file(path, what)
    where = str(path)
    with _open_zip(path, where, what) as z:
        infos = z.infolist()
        rel = {}
        for info in infos:
            name = info.filename
            # torch.export.save puts everything under one top-level folder (the archive name)
            rel[name] = name.split("/", 1)[1] if "/" in name else name
        raw: set[str] = set()
        pickled: set[str] = set()
        for info in infos:
            r = rel[info.filename]
            low = r.lower()
            if low.startswith("data/aotinductor/") or low.endswith(
                (".so", ".dll", ".dylib", ".pyd", ".cubin", ".o", ".a")
            ):
                raise UnsafeFileError(
                    f"{where}: refused: it holds compiled code ({r}; AOTInductor), which "
                    "loading would run",
                    hint="save the program with torch.export.save (no AOTInductor package)",
                )
            base = r.rsplit("/", 1)[-1]
            if base.startswith(("custom_obj_", "opaque_obj_")):
                raise UnsafeFileError(
                    f"{where}: refused: it holds a pickled custom object ({r}); unpickling it "
                    "could run arbitrary code",
                    hint="export a model whose constants are tensors only",
                )
            if r.endswith(".json"):
                try:
                    doc = json.loads(_read_member(z, info, where))
                except ValueError as exc:
                    raise InputFileError(
                        f"{where}: {r} is not valid JSON ({exc})", hint=f"give {what}"
                    ) from exc
                _check_graph_json(doc, f"{where} ({r})")
                if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
                    folder = r.rsplit("/", 1)[0]
                    for meta in doc["config"].values():
                        if not isinstance(meta, dict) or "path_name" not in meta:
                            continue
                        member = f"{folder}/{meta['path_name']}"
                        if meta.get("use_pickle") or meta.get("tensor_meta") is None:
                            pickled.add(member)
                        else:
                            raw.add(member)
        for info in infos:
            r = rel[info.filename]
            if r.endswith(".json") or info.is_dir():
                continue
            top = r.split("/", 1)[0]
            if r.startswith(("data/weights/", "data/constants/")) and r in raw and r not in pickled:
                continue  # raw tensor bytes, read with torch.frombuffer
            if top == "data" or r.endswith(".pt"):
                check_torch_save_archive(
                    _read_member(z, info, where), where=f"{where} ({r})", what=what
                )
            elif r.endswith(".pkl"):
                check_pickle(
                    _read_member(z, info, where),
                    where=f"{where} ({r})",
                    allowed=_torch_save_global,
                    what=what,
                )


def load_exported_program(path: Path) -> Any:
    """``torch.export.load`` of a :func:`check_pt2`-checked file (an ``ExportedProgram``)."""
    import torch

    check_pt2(path)
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # corrupt or from another torch version
        raise ModelLoadError(
            f"{path}: not a torch.export program ({type(exc).__name__}: {str(exc)[:300]})",
            hint="save it with torch.export.save(torch.export.export(model, args), path)",
        ) from exc


# --- TorchScript --------------------------------------------------------------------------


def check_torchscript(path: Path) -> None:
    """Refuse a TorchScript archive whose pickles name anything but TorchScript types."""
    what = "a TorchScript file written by torch.jit.save"
    _zip_check_file(path, what)
    with _open_zip(path, str(path), what) as z:
        for info in z.infolist():
            if info.filename.endswith(".pkl"):
                check_pickle(
                    _read_member(z, info, str(path)),
                    where=f"{path} ({info.filename})",
                    allowed=_torchscript_global,
                    what=what,
                )


def load_torchscript(path: Path) -> torch.nn.Module:
    """``torch.jit.load`` (on the CPU) of a :func:`check_torchscript`-checked file."""
    import torch

    check_torchscript(path)
    return torch.jit.load(str(path), map_location="cpu")


# --- state_dicts --------------------------------------------------------------------------


def load_state_dict(path: Path, *, what: str = "a state_dict saved with torch.save") -> Any:
    """``torch.load(weights_only=True)`` of a checked ``torch.save`` archive (any object of
    tensors and plain containers; the caller checks it is a state_dict)."""
    import torch

    check_torch_save_archive(path, where=str(path), what=what)  # (checks the file is a zip)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, unsupported content
        raise ModelLoadError(
            f"{path}: cannot read weights safely ({type(exc).__name__}: {str(exc)[:300]})",
            hint="save a plain state_dict with torch.save(model.state_dict(), path)",
        ) from exc


# --- numpy --------------------------------------------------------------------------------


def load_numpy(path: Path, *, what: str) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` array or every array of an ``.npz`` (``allow_pickle=False``); object arrays
    (which only a pickle can hold) and corrupt files are :class:`DataError`."""
    import numpy as np

    try:
        obj = np.load(path, allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            with obj:
                return {k: obj[k] for k in obj.files}
        return obj
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataError(
                f"{what}: {path} holds an object array (only readable by unpickling, which "
                "could run code); refused",
                hint="save numeric arrays: numpy.save / numpy.savez with a numeric dtype",
            ) from exc
        if "pickled data" in str(exc):  # numpy's fallback for files that are not .npy/.npz
            exc = ValueError("neither .npy nor .npz; refused, not unpickled")
        raise DataError(
            f"{what}: cannot read {path} as a numpy array ({exc})",
            hint="save it with numpy.save or numpy.savez",
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{what}: cannot read {path} as a numpy array ({type(exc).__name__}: {exc})",
            hint="save it with numpy.save or numpy.savez",
        ) from exc
