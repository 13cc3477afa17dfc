"""report.json's content → ``report.html``: one self-contained page (inline CSS, plots as
embedded PNGs, no script, no font or file fetched), rendered with Jinja2 (autoescaped,
``StrictUndefined``) from ``templates/report.html.j2``.

The numbers are formatted here (:func:`view`); the template only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolchain.report import plots

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"

#: stage status → CSS class (colour) in the page
STATUS_CLASS = {
    "ok": "ok",
    "cached": "cached",
    "skipped": "skipped",
    "failed": "failed",
    "interrupted": "failed",
    "not run": "notrun",
}


def render(report: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(v=view(report))


# --- formatting -------------------------------------------------------------------------------


def nbytes(n: Any) -> str:
    """``44,848 B (43.8 KiB)``; ``—`` for None."""
    if n is None:
        return "—"
    n = int(n)
    if n >= 1024 * 1024:
        return f"{n:,} B ({n / 1048576:.2f} MiB)"
    if n >= 1024:
        return f"{n:,} B ({n / 1024:.1f} KiB)"
    return f"{n:,} B"


def kib(n: Any) -> str:
    if n is None:
        return "—"
    n = float(n)
    return f"{n / 1048576:.2f} MiB" if n >= 1048576 else f"{n / 1024:.1f} KiB"


def num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 10_000 or (v.is_integer() and abs(v) >= 1000):  # 3,240 not 3240
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def unit_label(unit: Any) -> str:
    """How a latency unit is written for people (``us`` → ``µs``)."""
    return {"us": "µs"}.get(str(unit), str(unit)) if unit else ""


def pct(v: Any) -> str:
    return "—" if v is None else f"{float(v):.2f}%"


def change(before: Any, after: Any) -> str:
    if not before or after is None:
        return ""
    return f"{100.0 * (after - before) / before:+.0f}%"


# --- the view ---------------------------------------------------------------------------------


def view(r: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, formatted; sections are None when their stage gave
    nothing (the template then says why)."""
    s = r.get("summary") or {}
    stages = [
        {**st, "css": STATUS_CLASS.get(st["status"], "notrun"), "time": _secs(st)}
        for st in r.get("stages") or []
    ]
    return {
        "title": f"edgedeploy · {(r.get('project') or {}).get('name', 'report')}",
        "project": r.get("project") or {},
        "status": r.get("status"),
        "failed": r.get("failed_stage"),
        "created": r.get("created"),
        "seconds": f"{float(r.get('seconds') or 0):.1f} s",
        "version": r.get("edgedeploy"),
        "schema": r.get("schema"),
        "out_dir": r.get("out_dir"),
        "target": r.get("target") or {},
        "bench_target": r.get("bench_target"),
        "stages": stages,
        "skipped": {st["name"]: "; ".join(st.get("notes") or []) for st in stages if st["status"] != "ok" and st["status"] != "cached"},
        "cards": _cards(s, r),
        "memory": _memory(r),
        "fidelity": _fidelity(r),
        "prune": _prune(r.get("prune")),
        "latency": _latency(r.get("bench")),
        "per_op": _per_op(r.get("bench"), r.get("convert")),
        "model": _model(r.get("convert"), r),
        "firmware": _firmware(r.get("firmware")),
        "environment": _environment(r.get("environment") or {}, r.get("bench")),
    }  # fmt: skip


def _secs(st: Mapping[str, Any]) -> str:
    if st["status"] == "cached":
        built = st.get("built_seconds")
        return f"{st['seconds']:.2f} s" + (f" (built in {built:.1f} s)" if built else "")
    if st["status"] in ("ok", "failed", "interrupted"):
        return f"{st['seconds']:.1f} s"
    return ""


def _cards(s: Mapping[str, Any], r: Mapping[str, Any]) -> list[dict[str, str]]:
    cards = []
    if s.get("tflite_bytes") is not None:
        sub = "int8 .tflite"
        if s.get("tflite_bytes_unpruned"):
            sub += f", {change(s['tflite_bytes_unpruned'], s['tflite_bytes'])} vs unpruned"
        cards.append(
            {"label": "Model", "value": kib(s["tflite_bytes"]), "sub": sub, "tone": "blue"}
        )
    if s.get("arena_bytes") is not None:
        cards.append(
            {
                "label": "Tensor arena",
                "value": kib(s["arena_bytes"]),
                "sub": "with margin, TFLM",
                "tone": "teal",
            }
        )
    built = s.get("image_flash_bytes") is not None  # the linked image, else the estimate
    flash = s["image_flash_bytes"] if built else s.get("flash_total_bytes")
    ram_used = s.get("image_ram_bytes") if built else s.get("ram_total_bytes")
    if flash is not None and s.get("flash_budget_bytes"):
        share = flash / s["flash_budget_bytes"]
        ram = (
            ram_used / s["ram_budget_bytes"]
            if ram_used is not None and s.get("ram_budget_bytes")
            else None
        )
        cards.append(
            {
                "label": "Fits the target" if s.get("fits") else "Over budget",
                "value": f"{share:.1%} flash",
                "sub": (f"{ram:.1%} RAM, " if ram is not None else "")
                + str((r.get("target") or {}).get("name"))
                + (" · linked image" if built else " · estimate"),
                "tone": "green" if s.get("fits") else "red",
            }
        )
    if s.get("accuracy_int8") is not None:
        cards.append(
            {
                "label": "int8 accuracy",
                "value": pct(s["accuracy_int8"]),
                "sub": f"float {pct(s.get('accuracy_float'))}",
                "tone": "green",
            }
        )
    if s.get("min_sqnr_db") is not None:
        cards.append(
            {
                "label": "SQNR",
                "value": f"{s['min_sqnr_db']:.1f} dB",
                "sub": "int8 vs float, worst output"
                + (
                    f"; input-dependent part {s['min_sqnr_input_dependent_db']:.1f} dB"
                    if s.get("min_sqnr_input_dependent_db") is not None
                    else ""
                ),
                "tone": "blue",
            }
        )
    if s.get("latency_median") is not None:
        value, unit = num(s["latency_median"]), unit_label(s.get("latency_unit"))
        runs = f"{s.get('latency_runs')} runs on {s.get('runner')}"
        wide = len(value) + len(unit) > 10  # "1,761,560 instructions" overflows the card
        cards.append(
            {
                "label": "Median latency",
                "value": value if wide else f"{value} {unit}",
                "sub": f"{unit}, {runs}" if wide else runs,
                "tone": "amber",
            }
        )
    return cards  # fmt: skip


def _memory(r: Mapping[str, Any]) -> dict[str, Any] | None:
    emit = r.get("emit") or {}
    mem = emit.get("memory")
    fw = r.get("firmware") or {}
    image: Mapping[str, Any] = (fw.get("build") or {}).get("memory") or {}
    if not mem and not image:
        return None
    rows = []
    for kind in ("flash", "ram"):
        part = (mem or {}).get(kind) or {}
        for item in part.get("items") or []:
            rows.append({"kind": "RAM" if kind == "ram" else "Flash", "name": item["name"],
                         "bytes": nbytes(item["bytes"]), "note": item.get("note", "")})  # fmt: skip
    totals = []
    for kind in ("flash", "ram"):
        part = (mem or {}).get(kind)
        if part:
            totals.append({
                "kind": "RAM" if kind == "ram" else "Flash",
                "total": kib(part.get("total")),
                "budget": kib(part.get("budget")),
                "headroom": kib(part.get("headroom")),
                "fits": part.get("fits"),
            })  # fmt: skip
    for kind in ("flash", "ram") if image else ():  # the built firmware, from its ELF
        used, budget = image.get(f"{kind}_used_bytes"), image.get(f"{kind}_budget_bytes")
        totals.append({
            "kind": ("RAM" if kind == "ram" else "Flash") + ", linked image",
            "total": kib(used),
            "budget": kib(budget),
            "headroom": kib(budget - used) if budget is not None and used is not None else "—",
            "fits": budget is None or (used or 0) <= budget,
        })  # fmt: skip
    arena = emit.get("arena") or {}
    measured = (r.get("bench") or {}).get("memory") or {}  # the device's own figures
    return {
        "chart": plots.memory_chart(mem) if mem else None,
        "rows": rows,
        "totals": totals,
        "estimated": bool((mem or {}).get("estimated")),
        "family": (mem or {}).get("runtime_family"),
        "arena": {
            "size": nbytes(arena.get("size")),
            "minimum": nbytes(arena.get("minimum")),
            "margin": arena.get("margin"),
            "recorded": nbytes(arena.get("recorded")),
            "measured_on": arena.get("measured_on"),
        }
        if arena
        else None,
        "image": image or None,
        "runtime": fw.get("runtime"),
        "measured": {
            k: measured.get(k)
            for k in ("ram_measured_bytes", "ram_data_bss_bytes", "stack_peak_bytes")
        }
        if measured.get("ram_measured_bytes") is not None
        else None,
    }


def _data_source(r: Mapping[str, Any], what: str) -> str:
    """Where the convert stage's ``what`` data came from, as the project names it."""
    conv = r.get("convert") or {}
    src = str(((conv.get("data") or {}).get(what) or {}).get("source") or "")
    data = (r.get("project") or {}).get("data") or {}
    named = data.get(what) or (data.get("calibration") if what == "validation" else None)
    if (not src or src.startswith(("array", "<"))) and named:
        return str(named)
    return src or "—"


def _varying(f: Mapping[str, Any]) -> str:
    """The input-dependent SQNR with the share of output power that varies with the input."""
    share = f.get("input_dependent_power")
    if f.get("sqnr_input_dependent_db") is None:
        return "— (constant output)" if share == 0.0 else "—"
    return f"{num(f['sqnr_input_dependent_db'])} ({pct(100 * share) if share is not None else '—'})"


def _fidelity(r: Mapping[str, Any]) -> dict[str, Any] | None:
    conv = r.get("convert")
    if not conv:
        return None
    val = r.get("validate") or {}
    outputs = [
        {"name": name, "sqnr": num(f.get("sqnr_db")), "cosine": num(f.get("cosine"), 6),
         "max_abs_err": num(f.get("max_abs_err")), "top1": pct(100 * f["top1_agreement"]) if f.get("top1_agreement") is not None else "—",
         "sqnr_varying": _varying(f),
         "samples": num(f.get("samples"))}
        for name, f in sorted((conv.get("fidelity") or {}).items())
    ]  # fmt: skip
    acc = conv.get("accuracy")
    worst = [
        {"layer": w.get("module") or w.get("onnx_node") or w.get("op"), "op": w.get("op"),
         "sqnr": num(w.get("sqnr_db")), "drop": num(w.get("drop_db"))}
        for w in conv.get("worst_layers") or []
    ]  # fmt: skip
    litert = [
        {"kernels": c.get("kernels"), "status": c.get("status"), "compared": num(c.get("compared")),
         "mismatches": num(c.get("mismatches")), "max": num(c.get("max_abs_diff")), "reason": c.get("reason") or ""}
        for c in val.get("litert_check") or []
    ]  # fmt: skip
    gates = [
        {
            "name": g["name"],
            "value": num(g.get("value")),
            "limit": g["limit"],
            "passed": g["passed"],
        }
        for g in val.get("gates") or []
    ]
    return {
        "outputs": outputs,
        "accuracy": acc,
        "tflm": val.get("tflm"),
        "worst": worst,
        "chart": plots.layers_chart(conv.get("layers") or []),
        "litert": litert,
        "gates": gates,
        "samples": ((conv.get("data") or {}).get("validation") or {}).get("samples"),
        "source": _data_source(r, "validation"),
    }


def _prune(p: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not p:
        return None
    rows = []
    for label, b, a, fmt in (
        ("parameters", "params_before", "params_after", num),
        ("MACs", "macs_before", "macs_after", num),
        ("int8 .tflite", "tflite_bytes_before", "tflite_bytes_after", kib),
        ("TFLM arena", "arena_bytes_before", "arena_bytes_after", kib),
    ):
        if p.get(b) is not None:
            rows.append(
                {
                    "label": label,
                    "before": fmt(p.get(b)),
                    "after": fmt(p.get(a)),
                    "change": change(p.get(b), p.get(a)),
                }
            )
    metric, i8 = p.get("metric"), p.get("int8")
    if metric:
        rows.append(_metric_row(f"float {metric['name']}", metric))
    if i8:
        rows.append(_metric_row(f"int8 {i8['metric']}", i8, dB=i8["metric"] != "accuracy"))
    groups = [
        {
            "root": g.get("root"),
            "before": g.get("channels_before"),
            "after": g.get("channels_after"),
            "members": ", ".join(g.get("members") or []),
        }
        for g in p.get("groups") or []
    ]
    ft = p.get("finetune")
    return {
        "method": p.get("method"), "ratio": p.get("ratio"), "importance": p.get("importance"),
        "rows": rows, "groups": groups, "chart": plots.prune_chart(p),
        "finetune": ft, "note": p.get("note"), "budget": p.get("budget"),
    }  # fmt: skip


def _metric_row(label: str, m: Mapping[str, Any], *, dB: bool = False) -> dict[str, str]:
    """A before/after row of a metric: accuracy (0..1) as %, else the value (dB)."""
    accuracy = "accuracy" in label

    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        return f"{100.0 * v:.2f}%" if accuracy else f"{num(v)}{' dB' if dB else ''}"

    return {
        "label": label,
        "before": fmt(m.get("before")),
        "after": fmt(m.get("after")),
        "change": "",
    }


def _latency(b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not b:
        return None
    s = b.get("summary") or {}
    unit = unit_label(b.get("unit", ""))
    stats = [
        ("median", s.get("median")), ("mean", s.get("mean")), ("std", s.get("std")),
        ("min", s.get("min")), ("p10", s.get("p10")), ("p90", s.get("p90")), ("p99", s.get("p99")),
        ("max", s.get("max")),
    ]  # fmt: skip
    oc = b.get("output_check")
    return {
        "unit": unit,
        "note": b.get("unit_note"),
        "runner": b.get("runner"),
        "target": b.get("target"),
        "runs": len(b.get("samples") or []),
        "warmup": b.get("warmup"),
        "stats": [{"name": k, "value": num(v)} for k, v in stats],
        "ci": f"[{num(s.get('ci_low'))}, {num(s.get('ci_high'))}] ({float(s.get('ci_level', 0.95)):.0%})" if s else "—",
        "chart": plots.latency_histogram(b.get("samples") or [], unit, s),
        "output_check": oc,
        "warnings": [w for w in b.get("warnings") or [] if not w.startswith("no per-op timing")],
        "memory": {k: nbytes(v) for k, v in (b.get("memory") or {}).items() if k.endswith("_bytes") and v is not None},
    }  # fmt: skip


def _per_op(b: Mapping[str, Any] | None, conv: Mapping[str, Any] | None) -> dict[str, Any]:
    per_op: Sequence[Mapping[str, Any]] = (b or {}).get("per_op") or []
    unit = unit_label((b or {}).get("unit", ""))
    why = next(
        (w for w in (b or {}).get("warnings") or [] if w.startswith("no per-op timing")), None
    )
    if why:
        why = why.removeprefix("no per-op timing: ")
    if not b:
        why = "no benchmark ran"
    rows = [
        {"index": o.get("index"), "name": o.get("name"), "value": num(o.get("per_inference")),
         "share": f"{o['share']:.1%}" if o.get("share") is not None else "—"}
        for o in sorted(per_op, key=lambda o: -float(o.get("per_inference") or 0.0))
    ]  # fmt: skip
    return {
        "unit": unit,
        "rows": rows,
        "chart": plots.per_op_chart(per_op, unit) if per_op else None,
        "why": None if per_op else (why or "the device reported no per-operator times"),
        "ops_chart": None if per_op else plots.ops_chart((conv or {}).get("ops") or {}),
    }


def _model(conv: Mapping[str, Any] | None, r: Mapping[str, Any]) -> dict[str, Any] | None:
    if not conv:
        return None
    source = ((r.get("project") or {}).get("model") or {}).get("source")
    if r.get("prune"):
        source = f"{source} (pruned: prune/{r['prune'].get('model_file', '')})"
    lint = conv.get("lint") or {}

    def tensors(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"name": t.get("name"), "shape": "×".join(map(str, t.get("shape") or [])), "dtype": t.get("dtype"),
             "layout": f"{t.get('torch_layout')} → {t.get('layout')}", "scale": num(t.get("scale"), 6),
             "zero_point": num(t.get("zero_point"))}
            for t in items
        ]  # fmt: skip

    ops = conv.get("ops") or {}
    return {
        "source": source or (conv.get("model") or {}).get("source"),
        "bytes": nbytes(conv.get("tflite_bytes")),
        "layout_ops": {k: v for k, v in lint.items() if k != "problems"},
        "transposes_folded": conv.get("transposes_folded"),
        "sha256": conv.get("tflite_sha256"),
        "inputs": tensors(conv.get("inputs") or []),
        "outputs": tensors(conv.get("outputs") or []),
        "ops": ", ".join(
            f"{k} ×{v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        "options": conv.get("options") or {},
        "timings": conv.get("timings_s") or {},
    }


def _firmware(fw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not fw:
        return None
    build = fw.get("build") or {}
    return {
        "project": fw.get("project"),
        "target": fw.get("target"),
        "fw": fw.get("fw"),
        "files": len(fw.get("files") or []),
        "library": fw.get("tflm_library"),
        "built": bool(build.get("elf")),
        "elf": build.get("elf"),
        "skipped": build.get("skipped"),
        "memory": build.get("memory"),
    }


def _environment(env: Mapping[str, Any], bench: Mapping[str, Any] | None) -> dict[str, Any]:
    rows = [
        ("edgedeploy", env.get("edgedeploy")),
        ("Python", env.get("python")),
        ("platform", env.get("platform")),
        ("CPU", f"{env.get('cpu')} ({env.get('cpu_count')} logical cores)"),
    ]
    rows += [(k, v) for k, v in (env.get("packages") or {}).items()]
    rows += [(k, v or "not installed") for k, v in (env.get("tools") or {}).items()]
    device = []
    for k, v in ((bench or {}).get("device") or {}).items():
        if k == "info" and isinstance(v, Mapping):
            device += [(f"info.{ik}", iv) for ik, iv in v.items()]
        elif k != "model_sha256":
            device.append((k, v))
    for k, v in ((bench or {}).get("environment") or {}).items():
        device.append((f"host.{k}", v))
    return {
        "rows": [{"k": k, "v": "—" if v is None else str(v)} for k, v in rows],
        "device": [{"k": k, "v": "—" if v is None else str(v)} for k, v in device],
    }
