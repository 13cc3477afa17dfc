"""The report's plots: matplotlib figures rendered off-screen (Agg, no pyplot, no display)
to PNG ``data:`` URIs that the HTML embeds, so the page needs no network and no other file.

Every function takes plain report data and returns a data URI, or None when there is nothing
to draw. Colours follow the page's palette (:data:`PALETTE`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

PALETTE = {
    "blue": "#2563eb",
    "teal": "#0d9488",
    "amber": "#d97706",
    "red": "#dc2626",
    "green": "#16a34a",
    "slate": "#64748b",
    "light": "#cbd5e1",
    "ink": "#0f172a",
}
_SERIES = ("#2563eb", "#0d9488", "#d97706", "#7c3aed", "#db2777", "#64748b")
DPI = 110


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(PALETTE["light"])
    ax.tick_params(colors=PALETTE["ink"], labelsize=8.5)
    ax.xaxis.label.set_color(PALETTE["slate"])
    ax.yaxis.label.set_color(PALETTE["slate"])
    ax.grid(axis="x", color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)


def _uri(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _count(v: float) -> str:
    """A latency/tick value for people: ``1,761,560``, ``176.7`` — no ``1.762e+06``."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _plain_x(ax: Any) -> None:
    """x tick labels written with :func:`_count` (no offset, no scientific notation)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _count(v)))


def _kb(n: float) -> str:
    return f"{n / 1048576:,.2f} MiB" if n >= 1048576 else f"{n / 1024:,.1f} KiB"


def memory_chart(memory: Mapping[str, Any]) -> str | None:
    """Flash and RAM, one row each: a stacked bar of the items against the target's budget
    (a budget far beyond the use is stated at the right edge instead of squeezing the bar)."""
    rows: list[tuple[str, Mapping[str, Any]]] = [
        (k, memory[k]) for k in ("flash", "ram") if memory.get(k) and memory[k].get("items")
    ]
    if not rows:
        return None
    fig = _figure(7.2, 0.55 + 0.95 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    colors: dict[str, str] = {}
    for ax, (kind, part) in zip(axes, rows, strict=True):
        _style(ax)
        left = 0.0  # KiB
        for item in part["items"]:
            name = str(item["name"])
            color = colors.setdefault(name, _SERIES[len(colors) % len(_SERIES)])
            ax.barh(0, item["bytes"] / 1024, left=left, color=color, height=0.55, label=name)
            left += item["bytes"] / 1024
        budget = part["budget"] / 1024 if part.get("budget") else None
        share = f"  —  {left / budget:.1%} of the budget, {_kb(budget * 1024)}" if budget else ""
        ax.set_title(f"{'RAM' if kind == 'ram' else 'Flash'}: {_kb(left * 1024)}{share}", fontsize=9,
                     loc="left", color=PALETTE["ink"])  # fmt: skip
        if budget and budget <= 3 * left:
            ax.set_xlim(0, max(budget, left) * 1.06)
            ax.axvline(budget, color=PALETTE["red"], linewidth=2)
            ax.annotate("budget", (budget, 0.36), ha="right", va="bottom", fontsize=8,
                        color=PALETTE["red"], xytext=(-3, 0), textcoords="offset points")  # fmt: skip
        else:
            ax.set_xlim(0, left * 1.45)
            if budget:
                ax.annotate(f"budget {_kb(budget * 1024)} →", (1.0, 0.5), xycoords="axes fraction",
                            ha="right", va="center", fontsize=8, color=PALETTE["red"])  # fmt: skip
        ax.set_yticks([])
        ax.set_ylim(-0.5, 0.5)
        ax.set_xlabel("KiB", fontsize=8, labelpad=1)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels, strict=True):
        seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), fontsize=8, frameon=False, ncols=min(6, len(seen)),
               loc="outside lower center")  # fmt: skip
    return _uri(fig)


def layers_chart(layers: Sequence[Mapping[str, Any]], *, worst: int = 3) -> str | None:
    """Per-layer SQNR (int8 vs float, dB) in graph order; the ``worst`` layers that lose the
    most highlighted."""
    rows = [r for r in layers if r.get("sqnr_db") is not None]
    if not rows:
        return None
    ranked = sorted(rows, key=lambda r: -(r.get("drop_db") or 0.0))[:worst]
    bad = {id(r) for r in ranked if (r.get("drop_db") or 0.0) > 0}
    fig = _figure(7.2, 0.6 + 0.3 * len(rows))
    ax = fig.add_subplot()
    _style(ax)
    labels = [f"{r.get('module') or r.get('op')} · {r.get('op')}" for r in rows]
    vals = [float(r["sqnr_db"]) for r in rows]
    cols = [PALETTE["amber"] if id(r) in bad else PALETTE["blue"] for r in rows]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, vals, color=cols, height=0.6)
    for yi, v, r in zip(y, vals, rows, strict=True):
        drop = r.get("drop_db")
        note = f"{v:.1f} dB"
        if drop:
            note += f"  (−{drop:.1f} dB here)" if drop > 0 else f"  (+{-drop:.1f} dB here)"
        ax.annotate(note, (v, yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8, color=PALETTE["ink"])  # fmt: skip
    ax.set_yticks(y, labels)
    ax.set_xlabel("SQNR of the layer's output, int8 vs float (dB) — higher is better")
    ax.set_xlim(0, max(vals) * 1.3)
    return _uri(fig)


def prune_chart(report: Mapping[str, Any]) -> str | None:
    """After/before of parameters, MACs, int8 bytes and arena, as percentages."""
    pairs = [
        ("parameters", "params_before", "params_after"),
        ("MACs", "macs_before", "macs_after"),
        ("int8 .tflite bytes", "tflite_bytes_before", "tflite_bytes_after"),
        ("TFLM arena", "arena_bytes_before", "arena_bytes_after"),
    ]
    rows = [
        (lab, report[b], report[a])
        for lab, b, a in pairs
        if report.get(b) and report.get(a) is not None
    ]
    if not rows:
        return None
    fig = _figure(7.2, 0.6 + 0.42 * len(rows))
    ax = fig.add_subplot()
    _style(ax)
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [100.0] * len(rows), color="#e2e8f0", height=0.62, label="before (100%)")
    pct = [100.0 * a / b for _, b, a in rows]
    ax.barh(y, pct, color=PALETTE["teal"], height=0.62, label="after")
    for yi, p, (_, b, a) in zip(y, pct, rows, strict=True):
        ax.annotate(f"{p:.0f}%  ({b:,} → {a:,})", (p, yi), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8, color=PALETTE["ink"])  # fmt: skip
    ax.set_yticks(y, [lab for lab, _, _ in rows])
    ax.set_xlim(0, 135)
    ax.set_xlabel("after pruning, % of before")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _uri(fig)


def latency_histogram(
    samples: Sequence[float], unit: str, stats: Mapping[str, Any] | None
) -> str | None:
    """The per-inference distribution with the median and p90 marked."""
    if not samples:
        return None
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    fig = _figure(7.2, 2.9)
    ax = fig.add_subplot()
    _style(ax)
    ax.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    p10, p50, p90 = (float(v) for v in np.percentile(x, [10, 50, 90]))
    lo = float(x.min())
    hi = min(float(x.max()), p90 + 3.0 * max(p90 - p10, 0.02 * p50))  # outliers go to one bar
    slow = x[x > hi]
    if hi > lo:
        bins = np.linspace(lo, hi, 36)
    else:  # every run the same (QEMU -icount): one bar in the middle of a narrow range
        pad = max(1.0, 0.01 * abs(lo))
        bins = np.linspace(lo - pad, lo + pad, 37)
    ax.hist(x[x <= hi], bins=bins, color=PALETTE["blue"], edgecolor="white", linewidth=0.4)
    if slow.size:
        width = bins[1] - bins[0]
        ax.bar(hi + 1.5 * width, slow.size, width=width, color=PALETTE["red"],
               label=f"{slow.size} slower, up to {_count(slow.max())}")  # fmt: skip
    if stats:
        for key, color, label in (
            ("median", PALETTE["green"], "median"),
            ("p90", PALETTE["amber"], "p90"),
        ):
            v = stats.get(key)
            if v is not None:
                ax.axvline(v, color=color, linewidth=1.8, label=f"{label} {_count(v)} {unit}")
    _plain_x(ax)
    ax.set_xlabel(f"per-inference latency ({unit})")
    ax.set_ylabel("inferences")
    same = ", every one the same" if x.size > 1 and hi <= lo else ""
    ax.set_title(f"{x.size} inferences{same}", fontsize=9, color=PALETTE["slate"], loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _uri(fig)


def per_op_chart(per_op: Sequence[Mapping[str, Any]], unit: str, *, top: int = 15) -> str | None:
    """Time per operator per inference (the ``top`` slowest), with its share of the total."""
    rows = sorted(per_op, key=lambda o: -float(o.get("per_inference") or 0.0))[:top]
    if not rows:
        return None
    fig = _figure(7.2, 0.6 + 0.3 * len(rows))
    ax = fig.add_subplot()
    _style(ax)
    y = list(range(len(rows)))[::-1]
    vals = [float(o.get("per_inference") or 0.0) for o in rows]
    ax.barh(y, vals, color=PALETTE["teal"], height=0.6)
    for yi, v, o in zip(y, vals, rows, strict=True):
        share = o.get("share")
        ax.annotate(_count(v) + (f"  ({share:.0%})" if share is not None else ""), (v, yi),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, [f"#{o.get('index')} {o.get('name')}" if o.get("index") is not None else str(o.get("name")) for o in rows])  # fmt: skip
    ax.set_xlabel(f"{unit} per inference")
    ax.set_xlim(0, max(vals) * 1.25 if max(vals) > 0 else 1)
    _plain_x(ax)
    return _uri(fig)


def ops_chart(ops: Mapping[str, int]) -> str | None:
    """How many of each operator the model has (a count, not a time)."""
    if not ops:
        return None
    rows = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
    fig = _figure(7.2, 0.6 + 0.28 * len(rows))
    ax = fig.add_subplot()
    _style(ax)
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [n for _, n in rows], color=PALETTE["slate"], height=0.6)
    ax.set_yticks(y, [name for name, _ in rows])
    ax.set_xlabel("operators in the int8 graph (count)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _uri(fig)
