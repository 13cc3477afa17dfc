"""Parse the output of TFLite's ``benchmark_model`` tool (tensorflow/lite/tools/benchmark).

What the tool prints, in any version since TF 2.1 (samples in ``tests/data/benchmark_model/``):

* two statistics lines, the warm-up run and the regular runs, in microseconds:
  ``count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929`` (newer builds
  append ``p5=... median=... p95=...``; values may be written ``2.95034e+06``; a run whose
  values were all equal prints ``count=N curr=X(all same)``, a single run ``count=1 curr=X``);
* ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference
  (avg): ...`` (older builds: ``Average inference timings in us: Warmup: ..., Init: ...,
  Inference: ...``);
* memory lines (``Memory footprint delta from the start of the tool (MB): init=... overall=...``
  or ``Peak memory footprint (MB): init=... overall=...``);
* with ``--enable_op_profiling=true``, tab-separated tables: ``Run Order`` (one row per
  node), ``Top by Computation Time`` and ``Summary by node type``; newer builds first print
  the same tables for the initialization (``Profiling Info for Benchmark Initialization:``)
  and then ``Operator-wise Profiling Info for Regular Benchmark Runs:``.

Lines may carry a log prefix (``INFO: ``, or logcat's ``I tflite  : ``); it is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from toolchain.errors import BenchmarkError

_PREFIX = re.compile(
    r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+)?(?:[VDIWEF] [\w.-]+\s*: )|"
    r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE): "
)
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KV = re.compile(rf"(\w+)=({_NUM})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
    rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})"
)
_OLD_TIMINGS = re.compile(
    rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), Inference: ({_NUM})"
)
_MEMORY = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init=({_NUM}) overall=({_NUM})"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_DELEGATE = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]+)\)")
_PARAM = re.compile(r"^([A-Za-z#][^:\[\]]*): \[(.*)\]$")
_REGULAR_OPS = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_INIT_OPS = "Profiling Info for Benchmark Initialization:"


def _strip(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


@dataclass(frozen=True)
class RunStats:
    """One statistics line, in microseconds. ``first``/``std`` are absent when all values
    were equal; ``extra`` holds what newer builds add (``p5``, ``median``, ``p95``)."""

    count: int
    curr: float | None = None
    first: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def mean_us(self) -> float | None:
        """The mean of the runs (``avg``, or the common value when all were the same)."""
        return self.avg if self.avg is not None else self.curr


@dataclass(frozen=True)
class OpRow:
    """One row of an op-profiling table (times in milliseconds, shares in percent)."""

    node_type: str
    avg_ms: float
    first_ms: float | None = None
    start_ms: float | None = None
    percent: float | None = None
    cdf_percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None
    count: int | None = None  # summary-by-node-type rows: how many nodes of this type
    name: str = ""


@dataclass
class BenchmarkModelOutput:
    """Everything parsed from one ``benchmark_model`` run."""

    inference: RunStats
    warmup: RunStats | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    model_size_mb: float | None = None
    memory_mb: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    delegations: list[tuple[str, int, int]] = field(default_factory=list)  # (delegate, nodes, of)
    run_order: list[OpRow] = field(default_factory=list)
    by_node_type: list[OpRow] = field(default_factory=list)


def _stats(line: str) -> RunStats:
    body = line.replace("(all same)", "")
    kv = {k: float(v) for k, v in _KV.findall(body)}
    known = ("count", "curr", "first", "min", "max", "avg", "std")
    return RunStats(
        count=int(kv.get("count", 0)),
        curr=kv.get("curr"),
        first=kv.get("first"),
        min=kv.get("min"),
        max=kv.get("max"),
        avg=kv.get("avg"),
        std=kv.get("std"),
        extra={k: v for k, v in kv.items() if k not in known},
    )


def _num(text: str) -> float | None:
    text = text.strip().rstrip("%")
    try:
        return float(text)
    except ValueError:
        return None


def _tables(lines: list[str]) -> tuple[list[OpRow], list[OpRow]]:
    """The first ``Run Order`` and ``Summary by node type`` tables in ``lines``."""
    run_order: list[OpRow] = []
    by_type: list[OpRow] = []
    i = 0
    while i < len(lines):
        title = lines[i]
        target = None
        if "= Run Order =" in title and not run_order:
            target = run_order
        elif "= Summary by node type =" in title and not by_type:
            target = by_type
        if target is None or i + 1 >= len(lines):
            i += 1
            continue
        columns = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", lines[i + 1])]
        i += 2
        while i < len(lines) and lines[i].strip() and "=====" not in lines[i]:
            cells = [c.strip() for c in lines[i].strip("\n").split("\t")]
            cells = [c for c in cells if c != ""]
            i += 1
            if len(cells) != len(columns):
                continue
            row = dict(zip(columns, cells, strict=True))
            avg = _num(row.get("avg ms", ""))
            if avg is None:
                continue
            name = row.get("name", "")
            if name.startswith("[") and "]" in name:
                inner, _, suffix = name[1:].partition("]")
                name = inner + suffix
            times = _num(row.get("times called", ""))
            count = _num(row.get("count", ""))
            target.append(
                OpRow(
                    node_type=row.get("node type", ""),
                    avg_ms=avg,
                    first_ms=_num(row.get("first", "")),
                    start_ms=_num(row.get("start", "")),
                    percent=_num(row.get("%") or row.get("avg %") or ""),
                    cdf_percent=_num(row.get("cdf%") or row.get("cdf %") or ""),
                    mem_kb=_num(row.get("mem kb", "")),
                    times_called=int(times) if times is not None else None,
                    count=int(count) if count is not None else None,
                    name=name,
                )
            )
    return run_order, by_type


def parse_benchmark_model_output(text: str) -> BenchmarkModelOutput:
    """Parse ``benchmark_model``'s stdout+stderr. Raises :class:`BenchmarkError` when it has
    neither a statistics line nor an average-timings line (the tool failed, or this is not its
    output). Without a statistics line, ``inference`` holds only the average (``count`` 0)."""
    lines = [_strip(raw) for raw in text.splitlines()]
    stats = [_stats(line) for line in lines if line.startswith("count=")]
    out = BenchmarkModelOutput(
        inference=stats[-1] if stats else RunStats(count=0),
        warmup=stats[-2] if len(stats) > 1 else None,
    )
    for line in lines:
        if m := _TIMINGS.search(line):
            out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us = (
                float(g) for g in m.groups()
            )
        elif m := _OLD_TIMINGS.search(line):
            out.warmup_avg_us, out.init_us, out.inference_avg_us = (float(g) for g in m.groups())
        elif m := _MEMORY.search(line):
            out.memory_mb["init"], out.memory_mb["overall"] = float(m[1]), float(m[2])
        elif m := _PEAK.search(line):
            out.memory_mb["peak"] = float(m[1])
        elif m := _DELEGATE.search(line):
            out.delegations.append((m[3], int(m[1]), int(m[2])))
        elif line.startswith("The input model file size (MB): "):
            out.model_size_mb = _num(line.rsplit(":", 1)[1])
        elif (m := _PARAM.match(line)) and not line.startswith("count="):
            out.params.setdefault(m[1].strip(), m[2])
    if not stats:
        if out.inference_avg_us is None:
            errors = [ln for ln in lines if "ERROR" in ln or "Failed" in ln or "failed" in ln]
            raise BenchmarkError(
                "benchmark_model printed no timing statistics"
                + (": " + " | ".join(errors[-5:]) if errors else ""),
            )
        out.inference = RunStats(count=0, avg=out.inference_avg_us)  # count not printed
    if _REGULAR_OPS in lines:
        section = lines[lines.index(_REGULAR_OPS) + 1 :]
    elif _INIT_OPS in lines:  # only the initialization tables: no per-op run times
        section = []
    else:
        section = lines
    out.run_order, out.by_node_type = _tables(section)
    return out
