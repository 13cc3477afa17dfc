"""Build compiled models (toolchain.compile output) with the host gcc and run them via ctypes.

Several models can go into one shared library (their symbols carry the model name; the
kernel sources are the same files for every model, so they are compiled once).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolchain.compile import CompiledModel

CFLAGS = (
    "-std=c99",
    "-O2",
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-function",
)


def have_gcc() -> bool:
    return shutil.which("gcc") is not None


def build(models: Sequence[CompiledModel], lib: Path) -> ctypes.CDLL:
    """Compile every model's sources (kernels once) into ``lib`` and load it."""
    kernels: dict[str, Path] = {}
    sources: list[Path] = []
    incs: list[str] = []
    for m in models:
        incs.append(f"-I{m.out_dir}")
        for src in m.sources:
            if src.name.startswith("edc_"):
                kernels.setdefault(src.name, src)
            else:
                sources.append(src)
    cmd = ["gcc", *CFLAGS, *incs[:1], *[str(p) for p in sorted(kernels.values())]]
    # each model's own files see only their own folder first
    objs: list[str] = []
    build_dir = lib.parent / (lib.stem + "_obj")
    build_dir.mkdir(parents=True, exist_ok=True)
    for m in models:
        for src in m.sources:
            if src.name.startswith("edc_"):
                continue
            obj = build_dir / f"{m.name}__{src.stem}.o"
            objs.append(str(obj))
            subprocess.run(
                ["gcc", "-std=c99", "-O2", "-fPIC", "-c", "-Wall", "-Wextra", "-Werror",
                 f"-I{m.out_dir}", str(src), "-o", str(obj)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
    cmd += objs + ["-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


class Runner:
    """Calls one compiled model in a loaded library."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.lib = lib
        self.name = name
        getattr(lib, f"{name}_input").restype = ctypes.c_void_p
        getattr(lib, f"{name}_output").restype = ctypes.c_void_p
        if getattr(lib, f"{name}_init")() != 0:
            raise RuntimeError("init failed")

    def __call__(
        self, inputs: Sequence[np.ndarray], out_specs: Sequence[tuple[tuple[int, ...], np.dtype]]
    ) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            buf = np.ascontiguousarray(x).tobytes()
            ptr = getattr(self.lib, f"{self.name}_input")(i)
            ctypes.memmove(ptr, buf, len(buf))
        if getattr(self.lib, f"{self.name}_invoke")() != 0:
            raise RuntimeError("invoke failed")
        outs = []
        for i, (shape, dt) in enumerate(out_specs):
            n = int(np.prod(shape)) * np.dtype(dt).itemsize
            ptr = getattr(self.lib, f"{self.name}_output")(i)
            outs.append(np.frombuffer(ctypes.string_at(ptr, n), dtype=dt).reshape(shape).copy())
        return outs


def build_unity(models: Sequence[CompiledModel], lib: Path, *, opt: str = "-O1") -> ctypes.CDLL:
    """Like :func:`build`, for many small models: one translation unit that includes every
    model's sources (their symbols all carry the model name), the kernels compiled once."""
    kernels: dict[str, Path] = {}
    lines = []
    for m in models:
        for src in m.sources:
            if src.name.startswith("edc_"):
                kernels.setdefault(src.name, src)
            else:
                lines.append(f'#include "{src}"')
    unity = lib.with_suffix(".c")
    unity.write_text("\n".join(lines) + "\n")
    kdir = next(iter(kernels.values())).parent
    cmd = ["gcc", "-std=c99", opt, "-fPIC", "-shared", "-Wall", "-Werror", f"-I{kdir}",
           str(unity), *[str(p) for p in sorted(kernels.values())], "-o", str(lib)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))
