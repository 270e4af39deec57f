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


# --------------------------------------------------------------------------- frames that once crashed the server (issue 15)


def _nested(depth: int, shape: str = "[") -> str:
    return "[" * depth + "]" * depth if shape == "[" else '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_nested(1000), "invalid_message"),  # was an uncaught RecursionError
        (_nested(100_000)[:60_000], "invalid_message"),  # cut off: too deep is said before not JSON
        (_nested(p.MAX_DEPTH + 1), "invalid_message"),
        (_nested(p.MAX_DEPTH), "invalid_message"),  # within the limit: parsed, and not an object
        (_nested(p.MAX_DEPTH, "{"), "unknown_type"),
        ('{"type": "ping", "x": ' + _nested(p.MAX_DEPTH - 1) + "}", "invalid_message"),  # 32 deep: an extra field
        ('{"type": "ping", "x": ' + _nested(p.MAX_DEPTH) + "}", "invalid_message"),  # 33 deep
        ('{"type": "ping", "x": "' + "[" * 5000 + '"}', "invalid_message"),  # brackets in a string are text: extra field
        ('{"type": "ping", "x": NaN}', "bad_json"),  # Python's json reads NaN/Infinity; JSON has neither
        ('{"type": "ping", "x": -Infinity}', "bad_json"),
        ('{"type": "ping", "id": "\\ud800"}', "invalid_message"),  # a lone surrogate: not valid Unicode
        ('{"type": "input.text", "text": "hi \\udfff"}', "invalid_message"),
        ('{"type": "playback.mark", "response_id": "\\ud800", "played_ms": 1}', "invalid_message"),  # pydantic lets it in
        ('{"type": "response.cancel", "response_id": "\\udc00x"}', "invalid_message"),
        ('{"type": "scene.update", "scene": {"name": "\\ud800"}}', "invalid_scene"),
        ('{"type": "\\ud800"}', "unknown_type"),
        ('{"type": ["ping"]}', "unknown_type"),
        ("{\"type\": \"ping\", \"id\": \"\ud800\"}", "bad_json"),  # a raw surrogate in a str (not from websockets)
    ],
)
def test_hostile_frames_get_a_stable_code(frame: str, code: str) -> None:
    assert _code(frame) == code


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    msg = p.parse_client_message('{"type": "response.cancel", "id": "\\ud83d\\ude00", "response_id": "\\ud83d\\ude00"}')
    assert msg.id == msg.response_id == "\U0001f600"


def test_message_ref_only_reads_ids_that_can_be_sent() -> None:
    assert p.message_ref('{"type": "ping", "id": "\\ud800"}') is None
    assert p.message_ref('{"type": "playback.mark", "id": "m1", "response_id": "\\ud800"}') == "m1"
    assert p.message_ref('{"id": "m2", "x": ' + _nested(1000) + "}") is None  # too deep: not read
    assert p.message_ref(json.dumps({"id": "m3", "pad": "x" * p.MAX_MESSAGE_BYTES})) is None  # too large: not read
    assert p.message_ref('{"id": "m4", "x": NaN}') is None
    assert p.message_ref(json.dumps({"id": "x" * (p.MAX_ID_CHARS + 1)})) is None
    assert p.message_ref(_nested(1000)) is None


def test_error_messages_are_short_and_can_always_be_sent() -> None:
    frames = ['{"type": "' + "t" * 60_000 + '"}', '{"type": "ping", "' + "k" * 60_000 + '": 1}',
              '{"type": "\\ud800"}', '{"type": "ping", "\\ud800\\udfff": 1}', '{"type": "ping", "\\udfff": 1}']
    for frame in frames:
        with pytest.raises(ProtocolError) as info:
            p.parse_client_message(frame)
        assert len(info.value.message) < 600
        p.encode_event(p.ErrorEvent(code=info.value.code, message=info.value.message))


def test_an_event_that_cannot_be_encoded_raises_value_error() -> None:
    with pytest.raises(ValueError):
        p.encode_event(p.ErrorEvent(code="x", message="m", ref="\ud800"))
