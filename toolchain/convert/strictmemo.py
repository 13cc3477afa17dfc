"""Which onnx2tf strict mode a graph needs, remembered (the TF worker's ``float_model``).

The worker runs onnx2tf with strict mode off first and, when that raises or its float model
fails the float check, again with strict mode on. A graph whose strict-off run fails (seen:
the development suite's ConvNeXt, max relative error 0.0225) pays that failing run on every
conversion and every attempt. This memo remembers the failure, so the next conversion of the
same graph goes straight to strict mode on — and reports the same
``onnx2tf_strict_fallback`` (the recorded strict-off error), so the report is unchanged.

The key is everything the strict-off verdict depends on: the sha256 of the ONNX bytes the
converter gets (after rewrites and weight rounding), the attempt's onnx2tf options, the
calibration data (the float check runs its first samples) and :func:`cache.versions`
(onnx2tf, TensorFlow, ... and edgedeploy's converter code). Entries live in this process
(a few, newest kept) and, when the conversion uses a cache folder, as small JSON files in
``<cache>/convert/.onnx2tf_strict/``. Only failures are stored: a graph whose strict-off run
works never needs an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert import cache as cache_mod
from toolchain.fsutil import atomic_write_text

log = logging.getLogger(__name__)

DIRNAME = ".onnx2tf_strict"
#: entries kept in this process
KEEP = 32
_MEMO: dict[str, dict[str, Any]] = {}


def key(onnx_bytes: bytes, onnx2tf_options: dict[str, Any], calib: Sequence[np.ndarray]) -> str:
    """The memo key of one onnx2tf run (see module doc)."""
    from toolchain.data import fingerprint

    return cache_mod.make_key(
        {
            "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "onnx2tf": onnx2tf_options,
            "calib": fingerprint(list(calib)),
            "versions": cache_mod.versions(),
            "what": "onnx2tf strict-off failure",
        }
    )


def _file(root: Path | None, k: str) -> Path | None:
    return root / DIRNAME / f"{k}.json" if root is not None else None


def lookup(k: str, root: Path | None = None) -> dict[str, Any] | None:
    """What the strict-off run of the graph with key ``k`` left, from this process or
    ``root`` (a cache's ``convert`` folder): ``{"fallback": [{"strict_mode": "off",
    "error": ...}], "names": {...}}`` (``names``: what that run added to tf_keras's
    layer-name state, see the worker); None when nothing is known."""
    hit = _MEMO.get(k)
    if hit is not None:
        return json.loads(json.dumps(hit))
    path = _file(root, k)
    if path is None or not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        entry = {
            "fallback": [{"strict_mode": str(x["strict_mode"]), "error": str(x["error"])}
                         for x in rec["fallback"]],
            "names": {"uids": [[a, int(b)] for a, b in rec["names"]["uids"]],
                      "observed": [str(n) for n in rec["names"]["observed"]]},
        }  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable or another shape: as if absent
    if rec.get("key") != k or not entry["fallback"]:
        return None
    _remember(k, entry)
    return json.loads(json.dumps(entry))


def record(k: str, meta: dict[str, Any], root: Path | None = None) -> bool:
    """Remember what the worker said (``meta``) when strict mode off failed and strict mode
    on worked; returns whether it stored anything."""
    tried = meta.get("onnx2tf_strict_fallback") or []
    names = meta.get("onnx2tf_strict_names")
    if meta.get("onnx2tf_strict_mode") != "on" or not tried or not isinstance(names, dict):
        return False
    entry = {
        "fallback": [{"strict_mode": str(x.get("strict_mode")), "error": str(x.get("error"))}
                     for x in tried],
        "names": {"uids": list(names.get("uids") or []),
                  "observed": list(names.get("observed") or [])},
    }  # fmt: skip
    _remember(k, entry)
    path = _file(root, k)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"key": k, **entry}) + "\n")
        except OSError as exc:  # a cache that cannot be written only loses the memo
            log.warning("onnx2tf strict-mode memo not written: %s", exc)
    return True


def _remember(k: str, entry: dict[str, Any]) -> None:
    _MEMO.pop(k, None)
    _MEMO[k] = entry
    while len(_MEMO) > KEEP:
        del _MEMO[next(iter(_MEMO))]


def forget() -> None:
    """Drop this process's entries (tests)."""
    _MEMO.clear()
