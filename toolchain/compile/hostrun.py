"""Build compiled models (toolchain.compile output) with the host gcc and call them via ctypes.

For tests and benchmarks on the host (hls4ml-style: the generated C runs in-process). Several
models can go into one shared library: their symbols carry the model name, and the kernel
sources are the same files for every model, so they are compiled once. :func:`build` compiles
each model's files separately (``-O2``, every warning an error); :func:`build_unity` puts
many small models into one translation unit (fast for hundreds of single-op test models).
Raises CompileError when gcc is missing or fails (its output in the message).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolchain.compile import CompiledModel
from toolchain.errors import CompileError

WARNINGS = ("-Wall", "-Wextra", "-Werror")


def have_gcc() -> bool:
    return shutil.which("gcc") is not None


def _gcc(args: list[str]) -> None:
    if not have_gcc():
        raise CompileError("gcc not found", hint="install gcc (Debian: apt-get install gcc)")
    proc = subprocess.run(["gcc", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompileError(f"gcc failed:\n{proc.stderr.strip()[-4000:]}")


def _split(models: Sequence[CompiledModel]) -> tuple[dict[str, Path], list[tuple[str, Path]]]:
    kernels: dict[str, Path] = {}
    own: list[tuple[str, Path]] = []
    for m in models:
        for src in m.sources:
            if src.name.startswith("edc_"):
                kernels.setdefault(src.name, src)
            else:
                own.append((m.name, src))
    return kernels, own


def build(models: Sequence[CompiledModel], lib: Path, *, opt: str = "-O2") -> ctypes.CDLL:
    """Compile every model's sources (kernels once) into the shared library ``lib``; load it."""
    kernels, own = _split(models)
    objs = lib.parent / f"{lib.stem}_obj"
    objs.mkdir(parents=True, exist_ok=True)
    files = []
    for name, src in [*[("", k) for k in sorted(kernels.values())], *own]:
        obj = objs / f"{name}__{src.stem}.o"
        _gcc(["-std=c99", opt, "-fPIC", *WARNINGS, f"-I{src.parent}", "-c", str(src),
              "-o", str(obj)])  # fmt: skip
        files.append(str(obj))
    _gcc(["-shared", *files, "-o", str(lib)])
    return ctypes.CDLL(str(lib))


def build_unity(models: Sequence[CompiledModel], lib: Path, *, opt: str = "-O1") -> ctypes.CDLL:
    """Like :func:`build`, for many small models: one translation unit that includes every
    model's own sources, plus the kernels compiled once."""
    kernels, own = _split(models)
    unity = lib.with_suffix(".c")
    unity.write_text("".join(f'#include "{src}"\n' for _, src in own))
    kdir = next(iter(kernels.values())).parent if kernels else lib.parent
    _gcc(["-std=c99", opt, "-fPIC", "-shared", *WARNINGS, f"-I{kdir}", str(unity),
          *[str(p) for p in sorted(kernels.values())], "-o", str(lib)])  # fmt: skip
    return ctypes.CDLL(str(lib))


class Runner:
    """Calls one compiled model in a loaded library: ``runner(inputs, output_specs)``."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.lib = lib
        self.name = name
        self._input = getattr(lib, f"{name}_input")
        self._output = getattr(lib, f"{name}_output")
        self._invoke = getattr(lib, f"{name}_invoke")
        self._input.restype = ctypes.c_void_p
        self._output.restype = ctypes.c_void_p
        if getattr(lib, f"{name}_init")() != 0:
            raise CompileError(f"{name}_init failed")

    def __call__(
        self,
        inputs: Sequence[np.ndarray],
        out_specs: Sequence[tuple[tuple[int, ...], np.dtype | type]],
    ) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            buf = np.ascontiguousarray(x).tobytes()
            ctypes.memmove(self._input(i), buf, len(buf))
        if self._invoke() != 0:
            raise CompileError(f"{self.name}_invoke failed")
        outs = []
        for i, (shape, dt) in enumerate(out_specs):
            n = int(np.prod(shape)) * np.dtype(dt).itemsize
            raw = ctypes.string_at(self._output(i), n)
            outs.append(np.frombuffer(raw, dtype=dt).reshape(shape).copy())
        return outs

    def invoke(self) -> None:
        """One inference on whatever the inputs hold (for timing)."""
        self._invoke()
