"""The project file (``edgedeploy.toml``): one model's whole trip, validated into frozen dataclasses.

The format is documented in ``docs/project.md``; ``edgedeploy init`` writes a commented
starter (:mod:`toolchain.starter`). Tables and their keys::

    name = "digits"                  # optional, default: the project folder's name
    [model]        source, weights, input_shape, name
    [data]         calibration, validation, validation_labels, train, train_labels
    [prune]        enabled, ratio, method, importance, layer_ratios, keep, keep_first, keep_last,
                   round_to, global_ranking, epochs, lr, batch_size, loss, finetune_fn,
                   max_accuracy_drop, min_sqnr_db, max_ratio, model_format
    [quantization] activations, input_dtype, output_dtype, per_channel, calibration_samples,
                   validation_samples, min_sqnr_db, max_accuracy_drop, onnx2tf_timeout_s,
                   quantize_timeout_s
    [target]       name, arena_margin, golden_count
    [firmware]     enabled, runtime, tflm_lib, tflm_include, jobs
    [bench]        enabled, target, runner, runs, warmup, port, profile_ops, timeout_s,
                   adb_serial, ssh_host, ssh_key, benchmark_binary, threads
    [output]       dir, html
    [sweep]        axes, constraints, ... (validated by toolchain.sweep; ``run`` ignores it)

Relative paths (model files, ``file.py:fn`` references, data files, the TFLM library, the
output folder) are relative to the project file's folder; ``package.module:fn`` references
stay as they are. Validation happens at load time: an unknown key, a wrong type, a value out
of range, a missing file or an unknown target raises
:class:`~toolchain.errors.ProjectFileError` naming the file, the table, the key and what is
allowed. Nothing heavy is imported here (no torch, no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain import pyref
from toolchain.convert.options import QuantOptions
from toolchain.errors import EdgeDeployError, ProjectFileError
from toolchain.targets import TRANSPORTS, load_target

DEFAULT_NAME = "edgedeploy.toml"
TOP_KEYS = (
    "name",
    "model",
    "data",
    "prune",
    "quantization",
    "target",
    "firmware",
    "bench",
    "output",
    "sweep",  # read by `edgedeploy sweep` (toolchain.sweep.spec); a run ignores it
)

#: allowed values, mirrored from toolchain.prune (kept here so loading a project, or building the
#: CLI's parser, imports no torch; tests/host/test_prune.py checks they agree)
PRUNE_METHODS = ("structured", "unstructured")
PRUNE_IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")
FINETUNE_LOSSES = ("auto", "ce", "mse", "distill")
MODEL_FORMATS = ("pt2", "torchscript")
#: a bench runner is a transport kind (it overrides the target profile's)
BENCH_RUNNERS = TRANSPORTS


# --- the dataclasses ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSection:
    """``source``: ``path/file.py:factory``, ``package.module:factory``, ``model.pt`` or
    ``model.pt2`` (paths made absolute). ``input_shapes``: one batch-1 shape per input, or
    None when the model brings ``example_inputs``. ``name``: the C symbol stem of the
    emitted arrays (default: the project name)."""

    source: str
    weights: Path | None = None
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    name: str | None = None


@dataclass(frozen=True)
class DataSection:
    """Data sources in PyTorch layout (see docs/project.md): files, folders or ``module:fn``."""

    calibration: str
    validation: str | None = None
    validation_labels: str | None = None
    train: str | None = None
    train_labels: str | None = None


@dataclass(frozen=True)
class PruneSection:
    """Structured or unstructured pruning with optional fine-tuning; ``ratio = "fit"`` searches
    the ratio for the target's flash/RAM budget (``max_accuracy_drop`` / ``min_sqnr_db``)."""

    enabled: bool = False
    ratio: float | None = None  # None: "fit"
    method: str = "structured"
    importance: str = "l1"
    layer_ratios: tuple[tuple[str, float], ...] = ()
    keep: tuple[str, ...] = ()
    keep_first: bool = True
    keep_last: bool = False
    round_to: int | None = None
    global_ranking: bool = False
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    loss: str = "auto"
    finetune_fn: str | None = None
    max_accuracy_drop: float | None = None
    min_sqnr_db: float | None = None
    max_ratio: float = 0.9
    model_format: str = "pt2"

    @property
    def fit(self) -> bool:
        return self.enabled and self.ratio is None


@dataclass(frozen=True)
class QuantizationSection:
    """The converter's options (every field of :class:`~toolchain.convert.QuantOptions` is a
    key of ``[quantization]``) and the fidelity gates the validate stage applies."""

    options: QuantOptions = field(default_factory=QuantOptions)
    min_sqnr_db: float | None = None
    max_accuracy_drop: float | None = None


@dataclass(frozen=True)
class TargetSection:
    """The deployment target (a profile name or .toml path) and the emit stage's options."""

    name: str
    arena_margin: str = "4%"
    golden_count: int = 3


@dataclass(frozen=True)
class FirmwareSection:
    """Render a firmware project for an MCU target and build it: ``runtime`` "compiled" (the
    model as plain C, no library), "tflm" (built when ``tflm_lib`` is given), or None
    (compiled when the compiler supports every operator and no ``tflm_lib`` is given)."""

    enabled: bool = True
    runtime: str | None = None
    tflm_lib: Path | None = None
    tflm_include: tuple[Path, ...] = ()
    jobs: int = 2


@dataclass(frozen=True)
class BenchSection:
    """Where and how to measure. ``target`` defaults to [target] name; ``runs``/``warmup``
    default to that profile's ``[benchmark]`` values."""

    enabled: bool = True
    target: str | None = None
    runner: str | None = None
    runs: int | None = None
    warmup: int | None = None
    port: str | None = None
    profile_ops: bool = True
    timeout_s: float = 30.0
    adb_serial: str | None = None
    ssh_host: str | None = None
    ssh_key: Path | None = None
    benchmark_binary: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class OutputSection:
    """Where the stage folders and the reports go."""

    dir: Path
    html: bool = True


@dataclass(frozen=True)
class Project:
    """A validated project file. ``root`` is the folder relative paths were resolved against."""

    name: str
    root: Path
    model: ModelSection
    data: DataSection
    target: TargetSection
    prune: PruneSection = field(default_factory=PruneSection)
    quantization: QuantizationSection = field(default_factory=QuantizationSection)
    firmware: FirmwareSection = field(default_factory=FirmwareSection)
    bench: BenchSection = field(default_factory=BenchSection)
    output: OutputSection | None = None
    path: Path | None = None

    @property
    def out_dir(self) -> Path:
        return self.output.dir if self.output is not None else self.root / "out"

    @property
    def bench_target(self) -> str:
        return self.bench.target or self.target.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings), as recorded in report.json."""
        return _jsonable(asdict(self))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- loading --------------------------------------------------------------------------------


def find_project(path: str | os.PathLike[str] | None = None) -> Path:
    """The project file: ``path`` itself, ``path/edgedeploy.toml`` for a folder, or
    ``./edgedeploy.toml``. Raises :class:`ProjectFileError` when there is none."""
    p = Path(path) if path is not None else Path(DEFAULT_NAME)
    if p.is_dir():
        p = p / DEFAULT_NAME
    if not p.is_file():
        raise ProjectFileError(
            f"no project file at {p}",
            hint="write one with `edgedeploy init --model MODEL` or name the file: "
            "edgedeploy run path/to/edgedeploy.toml",
        )
    return p


def load_project(
    path: str | os.PathLike[str] | None = None, *, check_files: bool = True
) -> Project:
    """Read and validate a project file (see the module doc). ``check_files=False`` skips the
    checks that files and targets exist (for tools that only rewrite the file)."""
    p = find_project(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ProjectFileError(f"{p}: not a text file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError(
            f"{p}: not valid TOML: {exc}",
            hint="see docs/project.md for the format; strings need quotes",
        ) from exc
    return parse_project(data, root=p.resolve().parent, source=str(p), check_files=check_files)


class _Table:
    """Typed access to one table, with errors that name the file, table and key."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            raise self.error(f"must be a table ([{where}]), got {_tname(data)}")
        self.data: dict[str, Any] = data
        self.known: list[str] = []

    def error(self, msg: str, key: str | None = None, hint: str | None = None) -> ProjectFileError:
        at = f"[{self.where}]" + (f" {key}" if key else "") if self.where else (key or "")
        return ProjectFileError(
            f"{self.source}: {at}: {msg}" if at else f"{self.source}: {msg}", hint=hint
        )

    def get(
        self,
        key: str,
        kind: str,
        default: Any = None,
        *,
        required: bool = False,
        allowed: tuple[Any, ...] | None = None,
        lo: float | None = None,
        hi: float | None = None,
        hi_open: bool = False,
    ) -> Any:
        """``kind``: str | int | float | bool | list[str] | table. Numbers are range-checked
        (``lo`` ≤ v ≤ ``hi``, or < ``hi`` with ``hi_open``)."""
        self.known.append(key)
        if key not in self.data:
            if required:
                raise self.error("is required", key, hint=f"add {key} = ... to [{self.where}]")
            return default
        v = self.data[key]
        ok = {
            "str": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "list[str]": isinstance(v, list) and all(isinstance(x, str) for x in v),
            "table": isinstance(v, dict),
        }[kind]
        if not ok:
            want = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false",
                    "list[str]": "a list of strings", "table": "a table"}[kind]  # fmt: skip
            raise self.error(f"expected {want}, got {v!r} ({_tname(v)})", key)
        if allowed is not None and v not in allowed:
            raise self.error(
                f"{v!r} is not allowed", key, hint="allowed: " + ", ".join(map(str, allowed))
            )
        if kind in ("int", "float"):
            if lo is not None and v < lo:
                raise self.error(f"must be at least {lo:g}, got {v}", key)
            if hi is not None and (v >= hi if hi_open else v > hi):
                raise self.error(
                    f"must be {'below' if hi_open else 'at most'} {hi:g}, got {v}", key
                )
        return float(v) if kind == "float" else v

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self.known]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, self.known, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            raise self.error(
                f"unknown key {k!r}"
                + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""),
                hint=f"{guess}allowed keys{f' in [{self.where}]' if self.where else ''}: "
                + ", ".join(self.known),
            )


def _tname(v: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)  # fmt: skip


def _resolve_path(text: str, root: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (root / p)


def resolve_source(text: str, root: Path) -> str:
    """A model or data source with its file part made absolute: ``file.py:fn``, ``file.npz:key``
    and plain paths are resolved against ``root``; ``package.module:fn`` is kept."""
    parts = pyref.split(text)
    if parts is not None:
        target, name = parts
        if target.endswith(".py"):
            return f"{_resolve_path(target, root)}:{name}"
        return text  # a dotted module reference
    head, sep, key = text.rpartition(":")
    if sep and head.endswith(".npz"):
        return f"{_resolve_path(head, root)}:{key}"
    return str(_resolve_path(text, root))


def _source_file(source: str) -> Path | None:
    """The file a resolved source needs (None for a dotted module reference)."""
    parts = pyref.split(source)
    if parts is not None:
        return Path(parts[0]) if parts[0].endswith(".py") else None
    head, sep, _ = source.rpartition(":")
    if sep and head.endswith(".npz"):
        return Path(head)
    return Path(source)


def parse_project(
    data: Mapping[str, Any],
    *,
    root: str | os.PathLike[str],
    source: str = DEFAULT_NAME,
    check_files: bool = True,
) -> Project:
    """Validate the parsed TOML ``data`` of a project file whose folder is ``root``."""
    rootp = Path(root).resolve()
    top = _Table(dict(data), "", source)
    top.known = list(TOP_KEYS)
    top.finish()  # unknown tables first: a typo in a table name explains a missing table
    for k in ("model", "data", "target"):
        if k not in data:
            raise ProjectFileError(
                f"{source}: the [{k}] table is required",
                hint=f"add [{k}] (see docs/project.md; `edgedeploy init` writes a starter)",
            )
    name = top.get("name", "str", rootp.name) or rootp.name
    tables = {k: top.get(k, "table", {}) for k in TOP_KEYS if k != "name"}

    def src(t: _Table, key: str, *, required: bool = False) -> str | None:
        v = t.get(key, "str", required=required)
        if v is None:
            return None
        if not v.strip():
            raise t.error("must not be empty", key)
        resolved = resolve_source(v, rootp)
        f = _source_file(resolved)
        if check_files and f is not None and not f.exists():
            raise t.error(
                f"file not found: {f}", key, hint="paths are relative to the project file"
            )
        return resolved

    def path(t: _Table, key: str) -> Path | None:
        v = t.get(key, "str")
        if v is None or not v.strip():
            return None
        p = _resolve_path(v, rootp)
        if check_files and not p.exists():
            raise t.error(
                f"file not found: {p}", key, hint="paths are relative to the project file"
            )
        return p

    # [model]
    t = _Table(tables["model"], "model", source)
    model_source = src(t, "source", required=True) or ""
    weights = path(t, "weights")
    shapes = _shapes(t)
    sym = t.get("name", "str")
    if sym is not None and not sym.isidentifier():
        raise t.error(
            f"{sym!r} is not a C identifier", "name", hint="letters, digits, _; no leading digit"
        )
    t.finish()
    model = ModelSection(source=model_source, weights=weights, input_shapes=shapes, name=sym)

    # [data]
    t = _Table(tables["data"], "data", source)
    calib = src(t, "calibration", required=True) or ""
    d = DataSection(
        calibration=calib,
        validation=src(t, "validation"),
        validation_labels=src(t, "validation_labels"),
        train=src(t, "train"),
        train_labels=src(t, "train_labels"),
    )
    t.finish()
    if d.validation_labels and not d.validation:
        raise t.error("validation_labels needs validation data", "validation_labels")
    if d.train_labels and not d.train:
        raise t.error("train_labels needs train data", "train_labels")

    prune = _prune(_Table(tables["prune"], "prune", source), src)
    quant = _quantization(_Table(tables["quantization"], "quantization", source))
    if quant.max_accuracy_drop is not None and not d.validation_labels:
        raise ProjectFileError(
            f"{source}: [quantization] max_accuracy_drop needs labelled validation data",
            hint="set [data] validation and validation_labels",
        )

    # [target]
    t = _Table(tables["target"], "target", source)
    target = TargetSection(
        name=_target_ref(t.get("name", "str", required=True), rootp),
        arena_margin=t.get("arena_margin", "str", "4%"),
        golden_count=t.get("golden_count", "int", 3, lo=0, hi=64),
    )
    t.finish()
    if check_files:
        _check_target(t, "name", target.name)
    _check_margin(t, target.arena_margin)

    # [firmware]
    t = _Table(tables["firmware"], "firmware", source)
    lib = path(t, "tflm_lib")
    includes = tuple(_resolve_path(s, rootp) for s in t.get("tflm_include", "list[str]", []))
    firmware = FirmwareSection(
        enabled=t.get("enabled", "bool", True),
        runtime=t.get("runtime", "str", None, allowed=("compiled", "tflm")),
        tflm_lib=lib,
        tflm_include=includes,
        jobs=t.get("jobs", "int", 2, lo=1, hi=256),
    )
    t.finish()
    if includes and lib is None:
        raise t.error("tflm_include without tflm_lib", "tflm_include", hint="set tflm_lib as well")
    if lib is not None and not includes:
        raise t.error(
            "tflm_lib without tflm_include",
            "tflm_lib",
            hint='set tflm_include = ["/path/to/tflite-micro"]: the checkout the library was '
            "built from (its headers must match the library; docs/tflm-library.md)",
        )

    bench = _bench(_Table(tables["bench"], "bench", source), path, rootp)
    if check_files and bench.target is not None:
        _check_target(_Table({}, "bench", source), "target", bench.target)

    # [output]
    t = _Table(tables["output"], "output", source)
    output = OutputSection(
        dir=_resolve_path(t.get("dir", "str", "out"), rootp),
        html=t.get("html", "bool", True),
    )
    t.finish()
    return Project(
        name=name,
        root=rootp,
        model=model,
        data=d,
        target=target,
        prune=prune,
        quantization=quant,
        firmware=firmware,
        bench=bench,
        output=output,
        path=Path(source).resolve() if Path(source).is_file() else None,
    )


def _shapes(t: _Table) -> tuple[tuple[int, ...], ...] | None:
    t.known.append("input_shape")
    v = t.data.get("input_shape")
    if v is None:
        return None
    nested = v if isinstance(v, list) and v and all(isinstance(x, list) for x in v) else [v]
    shapes = []
    for s in nested:
        if not (isinstance(s, list) and s and all(_positive_int(x) for x in s)):
            raise t.error(
                f"expected a list of positive integers, got {v!r}",
                "input_shape",
                hint="e.g. [1, 3, 32, 32] (batch first), or [[1, 49, 10], [1, 8]] for two inputs",
            )
        if s[0] != 1:
            raise t.error(f"the batch size must be 1, got {s}", "input_shape")
        shapes.append(tuple(s))
    return tuple(shapes)


def _positive_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _prune(t: _Table, src: Any) -> PruneSection:
    enabled = t.get("enabled", "bool", "ratio" in t.data)
    raw_ratio = t.data.get("ratio")
    t.known.append("ratio")
    ratio: float | None = None
    if raw_ratio is None:
        if enabled:
            raise t.error(
                "is required when pruning is enabled",
                "ratio",
                hint='e.g. ratio = 0.5, or ratio = "fit" to search it for the target\'s budget',
            )
    elif raw_ratio == "fit":
        ratio = None
    elif (
        isinstance(raw_ratio, int | float)
        and not isinstance(raw_ratio, bool)
        and 0 <= raw_ratio < 1
    ):
        ratio = float(raw_ratio)
    else:
        raise t.error(
            f'expected a number in [0, 1) or "fit", got {raw_ratio!r}',
            "ratio",
            hint='0.5 removes half the channels of each prunable layer; "fit" searches the '
            "smallest ratio that fits the target's flash and RAM",
        )
    lr_table = t.get("layer_ratios", "table", {})
    layer_ratios = []
    for k, v in lr_table.items():
        if not (isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1):
            raise t.error(f"layer {k!r}: expected a ratio in [0, 1), got {v!r}", "layer_ratios")
        layer_ratios.append((k, float(v)))
    s = PruneSection(
        enabled=enabled,
        ratio=ratio if enabled else None,
        method=t.get("method", "str", "structured", allowed=PRUNE_METHODS),
        importance=t.get("importance", "str", "l1", allowed=PRUNE_IMPORTANCE),
        layer_ratios=tuple(sorted(layer_ratios)),
        keep=tuple(t.get("keep", "list[str]", [])),
        keep_first=t.get("keep_first", "bool", True),
        keep_last=t.get("keep_last", "bool", False),
        round_to=t.get("round_to", "int", None, lo=1, hi=1024),
        global_ranking=t.get("global_ranking", "bool", False),
        epochs=t.get("epochs", "int", 3, lo=0, hi=10_000),
        lr=t.get("lr", "float", 1e-3, lo=1e-12),
        batch_size=t.get("batch_size", "int", 32, lo=1),
        loss=t.get("loss", "str", "auto", allowed=FINETUNE_LOSSES),
        finetune_fn=src(t, "finetune_fn"),
        max_accuracy_drop=t.get("max_accuracy_drop", "float", None, lo=0),
        min_sqnr_db=t.get("min_sqnr_db", "float", None),
        max_ratio=t.get("max_ratio", "float", 0.9, lo=0, hi=1, hi_open=True),
        model_format=t.get("model_format", "str", "pt2", allowed=MODEL_FORMATS),
    )
    t.finish()
    if s.fit and s.max_accuracy_drop is None and s.min_sqnr_db is None:
        raise t.error(
            'ratio = "fit" needs a quality floor',
            "ratio",
            hint="set max_accuracy_drop (percentage points) or min_sqnr_db in [prune]",
        )
    return s


def _quantization(t: _Table) -> QuantizationSection:
    """[quantization]: the QuantOptions fields by their type, then the gates."""
    kinds = {"str": "str", "str | None": "str", "bool": "bool", "int": "int", "float": "float",
             "float | None": "float"}  # fmt: skip
    kw = {}
    for f in dataclasses.fields(QuantOptions):
        kind = kinds[str(f.type)]
        # counts are at least 1; floats (budgets, targets, timeouts) are checked by
        # QuantOptions itself, whose message says each one's range
        v = t.get(f.name, kind, None, lo=1 if kind == "int" else None)
        if v is not None:
            kw[f.name] = v
    try:
        options = QuantOptions(**kw)
    except EdgeDeployError as exc:  # activations / I/O types: the message lists what is allowed
        raise t.error(exc.message, hint=exc.hint) from exc
    q = QuantizationSection(
        options=options,
        min_sqnr_db=t.get("min_sqnr_db", "float", None),
        max_accuracy_drop=t.get("max_accuracy_drop", "float", None, lo=0),
    )
    t.finish()
    return q


def _bench(t: _Table, path: Any, rootp: Path) -> BenchSection:
    b = BenchSection(
        enabled=t.get("enabled", "bool", True),
        target=_target_ref(t.get("target", "str"), rootp),
        runner=t.get("runner", "str", None, allowed=BENCH_RUNNERS),
        runs=t.get("runs", "int", None, lo=1, hi=100_000),
        warmup=t.get("warmup", "int", None, lo=0, hi=100_000),
        port=t.get("port", "str"),
        profile_ops=t.get("profile_ops", "bool", True),
        timeout_s=t.get("timeout_s", "float", 30.0, lo=0.1),
        adb_serial=t.get("adb_serial", "str"),
        ssh_host=t.get("ssh_host", "str"),
        ssh_key=path(t, "ssh_key"),
        benchmark_binary=path(t, "benchmark_binary"),
        threads=t.get("threads", "int", None, lo=1, hi=256),
    )
    t.finish()
    return b


def _target_ref(name: Any, root: Path) -> Any:
    """A profile name stays; a ``.toml`` path is made absolute (relative to the project)."""
    if isinstance(name, str) and (name.endswith(".toml") or "/" in name):
        return str(_resolve_path(name, root))
    return name


def _check_target(t: _Table, key: str, name: str) -> None:
    try:
        load_target(name)
    except EdgeDeployError as exc:
        raise t.error(exc.message, key, hint=exc.hint or "see `edgedeploy targets`") from exc


def _check_margin(t: _Table, margin: str) -> None:
    from toolchain.emit.arena import ArenaMargin

    try:
        ArenaMargin.parse(margin)
    except EdgeDeployError as exc:
        raise t.error(exc.message, "arena_margin", hint='e.g. "4%", "512" or "4%+256"') from exc
