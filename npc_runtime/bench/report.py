"""Figures from the measured turns: percentiles per stage, throughput, counts, the machine. Pure
(except :func:`machine`, which reads ``/proc/cpuinfo``)."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from npc_runtime.bench.driver import BUSY, TurnRow

#: Client-side stages: TurnRow attribute → label.
CLIENT_STAGES: tuple[tuple[str, str], ...] = (
    ("transcript_ms", "transcript"), ("first_text_ms", "first_text"),
    ("first_audio_ms", "first_audio"), ("end_ms", "end"),
)
#: The server's timeline, in order: a stage's duration runs from the previous mark present to its own.
SERVER_ORDER: tuple[tuple[str, str], ...] = (
    ("transcript_final", "transcript"), ("retrieval", "retrieval"), ("prompt_ready", "prompt"),
    ("llm_start", "queue"), ("first_token", "first token"), ("first_text", "first text"), ("first_clause", "first clause"),
    ("first_audio", "first audio"), ("first_speech", "first sent"),
)
#: response.end timings that are counts, flags or targets, not moments.
NOT_STAGES = frozenset({"chunks", "budget", "budget_missed", "filler", "capped"})
_RANK = {key: i for i, (key, _) in enumerate(SERVER_ORDER)}


def percentiles(values: Iterable[float | None]) -> dict[str, float | int | None]:
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(xs, [50, 95, 99])
    return {"n": int(xs.size), "p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)}


def stage_durations(timings: dict[str, float]) -> dict[str, float]:
    """One turn's server stages as durations (ms), each from the latest mark before it (a mark
    reached out of order, e.g. audio of a filler before the first text, counts 0)."""
    out, prev = {}, 0.0
    for key, label in SERVER_ORDER:
        if key in timings:
            out[label] = round(max(timings[key] - prev, 0.0), 1)
            prev = max(prev, timings[key])
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _answered(rows: Sequence[TurnRow]) -> list[TurnRow]:
    return [r for r in rows if r.status in ("completed", "interrupted")]


def stages(rows: Sequence[TurnRow]) -> dict[str, dict[str, Any]]:
    """p50/p95/p99 per stage over the answered turns: client times, server marks, server durations."""
    answered = _answered(rows)
    server_keys = sorted({k for r in answered for k in r.server if k not in NOT_STAGES},
                         key=lambda k: (_RANK.get(k, len(_RANK) if k != "end" else len(_RANK) + 1), k))
    durations = [stage_durations(r.server) for r in answered]
    return {
        "client": {label: percentiles(getattr(r, attr) for r in answered) for attr, label in CLIENT_STAGES},
        "server": {key: percentiles(r.server.get(key) for r in answered) for key in server_keys},
        "server_durations": {label: percentiles(d.get(label) for d in durations)
                             for _, label in SERVER_ORDER if any(label in d for d in durations)},
    }


def counts(rows: Sequence[TurnRow]) -> dict[str, Any]:
    errors = Counter(code for r in rows for code in r.errors)
    return {
        "turns": len(rows),
        "by_status": dict(Counter(r.status for r in rows)),
        "errors": dict(errors),
        "busy": sum(1 for r in rows if r.busy or r.status == BUSY),
        "budget_misses": sum(1 for r in rows if r.budget_missed),
        "fillers": sum(1 for r in rows if r.server.get("filler", 0) > 0),
        "capped": sum(1 for r in rows if r.server.get("capped", 0) > 0),
        "timeouts": errors.get("timeout", 0),
    }


def throughput(rows: Sequence[TurnRow]) -> dict[str, float | int]:
    """Answered turns per second over the measured window (first measured start to last end)."""
    answered = _answered(rows)
    if not rows:
        return {"turns_per_s": 0.0, "window_s": 0.0, "answered": 0}
    window = max(r.finished for r in rows) - min(r.started for r in rows)
    rate = len(answered) / window if window > 0 else 0.0
    return {"turns_per_s": round(rate, 3), "window_s": round(window, 3), "answered": len(answered)}


def build(config: dict[str, Any], server: dict[str, Any], rows: Sequence[TurnRow]) -> dict[str, Any]:
    origin = min((r.started for r in rows), default=0.0)
    c = counts(rows)
    return {
        "config": config, "server": server, "machine": machine(),
        "stages": stages(rows), "throughput": throughput(rows),
        "counts": c, "errors": c["errors"], "busy": c["busy"], "budget_misses": c["budget_misses"],
        "rows": [r.as_dict(origin) for r in sorted(rows, key=lambda r: (r.client, r.turn))],
    }


def _fmt(v: float | None) -> str:
    return f"{v:8.0f}" if v is not None else f"{'-':>8s}"


def table(report: dict[str, Any]) -> str:
    """The summary printed at the end: stage, n, p50, p95, p99 (ms); throughput; errors."""
    lines = [f"{'stage':28s} {'n':>4s} {'p50':>8s} {'p95':>8s} {'p99':>8s}  (ms)"]
    for group, prefix in (("client", "client "), ("server_durations", "server stage "), ("server", "server @")):
        for name, s in report["stages"][group].items():
            if s["n"]:
                lines.append(f"{prefix + name:28s} {s['n']:4d} {_fmt(s['p50'])} {_fmt(s['p95'])} {_fmt(s['p99'])}")
    t, c = report["throughput"], report["counts"]
    lines.append(f"throughput: {t['turns_per_s']:.2f} turns/s "
                 f"({t['answered']} answered of {c['turns']} in {t['window_s']:.1f} s)")
    lines.append(f"errors: {c['errors'] or 'none'}; busy: {c['busy']}; budget misses: {c['budget_misses']} "
                 f"(fillers {c['fillers']}, replies capped {c.get('capped', 0)}); "
                 f"status: {c['by_status']}")
    return "\n".join(lines)


#: The client-side stages compared between the native protocol and the Realtime endpoint.
COMPARED = ("transcript", "first_text", "first_audio", "end")


#: Client stages and the server mark each one follows (for the protocol's own share: client time minus server time).
_SERVER_MARK = {"first_text": "first_text", "first_audio": "first_audio", "end": "end"}


def overhead(rows: Sequence[dict[str, Any]], stage: str) -> float | None:
    """Median over answered turns of (the client's time for ``stage`` − the server's mark for it), ms: what the
    protocol, the socket and the client add to the server's own time (the server's clock starts a little after the
    client's, when the message is read, so this includes the trip in)."""
    mark = _SERVER_MARK.get(stage)
    if mark is None:
        return None
    xs = [r[f"{stage}_ms"] - r["server"][mark] for r in rows
          if r.get("status") == "completed" and r.get(f"{stage}_ms") is not None and mark in r.get("server", {})]
    return round(float(np.median(xs)), 1) if xs else None


def compare(native: dict[str, Any], realtime: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per client stage: both medians, realtime / native (1.0: the same; 1.05: 5% slower through /v1/realtime), and
    each protocol's own share (:func:`overhead`), which does not depend on how long the model took."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in COMPARED:
        a = native["stages"]["client"].get(stage, {}).get("p50")
        b = realtime["stages"]["client"].get(stage, {}).get("p50")
        if a is None and b is None:
            continue
        out[stage] = {"native_p50": a, "realtime_p50": b, "ratio": round(b / a, 3) if a and b is not None else None,
                      "native_overhead_p50": overhead(native["rows"], stage),
                      "realtime_overhead_p50": overhead(realtime["rows"], stage)}
    return out


def comparison_table(comparison: dict[str, dict[str, float | None]]) -> str:
    lines = [f"{'client stage p50':20s} {'native':>8s} {'realtime':>9s} {'ratio':>7s}   {'overhead: native':>16s} {'realtime':>9s}"]
    for stage, c in comparison.items():
        ratio = f"{c['ratio']:7.3f}" if c["ratio"] is not None else f"{'-':>7s}"
        lines.append(f"{stage:20s} {_fmt(c['native_p50'])} {_fmt(c['realtime_p50']):>9s} {ratio}   "
                     f"{_fmt(c.get('native_overhead_p50')):>16s} {_fmt(c.get('realtime_overhead_p50')):>9s}")
    return "\n".join(lines)
