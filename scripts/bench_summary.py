"""One Markdown table from several `npc bench` runs (each folder's bench.json): the figures that
docs/performance.md reports.

    .venv/bin/python scripts/bench_summary.py OUT_DIR [LABEL]   # every OUT_DIR/*/bench.json; LABEL: the set-up
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _p50(stages: dict[str, Any], group: str, key: str) -> str:
    value = stages.get(group, {}).get(key, {}).get("p50")
    return "–" if value is None else f"{value:.0f}"


def row(report: dict[str, Any]) -> str:
    cfg, st, c, t = report["config"], report["stages"], report["counts"], report["throughput"]
    load = f"{cfg['mode']}, {cfg['clients']} x {cfg['turns']}" + (" (cold incl.)" if cfg.get("warmup") == 0 else "")
    return " | ".join([
        load, f"{t['answered']} of {c['turns']}",
        _p50(st, "server", "first_speech"), _p50(st, "client", "first_audio"),
        _p50(st, "client", "transcript"), _p50(st, "server_durations", "queue"),
        f"{t['turns_per_s']:.2f}", str(c["busy"]), str(c["budget_misses"]), str(c.get("fillers", 0)),
        str(c.get("capped", 0)),
    ])


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    reports = []
    for path in sorted(Path(argv[1]).glob("*/bench.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        reports.append(((report["config"]["mode"], report["config"]["clients"]), report))
    if not reports:
        print(f"no */bench.json under {argv[1]}", file=sys.stderr)
        return 1
    reports.sort(key=lambda item: (item[0][0] != "text", item[0][1]))
    first = reports[0][1]
    label = argv[2] if len(argv) == 3 else first["config"].get("server") or "in-process"
    print(f"{label} — bench machine: {first['machine']['cpu']} ({first['machine']['cores']} cores)\n")
    print("| load | answered | first reply speech p50 (ms) | first audio p50 (ms) | transcript p50 (ms) | "
          "queue p50 (ms) | turns/s | busy | budget misses | fillers | capped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for _, report in reports:
        print(f"| {row(report)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
