"""Two servers behind HAProxy vs one server, under the same `npc bench` load (docs/deploy.md, issue 18 part 4).

Starts PostgreSQL (initdb in a temporary folder, as tests/pg_fixture.py does), N `npc serve` processes on loopback
with the same --memory-url and every other default (the embedded model, Piper, tiny.en, knowledge, memory), HAProxy
with deploy/haproxy.cfg in front of them; runs `npc bench --server ws://<balancer>` and then the same bench against
the first server alone; prints both summaries and how many sessions each server got (from its /metrics), and writes
OUT/summary.json. Needs scripts/setup_services.sh's packages and the .venv.

    .venv/bin/python scripts/bench_deploy.py --clients 8 --turns 3 --out bench-deploy
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pg_fixture import PgServer, _bindir, free_port  # noqa: E402  (the tests' PostgreSQL helper)

NPC = [sys.executable, "-m", "npc_runtime.cli"]


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def sessions(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        match = re.search(r"^npc_sessions_total (\S+)$", resp.read().decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"npc serve on {port} exited ({proc.returncode})")
        if status(f"http://127.0.0.1:{port}/readyz") == 200:
            return
        time.sleep(0.5)
    raise SystemExit(f"npc serve on {port} not ready in {timeout_s:g} s")


def bench(url: str, clients: int, turns: int, out: Path) -> dict[str, Any]:
    subprocess.run([*NPC, "bench", "--server", url, "--clients", str(clients), "--turns", str(turns), "--mode", "text",
                    "--out", str(out)], cwd=ROOT, check=True)
    report: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return report


def medians(report: dict[str, Any]) -> dict[str, Any]:
    st, t, c = report["stages"], report["throughput"], report["counts"]
    p50 = lambda group, key: st.get(group, {}).get(key, {}).get("p50")  # noqa: E731
    return {"answered": t["answered"], "turns": c["turns"], "turns_per_s": round(t["turns_per_s"], 3), "busy": c["busy"],
            "first_speech_p50_ms": p50("server", "first_speech"), "first_audio_p50_ms": p50("client", "first_audio"),
            "llm_queue_p50_ms": p50("server_durations", "queue")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-deploy"))
    ap.add_argument("--serve-arg", action="append", default=[], help="an extra argument for each npc serve (repeatable)")
    args = ap.parse_args()
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    bindir = _bindir()
    if bindir is None or not Path(haproxy).exists():
        raise SystemExit("PostgreSQL or HAProxy missing: run scripts/setup_services.sh")
    args.out.mkdir(parents=True, exist_ok=True)
    pg = PgServer(bindir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        url = pg.new_database("bench")
        ports = [free_port() for _ in range(args.servers)]
        for i, port in enumerate(ports):
            log = open(args.out / f"serve-{i + 1}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen([*NPC, "serve", "--port", str(port), "--memory-url", url,
                                           "--data-dir", str(args.out / f"data-{i + 1}"), *args.serve_arg],
                                          cwd=ROOT, stdout=log, stderr=log))
        for port, proc in zip(ports, procs):
            wait_ready(port, proc)
        lb_port = free_port()
        config = (ROOT / "deploy" / "haproxy.cfg").read_text().replace("bind 127.0.0.1:8765", f"bind 127.0.0.1:{lb_port}")
        servers = "\n".join(f"    server npc{i + 1} 127.0.0.1:{port} check" for i, port in enumerate(ports))
        config = re.sub(r"(?m)^    server npc\d .*\n(    server npc\d .*\n)*", servers + "\n", config)
        (args.out / "haproxy.cfg").write_text(config)
        procs.append(subprocess.Popen([haproxy, "-db", "-f", str(args.out / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                                      stderr=open(args.out / "haproxy.log", "wb")))  # noqa: SIM115
        time.sleep(2.0)  # the health checks' rise
        result: dict[str, Any] = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "servers": args.servers,
                                  "clients": args.clients, "turns": args.turns}
        before = [sessions(p) for p in ports]
        balanced = bench(f"ws://127.0.0.1:{lb_port}", args.clients, args.turns, args.out / "balanced")
        result["balanced"] = {**medians(balanced), "sessions_per_server": [sessions(p) - b for p, b in zip(ports, before)]}
        single = bench(f"ws://127.0.0.1:{ports[0]}", args.clients, args.turns, args.out / "single")
        result["single"] = medians(single)
        result["machine_report"] = balanced.get("machine")
        (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "machine_report"}, indent=2))
        return 0
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.close()


if __name__ == "__main__":
    raise SystemExit(main())
