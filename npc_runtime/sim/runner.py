"""Run a scenario over the normal protocol: one session per role, lines passed between them.

Each NPC role is one WebSocket session (``connect()`` gives a client) whose persona is the role's and
whose "player" is the role that speaks before it (``player.id`` = that role's persona id, so memory
is kept per partner), with the role brief in ``options.brief``. The opener's first line is scripted.
Then the speakers take turns in the roles' order, starting after the opener: the last line goes to
the next speaker as ``input.text`` (its actions first, as a ``game.event`` without reaction); with
more than two roles, the others hear it as a ``game.event`` ("<Name> said: ...", no reaction).

Repeatability: each role's session gets a seed derived from ``seed`` and the role's position; every
request of that session is sampled with it, and the prompts are themselves a function of the
transcript, so the same seed and models give the same transcript. (The protocol carries a seed per
session, not per turn.) Memory from earlier runs changes prompts: give each run fresh memory (the
in-process runtime of :mod:`npc_runtime.sim.cli` does).

Cancel-safe: cancelling :func:`run_simulation` closes every session it opened (``AsyncExitStack``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from npc_runtime import protocol as p
from npc_runtime.client import AudioFrame, NpcClient
from npc_runtime.errors import NpcError
from npc_runtime.sim.scenario import Scenario, stop_action_key

Connect = Callable[[], AbstractAsyncContextManager[NpcClient]]
AskHuman = Callable[[str, str], Awaitable[str]]


class SimulationError(NpcError):
    code = "simulation_failed"


@dataclass(slots=True)
class TurnRecord:
    """One line of the conversation. ``source``: ``scripted`` (the opening), ``npc`` or ``human``."""

    turn: int
    role: str
    character: str
    name: str
    text: str
    actions: list[dict[str, str]] = field(default_factory=list)
    emotion: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    audio: bytes = b""
    sample_rate: int | None = None
    source: str = "npc"

    def action_strings(self) -> list[str]:
        return [" ".join(a[k] for k in ("verb", "object", "target") if a.get(k)) for a in self.actions]


@dataclass(slots=True)
class SimResult:
    scenario: Scenario
    seed: int
    turns: list[TurnRecord]
    stopped_by: str


def role_seed(seed: int, index: int) -> int:
    """The sampling seed of the ``index``-th role's session (stable, distinct per role)."""
    return (seed * 1_000_003 + index * 7_919) % (2**31)


def speaking_order(scenario: Scenario) -> list[str]:
    """The roles in turn order, the opener first."""
    roles = list(scenario.roles)
    i = roles.index(scenario.opening.role)
    return roles[i:] + roles[:i]


@dataclass(slots=True)
class _Seat:
    role: str
    client: NpcClient
    ready: p.SessionReady


async def run_simulation(
    scenario: Scenario,
    *,
    connect: Connect,
    seed: int,
    turns: int | None = None,
    audio: bool = False,
    human_role: str | None = None,
    ask_human: AskHuman | None = None,
    on_turn: Callable[[TurnRecord], Any] | None = None,
    max_tokens: int | None = None,
    goal_check: Callable[[list[TurnRecord]], Awaitable[bool]] | None = None,
) -> SimResult:
    """Run ``scenario`` until the turn limit (``turns`` or the scenario's) or a stop condition.

    ``human_role``: a person plays that role; ``ask_human(role, prompt)`` returns each of their lines
    (an empty line ends the simulation). ``on_turn`` is called with each :class:`TurnRecord` as it
    happens (it may be async). ``goal_check(turns)`` is asked after each line when the scenario has
    a ``stop.goal``. Raises :class:`SimulationError` for a bad argument or a session that will not start.
    """
    limit = scenario.turns if turns is None else turns
    if limit < 1:
        raise SimulationError(f"the turn limit must be at least 1, got {limit}")
    if human_role is not None and (human_role not in scenario.roles or ask_human is None):
        raise SimulationError(f"--human {human_role!r} is not a role of {scenario.id} (roles: {', '.join(scenario.roles)})"
                              if human_role not in scenario.roles else "trainee mode needs ask_human")
    order = speaking_order(scenario)
    records: list[TurnRecord] = []

    async def record(rec: TurnRecord) -> None:
        records.append(rec)
        if on_turn is not None and inspect.isawaitable(result := on_turn(rec)):
            await result

    async with AsyncExitStack() as stack:
        seats = {role: await _open(stack, connect, scenario, role, order, seed=seed, audio=audio, max_tokens=max_tokens)
                 for role in scenario.roles if role != human_role}
        stopped = None
        for number in range(1, limit + 1):
            speaker = order[(number - 1) % len(order)]
            if speaker == human_role:
                assert ask_human is not None
                text = (await ask_human(speaker, f"{speaker} ({scenario.role_name(speaker)})> ")).strip()[: p.MAX_TEXT_CHARS]
                if not text:
                    stopped = "the trainee ended the simulation"
                    break
                rec = _record(scenario, number, speaker, text, source="human")
            elif number == 1:
                rec = _record(scenario, number, speaker, scenario.opening.line, source="scripted")
            else:
                rec = await _respond(seats[speaker], scenario, number, records[-1])
            await _tell_others(seats, scenario, rec, next_speaker=order[number % len(order)])
            await record(rec)
            stopped = _stop_reason(scenario, rec)
            if stopped is None and scenario.stop.goal and goal_check is not None and rec.source != "scripted":
                if await goal_check(records):
                    stopped = f"goal: {scenario.stop.goal}"
            if stopped is not None:
                break
        else:
            stopped = f"turn limit ({limit})"
    return SimResult(scenario=scenario, seed=seed, turns=records, stopped_by=stopped or f"turn limit ({limit})")


async def _open(stack: AsyncExitStack, connect: Connect, scenario: Scenario, role: str, order: Sequence[str], *,
                seed: int, audio: bool, max_tokens: int | None) -> _Seat:
    from npc_runtime.client import ServerError

    partner = order[order.index(role) - 1]  # the role whose lines this one answers
    client = await stack.enter_async_context(connect())
    options: dict[str, Any] = {"text_only": not audio, "seed": role_seed(seed, list(scenario.roles).index(role)),
                               "brief": scenario.brief_for(role)}
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    persona = scenario.roles[role].persona
    try:
        ready = await client.start_session(persona, scene=scenario.full_scene(), player_id=scenario.roles[partner].persona,
                                           player_name=scenario.role_name(partner), options=options)
    except ServerError as exc:
        raise SimulationError(f"the {role} ({persona}) could not start: {exc}", code=exc.code) from None
    return _Seat(role, client, ready)


def _record(scenario: Scenario, number: int, role: str, text: str, *, source: str) -> TurnRecord:
    r = scenario.roles[role]
    return TurnRecord(turn=number, role=role, character=r.persona, name=scenario.role_name(role), text=text, source=source)


async def _respond(seat: _Seat, scenario: Scenario, number: int, last: TurnRecord) -> TurnRecord:
    """Give ``seat`` the last line (its actions first) and collect its answer."""
    for description in _action_descriptions(scenario, last):
        await _event(seat.client, description)
    rec = _record(scenario, number, seat.role, "", source="npc")
    rec.sample_rate = seat.ready.audio.sample_rate if seat.ready.audio else None
    audio = bytearray()
    end: p.ResponseEnd | None = None
    error: p.ErrorEvent | None = None
    async for event in seat.client.say(last.text or "..."):
        if isinstance(event, AudioFrame):
            audio += event.pcm
        elif isinstance(event, p.EmotionEvent):
            rec.emotion = event.emotion
        elif isinstance(event, p.ResponseEnd):
            end = event
        elif isinstance(event, p.ErrorEvent) and error is None:
            error = event
    if end is None or end.status == "failed":
        code = (end.error if end else None) or (error.code if error else "no_response")
        raise SimulationError(f"the {seat.role}'s turn {number} failed: {code}", code=code)
    rec.text = end.text.strip()
    rec.actions = [a.model_dump(exclude_none=True) for a in end.actions]
    rec.timings = dict(end.timings)
    rec.audio = bytes(audio)
    return rec


async def _tell_others(seats: dict[str, _Seat], scenario: Scenario, rec: TurnRecord, *, next_speaker: str) -> None:
    """With more than two roles, the listeners who do not answer next hear the line as a game event."""
    for role, seat in seats.items():
        if role in (rec.role, next_speaker):
            continue
        for description in [f"{rec.name} said: {rec.text}", *_action_descriptions(scenario, rec)]:
            await _event(seat.client, description)


def _action_descriptions(scenario: Scenario, rec: TurnRecord) -> list[str]:
    names = {r.persona: scenario.role_name(k) for k, r in scenario.roles.items()}
    out = []
    for a in rec.actions:
        obj, target = a.get("object"), names.get(a.get("target", ""), a.get("target"))
        if a["verb"] == "give":
            out.append(f"{rec.name} gave {obj} to {target}.")
        elif a["verb"] == "grab":
            out.append(f"{rec.name} picked up {obj}.")
        else:
            out.append(f"{rec.name} moved to {target}.")
    return out


async def _event(client: NpcClient, description: str) -> None:
    """Send a ``game.event`` (no reaction) and wait for its acknowledgement."""
    ref = await client.game_event(description[: p.MAX_TEXT_CHARS], react=False)
    async for event in _events(client):
        if isinstance(event, p.EventAccepted) and event.ref == ref:
            return
        if isinstance(event, p.ErrorEvent) and event.ref == ref:
            raise SimulationError(f"game event refused: {event.code}: {event.message}", code=event.code)


async def _events(client: NpcClient) -> AsyncIterator[Any]:
    while True:
        yield await client.recv()


def _stop_reason(scenario: Scenario, rec: TurnRecord) -> str | None:
    lowered = rec.text.lower()
    for phrase in scenario.stop.phrases:
        if phrase.lower() in lowered:
            return f"phrase: {phrase!r}"
    done = rec.action_strings()
    for wanted in scenario.stop.actions:
        key = stop_action_key(wanted, scenario)
        if any(key == a or (" " not in key and a.split()[0] == key) for a in done):
            return f"action: {wanted}"
    return None
