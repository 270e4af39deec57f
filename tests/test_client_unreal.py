"""The Unreal client's engine-independent core (clients/unreal/NpcRuntime/Source/NpcRuntimeCore), built with
g++ and tested three ways (issue 8):

1. unit tests of the JSON parser/writer, the protocol parser and builders, the timeline (simulated clock,
   barge-in), viseme weights and the embedded ARKit table against clients/visemes/ovr_to_arkit.json;
2. replay of server sessions through the core: the recordings in tests/data/sessions/*.jsonl AND sessions
   recorded now from the scripted server (so a protocol change on the server breaks this test, not only stale files);
3. live: the test program's own RFC 6455 client (POSIX sockets) talks to ``npc serve``: session.start, a text
   turn, audio frames, visemes, an action and response.end, all parsed by the core;
4. auth: the same live turn against the scripted server with auth on, the player token sent as
   ``Authorization: Bearer`` (npc::BearerAuthorization); without a token and with a badly signed one the handshake
   is refused, and the core's npc::ParseHandshakeResponse reports HTTP 401 ``unauthorized`` with the server's reason;
5. verbs as data (issue 16): the unit tests decode any verb into its name and args by name (npc::Action::verb_name,
   args; the built-ins keep their typed verb/object/target, also from a server that sends no args) and build scenes
   with verbs (npc::Scene::verbs, CheckScene); live, a scene declaring ``sit`` (seat: object), ``emote`` (gesture:
   wave|bow|shrug) and a stool: the scripted reply "[emote bow] ... [sit stool]" decoded, timed and fired as those
   verbs with their args, and a built-in turn in the same scene as before.

What the core does with a given action (decoded, placed on the audio timeline, fired) is checked on the scripted
server, whose replies are fixed (tests/data/scripted_llm.json). One live turn runs on the real model too, checked only
for what any answer satisfies: a model's words and actions depend on the model, the CPU and its kernels.

The UE module (Source/NpcRuntime) needs the Unreal editor and is not compiled here.

Re-record the committed sessions from a scripted server (the replies the checks expect), started on a free port::

    .venv/bin/python tests/test_client_unreal.py --record
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from npc_runtime.tts.visemes import VISEMES

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_server import (  # noqa: E402
    ARG_NAMES,
    SEAT_PROMPT,
    AuthServer,
    LiveServer,
    action_as_data,
    missing_toolchain,
    scene_with_verbs,
    scripted_actions,
    scripted_auth_server,  # noqa: E402,F401  (fixture: started once per run, see live_server.py)
    scripted_verbs,
)

CORE = ROOT / "clients/unreal/NpcRuntime/Source/NpcRuntimeCore"
SESSIONS = ROOT / "tests/data/sessions"
ARKIT_JSON = ROOT / "clients/visemes/ovr_to_arkit.json"
SCENE_FILE = SHARED / "eval/scenes/ramen_shop.json"
OVR = set(VISEMES)  # the 15 OVR visemes the server sends
# The scripted server answers this with one action after its first sentence (tests/data/scripted_llm.json). Piper's
# audio length varies a little between runs, so no test asserts it exactly.
ACTION_PROMPT = "Could you hand me the chopsticks?"
[ACTION] = scripted_actions(ACTION_PROMPT)
SPELLED = " ".join(v for v in ACTION.values() if v)  # as response.end lists it
JFK = SHARED / "data/jfk.flac"


# ---------------------------------------------------------------------------------------------------------------
# Building the core and its test program

def _require_gxx() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        missing_toolchain("g++ not installed (scripts/setup_clients.sh installs it)")
    return gxx


def _sanitizers_work(gxx: str, tmp: Path) -> bool:
    src = tmp / "probe.cpp"
    src.write_text("#include <vector>\nint main() { std::vector<int> v(3); return v[1]; }\n")
    exe = tmp / "probe"
    flags = ["-fsanitize=address,undefined"]
    if subprocess.run([gxx, *flags, str(src), "-o", str(exe)], capture_output=True).returncode != 0:
        return False
    return subprocess.run([str(exe)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def core_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiles the core (as UE does: no exceptions, no RTTI) and Tests/*.cpp into one program; returns it."""
    gxx = _require_gxx()
    out = tmp_path_factory.mktemp("unreal-core")
    flags = ["-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion", "-Wno-sign-conversion",
             "-fno-exceptions", "-fno-rtti", f"-I{CORE / 'Public'}", f"-I{CORE / 'Tests'}"]
    if _sanitizers_work(gxx, out):
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    sources = sorted((CORE / "Private").glob("*.cpp")) + sorted((CORE / "Tests").glob("*.cpp"))
    exe = out / "npc_core_tests"
    proc = subprocess.run([gxx, *flags, *map(str, sources), "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"g++ failed:\n{proc.stderr[-6000:]}"
    return exe


def _run(exe: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{exe.name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------------------
# Recording sessions from the real server (the Python client), one JSON line per received frame

def _scene() -> dict[str, Any]:
    return json.loads(SCENE_FILE.read_text())


def _speech() -> tuple[bytes, int]:
    """Real speech: the first phrase of jfk.flac ("And so my fellow Americans", 2.5 s) as 16 kHz PCM16 bytes."""
    from faster_whisper.audio import decode_audio

    audio = decode_audio(str(JFK), sampling_rate=16000)[: int(2.5 * 16000)]
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes(), 16000


async def _record(url: str, kind: str) -> list[str]:
    """One scripted session against the server; every received frame as one JSON line."""
    from npc_runtime.client import NpcClient

    lines: list[str] = []

    def keep(frame: str | bytes) -> None:  # a text frame exactly as the server sent it; audio as its size only
        lines.append(json.dumps({"binary": len(frame)}) if isinstance(frame, bytes) else frame)

    async def until(pred: Any, timeout: float = 240) -> None:
        async def loop() -> None:
            while True:
                frame = await client.ws.recv()
                keep(frame)
                if isinstance(frame, str) and pred(json.loads(frame)):
                    return
        await asyncio.wait_for(loop(), timeout)

    async with NpcClient.connect(url) as client:
        if kind == "error":
            await client.send_raw(json.dumps({"type": "session.start", "id": "s1", "character": "nobody_here"}))
            await until(lambda e: e["type"] == "error")
            await client.send_raw(json.dumps({"type": "session.start", "id": "s2", "character": "jin", "scene": _scene(),
                                              "options": {"text_only": True}}))
            await until(lambda e: e["type"] == "session.ready")
            await client.send_raw("{not json")
            await until(lambda e: e["type"] == "error")
            await client.send_raw(json.dumps({"type": "input.text", "id": "t1", "text": "x" * 2100}))
            await until(lambda e: e["type"] == "error")
            await client.send_raw(json.dumps({"type": "ping", "id": "p1"}))
            await until(lambda e: e["type"] == "pong")
            return lines
        player = {"id": f"rec_{uuid.uuid4().hex[:10]}"}  # fresh: no memory of earlier sessions
        await client.send_raw(json.dumps({"type": "session.start", "id": "s1", "character": "jin", "scene": _scene(),
                                          "player": player}))
        await until(lambda e: e["type"] == "session.ready")
        if kind == "text":
            await client.send_raw(json.dumps({"type": "input.text", "id": "t1", "text": ACTION_PROMPT}))
        elif kind == "voice":
            pcm, rate = _speech()
            await client.stream_audio(pcm, sample_rate=rate, frame_ms=20, realtime=False, trailing_silence_ms=1000)
        else:
            raise ValueError(kind)
        await until(lambda e: e["type"] == "response.end")
    return lines


def record_session(url: str, kind: str) -> list[str]:
    """Records one scripted session ("text", "voice" or "error") from the server at `url`."""
    return asyncio.run(_record(url, kind))


def write_jsonl(path: Path, lines: list[str]) -> None:
    assert all("\n" not in line for line in lines)  # the server's frames are compact, one line each
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# What the core parsed, checked against the protocol and against Python's own reading of the same frames

def _python_view(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The same session read by Python (json), to compare with what the C++ core parsed."""
    events = [e for e in lines if "binary" not in e]
    cues = [c for e in events if e["type"] == "response.audio" for c in e["visemes"]]
    return {
        "types": [e["type"] for e in events],
        "visemes": [(c["viseme"], c["start_ms"], c["end_ms"]) for c in cues],
        "actions": [(a["verb"], a.get("object"), a.get("target"), a["at_ms"]) for a in events if a["type"] == "response.action"],
        "action_args": [action_as_data(a)["args"] for a in events if a["type"] == "response.action"],
        "ends": [(e["status"], e["text"], e["audio_ms"]) for e in events if e["type"] == "response.end"],
        "errors": [(e["code"], e.get("ref") or "") for e in events if e["type"] == "error"],
        # each response.audio is followed by exactly its binary frame (samples x 2 bytes)
        "pairs": [(lines[i]["samples"] * 2, lines[i + 1].get("binary")) for i, e in enumerate(lines)
                  if e.get("type") == "response.audio"],
    }


def _check_summary(summary: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """Assertions common to every session: no protocol error in the core, and the core's reading equals Python's."""
    assert summary["errors"] == [], summary["errors"]
    assert summary["unknown"] == [], "the server sent event types the core does not know"
    py = _python_view(lines)
    assert summary["types"] == py["types"]
    assert [(v["viseme"], v["start_ms"], v["end_ms"]) for v in summary["visemes"]] == py["visemes"]
    assert [(a["verb"], a["object"], a["target"], a["at_ms"]) for a in summary["actions"]] == py["actions"]
    assert [a["args"] for a in summary["actions"]] == py["action_args"]  # every argument by name (older recordings: none sent)
    assert [(e["status"], e["text"], e["audio_ms"]) for e in summary["ends"]] == py["ends"]
    assert [(e["code"], e["ref"]) for e in summary["server_errors"]] == py["errors"]
    assert all(expected == got for expected, got in py["pairs"]), py["pairs"]
    assert len(summary["audio_frames"]) == len(py["pairs"])


def _check_audio_turn(summary: dict[str, Any], lines: list[dict[str, Any]], *, trigger: str) -> str:
    """A completed turn with audio: frames, visemes, timeline, marks and barge-in all consistent. Returns its id."""
    _check_summary(summary, lines)
    ready = summary["ready"]
    assert (ready["protocol"], ready["character"]) == ("1", "jin")
    assert set(ready["actions"]) == {"move", "grab", "give"} and ready["sample_rate"] > 0  # the eval scene declares no verbs
    start = next(e for e in lines if e.get("type") == "response.start")
    assert start["trigger"] == trigger
    rid = start["response_id"]
    [end] = summary["ends"]
    assert end["response_id"] == rid and end["status"] == "completed"
    assert summary["text"][rid] == end["text"] and end["text"].strip()
    # audio: frames in order, on a contiguous timeline; their length is what response.end reports
    frames = summary["audio_frames"]
    assert frames and [f["seq"] for f in frames] == list(range(len(frames)))
    assert all(f["sample_rate"] == ready["sample_rate"] and f["samples"] > 0 for f in frames)
    at = 0.0
    for f in frames:
        assert f["start_ms"] == pytest.approx(at, abs=1.0)
        at += 1000.0 * f["samples"] / f["sample_rate"]
    assert summary["audio_ms"][rid] == pytest.approx(at)
    assert end["audio_ms"] == pytest.approx(at, abs=1.0)
    # visemes: OVR ids, contiguous, covering the audio exactly
    cues = summary["visemes"]
    assert cues and {c["viseme"] for c in cues} <= OVR and len({c["viseme"] for c in cues}) >= 3
    assert cues[0]["start_ms"] == 0.0
    for a, b in zip(cues, cues[1:]):
        assert b["start_ms"] == pytest.approx(a["end_ms"], abs=0.01) and b["end_ms"] >= b["start_ms"]
    assert cues[-1]["end_ms"] == pytest.approx(at, abs=1.0)
    # the timeline released every cue on the simulated clock, none early, in order
    assert summary["released_visemes"] == len(cues) and summary["released_early"] == 0
    for fired in summary["fired"]:
        assert fired["released_at"] >= fired["at_ms"]
    # playback marks: a few a second, increasing, the last one at the end of the audio
    marks = [m["played_ms"] for m in summary["marks"] if m["response_id"] == rid]
    assert len(marks) >= max(1, int(at // 250)) and marks == sorted(marks)
    assert marks[-1] == pytest.approx(at, abs=0.01)
    # barge-in half-way: released before + at the stop + skipped = everything; the last mark is the stop point
    b = summary["barge_in"]
    timed = len(cues) + sum(1 for a in summary["actions"] if a["at_ms"] is not None)
    assert b["response_id"] == rid and b["skipped"] >= 1
    assert b["released_before"] + b["released_at_stop"] + b["skipped"] == timed
    assert b["mark_ms"] == b["at_ms"] and b["released_after"] == 0
    assert json.loads(b["mark_json"]) == {"type": "playback.mark", "response_id": rid, "played_ms": b["at_ms"]}
    return rid


def _check_text_turn(summary: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    rid = _check_audio_turn(summary, lines, trigger="text")
    [action] = summary["actions"]
    assert {k: action[k] for k in ("verb", "object", "target")} == ACTION and action["response_id"] == rid
    assert 0.0 < action["at_ms"] < summary["audio_ms"][rid]  # after the reply's first sentence
    assert [{k: f[k] for k in ("verb", "object", "target")} for f in summary["fired"]] == [ACTION]
    assert summary["ends"][0]["actions"] == [SPELLED]


def _check_voice_turn(summary: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    _check_audio_turn(summary, lines, trigger="voice")
    assert summary["ready"]["audio_in_rate"] == 16000
    assert summary["speech"] and summary["speech"][0]["utterance_id"] == "u1"
    [final] = [t for t in summary["transcripts"] if t["text"]][:1]
    assert "americans" in final["text"].lower() and final["backchannel"] is False


def _check_errors(summary: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    _check_summary(summary, lines)
    codes = [(e["code"], e["ref"], e["fatal"]) for e in summary["server_errors"]]
    assert codes == [("unknown_character", "s1", False), ("bad_json", "", False), ("text_too_large", "t1", False)]
    assert summary["ready"]["sample_rate"] == 0  # text_only: session.ready.audio is null
    assert summary["pongs"] == ["p1"]


CHECKS = {"text": _check_text_turn, "voice": _check_voice_turn, "error": _check_errors}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------
# Tests

def test_core_unit_tests(core_tests: Path) -> None:
    """JSON (escapes, \\u and surrogate pairs, numbers, nesting, errors), protocol parsing and builders, audio
    pairing, timeline (order, late items, marks, barge-in), viseme smoothing, PCM16, and the ARKit table == the file."""
    result = _run(core_tests, "unit", str(ARKIT_JSON))
    assert result["failed"] == 0 and result["passed"] >= 150, result
    assert result["arkit_table_matches"] is True, result["arkit_detail"]
    arkit = json.loads(ARKIT_JSON.read_text())["visemes"]
    curves = {c for weights in arkit.values() for c in weights}
    assert result["arkit_detail"] == f"{len(arkit)} visemes, {len(curves)} curves"


@pytest.mark.parametrize("kind", ["text", "voice", "error"])
def test_replay_recorded_session(core_tests: Path, kind: str) -> None:
    """The committed recordings (tests/data/sessions/*.jsonl) through the core."""
    path = SESSIONS / f"{kind}.jsonl"
    CHECKS[kind](_run(core_tests, "replay", str(path)), _read_jsonl(path))


def test_replay_sessions_recorded_now(core_tests: Path, scripted_server: LiveServer, tmp_path: Path) -> None:
    """The same three sessions recorded now from the scripted server and replayed through the core: a protocol change
    on the server fails this test, not only the committed files."""
    for kind, check in CHECKS.items():
        raw = record_session(scripted_server.ws_url, kind)
        path = tmp_path / f"{kind}.jsonl"
        write_jsonl(path, raw)
        try:
            check(_run(core_tests, "replay", str(path)), [json.loads(line) for line in raw])
        except AssertionError as exc:
            raise AssertionError(f"{kind} session recorded now: {exc}\nserver log:\n{scripted_server.log_tail()}") from exc


def _run_live(core_tests: Path, server: LiveServer, *extra: str, scene_file: Path = SCENE_FILE,
              prompt: str = ACTION_PROMPT) -> dict[str, Any]:
    """The test program's live mode (a fresh player: no memory of earlier runs), checked for what holds for any reply:
    the core parsed every frame; an unknown message got an error with our ref; a completed turn that says or does
    something, its text deltas adding up to response.end; audio (whenever it has words) whose frames, visemes (OVR,
    in order, covering it) and response.end agree; every action valid for the scene (a verb session.ready allows,
    its arguments by name those of its definition, ids of the right kind or one of its values), on the audio
    timeline, fired by the timeline; the playback marks sent to the server; ping/pong."""
    summary = _run(core_tests, "live", server.ws_url, str(scene_file), prompt, f"live_{uuid.uuid4().hex[:10]}", *extra,
                   timeout=300)
    assert summary["errors"] == [], f"{summary['errors']}\n{server.log_tail()}"
    assert [(e["code"], e["ref"]) for e in summary["server_errors"]] == [("unknown_type", "bad1")]
    assert summary["pongs"] == ["p1"]
    types = summary["types"]
    assert types[0] == "session.ready" and types[-1] == "pong"
    assert types.index("response.start") < types.index("response.end")
    start = summary["ready"]
    assert (start["protocol"], start["character"], start["sample_rate"] > 0) == ("1", "jin", True)
    scene = json.loads(scene_file.read_text())
    declared = {v["name"]: v for v in scene.get("verbs", [])}
    assert set(start["actions"]) <= {"move", "grab", "give", *declared} and set(declared) <= set(start["actions"])
    [end] = summary["ends"]
    rid = end["response_id"]
    assert end["status"] == "completed" and (end["text"].strip() or end["actions"])
    assert summary["text"].get(rid, "") == end["text"]
    frames, cues = summary["audio_frames"], summary["visemes"]
    audio_ms = summary["audio_ms"].get(rid, 0.0)
    if re.search(r"\w", end["text"]):  # words are spoken (a reply of actions only may have no audio)
        assert frames and types.index("response.audio") < types.index("response.end")
        assert max(f["peak"] for f in frames) > 1000  # the PCM16 decoded from the wire is speech, not silence
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert [f["samples"] for f in frames] == [c["samples"] for c in summary["chunks"]]
    assert {c["viseme"] for c in cues} <= OVR
    assert [c["start_ms"] for c in cues] == sorted(c["start_ms"] for c in cues)
    if frames:
        assert cues and cues[0]["start_ms"] == 0.0 and cues[-1]["end_ms"] == pytest.approx(audio_ms, abs=1.0)
        assert end["audio_ms"] == pytest.approx(audio_ms, abs=1.0)
    objects, characters = {o["id"] for o in scene["objects"]}, {c["id"] for c in scene["characters"]}
    every_id = objects | characters | {loc["id"] for loc in scene["locations"]}
    ids = {"object": objects, "character": characters, "location": every_id - objects - characters, "any": every_id}
    builtins = {"move": [{"name": "target", "type": "any"}], "grab": [{"name": "object", "type": "object"}],
                "give": [{"name": "object", "type": "object"}, {"name": "target", "type": "character"}]}
    actions = summary["actions"]
    for action in actions:
        assert action["response_id"] == rid and action["verb"] in start["actions"]
        assert action["object"] in (objects if action["verb"] in ("grab", "give") else {None})
        assert action["target"] in (characters if action["verb"] == "give" else every_id if action["verb"] == "move" else {None})
        assert action["typed"] == (action["verb"] if action["verb"] in builtins else "")  # npc::Verb::Other: a declared verb
        definition = builtins.get(action["verb"]) or declared[action["verb"]]["args"]
        assert list(action["args"]) == [a["name"] for a in definition], action
        for arg in definition:
            assert action["args"][arg["name"]] in (arg["values"] if "values" in arg else ids[arg["type"]]), action
        if frames:  # at_ms comes rounded to 0.1 ms: an action after the last word may be 0.05 ms past the audio's end
            assert 0.0 <= action["at_ms"] <= audio_ms + 0.05
    spell = [" ".join((a["verb"], a["object"] or "", a["target"] or "")) for a in actions]
    assert end["actions"] == spell and end["action_args"] == [a["args"] for a in actions]
    assert [(f["verb"], f["object"] or None, f["target"] or None, f["args"]) for f in summary["fired"]] == \
        [(a["verb"], a["object"], a["target"], a["args"]) for a in actions]
    # the marks the timeline produced went to the server
    sent = [json.loads(s) for s in summary["sent"]]
    marks = [m for m in sent if m["type"] == "playback.mark"]
    assert all(m["response_id"] == rid for m in marks)
    if frames:
        assert marks and marks[-1]["played_ms"] == pytest.approx(audio_ms, abs=0.1)
    assert [m["type"] for m in sent][:3] == ["session.start", "no.such.message", "input.text"]
    assert json.loads(summary["sent"][0])["scene"] == {k: v for k, v in scene.items() if k != "verbs" or v}
    return summary


def test_live_turn_through_the_cpp_websocket_client(core_tests: Path, scripted_server: LiveServer) -> None:
    """The test program's own WebSocket client against the scripted server: the reply's action is decoded, placed
    after the first sentence on the audio timeline, and fired there."""
    summary = _run_live(core_tests, scripted_server)
    [action], [end] = summary["actions"], summary["ends"]
    assert {k: action[k] for k in ("verb", "object", "target")} == ACTION and end["actions"] == [SPELLED]
    assert 0.0 < action["at_ms"] < end["audio_ms"] and action["text_offset"] > 0
    [fired] = summary["fired"]
    assert fired["at_ms"] == action["at_ms"] and fired["released_at"] >= fired["at_ms"]
    assert len(summary["visemes"]) >= 10 and summary["marks"]


def test_live_custom_verbs(core_tests: Path, scripted_server: LiveServer, tmp_path: Path) -> None:
    """The game's own verbs end to end: a scene declaring sit (seat: object), emote (gesture: wave|bow|shrug) and a
    stool goes out in session.start (npc::Scene::verbs); the scripted reply "[emote bow] ... [sit stool]" comes as
    npc::Action with verb_name and args by name (typed verb Other, no object/target), in response.end too, the emote
    before the words and the sit at the end of the audio, fired there by the timeline. In the same scene the built-in
    give decodes as before (typed verb, object, target) and with its args by name."""
    scene_file = tmp_path / "ramen_shop_verbs.json"
    scene_file.write_text(json.dumps(scene_with_verbs(_scene())))
    expected = scripted_verbs(SEAT_PROMPT)
    assert [a["verb"] for a in expected] == ["emote", "sit"], "tests/data/scripted_llm.json: the seat rule should emote, then sit"

    summary = _run_live(core_tests, scripted_server, scene_file=scene_file, prompt=SEAT_PROMPT)
    assert {"sit", "emote"} <= set(summary["ready"]["actions"])
    actions, [end] = summary["actions"], summary["ends"]
    assert [{"verb": a["verb"], "args": a["args"]} for a in actions] == expected
    assert all(a["typed"] == "" and a["object"] is None and a["target"] is None for a in actions)
    assert end["actions"] == ["emote  ", "sit  "] and end["action_args"] == [a["args"] for a in expected]
    assert actions[0]["at_ms"] == 0.0 and actions[1]["at_ms"] == pytest.approx(end["audio_ms"], abs=100)
    fired = summary["fired"]
    assert [(f["verb"], f["args"]) for f in fired] == [(a["verb"], a["args"]) for a in expected]
    # fired on the clock; the sit, after the last word, when the audio has finished (at_ms is rounded to 0.1 ms)
    assert fired[0]["released_at"] >= fired[0]["at_ms"] and fired[1]["released_at"] == pytest.approx(summary["audio_ms"][end["response_id"]])

    builtin = _run_live(core_tests, scripted_server, scene_file=scene_file)
    [action], [end] = builtin["actions"], builtin["ends"]
    assert {k: action[k] for k in ("verb", "object", "target")} == ACTION and end["actions"] == [SPELLED]
    assert action["typed"] == "give" and action["args"] == {n: ACTION[n] for n in ARG_NAMES["give"]}


def test_live_with_auth(core_tests: Path, scripted_auth_server: AuthServer) -> None:
    """A server with auth on: with a player token in the handshake the live turn goes as on an open server (the
    scripted action decoded, placed and fired); without a token, or with one signed by another secret, the handshake
    is refused: an error naming HTTP 401 unauthorized and the server's reason, at once."""
    from npc_runtime.access import Access

    server = scripted_auth_server
    summary = _run_live(core_tests, server, f"--token={server.token(f'unreal_auth_{uuid.uuid4().hex[:8]}')}")
    [action], [end] = summary["actions"], summary["ends"]
    assert {k: action[k] for k in ("verb", "object", "target")} == ACTION and end["actions"] == [SPELLED]
    assert [f["verb"] for f in summary["fired"]] == [ACTION["verb"]]

    forged = Access(secret=b"not the server's secret, 32+ bytes long").issue("mallory")
    for label, extra, reason in (("no token", [], "a player token or an API key is required"),
                                 ("forged token", [f"--token={forged}"], "invalid player token")):
        result = _run(core_tests, "connect", server.ws_url, *extra)
        assert result["connected"] is False, label
        assert (result["status"], result["code"], result["unauthorized"], result["retryable"]) == (401, "unauthorized", True, False), label
        assert "HTTP 401 unauthorized" in result["error"] and reason in result["message"], (label, result)
        assert result["ms"] < 5000, (label, result)
    assert _run(core_tests, "connect", server.ws_url, f"--token={server.token('unreal_connect')}") == {
        "connected": True, "error": "", "ms": pytest.approx(0, abs=5000)}


def test_live_turn_on_the_real_model(core_tests: Path, live_server: LiveServer) -> None:
    """The same live turn against the real embedded model: only what any answer satisfies (_run_live)."""
    summary = _run_live(core_tests, live_server)
    print(f"\nreal model: {summary['ends'][0]['text']!r} {summary['ends'][0]['actions']}")


def _record_all(url: str) -> None:
    for kind in ("text", "voice", "error"):
        recorded = record_session(url, kind)
        write_jsonl(SESSIONS / f"{kind}.jsonl", recorded)
        print(kind, len(recorded), "frames")


if __name__ == "__main__":  # re-record the committed sessions: python tests/test_client_unreal.py --record [URL]
    assert sys.argv[1:2] == ["--record"] and len(sys.argv) <= 3, __doc__
    if len(sys.argv) == 3:
        _record_all(sys.argv[2])
    else:
        import tempfile

        from live_server import SCRIPT, _serve

        with tempfile.TemporaryDirectory() as data:
            server = _serve(Path(data), {"NPC_LLM": "scripted", "NPC_LLM_SCRIPT": str(SCRIPT)})
            try:
                _record_all(next(server).ws_url)
            finally:
                server.close()
