"""``npc simulate`` and the scenario half of ``npc check``.

:func:`simulate_main` runs a scenario against ``--server`` or against a runtime started in-process on
loopback (speech recognition off; speech synthesis only with ``--audio``; memory in a fresh folder
per run, so a run never remembers an earlier one and the same seed gives the same transcript),
prints the conversation as it goes, scores it with the judge (the runtime's LLM in-process, else the
configured one) and writes the outputs. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npc_runtime.client import NpcClient
from npc_runtime.errors import NpcError, PersonaError
from npc_runtime.llm.base import LLM
from npc_runtime.persona.loader import format_errors, load_dir
from npc_runtime.persona.schema import Persona
from npc_runtime.settings import Settings
from npc_runtime.sim.judge import CriterionScore, Judge
from npc_runtime.sim.report import write_outputs
from npc_runtime.sim.runner import SimulationError, TurnRecord, run_simulation
from npc_runtime.sim.scenario import (
    Scenario,
    ScenarioFileError,
    ScenarioNotFound,
    check_scenarios,
    find_scenario,
    load_scenario,
    with_names,
)

DEFAULT_SCENARIOS = Path("scenarios")
DEFAULT_OUT = Path("sim-runs")


@dataclass(slots=True)
class _Backend:
    connect: Callable[[], AbstractAsyncContextManager[NpcClient]]
    judge_llm: LLM | None


def _personas(settings: Settings) -> dict[str, Persona]:
    try:
        return load_dir(settings.characters_dir)[0]
    except PersonaError:
        return {}


def _load(args: Any, settings: Settings) -> Scenario:
    """The scenario named by ``args.scenario``; raises ScenarioNotFound / ScenarioFileError / SimulationError."""
    path = find_scenario(args.scenario, getattr(args, "scenarios_dir", None) or DEFAULT_SCENARIOS)
    personas = _personas(settings)
    if getattr(args, "server", None):  # the server's personas are not ours to check: names from ours when we have them
        scenario = with_names(load_scenario(path), personas)
    else:
        scenario = load_scenario(path, personas)
    human = getattr(args, "human", None)
    if human is not None and human not in scenario.roles:
        raise SimulationError(f"--human {human!r} is not a role of {scenario.id} (roles: {', '.join(scenario.roles)})")
    turns = getattr(args, "turns", None)
    if turns is not None and not 1 <= turns <= 100:
        raise SimulationError(f"--turns must be 1 to 100, got {turns}")
    return scenario


@asynccontextmanager
async def _backend(args: Any, settings: Settings, *, judge: bool) -> AsyncIterator[_Backend]:
    """Clients to ``--server``, or to an in-process runtime on loopback; and the judge's LLM."""
    if getattr(args, "server", None):
        url = args.server
        llm = None
        if judge:
            from npc_runtime.wiring import build_llm

            llm = build_llm(settings)
        try:
            if llm is not None:
                await llm.warm()
            yield _Backend(lambda: NpcClient.connect(url), llm)
        finally:
            if llm is not None:
                await llm.aclose()
        return
    from npc_runtime.server import NpcServer
    from npc_runtime.wiring import build_runtime

    audio = bool(getattr(args, "audio", False))
    local = settings.model_copy(update={"port": 0, "asr": "none", **({} if audio else {"tts": "none"})})
    with tempfile.TemporaryDirectory(prefix="npc-sim-") as tmp:
        runtime = await build_runtime(local)
        if runtime.services.memory is not None:  # a fresh memory per run: runs do not leak into each other
            from npc_runtime.memory import MemoryStore

            await runtime.services.memory.aclose()
            runtime.services.memory = MemoryStore(Path(tmp) / "memory.sqlite3", keep_recent=local.memory_keep_recent)
        server = NpcServer(runtime.services, host="127.0.0.1", port=0)
        try:
            await server.start()
            await runtime.warm()
            yield _Backend(lambda: NpcClient.connect(server.url), runtime.llm if judge else None)
        finally:
            await server.aclose()
            await runtime.aclose()


def _print_turn(rec: TurnRecord) -> None:
    if rec.source == "human":
        return  # the trainee just typed it
    acts = "".join(f" [{a}]" for a in rec.action_strings())
    for r in rec.rejected:
        print(f"  (asked again: {r['why']}: {r['text']})", flush=True)
    print(f"{rec.role} ({rec.name})> {rec.text}{acts}", flush=True)


async def _ask_human(role: str, prompt: str) -> str:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return ""


def _print_scores(scenario: Scenario, scores: list[CriterionScore]) -> None:
    print(f"\nScores for {scenario.role_name(scenario.rubric.role)} ({scenario.rubric.role}), "
          f"scale {scenario.rubric.scale.min}-{scenario.rubric.scale.max}:")
    for c in scores:
        if c.score is None:
            print(f"  {c.criterion}: {c.reason}")
        else:
            print(f'  {c.criterion}: {c.score}  "{c.evidence}"  {c.reason}')


async def simulate_main(args: Any) -> int:
    """``npc simulate``. ``args`` has: scenario (name or path), seed, turns, out, audio, server, human,
    scenarios_dir, settings (a :class:`Settings`); optional no_judge, goal_check (ask the judge after each
    line whether ``stop.goal`` is met: off by default, a 135M model answers it unreliably), max_tokens. Returns the exit status."""
    settings: Settings = getattr(args, "settings", None) or Settings()
    try:
        scenario = _load(args, settings)
    except (ScenarioNotFound, ScenarioFileError, SimulationError) as exc:
        print(f"npc simulate: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if getattr(args, "seed", None) is not None else 0
    out = Path(getattr(args, "out", None) or DEFAULT_OUT / f"{scenario.id}-seed{seed}")
    judge_on = not getattr(args, "no_judge", False)
    human = getattr(args, "human", None)
    try:
        async with _backend(args, settings, judge=judge_on) as backend:
            judge = Judge(backend.judge_llm, seed=seed) if backend.judge_llm is not None else None
            use_goal = judge is not None and scenario.stop.goal and getattr(args, "goal_check", False)
            if human:
                print(f"You are the {human} ({scenario.role_name(human)}). Empty line or Ctrl-D to stop.", flush=True)
            result = await run_simulation(
                scenario, connect=backend.connect, seed=seed, turns=getattr(args, "turns", None),
                audio=bool(getattr(args, "audio", False)), human_role=human, ask_human=_ask_human if human else None,
                on_turn=_print_turn, max_tokens=getattr(args, "max_tokens", None),
                goal_check=(lambda turns: judge.goal_met(scenario, turns)) if use_goal and judge else None,
            )
            print(f"-- stopped by {result.stopped_by}", flush=True)
            scores = await judge.score(scenario, result) if judge is not None else None
    except SimulationError as exc:
        print(f"npc simulate: {exc.message}", file=sys.stderr)
        return 2 if exc.code in ("unknown_character", "simulation_failed") else 1
    except NpcError as exc:
        print(f"npc simulate: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if scores is not None:
        _print_scores(scenario, scores)
    written = write_outputs(out, result, scores, audio=bool(getattr(args, "audio", False)))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def check_scenarios_main(directory: str | Path = DEFAULT_SCENARIOS, characters_dir: str | Path = "characters") -> int:
    """``npc check`` for scenarios: ``OK: N scenarios`` or one ``file:line: field: message`` per error."""
    try:
        personas, _ = load_dir(characters_dir)
    except PersonaError as exc:
        print(exc.message)
        return 1
    try:
        errors = check_scenarios(directory, personas)
    except ScenarioNotFound as exc:
        print(exc.message)
        return 1
    if errors:
        print(format_errors(errors))
        return 1
    from npc_runtime.sim.scenario import scenario_files

    print(f"OK: {len(scenario_files(directory))} scenarios")
    return 0
