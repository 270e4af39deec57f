"""Protocol v1 unit tests: parsing, error codes, encoding, the committed JSON Schema. No network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npc_runtime import protocol as p
from npc_runtime.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT.parent / "shared" / "eval" / "scenes"


def _code(frame: str | bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        p.parse_client_message(frame)
    return info.value.code


def test_parses_every_client_message() -> None:
    scene = json.loads((SCENES / "ramen_shop.json").read_text())
    frames = [
        {"type": "session.start", "id": "m1", "character": "jin", "player": {"id": "player", "name": "Kai"}, "scene": scene},
        {"type": "input.text", "text": "hello"},
        {"type": "scene.update", "scene": {"objects": [{"id": "cup"}]}},
        {"type": "game.event", "description": "A fire broke out.", "react": True},
        {"type": "response.cancel"},
        {"type": "ping", "id": "x"},
    ]
    parsed = [p.parse_client_message(json.dumps(f)) for f in frames]
    assert [m.type for m in parsed] == [f["type"] for f in frames]
    assert parsed[0].scene.ids("objects") == ["ramen_bowl", "chopsticks", "sake_bottle", "menu"]
    assert parsed[3].react is True


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"text": "no type"}', "unknown_type"),
        ('{"type": "input.text"}', "invalid_message"),
        ('{"type": "input.text", "text": "hi", "extra": 1}', "invalid_message"),
        ('{"type": "input.text", "text": ""}', "invalid_message"),
        ('{"type": "session.start", "character": "Jin!"}', "invalid_message"),
        ('{"type": "session.start", "character": "jin", "scene": {"objects": [{"id": "a"}, {"id": "a"}]}}', "invalid_scene"),
        ('{"type": "session.start", "character": "jin", "scene": {"objects": [{"id": "Bad Id"}]}}', "invalid_scene"),
        ('{"type": "scene.update", "scene": {"objects": [{"id": "x"}], "characters": [{"id": "x"}]}}', "invalid_scene"),
        (json.dumps({"type": "input.text", "text": "a" * (p.MAX_TEXT_CHARS + 1)}), "text_too_large"),
        (json.dumps({"type": "input.text", "text": "a" * (p.MAX_MESSAGE_BYTES + 10)}), "message_too_large"),
    ],
)
def test_bad_input_gets_a_stable_code(frame: str, code: str) -> None:
    assert _code(frame) == code


def test_message_ref_is_best_effort() -> None:
    assert p.message_ref('{"type": "dance", "id": "m7"}') == "m7"
    assert p.message_ref("{oops") is None
    assert p.message_ref('{"id": 5}') is None


def test_server_events_round_trip() -> None:
    events = [
        p.SessionReady(session_id="s", character=p.CharacterInfo(id="jin", name="Jin"), actions=["move"]),
        p.ResponseStart(response_id="r1", trigger="text"),
        p.TextDelta(response_id="r1", text="Sure."),
        p.ActionEvent(response_id="r1", index=0, verb="give", object="chopsticks", target="player", text_offset=5),
        p.ResponseEnd(response_id="r1", status="completed", text="Sure.", actions=[p.ActionRecord(verb="give", object="chopsticks", target="player")], timings={"end": 12.5}),
        p.ErrorEvent(code="bad_json", message="x"),
        p.Pong(ref="x"),
    ]
    for event in events:
        frame = p.encode_event(event)
        assert "response_id" in json.loads(frame)
        assert p.parse_server_event(frame) == event


def test_committed_schema_is_current() -> None:
    committed = json.loads((ROOT / "clients" / "protocol.schema.json").read_text())
    assert committed == json.loads(json.dumps(p.json_schema())), "run `npc schema` and commit clients/protocol.schema.json"


def test_schema_covers_every_message_type() -> None:
    text = json.dumps(p.json_schema())
    for kind in (*p.CLIENT_TYPES, "session.ready", "response.start", "response.text.delta", "response.action", "response.end", "error", "pong"):
        assert f'"{kind}"' in text
