"""Run a scenario over the normal protocol: one session per role, lines passed between them.

Each NPC role is one WebSocket session (``connect()`` gives a client) whose persona is the role's and
whose "player" is the role that speaks before it (``player.id`` = that role's persona id, so memory
is kept per partner), with the role brief in ``options.brief``. The opener's first line is scripted.
Then the speakers take turns in the roles' order, starting after the opener: the last line goes to
the next speaker as ``input.text`` (its actions first, as a ``game.event`` without reaction); with
more than two roles, the others hear it as a ``game.event`` ("<Name> said: ...", no reaction).

Repetition: a weak model echoes the line it answers, or says its own last line again, until the
conversation collapses into one line. Each NPC line is compared with the last round of lines (the
line it answers and its own previous one; :mod:`npc_runtime.sim.repetition`: equal once normalised,
or half of it copied in runs of three words or more). A repeat is rejected and the turn asked again
(:data:`LOOP_RETRIES` times) with a ``game.event`` that reacts at once and tells the character what
went wrong — a different prompt, so a different line under the same seed (the protocol has no
per-turn seed). The rejected line is kept in the transcript (``rejected``) but never reaches the other
roles; it stays in the speaker's own session history, followed by that event. A line that still
repeats, or that speaks the event itself (``(Event: ...``: SmolLM2 does), is recorded and ends the
simulation: ``loop: ...``.

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
from npc_runtime.actions import vocabulary
from npc_runtime.client import AudioFrame, NpcClient
from npc_runtime.errors import NpcError
from npc_runtime.sim.repetition import first_repeat, normalise, repeats
from npc_runtime.sim.scenario import Scenario, stop_action_key

Connect = Callable[[], AbstractAsyncContextManager[NpcClient]]
AskHuman = Callable[[str, str], Awaitable[str]]

#: How many times a line that repeats a recent one is asked again before the simulation stops with ``loop``.
LOOP_RETRIES = 1


class SimulationError(NpcError):
    code = "simulation_failed"


@dataclass(slots=True)
class TurnRecord:
    """One line of the conversation. ``source``: ``scripted`` (the opening), ``npc`` or ``human``.
    ``rejected``: the lines this turn gave first and the runner asked again (``text``, ``why``), oldest first."""

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
    rejected: list[dict[str, str]] = field(default_factory=list)

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


def repeated_line(rec: TurnRecord, recent: Sequence[TurnRecord]) -> TurnRecord | None:
    """The line of ``recent`` that ``rec`` repeats (the first one), or None. Pure."""
    spoken = [r for r in recent if r.text.strip()]
    index = first_repeat(rec.text, [r.text for r in spoken])
    return None if index is None else spoken[index]


def loop_description(rec: TurnRecord, earlier: TurnRecord) -> str:
    """``the nurse repeated its own line of turn 2`` / ``the customer repeated the rep's line of turn 3``."""
    whose = "its own" if earlier.role == rec.role else f"the {earlier.role}'s"
    return f"the {rec.role} repeated {whose} line of turn {earlier.turn}"


def retry_event(scenario: Scenario, rec: TurnRecord, earlier: TurnRecord, partner: str) -> str:
    """The ``game.event`` that asks ``rec``'s role again after it repeated ``earlier`` (``partner``: the role it answers)."""
    me, them = scenario.role_name(rec.role), scenario.role_name(partner)
    what = "You said that already." if earlier.role == rec.role else f"Those were {scenario.role_name(earlier.role)}'s words, not yours."
    return f"{what} Answer {them} as {me}, the {rec.role}, in new words."


def speaks_event(text: str, event: str) -> bool:
    """Whether a line asked for again speaks the event instead (``(Event: ...)``, or the event's words). Pure."""
    return normalise(text).startswith("event ") or repeats(text, event)


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
            loop: str | None = None
            if rec.source == "npc":
                recent = records[-len(order):]  # the line answered, and this role's own previous line
                earlier = repeated_line(rec, recent)
                for _ in range(LOOP_RETRIES):
                    if earlier is None:
                        break
                    event = retry_event(scenario, rec, earlier, records[-1].role)
                    rejected = [*rec.rejected, {"text": rec.text, "why": loop_description(rec, earlier)}]
                    rec = await _retry(seats[speaker], scenario, number, event)
                    rec.rejected = rejected
                    if speaks_event(rec.text, event):
                        loop = f"the {rec.role} said the event that asked it again"
                        break
                    earlier = repeated_line(rec, recent)
                if loop is None and earlier is not None:
                    loop = loop_description(rec, earlier)
            await _tell_others(seats, scenario, rec, next_speaker=order[number % len(order)])
            await record(rec)
            stopped = _stop_reason(scenario, rec)
            if stopped is None and scenario.stop.goal and goal_check is not None and rec.source != "scripted":
                if await goal_check(records):
                    stopped = f"goal: {scenario.stop.goal}"
            if stopped is None and loop is not None:
                stopped = f"loop: {loop}"
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
    """Give ``seat`` the last line (its actions first) and collect its answer. The line goes in as
    ``input.text``: the other person's words (a user turn in the speaker's prompt), never its own."""
    for description in _action_descriptions(scenario, last):
        await _event(seat.client, description)
    return await _collect(seat, scenario, number, seat.client.say(last.text or "..."))


async def _retry(seat: _Seat, scenario: Scenario, number: int, description: str) -> TurnRecord:
    """Ask ``seat`` again: a ``game.event`` it reacts to at once; collect the new answer."""
    ref = await seat.client.game_event(description[: p.MAX_TEXT_CHARS], react=True)

    async def answer() -> AsyncIterator[Any]:
        started = False
        async for event in _events(seat.client):
            if isinstance(event, p.EventAccepted) and event.ref == ref:
                continue
            if isinstance(event, p.ErrorEvent) and event.ref == ref:
                raise SimulationError(f"game event refused: {event.code}: {event.message}", code=event.code)
            yield event
            started = started or isinstance(event, p.ResponseStart)
            if isinstance(event, p.ResponseEnd) or (isinstance(event, p.ErrorEvent) and event.response_id is None and not started):
                return

    return await _collect(seat, scenario, number, answer())


async def _collect(seat: _Seat, scenario: Scenario, number: int, events: AsyncIterator[Any]) -> TurnRecord:
    """The turn record of one response, from its events (up to its ``response.end``)."""
    rec = _record(scenario, number, seat.role, "", source="npc")
    rec.sample_rate = seat.ready.audio.sample_rate if seat.ready.audio else None
    audio = bytearray()
    end: p.ResponseEnd | None = None
    error: p.ErrorEvent | None = None
    async for event in events:
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
    known = vocabulary(scenario.full_scene())
    out = []
    for a in rec.actions:
        obj, target = a.get("object"), names.get(a.get("target", ""), a.get("target"))
        if a["verb"] == "give":
            out.append(f"{rec.name} gave {obj} to {target}.")
        elif a["verb"] == "grab":
            out.append(f"{rec.name} picked up {obj}.")
        elif a["verb"] == "move":
            out.append(f"{rec.name} moved to {target}.")
        else:  # a verb the scenario's scene declares: its own description
            verb = known.get(a["verb"])
            values = ", ".join(names.get(v, v) for v in (a.get("args") or {}).values())
            what = verb.description if verb is not None else a["verb"]
            out.append(f"{rec.name} {what}" + (f" ({values})." if values else "."))
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
