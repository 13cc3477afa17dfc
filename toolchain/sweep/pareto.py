"""Pareto fronts and recommendations over a sweep's finished points (pure functions).

A point's metrics (:func:`metrics` of its run report) are ``accuracy`` (int8, percent; higher
is better), ``sqnr_db`` (higher), ``latency`` (the bench's median in ``latency_unit``; lower),
``flash_bytes`` and ``ram_bytes`` (the linked firmware image when it was built, else the emit
stage's estimate; lower). A point is on the front of (accuracy, X) when no other point is at
least as good in both and better in one. Latency is only compared between points measured in
the same unit (a front per unit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolchain.sweep.spec import PREFER, ConstraintSet

#: the fronts the report draws: (x metric, y metric); y is accuracy for all three
FRONTS: tuple[tuple[str, str], ...] = (
    ("latency", "accuracy"),
    ("flash_bytes", "accuracy"),
    ("ram_bytes", "accuracy"),
)


def metrics(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The comparable numbers of one run from its report's ``summary``."""
    s = summary or {}
    acc = s.get("accuracy_int8")
    if acc is None:
        acc = s.get("accuracy_tflm")
    flash = s.get("image_flash_bytes")
    ram = s.get("image_ram_bytes")
    return {
        "accuracy": acc,
        "accuracy_float": s.get("accuracy_float"),
        "sqnr_db": s.get("min_sqnr_db"),
        "latency": s.get("latency_median"),
        "latency_unit": s.get("latency_unit"),
        "flash_bytes": flash if flash is not None else s.get("flash_total_bytes"),
        "ram_bytes": ram if ram is not None else s.get("ram_total_bytes"),
        "flash_source": "image" if flash is not None else "estimate",
        "tflite_bytes": s.get("tflite_bytes"),
        "arena_bytes": s.get("arena_bytes"),
        "params": s.get("params_after") or s.get("params_before"),
        "fits": s.get("fits"),
        "runner": s.get("runner"),
    }


def _better(way: str, a: float, b: float) -> bool:
    return a > b if way == "max" else a < b


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """``a`` at least as good as ``b`` in every metric of ``keys`` and better in one."""
    strictly = False
    for k in keys:
        way = PREFER[k]
        if _better(way, b[k], a[k]):
            return False
        if _better(way, a[k], b[k]):
            strictly = True
    return strictly


def front(points: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """Ids of the points (``{"id", "metrics"}``) not dominated in ``keys`` by another point
    with the same latency unit; points missing one of the metrics are left out. Sorted by the
    first key."""
    usable = [p for p in points if all((p.get("metrics") or {}).get(k) is not None for k in keys)]
    unit = "latency" in keys
    out = []
    for p in usable:
        m = p["metrics"]
        rivals = (
            q
            for q in usable
            if q is not p
            and (not unit or q["metrics"].get("latency_unit") == m.get("latency_unit"))  # fmt: skip
        )
        if not any(dominates(q["metrics"], m, keys) for q in rivals):
            out.append(p)
    out.sort(key=lambda p: (p["metrics"][keys[0]], p["id"]))
    return [p["id"] for p in out]


def feasible(m: Mapping[str, Any], c: ConstraintSet) -> tuple[bool, list[str]]:
    """Whether metrics ``m`` meet ``c``; the reasons when not (a missing metric fails its
    bound)."""
    why = []
    for metric, way, bound in c.bounds:
        v = m.get(metric)
        if v is None:
            why.append(f"no {metric}")
        elif (way == "min" and v < bound) or (way == "max" and v > bound):
            why.append(f"{metric} {v:g} {'<' if way == 'min' else '>'} {bound:g}")
    return not why, why


def recommend(points: Iterable[Mapping[str, Any]], c: ConstraintSet) -> dict[str, Any]:
    """The best finished point under ``c`` (by ``c.prefer``, then accuracy, latency, flash,
    RAM, id), with how many points were feasible."""
    ok = []
    for p in points:
        m = p.get("metrics") or {}
        if p.get("status") != "ok" or m.get(c.prefer) is None:
            continue
        if feasible(m, c)[0]:
            ok.append(p)

    def rank(p: Mapping[str, Any]) -> tuple[Any, ...]:
        m = p["metrics"]
        order = [c.prefer, *(k for k in ("accuracy", "latency", "flash_bytes", "ram_bytes") if k != c.prefer)]  # fmt: skip
        key: list[Any] = []
        for k in order:
            v = m.get(k)
            key.append((v is None, 0 if v is None else (-v if PREFER[k] == "max" else v)))
        return (*key, p["id"])

    ok.sort(key=rank)
    return {
        "constraints": c.to_dict(),
        "feasible": len(ok),
        "point": ok[0]["id"] if ok else None,
    }
