"""Session logic driven by the scripted FakeLLM (no model): event order, interruption and what
the history keeps, game events, scene updates, errors, and that no task outlives a session."""

from __future__ import annotations

import ast
import asyncio
import inspect
import typing
from typing import Any

import pytest
from conftest import CHARACTERS, scene_dict

from npc_runtime import protocol as p
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import LLMUnavailable, PersonaError
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.persona.schema import Persona
from npc_runtime.session import TRANSITIONS, Services, Session, State, Trigger, next_state


class Personas:
    def __init__(self) -> None:
        self.by_id = {pid: load_persona(CHARACTERS / f"{pid}.yaml") for pid in ("jin", "nova")}

    def get(self, character_id: str) -> Persona:
        try:
            return self.by_id[character_id]
        except KeyError:
            raise PersonaError(f"unknown character {character_id!r}", code="unknown_character") from None


def make_session(llm: FakeLLM, personas: Personas | None = None) -> Session:
    services = Services(personas=personas or Personas(), dialogue=Dialogue(llm=llm))
    services.ready.set()
    return Session(services)


async def drain_until(session: Session, kind: str, timeout: float = 5.0) -> list[Any]:
    events: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await session.outbox.get()
            events.append(event)
            if event.type == kind:
                return events


async def started(llm: FakeLLM, character: str = "jin", **kw: Any) -> Session:
    session = make_session(llm, **kw)
    await session.handle(p.SessionStart(character=character, scene=p.Scene.model_validate(scene_dict("ramen_shop.json")), player=p.Player(name="Kai")))
    (ready,) = await drain_until(session, "session.ready")
    assert ready.character.id == character
    return session


def test_transition_table_is_closed() -> None:
    assert next_state(State.AWAITING_START, Trigger.START) is State.IDLE
    with pytest.raises(Exception):
        next_state(State.AWAITING_START, Trigger.RESPOND)
    assert all(isinstance(k[0], State) and isinstance(v, State) for k, v in TRANSITIONS.items())


async def test_text_turn_streams_text_then_actions_then_end() -> None:
    llm = FakeLLM(["Here you go, friend. [give chopsticks player]"])
    session = await started(llm)
    await session.handle(p.TextInput(text="Chopsticks please", id="m1"))
    events = await drain_until(session, "response.end")
    kinds = [e.type for e in events]
    assert kinds[0] == "response.start" and kinds[-1] == "response.end"
    assert events[0].ref == "m1"
    rid = events[0].response_id
    assert all(e.response_id == rid for e in events)
    text = "".join(e.text for e in events if e.type == "response.text.delta")
    assert text == "Here you go, friend." and "[" not in text
    (action,) = [e for e in events if e.type == "response.action"]
    assert (action.verb, action.object, action.target, action.text_offset) == ("give", "chopsticks", "player", len(text))
    end = events[-1]
    assert end.status == "completed" and end.text == text
    assert [a.verb for a in end.actions] == ["give"]
    assert {"prompt_ready", "first_token", "first_text", "end"} <= end.timings.keys()
    assert llm.grammars and "chopsticks" in llm.grammars[0]
    assert [h.kind for h in session.character.history] == ["player", "character"]
    assert session.character.history[-1].text == "Here you go, friend. [give chopsticks player]"
    await session.aclose()


async def test_new_text_interrupts_and_history_keeps_only_what_was_sent() -> None:
    llm = FakeLLM(["one two three four five six seven eight nine ten eleven twelve", "Okay."], token_delay=0.05)
    session = await started(llm)
    await session.handle(p.TextInput(text="Tell me a long story"))
    first = await drain_until(session, "response.text.delta")
    first += await drain_until(session, "response.text.delta")
    await session.handle(p.TextInput(text="Stop."))
    events = await drain_until(session, "response.end")
    end = events[-1]
    assert end.response_id == first[0].response_id and end.status == "interrupted"
    sent = "".join(e.text for e in first + events if e.type == "response.text.delta")
    assert end.text == sent and 0 < len(sent) < len("one two three four five six seven eight nine ten eleven twelve")
    assert llm.stopped_early == 1
    second = await drain_until(session, "response.end")
    assert second[-1].status == "completed" and second[-1].text == "Okay."
    assert [h.kind for h in session.character.history] == ["player", "character", "player", "character"]
    assert session.character.history[1].text == sent.strip()
    await session.aclose()


async def test_cancel_stops_the_response() -> None:
    llm = FakeLLM(["a b c d e f g h i j k l m n o p"], token_delay=0.05)
    session = await started(llm)
    await session.handle(p.TextInput(text="go"))
    (start,) = await drain_until(session, "response.start")
    await session.handle(p.ResponseCancel(response_id=start.response_id))
    events = await drain_until(session, "response.end")
    assert events[-1].status == "interrupted"
    await session.handle(p.ResponseCancel(id="c9"))
    (err,) = await drain_until(session, "error")
    assert err.code == "no_response" and err.ref == "c9"
    await session.aclose()


async def test_game_event_is_remembered_and_can_trigger_a_reaction() -> None:
    llm = FakeLLM(["Fire! [move door]"])
    session = await started(llm)
    await session.handle(p.GameEvent(description="The player looted the shop.", id="e1"))
    (ack,) = await drain_until(session, "game.event.accepted")
    assert ack.ref == "e1" and ack.reacting is False
    await session.handle(p.GameEvent(description="A fire broke out in the kitchen.", react=True))
    events = await drain_until(session, "response.end")
    assert events[0].type == "game.event.accepted" and events[1].trigger == "game_event"
    assert [a.target for a in events[-1].actions] == ["door"]
    last_user = llm.requests[-1].messages[-1]
    assert last_user.role == "user" and "looted" in last_user.content and "fire broke out" in last_user.content
    await session.aclose()


async def test_scene_update_changes_the_grammar() -> None:
    llm = FakeLLM(["Sure. [grab lantern]"])
    session = await started(llm)
    await session.handle(p.SceneUpdate(scene=p.Scene.model_validate({"objects": [{"id": "lantern"}], "characters": [{"id": "jin"}, {"id": "player"}]})))
    (upd,) = await drain_until(session, "scene.updated")
    assert (upd.objects, upd.characters) == (1, 1)  # jin does not see himself
    await session.handle(p.TextInput(text="grab the lantern"))
    events = await drain_until(session, "response.end")
    assert [a.object for a in events[-1].actions] == ["lantern"]
    assert "lantern" in llm.grammars[-1] and "ramen_bowl" not in llm.grammars[-1]
    await session.aclose()


async def test_tags_outside_the_scene_never_become_actions() -> None:
    llm = FakeLLM(["Here. [give sword player] [fly moon] [grab menu]"])
    session = await started(llm)
    await session.handle(p.TextInput(text="x"))
    events = await drain_until(session, "response.end")
    assert [(a.verb, a.object) for a in events[-1].actions] == [("grab", "menu")]
    assert "[" not in events[-1].text
    await session.aclose()


async def test_protocol_errors_keep_the_session_usable() -> None:
    llm = FakeLLM(["Hi."])
    session = make_session(llm)
    await session.handle(p.TextInput(text="hello", id="t1"))
    (err,) = await drain_until(session, "error")
    assert (err.code, err.ref) == ("no_session", "t1")
    await session.handle(p.SessionStart(character="nobody"))
    (err,) = await drain_until(session, "error")
    assert err.code == "unknown_character"
    await session.handle(p.SessionStart(character="jin"))
    await drain_until(session, "session.ready")
    await session.handle(p.SessionStart(character="nova"))
    (err,) = await drain_until(session, "error")
    assert err.code == "session_exists"
    await session.handle(p.Ping(id="k"))
    (pong,) = await drain_until(session, "pong")
    assert pong.ref == "k"
    await session.aclose()


async def test_llm_failure_ends_the_response_as_failed() -> None:
    llm = FakeLLM(["x"], fail_with=LLMUnavailable("server went away"))
    session = await started(llm)
    await session.handle(p.TextInput(text="hi"))
    events = await drain_until(session, "response.end")
    err = [e for e in events if e.type == "error"][0]
    assert err.code == "llm_unavailable" and err.retryable and err.response_id == events[0].response_id
    assert events[-1].status == "failed" and events[-1].error == "llm_unavailable"
    llm.fail_with = None
    await session.handle(p.TextInput(text="again"))
    events = await drain_until(session, "response.end")
    assert events[-1].status == "completed"
    await session.aclose()


async def test_persona_reload_applies_to_the_next_turn() -> None:
    personas = Personas()
    llm = FakeLLM(["Hello."])
    session = await started(llm, personas=personas)
    personas.by_id["jin"] = personas.by_id["jin"].model_copy(update={"name": "Jin the Second"})
    await session.handle(p.TextInput(text="hi"))
    await drain_until(session, "response.end")
    assert "Jin the Second" in llm.requests[-1].messages[0].content
    del personas.by_id["jin"]  # the file vanished: the session keeps its persona
    await session.handle(p.TextInput(text="hi again"))
    events = await drain_until(session, "response.end")
    assert events[-1].status == "completed"
    await session.aclose()


async def test_many_sessions_leave_no_task_behind() -> None:
    before = {t for t in asyncio.all_tasks()}
    llm = FakeLLM(["a b c d e f g h"], token_delay=0.01)
    sessions = [await started(llm) for _ in range(20)]
    for s in sessions:
        await s.handle(p.TextInput(text="go"))
    await asyncio.sleep(0.02)
    for s in sessions:
        await s.aclose()
    await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() if not t.done()} - before == set()


async def test_session_start_and_scene_update_warm_the_prefix() -> None:
    llm = FakeLLM(["Hi."])
    session = await started(llm)
    await asyncio.sleep(0.01)
    assert len(llm.prefills) == 1
    warm = llm.prefills[0]
    assert warm.cache_key and warm.prefix_messages == len(warm.messages)
    await session.handle(p.TextInput(text="hello"))
    await drain_until(session, "response.end")
    turn = llm.requests[-1]
    assert turn.cache_key == warm.cache_key
    assert list(turn.messages[: turn.prefix_messages]) == list(warm.messages)
    await session.handle(p.SceneUpdate(scene=p.Scene.model_validate({"objects": [{"id": "lantern"}]})))
    await drain_until(session, "scene.updated")
    await asyncio.sleep(0.01)
    assert len(llm.prefills) == 2 and llm.prefills[1].cache_key != warm.cache_key
    await session.aclose()


def make_voiced_session(llm: FakeLLM, tts: Any) -> Session:
    services = Services(personas=Personas(), dialogue=Dialogue(llm=llm), tts=tts)
    services.ready.set()
    return Session(services)


async def start_voiced(llm: FakeLLM, tts: Any, **options: Any) -> tuple[Session, Any]:
    session = make_voiced_session(llm, tts)
    await session.handle(p.SessionStart(character="jin", scene=p.Scene.model_validate(scene_dict("ramen_shop.json")), options=p.SessionOptions(**options)))
    (ready,) = await drain_until(session, "session.ready")
    return session, ready


def _audio_pairs(events: list[Any]) -> list[tuple[Any, bytes]]:
    pairs = []
    for i, e in enumerate(events):
        if getattr(e, "type", None) == "response.audio":
            assert isinstance(events[i + 1], bytes), "a response.audio event is followed by its binary frame"
            pairs.append((e, events[i + 1]))
    return pairs


async def drain_end(session: Session, timeout: float = 5.0) -> list[Any]:
    events: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await session.outbox.get()
            events.append(event)
            if getattr(event, "type", None) == "response.end":
                return events


async def test_voice_audio_visemes_and_action_timing() -> None:
    from npc_runtime.tts.fake import FakeTTS

    tts = FakeTTS(sample_rate=16000, ms_per_char=10)
    llm = FakeLLM(["Sure thing, friend. Here are your chopsticks. [give chopsticks player] Enjoy the ramen tonight."])
    session, ready = await start_voiced(llm, tts)
    assert ready.audio is not None and ready.audio.sample_rate == 16000 and ready.audio.encoding == "pcm_s16le"
    await session.handle(p.TextInput(text="chopsticks?"))
    events = await drain_end(session)
    pairs = _audio_pairs(events)
    assert len(pairs) >= 2
    position = 0.0
    for seq, (event, pcm) in enumerate(pairs):
        assert event.seq == seq and len(pcm) == 2 * event.samples
        assert abs(event.start_ms - position) < 1e-3
        cues = event.visemes
        assert cues[0].start_ms == pytest.approx(event.start_ms) and cues[-1].end_ms == pytest.approx(event.start_ms + event.samples / 16)
        assert all(abs(a.end_ms - b.start_ms) < 1e-6 for a, b in zip(cues, cues[1:]))
        position = event.start_ms + event.samples / 16
    (action,) = [e for e in events if getattr(e, "type", None) == "response.action"]
    before = [e for e, _ in pairs if events.index(e) < events.index(action)]
    assert before, "the speech before the tag is synthesized before the action is sent"
    assert action.at_ms == pytest.approx(before[-1].start_ms + before[-1].samples / 16, abs=0.1)
    assert 0 < action.at_ms < position
    end = events[-1]
    assert end.audio_ms == pytest.approx(position, abs=0.1) and end.status == "completed"
    assert tts.texts[0].startswith("Sure thing")
    await session.aclose()


async def test_text_only_sessions_get_no_audio() -> None:
    from npc_runtime.tts.fake import FakeTTS

    session, ready = await start_voiced(FakeLLM(["Hello there. [move door]"]), FakeTTS(), text_only=True)
    assert ready.audio is None
    await session.handle(p.TextInput(text="hi"))
    events = await drain_end(session)
    assert not any(isinstance(e, bytes) for e in events)
    assert [e.at_ms for e in events if getattr(e, "type", None) == "response.action"] == [None]
    assert events[-1].audio_ms is None
    await session.aclose()


async def test_tts_failure_reports_once_and_the_text_still_arrives() -> None:
    from npc_runtime.errors import NpcError
    from npc_runtime.tts.fake import FakeTTS

    tts = FakeTTS(fail_with=NpcError("voice broke", code="tts_failed"), fail_after=1)
    llm = FakeLLM(["First sentence here. Second sentence there. Third one as well."])
    session, _ = await start_voiced(llm, tts)
    await session.handle(p.TextInput(text="talk"))
    events = await drain_end(session)
    errors = [e for e in events if getattr(e, "type", None) == "error"]
    assert [e.code for e in errors] == ["tts_failed"]
    end = events[-1]
    assert end.status == "completed" and end.text == "First sentence here. Second sentence there. Third one as well."
    await session.aclose()


async def test_interrupt_stops_the_voice_within_a_chunk() -> None:
    from npc_runtime.tts.fake import FakeTTS

    tts = FakeTTS(chunk_delay=0.05)
    llm = FakeLLM(["One. Two. Three. Four. Five. Six. Seven. Eight. Nine. Ten. Eleven. Twelve.", "Ok."], token_delay=0.01)
    session, _ = await start_voiced(llm, tts)
    await session.handle(p.TextInput(text="count"))
    await drain_until(session, "response.audio")
    await session.handle(p.ResponseCancel())
    events = await drain_end(session)
    assert events[-1].status == "interrupted"
    chunks_after_cancel = [e for e in events if getattr(e, "type", None) == "response.audio"]
    assert len(chunks_after_cancel) <= 1
    await session.aclose()


async def test_emotion_tags_become_timed_emotion_events() -> None:
    from npc_runtime.tts.fake import FakeTTS

    llm = FakeLLM(["[emotion joy] Welcome back, friend! The broth is ready. [emotion surprise] Oh, you brought Nova?"])
    session, ready = await start_voiced(llm, FakeTTS(sample_rate=16000, ms_per_char=10))
    assert ready.mood == "neutral"
    await session.handle(p.TextInput(text="hi"))
    events = await drain_end(session)
    emotions = [e for e in events if getattr(e, "type", None) == "response.emotion"]
    assert [(e.emotion, e.text_offset) for e in emotions] == [("joy", 0), ("surprise", len("Welcome back, friend! The broth is ready."))]
    assert emotions[0].at_ms == 0.0
    audio_before = [e for e in events[: events.index(emotions[1])] if getattr(e, "type", None) == "response.audio"]
    assert emotions[1].at_ms == pytest.approx(sum(e.samples for e in audio_before) / 16, abs=0.1) and emotions[1].at_ms > 0
    assert "emotion" not in events[-1].text and "emotion" in llm.grammars[-1]
    await session.aclose()


# -- dispatch: every client message type has its branch (issue 16)

def _client_classes() -> list[type[Any]]:
    union = typing.get_args(p.ClientMessage)[0]  # Annotated[Union[...], Field(discriminator=...)]
    return list(typing.get_args(union))


def test_the_dispatch_has_a_case_for_every_client_message_type() -> None:
    """Read Session._dispatch's ``match``: one ``case p.X()`` per member of the ClientMessage union, and nothing else
    (mypy --strict checks the same through ``assert_never``)."""
    from npc_runtime.session import connection

    tree = ast.parse(inspect.getsource(connection.Session._dispatch).strip().replace("\n    ", "\n"))
    (match,) = [node for node in ast.walk(tree) if isinstance(node, ast.Match)]
    cases = [c.pattern.cls.attr for c in match.cases if isinstance(c.pattern, ast.MatchClass) and isinstance(c.pattern.cls, ast.Attribute)]
    assert sorted(cases) == sorted(cls.__name__ for cls in _client_classes())
    assert len(cases) == len(set(cases)) == len(p.CLIENT_TYPES)
    assert {cls.model_fields["type"].default for cls in _client_classes()} == set(p.CLIENT_TYPES)


async def test_every_client_message_type_is_handled_by_a_started_session() -> None:
    """One message of each type through handle(): each gets its answer (an event, or an error event with its own
    code); none reaches the catch-all, which would raise."""
    examples: dict[str, p.ClientMessage] = {
        "session.start": p.SessionStart(character="jin"),
        "input.text": p.TextInput(text="Chopsticks please", id="t1"),
        "scene.update": p.SceneUpdate(scene=p.Scene.model_validate(scene_dict("ramen_shop.json"))),
        "game.event": p.GameEvent(description="The door creaks.", react=False),
        "response.cancel": p.ResponseCancel(response_id="nope"),
        "input.audio.commit": p.AudioCommit(),
        "input.audio.clear": p.AudioClear(),
        "playback.mark": p.PlaybackMark(response_id="nope", played_ms=10),
        "scene.converse": p.Converse(topic="the weather", turns=2),
        "ping": p.Ping(id="p1"),
    }
    assert set(examples) == set(p.CLIENT_TYPES)
    session = await started(FakeLLM(["Here you go."]))
    answers: dict[str, str] = {}
    for kind, msg in examples.items():
        await session.handle(msg)
        await asyncio.sleep(0.05)
        out = []
        while not session.outbox.empty():
            item = session.outbox.get_nowait()
            if not isinstance(item, bytes):
                out.append(item)
        answers[kind] = ",".join(e.code if isinstance(e, p.ErrorEvent) else e.type for e in out)
    await session.aclose()
    assert answers["session.start"] == "session_exists"
    assert answers["input.text"].startswith("response.start") and "response.end" in answers["input.text"]
    assert answers["scene.update"] == "scene.updated"
    assert answers["game.event"] == "game.event.accepted"
    assert answers["response.cancel"] == "no_response"
    assert answers["input.audio.commit"] == answers["input.audio.clear"] == "audio_in_unavailable"
    assert answers["playback.mark"] == ""  # an unknown response's mark is ignored
    assert answers["scene.converse"] == "no_cast"
    assert answers["ping"] == "pong"
