"""``bench.png``: left, the time-to-first-audio distribution (CDF, with the p50/p95 marked);
right, the median per-stage breakdown of the server's timeline as one stacked bar. A text-only
server has no audio: the left panel shows the time to first text instead.

Uses matplotlib's object API (``Figure`` + the Agg canvas): no pyplot, no global backend state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in report["rows"] if r["status"] in ("completed", "interrupted")]
    key, what = "first_audio_ms", "first audio"
    if not any(r[key] is not None for r in rows):
        key, what = "first_text_ms", "first text"
    values = np.sort(np.array([r[key] for r in rows if r[key] is not None], dtype=float))

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    cfg = report["config"]
    fig.suptitle(f"npc bench — {cfg['mode']}, {cfg['clients']} client(s) × {cfg['turns']} turn(s), "
                 f"{report['machine']['cpu']} ({report['machine']['cores']} cores)", fontsize=10)

    if values.size:
        left.step(values, np.arange(1, values.size + 1) / values.size, where="post", color="tab:blue")
        for q, style in ((50, "--"), (95, ":")):
            x = float(np.percentile(values, q))
            left.axvline(x, color="tab:red", linestyle=style, linewidth=1, label=f"p{q} {x:.0f} ms")
        left.legend(loc="lower right", fontsize=8)
    else:
        left.text(0.5, 0.5, "no answered turns", ha="center", va="center", transform=left.transAxes)
    left.set_xlabel(f"time to {what} at the client (ms)")
    left.set_ylabel("fraction of turns")
    left.set_ylim(0, 1.02)
    left.set_title(f"time to {what} (CDF, n={values.size})", fontsize=10)
    left.grid(alpha=0.3)

    stages = {name: s["p50"] for name, s in report["stages"]["server_durations"].items() if s["p50"] is not None}
    if key == "first_text_ms":
        for name in ("first clause", "first audio", "first sent"):
            stages.pop(name, None)
    bottom = 0.0
    colors = [f"C{i}" for i in range(10)]
    for (name, ms), color in zip(stages.items(), colors):
        right.bar(["server"], [max(ms, 0.0)], bottom=bottom, color=color, label=f"{name} {ms:.0f} ms")
        bottom += max(ms, 0.0)
    client_p50 = report["stages"]["client"][what.replace(" ", "_")]["p50"]
    if client_p50 is not None:
        right.bar(["client"], [client_p50], color="tab:gray", label=f"client {what} {client_p50:.0f} ms")
    if not stages and client_p50 is None:
        right.text(0.5, 0.5, "no timings", ha="center", va="center", transform=right.transAxes)
    else:
        right.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    right.set_ylabel("ms (median per stage)")
    right.set_title("per-stage breakdown (medians)", fontsize=10)
    fig.savefig(path, dpi=110)
