"""``npc bench``: run the load, write ``bench.json`` and ``bench.png``, print the summary."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from npc_runtime import protocol as p
from npc_runtime.bench import report as rep
from npc_runtime.bench.driver import LoadPlan, Mode, TurnRow, run_client
from npc_runtime.bench.lines import TEXT_LINES, WARMUP_LINE, default_scene, load_utterances
from npc_runtime.bench.plot import write_plot
from npc_runtime.bench.realtime import Protocol
from npc_runtime.scene_files import load_scene
from npc_runtime.settings import Settings

#: Settings worth recording with the figures (never secrets such as ``vllm_api_key``).
_SETTINGS_SHOWN = ("llm", "model_path", "vllm_url", "vllm_model", "tts", "tts_voice", "asr", "rag", "memory",
                   "llm_threads", "max_sessions", "llm_concurrency", "llm_max_waiting", "asr_max_waiting",
                   "first_audio_budget_ms")


@asynccontextmanager
async def _target(server: str | None, settings: Settings) -> AsyncIterator[str]:
    """``server``, or a runtime started in-process on loopback and warmed (its URL)."""
    if server is not None:
        yield server
        return
    from npc_runtime.server import NpcServer
    from npc_runtime.wiring import build_runtime

    runtime = await build_runtime(settings)
    srv = NpcServer(runtime.services, host="127.0.0.1", port=0)
    try:
        await srv.start()
        await runtime.warm()
        yield srv.url
    finally:
        await srv.aclose()
        await runtime.aclose()


async def run_load(plan: LoadPlan, *, progress: bool = True, protocol: Protocol = "native") -> tuple[list[TurnRow], dict[str, Any]]:
    """Run every client at once; returns the measured rows and what the server said of itself
    (the first ``session.ready``). Shows a tqdm bar on stderr (when it is a terminal). ``protocol``: the native
    protocol at ``/``, or the OpenAI-Realtime-compatible endpoint at ``/v1/realtime``."""
    from tqdm import tqdm

    from npc_runtime.bench.realtime import run_realtime_client

    client = run_realtime_client if protocol == "realtime" else run_client

    rows: list[TurnRow] = []
    server: dict[str, Any] = {}
    with tqdm(total=plan.clients * plan.turns, desc=f"bench {plan.mode} {protocol}", unit="turn", file=sys.stderr,
              disable=None if progress else True, leave=False) as bar:

        def record(row: TurnRow) -> None:
            rows.append(row)
            bar.update(1)
            problems = sum(1 for r in rows if r.status not in ("completed", "interrupted"))
            if problems:
                bar.set_postfix(failed=problems, refresh=False)

        def ready(event: p.SessionReady) -> None:
            if not server:
                server.update(event.model_dump(
                    mode="json", include={"protocol", "character", "audio", "audio_in", "listen", "actions"}))

        async with asyncio.TaskGroup() as group:
            for i in range(plan.clients):
                group.create_task(client(i, plan, record, ready), name=f"bench-client-{i}")
    return rows, server


async def bench_main(*, clients: int, turns: int, mode: Mode, out: Path, server: str | None, settings: Settings,
                     character: str = "jin", scene: Path | None = None, warmup: int = 1, seed: int = 1,
                     turn_timeout: float = 120.0, recording: Path | None = None, protocol: str = "native", rounds: int = 2) -> int:
    """Run the bench; write ``out/bench.json`` and ``out/bench.png``; print the summary table.

    ``server``: a ``ws://`` URL, or None to start the runtime in-process from ``settings``. ``scene``: a
    JSON file or a shipped scene's name (default: the ramen shop). ``recording``: audio mode's first
    utterance (default: the shipped sample).
    Returns 0 when at least one turn was answered, 1 when none was, 2 on bad arguments.
    Refusals (``busy``), errors and timeouts are counted, never fatal. ``protocol``: ``native`` (``/``),
    ``realtime`` (``/v1/realtime``), or ``both``: the two on the same server in the same run, alternating in
    ``rounds`` (each a native then a realtime load of ``turns`` turns per client), one report each and their
    medians compared (``bench.json`` ``comparison``; the plot is the realtime one, ``bench-native.png`` the native).
    """
    if clients < 1 or turns < 1 or warmup < 0 or mode not in ("text", "audio") or protocol not in ("native", "realtime", "both") or rounds < 1:
        print("npc bench: --clients, --turns and --rounds must be at least 1, --mode text or audio, --protocol native, "
              "realtime or both", file=sys.stderr)
        return 2
    try:
        scene_dict = load_scene(scene) if scene is not None else default_scene()
    except (OSError, ValueError) as exc:
        print(f"npc bench: cannot read scene {scene}: {exc}", file=sys.stderr)
        return 2
    if mode == "audio":
        if recording is not None and not recording.is_file():
            print(f"npc bench: no recording {recording}", file=sys.stderr)
            return 2
        warm_line, lines = await load_utterances(recording=recording)
        plan_lines: Any = lines
    else:
        warm_line, plan_lines = WARMUP_LINE, TEXT_LINES
    config: dict[str, Any] = {
        "protocol": protocol, **({"rounds": rounds} if protocol == "both" else {}),
        "clients": clients, "turns": turns, "mode": mode, "warmup": warmup, "seed": seed, "character": character,
        "scene": scene_dict.get("name"), "server": server or "in-process", "turn_timeout_s": turn_timeout,
        "lines": [getattr(x, "name", x) for x in plan_lines],
    }
    if server is None:
        config["settings"] = settings.model_dump(mode="json", include=set(_SETTINGS_SHOWN))
    async with _target(server, settings) as url:
        plan = LoadPlan(url=url, mode=mode, clients=clients, turns=turns, warmup=warmup, character=character,
                        scene=scene_dict, seed=seed, lines=plan_lines, warmup_line=warm_line, turn_timeout=turn_timeout)
        if protocol == "both":
            phases: dict[str, list[TurnRow]] = {"native": [], "realtime": []}
            server_info: dict[str, Any] = {}
            for _ in range(rounds):
                for name in ("native", "realtime"):
                    rows, info = await run_load(plan, protocol=name)  # type: ignore[arg-type]
                    phases[name] += rows
                    server_info = server_info or info
        else:
            rows, server_info = await run_load(plan, protocol=protocol)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    if protocol == "both":
        reports = {name: rep.build({**config, "protocol": name}, server_info, rows) for name, rows in phases.items()}
        report = {**reports["realtime"], "config": config, "native": reports["native"], "realtime": {k: v for k, v in reports["realtime"].items() if k != "rows"},
                  "comparison": rep.compare(reports["native"], reports["realtime"])}
        await asyncio.to_thread(write_plot, reports["native"], out / "bench-native.png")
        print("native (/):\n" + rep.table(reports["native"]) + "\n\nrealtime (/v1/realtime):")
    else:
        report = rep.build(config, server_info, rows)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    await asyncio.to_thread(write_plot, report, out / "bench.png")
    print(rep.table(report))
    if protocol == "both":
        print("\n" + rep.comparison_table(report["comparison"]))
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0 if report["throughput"]["answered"] else 1
