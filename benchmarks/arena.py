"""The smallest TFLM arena of a .tflite, as the benchmarks report it.

Uses :func:`toolchain.emit.arena.search_arena` (the emit stage's search) when it is there;
otherwise a plain bisection in a child process: an arena size works when the tflite-micro
Python interpreter both allocates the model and invokes it once (bisected to the byte).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()

def works(n):
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=n)
        interp.invoke()
        return True
    except RuntimeError:
        return False

hi = 4096
while not works(hi):
    hi *= 2
    if hi > 1 << 28:
        raise SystemExit("no arena up to 256 MiB works")
lo = 0  # does not work (or untested)
while hi - lo > 1:
    mid = (lo + hi) // 2
    if works(mid):
        hi = mid
    else:
        lo = mid
print(json.dumps({"minimum": hi}))
"""


def smallest_arena(path: str | os.PathLike[str], *, timeout_s: float = 300.0) -> tuple[int, str]:
    """(bytes, method): the smallest arena that allocates and invokes ``path``."""
    try:
        from toolchain.emit import arena
    except ImportError:  # the emit stage is not there: search here
        pass
    else:
        return int(arena.search_arena(Path(path)).minimum), "toolchain.emit.arena.search_arena"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"arena search failed for {path}: {proc.stderr[-2000:]}")
    line = proc.stdout.strip().splitlines()[-1]
    return int(json.loads(line)["minimum"]), "bisection (benchmarks.arena)"
