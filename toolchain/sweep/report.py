"""``sweep.json`` and ``sweep.html``: every point, the Pareto fronts, the recommendations.

The page is self-contained (figures are PNG ``data:`` URIs drawn off-screen with matplotlib's
Agg canvas, like :mod:`toolchain.report.plots`); the JSON holds everything the page shows.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.report.plots import PALETTE, _figure, _style, _uri
from toolchain.sweep.pareto import FRONTS, front, recommend
from toolchain.sweep.spec import SweepSpec

SCHEMA = 1
LABELS = {
    "accuracy": "int8 accuracy (%)",
    "latency": "median latency",
    "flash_bytes": "flash (bytes)",
    "ram_bytes": "RAM (bytes)",
}


def build(
    spec: SweepSpec,
    records: Sequence[Mapping[str, Any]],
    *,
    cluster: Mapping[str, Any],
    state: str,
    seconds: float,
) -> dict[str, Any]:
    """The content of sweep.json."""
    ok = [r for r in records if r.get("status") == "ok"]
    fronts = {f"{y}_vs_{x}": front(ok, (x, y)) for x, y in FRONTS}
    nodes = sorted({(r.get("node") or {}).get("node_id") or "" for r in records} - {""})
    return {
        "schema": SCHEMA,
        "edgedeploy": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": state,
        "sweep": spec.to_dict(),
        "cluster": dict(cluster),
        "seconds": round(seconds, 3),
        "counts": {
            "points": len(spec.points),
            "recorded": len(records),
            "ok": len(ok),
            "failed": sum(1 for r in records if r.get("status") == "failed"),
            "resumed": sum(1 for r in records if r.get("resumed")),
            "nodes": len(nodes),
            "stage_cache_hits": sum(
                r.get("cache_hits") or 0 for r in records if not r.get("resumed")
            ),
        },
        "fronts": fronts,
        "recommended": [recommend(ok, c) for c in spec.constraints],
        "points": list(records),
    }


def write(out_dir: Path, data: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write sweep.json and sweep.html into ``out_dir`` (atomically)."""
    j = atomic_write_json(out_dir / "sweep.json", data)
    h = atomic_write_text(out_dir / "sweep.html", render(data))
    return j, h


def front_chart(data: Mapping[str, Any], x: str, y: str = "accuracy") -> str | None:
    """Every ok point as a dot, the front as a line through its points (one figure)."""
    pts = {p["id"]: p for p in data["points"] if p.get("status") == "ok"}
    usable = [p for p in pts.values() if p["metrics"].get(x) is not None and p["metrics"].get(y) is not None]  # fmt: skip
    if not usable:
        return None
    ids = data["fronts"].get(f"{y}_vs_{x}") or []
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    _style(ax)
    ax.scatter(
        [p["metrics"][x] for p in usable],
        [p["metrics"][y] for p in usable],
        s=22,
        color=PALETTE["light"],
        edgecolors=PALETTE["slate"],
        linewidths=0.6,
        label="points",
        zorder=2,
    )
    fp = [pts[i] for i in ids if i in pts]
    if fp:
        ax.plot(
            [p["metrics"][x] for p in fp],
            [p["metrics"][y] for p in fp],
            marker="o",
            color=PALETTE["blue"],
            linewidth=1.4,
            markersize=5,
            drawstyle="steps-post",  # the staircase: what is attainable up to each x
            label="Pareto front",
            zorder=3,
        )
        at: dict[tuple[float, float], list[str]] = {}
        for p in fp:  # one label per spot: "0,1" for points with the same numbers
            at.setdefault((p["metrics"][x], p["metrics"][y]), []).append(str(p["index"]))
        for (px, py), names in at.items():
            ax.annotate(
                ",".join(sorted(names, key=int)),
                (px, py),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7.5,
                color=PALETTE["ink"],
            )
    unit = ""
    if x == "latency":
        units = sorted({str(p["metrics"].get("latency_unit")) for p in usable})
        unit = f" ({', '.join(units)})"
    ax.set_xlabel(LABELS[x] + unit)
    ax.set_ylabel(LABELS[y])
    ax.legend(fontsize=7.5, frameon=False, loc="lower right")
    return _uri(fig)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(data: Mapping[str, Any]) -> str:
    """The HTML page (no script, no network)."""
    e = html.escape
    pts = {p["id"]: p for p in data["points"]}
    c = data["counts"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>edgedeploy sweep · {e(Path(data['sweep']['project']).parent.name)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#0f172a;max-width:1200px}"
        "table{border-collapse:collapse;font-size:12.5px}td,th{padding:3px 8px;border-bottom:1px solid #e2e8f0;text-align:right}"
        "td:first-child,th:first-child,td.l{text-align:left}.front{background:#eff6ff}.failed{color:#dc2626}"
        ".figs{display:flex;flex-wrap:wrap;gap:12px}h2{margin-top:28px}</style></head><body>",
        f"<h1>Sweep of {e(data['sweep']['project'])}</h1>",
        f"<p>{c['points']} points ({c['ok']} ok, {c['failed']} failed, {c['resumed']} from an earlier run), "
        + (
            f"{data['cluster']['nodes']} Ray node(s), {c['nodes']} used; "
            if data["cluster"].get("nodes")
            else "no Ray started (nothing left to run); "
        )
        + f"{data['seconds']:.1f} s; status <b>{e(data['status'])}</b>; "
        f"stage cache hits {c['stage_cache_hits']}.</p>",
        "<h2>Recommended points</h2><table><tr><th>constraints</th><th>feasible</th><th>point</th>"
        "<th>settings</th><th>accuracy</th><th>latency</th><th>flash</th><th>RAM</th></tr>",
    ]  # fmt: skip
    for rec in data["recommended"]:
        cons = rec["constraints"]
        desc = ", ".join(f"{k} {v}" for k, v in cons.items() if k not in ("name",))
        p = pts.get(rec["point"] or "")
        m = (p or {}).get("metrics") or {}
        parts.append(
            f"<tr><td class='l'><b>{e(cons['name'])}</b> ({e(desc)})</td><td>{rec['feasible']}</td>"
            + (
                f"<td>#{p['index']}</td><td class='l'>{e(p['label'])}</td><td>{_fmt(m.get('accuracy'))}</td>"
                f"<td>{_fmt(m.get('latency'))} {e(str(m.get('latency_unit') or ''))}</td>"
                f"<td>{_fmt(m.get('flash_bytes'))}</td><td>{_fmt(m.get('ram_bytes'))}</td>"
                if p
                else "<td colspan=6 class='l'>no point meets these constraints</td>"
            )
            + "</tr>"
        )  # fmt: skip
    parts.append("</table><h2>Pareto fronts</h2><div class='figs'>")
    for x, y in FRONTS:
        uri = front_chart(data, x, y)
        if uri:
            parts.append(f"<img alt='{e(LABELS[y])} vs {e(LABELS[x])}' src='{uri}'>")
    parts.append("</div><h2>Points</h2><table><tr><th>#</th><th>settings</th><th>status</th>"
                 "<th>accuracy</th><th>SQNR dB</th><th>latency</th><th>flash</th><th>RAM</th>"
                 "<th>time s</th><th>cache hits</th><th>node</th></tr>")  # fmt: skip
    on_front = {i for ids in data["fronts"].values() for i in ids}
    for p in data["points"]:
        m = p.get("metrics") or {}
        cls = "failed" if p.get("status") == "failed" else ("front" if p["id"] in on_front else "")
        node = ((p.get("node") or {}).get("node_id") or "")[:8]
        status = p.get("status", "?")
        if p.get("error"):
            status += ": " + str(p["error"].get("message", ""))[:120]
        parts.append(
            f"<tr class='{cls}'><td>{p['index']}</td><td class='l'>{e(p['label'])}</td>"
            f"<td class='l'>{e(status)}</td><td>{_fmt(m.get('accuracy'))}</td><td>{_fmt(m.get('sqnr_db'))}</td>"
            f"<td>{_fmt(m.get('latency'))} {e(str(m.get('latency_unit') or ''))}</td>"
            f"<td>{_fmt(m.get('flash_bytes'))}</td><td>{_fmt(m.get('ram_bytes'))}</td>"
            f"<td>{_fmt(p.get('seconds'), 3)}</td><td>{p.get('cache_hits', '–')}</td><td>{e(node)}</td></tr>"
        )  # fmt: skip
    parts.append("</table></body></html>\n")
    return "".join(parts)
