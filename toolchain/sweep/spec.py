"""The ``[sweep]`` table of a project file: axes, constraint sets, options — and the points.

Format (docs/project.md, docs/sweep.md)::

    [sweep]
    dir = "out/sweep"                 # sweep.json, sweep.html, points/, store/ (default)
    store = "/shared/edgedeploy"      # the shared stage store (default: <dir>/store)
    cpus_per_point = 1                # the CPUs Ray reserves for a point's stages
    max_retries = 2                   # re-runs of a point whose worker or node died
    exclusive_targets = ["host-tflm"] # bench one point at a time there (devices always are)

    [sweep.axes]                      # any key of the project schema: a list of values
    prune.ratio = [0.25, 0.5, 0.75]
    quantization.activations = ["int8", "int16"]
    target.name = ["mps2-an386", "mps2-an500"]

    [[sweep.constraints]]             # one recommended point per set
    name = "small"
    accuracy_min = 95.0               # int8 accuracy, percent
    sqnr_min = 30.0                   # dB
    flash_max = 131072                # bytes (the linked image, else the emit estimate)
    ram_max = 65536                   # bytes
    latency_max = 150.0               # in the bench's unit (us on host-tflm, ...)
    prefer = "accuracy"               # what the recommendation optimises among the feasible

The points are the full grid of the axes, in a fixed order. Each point is the project file
with its axis values set, validated by :func:`toolchain.project.parse_project` like any project
file — so an axis works for every key the schema knows, and a bad value fails at load time
naming the axis and the point. Nothing heavy is imported here.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import EdgeDeployError, ProjectFileError
from toolchain.fsutil import to_json
from toolchain.pipeline.cache import digest
from toolchain.project import TOP_KEYS, Project, _Table, find_project, parse_project

#: what a constraint set can bound: key → (metric, "min" | "max")
BOUNDS: dict[str, tuple[str, str]] = {
    "accuracy_min": ("accuracy", "min"),
    "sqnr_min": ("sqnr_db", "min"),
    "flash_max": ("flash_bytes", "max"),
    "ram_max": ("ram_bytes", "max"),
    "latency_max": ("latency", "max"),
}
#: the metrics a recommendation can prefer, and which way is better
PREFER: dict[str, str] = {
    "accuracy": "max",
    "sqnr_db": "max",
    "latency": "min",
    "flash_bytes": "min",
    "ram_bytes": "min",
}
MAX_POINTS = 4096


@dataclass(frozen=True)
class ConstraintSet:
    """Bounds a point must meet (None: unbounded) and the metric to optimise among those that
    do (:data:`PREFER`)."""

    name: str
    bounds: tuple[tuple[str, str, float], ...] = ()  # (metric, "min" | "max", value)
    prefer: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "prefer": self.prefer}
        for key, (metric, way) in BOUNDS.items():
            for m, w, v in self.bounds:
                if (m, w) == (metric, way):
                    out[key] = v
        return out


@dataclass(frozen=True)
class Point:
    """One setting of the axes: ``settings`` maps ``table.key`` to its value."""

    index: int
    settings: tuple[tuple[str, Any], ...]

    @property
    def id(self) -> str:
        """Stable across runs (a hash of the settings): names the point's folder."""
        return "p" + digest(dict(self.settings))[:10]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.settings) or "(base)"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "label": self.label, "settings": dict(self.settings)}  # fmt: skip


@dataclass(frozen=True)
class SweepSpec:
    """A validated ``[sweep]`` table with the project it sweeps."""

    path: Path
    root: Path
    base: Mapping[str, Any]  # the project file's TOML without [sweep]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    constraints: tuple[ConstraintSet, ...]
    dir: Path
    store: Path
    cpus_per_point: float = 1.0
    max_retries: int = 2
    exclusive_targets: tuple[str, ...] = ()
    points: tuple[Point, ...] = field(default=())

    def project(self, point: Point) -> Project:
        """The point's project (validated)."""
        return point_project(self.base, point, root=self.root, source=str(self.path))

    def fingerprint(self) -> str:
        """What a finished point's result depends on besides its settings: the base project."""
        return digest(to_json(self.base))[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": str(self.path),
            "axes": {k: list(v) for k, v in self.axes},
            "constraints": [c.to_dict() for c in self.constraints],
            "dir": str(self.dir),
            "store": str(self.store),
            "cpus_per_point": self.cpus_per_point,
            "max_retries": self.max_retries,
            "exclusive_targets": list(self.exclusive_targets),
            "points": len(self.points),
        }


def _show(v: Any) -> str:
    return v if isinstance(v, str) else to_json(v).strip()


def load_sweep(
    path: str | os.PathLike[str] | None = None, *, check_files: bool = True
) -> SweepSpec:
    """Read a project file and validate its ``[sweep]`` table and every point of the grid.
    Raises :class:`ProjectFileError` (file, table, key, what is allowed)."""
    p = find_project(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectFileError(f"{p}: not valid TOML: {exc}", hint="see docs/project.md") from exc
    return parse_sweep(data, root=p.resolve().parent, source=str(p), check_files=check_files)


def parse_sweep(
    data: Mapping[str, Any],
    *,
    root: str | os.PathLike[str],
    source: str,
    check_files: bool = True,
) -> SweepSpec:
    """Validate the ``[sweep]`` table of the parsed project file ``data`` (see the module doc)."""
    rootp = Path(root).resolve()
    if "sweep" not in data:
        raise ProjectFileError(
            f"{source}: no [sweep] table",
            hint="add [sweep.axes] with a list of values per project key, e.g. "
            "prune.ratio = [0.25, 0.5] (docs/sweep.md)",
        )
    base = {k: v for k, v in data.items() if k != "sweep"}
    base_project = parse_project(base, root=rootp, source=source, check_files=check_files)
    t = _Table(data["sweep"], "sweep", source)
    out_default = base_project.out_dir / "sweep"
    dir_ = t.get("dir", "str")
    store = t.get("store", "str")
    sweep_dir = _path(dir_, rootp) if dir_ else out_default
    spec_kw: dict[str, Any] = {
        "cpus_per_point": t.get("cpus_per_point", "float", 1.0, lo=0.01, hi=1024),
        "max_retries": t.get("max_retries", "int", 2, lo=0, hi=100),
        "exclusive_targets": tuple(t.get("exclusive_targets", "list[str]", [])),
    }
    axes = _axes(t, t.get("axes", "table", None, required=True))
    constraints = _constraints(t, t.data.get("constraints"))
    t.known.append("constraints")
    t.finish()
    spec = SweepSpec(
        path=Path(source).resolve(),
        root=rootp,
        base=base,
        axes=axes,
        constraints=constraints,
        dir=sweep_dir,
        store=_path(store, rootp) if store else sweep_dir / "store",
        **spec_kw,
    )
    points = grid(axes)
    for pt in points:  # every point is a valid project, or the sweep does not start
        try:
            point_project(base, pt, root=rootp, source=source, check_files=check_files)
        except EdgeDeployError as exc:
            raise ProjectFileError(
                f"{source}: [sweep.axes]: the point {pt.label} is not a valid project: "
                f"{exc.message}",
                hint=exc.hint or "fix the axis values (docs/project.md lists what each key allows)",
            ) from exc
    return dataclasses.replace(spec, points=points)


def _path(text: str, root: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else root / p


def _axes(t: _Table, table: dict[str, Any]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``[sweep.axes]``: dotted keys (``prune.ratio``) or sub-tables, each a non-empty list."""
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else k, sub)
        else:
            flat.append((prefix, v))

    walk("", table)
    if not flat:
        raise t.error(
            "has no axes", "axes", hint="e.g. prune.ratio = [0.25, 0.5] under [sweep.axes]"
        )
    out = []
    for key, values in flat:
        where = key.split(".")
        if len(where) == 1 and where[0] in TOP_KEYS:
            raise t.error(f"axis {key!r}: name a key of the table, e.g. {key}.KEY", "axes")
        if where[0] not in TOP_KEYS or where[0] == "sweep":
            allowed = ", ".join(k for k in TOP_KEYS if k != "sweep")
            raise t.error(
                f"axis {key!r}: {where[0]!r} is not a table of the project file",
                "axes",
                hint=f"axes are TABLE.KEY with TABLE one of: {allowed}",
            )
        if not isinstance(values, list) or not values:
            raise t.error(
                f"axis {key!r}: expected a non-empty list of values, got {values!r}",
                "axes",
                hint=f"e.g. {key} = [a, b]",
            )
        if len({to_json(v) for v in values}) != len(values):
            raise t.error(f"axis {key!r}: a value appears twice: {values!r}", "axes")
        out.append((key, tuple(values)))
    n = 1
    for _, values in out:
        n *= len(values)
    if n > MAX_POINTS:
        raise t.error(f"the grid has {n} points (at most {MAX_POINTS})", "axes")
    return tuple(out)


def _constraints(t: _Table, raw: Any) -> tuple[ConstraintSet, ...]:
    if raw is None:
        return (ConstraintSet("best accuracy"),)
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        c = _Table(item, f"sweep.constraints #{i + 1}" if isinstance(raw, list) else "sweep.constraints", t.source)  # fmt: skip
        name = c.get("name", "str", f"set {i + 1}")
        bounds = []
        for key, (metric, way) in BOUNDS.items():
            v = c.get(key, "float", None, lo=0)
            if v is not None:
                bounds.append((metric, way, v))
        prefer = c.get("prefer", "str", "accuracy", allowed=tuple(PREFER))
        c.finish()
        out.append(ConstraintSet(name=name, bounds=tuple(bounds), prefer=prefer))
    if len({c.name for c in out}) != len(out):
        raise t.error("two constraint sets have the same name", "constraints")
    return tuple(out)


def grid(axes: tuple[tuple[str, tuple[Any, ...]], ...]) -> tuple[Point, ...]:
    """Every combination of the axes' values (the last axis varies fastest)."""
    keys = [k for k, _ in axes]
    combos = itertools.product(*(v for _, v in axes))
    return tuple(Point(i, tuple(zip(keys, c, strict=True))) for i, c in enumerate(combos))


def apply(base: Mapping[str, Any], point: Point) -> dict[str, Any]:
    """The project file's data with the point's settings written in."""
    data = copy.deepcopy(dict(base))
    for key, value in point.settings:
        *tables, leaf = key.split(".")
        node = data
        for name in tables:
            nxt = node.setdefault(name, {})
            if not isinstance(nxt, dict):
                raise ProjectFileError(f"axis {key!r}: {name!r} is not a table in the project")
            node = nxt
        node[leaf] = value
    return data


def point_project(
    base: Mapping[str, Any],
    point: Point,
    *,
    root: Path,
    source: str,
    check_files: bool = True,
) -> Project:
    """Validate ``base`` with ``point``'s settings into a :class:`Project`."""
    return parse_project(apply(base, point), root=root, source=source, check_files=check_files)
