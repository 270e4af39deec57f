"""The Unity client's engine-independent assemblies (clients/unity/Runtime/Protocol and Runtime/Client), compiled
with Mono's ``mcs`` and run with ``mono`` outside Unity (issue 8):

1. the assembly contract: NpcRuntime.Protocol and NpcRuntime.Client declare ``noEngineReferences`` and no file
   in them mentions UnityEngine (so they compile outside Unity, as here);
2. the console test program (clients/unity/Tests~/Console) runs its pure checks: the JSON reader/writer, the
   protocol decoder (audio frame pairing, malformed and unknown events), client messages, PCM16 and the
   resampler, viseme tables and smoothing, the playback timeline and ReplyPlayer on a simulated clock;
3. live: the same program talks to a real ``npc serve`` through NpcConnection (System.Net.WebSockets on Mono):
   session.start for jin in the ramen shop, a text turn (text deltas, audio frames, visemes, actions,
   response.end), playback of it through ReplyPlayer with marks sent back, malformed input, a spoken turn (JFK's
   speech written as a 44.1 kHz WAV, resampled to 16 kHz PCM16 by the client's Pcm16 helpers, push-to-talk
   commit), a cancelled turn and a clean close. It prints a JSON summary; this test asserts on its parsed values.
   This runs against the scripted server (fixed replies: the test knows which actions the client must decode and
   release); one text turn also runs against the real model, checked only for what any answer satisfies.
4. auth: against the scripted server with auth on, a text turn with a valid player token (sent by NpcConnection as
   ``Authorization: Bearer``), and the handshake without a token and with a badly signed one: refused at once with
   NpcConnectException, HTTP 401 ``unauthorized`` and the server's reason.
5. verbs as data (issue 16): the unit checks decode any verb into an NpcAction (verb and args by name) and keep the
   built-ins' typed object/target; live, a scene declaring ``sit`` (seat: object) and ``emote`` (gesture: wave|bow|shrug)
   and a stool: session.ready lists them, a built-in turn still decodes as before, and the scripted reply
   "[emote bow] ... [sit stool]" arrives as those verbs with their args, released by ReplyPlayer on the audio clock.

The Runtime/Unity MonoBehaviours need UnityEngine and are not compiled here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from npc_runtime.tts.visemes import VISEMES

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_server import (  # noqa: E402
    SEAT_PROMPT,
    AuthServer,
    LiveServer,
    missing_toolchain,
    scene_with_verbs,
    scripted_actions,
    scripted_auth_server,  # noqa: E402,F401  (fixture: started once per run, see live_server.py)
    scripted_verbs,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UNITY = ROOT / "clients/unity"
VISEMES_DIR = ROOT / "clients/visemes"
SCENE_FILE = SHARED / "eval/scenes/ramen_shop.json"
JFK = SHARED / "data/jfk.flac"
OVR = set(VISEMES)  # the 15 OVR visemes the server sends
PROMPT = "Please pour me some sake."  # the scripted server grabs the sake bottle, speaks, then gives it to the player
MCS_FLAGS = ["-langversion:7.2", "-warnaserror+", "-nologo"]


def _require_mono() -> tuple[str, str]:
    mcs, mono = shutil.which("mcs"), shutil.which("mono")
    if mcs is None or mono is None:
        missing_toolchain("mcs/mono not installed (scripts/setup_clients.sh installs mono-mcs, mono-devel, mono-runtime)")
    return mcs, mono


def _sources(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.cs"))


@pytest.fixture(scope="module")
def console_test(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Compiles NpcRuntime.Protocol.dll, NpcRuntime.Client.dll (against it) and the console test program;
    returns the command line that runs it."""
    mcs, mono = _require_mono()
    out = tmp_path_factory.mktemp("unity-build")
    protocol, client, exe = out / "NpcRuntime.Protocol.dll", out / "NpcRuntime.Client.dll", out / "NpcConsoleTest.exe"
    steps = [
        [mcs, *MCS_FLAGS, "-target:library", f"-out:{protocol}", *_sources(UNITY / "Runtime/Protocol")],
        [mcs, *MCS_FLAGS, "-target:library", f"-out:{client}", f"-r:{protocol}", *_sources(UNITY / "Runtime/Client")],
        [mcs, *MCS_FLAGS, f"-out:{exe}", f"-r:{protocol}", f"-r:{client}", *_sources(UNITY / "Tests~/Console")],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"mcs failed:\n{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return [mono, "--debug", str(exe), "--visemes", str(VISEMES_DIR)]


def _run(cmd: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(lines[-1])
    failures = summary["unit"]["failures"] + summary.get("live", {}).get("failures", [])
    assert proc.returncode == (0 if summary["ok"] else 1), proc.stderr[-4000:]
    assert not failures and summary["ok"], f"console test failures: {failures}\n{proc.stderr[-4000:]}"
    return summary


# ---------------------------------------------------------------------------------------------------------------
# The package and the assembly contract

def test_package_and_engine_free_assemblies() -> None:
    package = json.loads((UNITY / "package.json").read_text())
    assert package["name"] == "com.npcruntime.client"
    assert package["version"] == "0.1.0" and package["unity"] == "2021.3" and package["license"] == "MIT"
    assert (UNITY / "LICENSE.md").is_file() and (UNITY / "README.md").is_file()

    asmdefs = {a["name"]: a for a in (json.loads(p.read_text()) for p in UNITY.glob("Runtime/*/*.asmdef"))}
    assert set(asmdefs) == {"NpcRuntime.Protocol", "NpcRuntime.Client", "NpcRuntime.Unity"}
    assert asmdefs["NpcRuntime.Protocol"]["noEngineReferences"] is True
    assert asmdefs["NpcRuntime.Protocol"]["references"] == []
    assert asmdefs["NpcRuntime.Client"]["noEngineReferences"] is True
    assert asmdefs["NpcRuntime.Client"]["references"] == ["NpcRuntime.Protocol"]
    assert asmdefs["NpcRuntime.Unity"].get("noEngineReferences", False) is False
    assert set(asmdefs["NpcRuntime.Unity"]["references"]) == {"NpcRuntime.Protocol", "NpcRuntime.Client"}

    for folder in ("Runtime/Protocol", "Runtime/Client"):
        for path in (UNITY / folder).rglob("*"):
            if path.is_file():
                assert "UnityEngine" not in path.read_text(), f"{path} mentions UnityEngine"
    for path in UNITY.rglob("*.cs"):
        assert path.read_text().startswith("// SPDX-License-Identifier: MIT"), f"{path}: no SPDX header"


# ---------------------------------------------------------------------------------------------------------------
# Pure checks (no server)

def test_unit_checks(console_test: list[str]) -> None:
    summary = _run(console_test, timeout=120)
    assert summary["unit"]["passed"] >= 180  # each check is one assertion in UnitChecks.cs (VerbsAsData: custom verbs)
    assert "live" not in summary


# ---------------------------------------------------------------------------------------------------------------
# Live: the real server

def _write_request_wav(path: Path, rate: int = 44100) -> float:
    """JFK's speech as a 16-bit mono WAV at a microphone's 44.1 kHz (the client resamples it to 16 kHz)."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(JFK), sampling_rate=16000)
    t = np.arange(int(len(audio) * rate / 16000)) / rate
    upsampled = np.interp(t, np.arange(len(audio)) / 16000, audio)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(upsampled, -1, 1) * 32767).astype("<i2").tobytes())
    return len(upsampled) / rate


def _check_ready(live: dict[str, Any]) -> dict[str, Any]:
    ready = live["ready"]
    assert ready["protocol"] == "1" and ready["character"] == "jin" and ready["character_name"] == "Jin"
    # the built-ins and the verbs the scene declared (all of them): no others
    assert set(ready["actions"]) <= {"move", "grab", "give", *ready["scene_verbs"]} and ready["actions"]
    assert set(ready["scene_verbs"]) <= set(ready["actions"])
    assert ready["audio_in_sample_rate"] == 16000 and ready["end_silence_ms"] == 2500
    return ready


def _check_text_turn(live: dict[str, Any]) -> dict[str, Any]:
    """What holds for any reply: a completed turn that says or does something; its streamed text is the final text;
    audio (whenever it has words) in contiguous PCM16 frames with OVR visemes covering it; every action valid for the
    scene, on the audio timeline, and the same in response.action and response.end; playback on the audio clock."""
    ready, turn = live["ready"], live["text_turn"]
    end = turn["end"]
    scene = json.loads(SCENE_FILE.read_text())
    objects = {o["id"] for o in scene["objects"]}
    characters = {c["id"] for c in scene["characters"]}
    every_id = objects | characters | {loc["id"] for loc in scene["locations"]}
    assert turn["ref_ok"] and turn["trigger"] == "text" and turn["speaker"] == "jin"
    assert end["status"] == "completed" and (end["text"].strip() or end["actions"])
    assert turn["delta_text"].strip() == end["text"].strip()
    assert {"prompt_ready", "first_token", "end"} <= set(end["timings"])
    assert end["timings"]["first_token"] <= end["timings"]["end"]
    audio = turn["audio"]
    if re.search(r"\w", end["text"]):  # words are spoken (a reply of actions only may have no audio)
        assert audio["chunks"] >= 1 and "first_audio" in end["timings"]
    assert audio["sample_rate"] == ready["audio_sample_rate"] >= 8000
    assert audio["bytes"] == 2 * audio["samples"] and audio["bytes_match_samples"] and audio["contiguous"]
    assert abs(audio["duration_ms"] - end["audio_ms"]) < 1.0
    assert audio["duration_ms"] == pytest.approx(1000 * audio["samples"] / audio["sample_rate"], abs=0.1)
    visemes = turn["visemes"]
    assert set(visemes["names"]) <= OVR and visemes["monotonic"] and visemes["cover_audio"]
    if audio["chunks"]:
        assert visemes["count"] >= 2 and visemes["first_start_ms"] == 0 and abs(visemes["last_end_ms"] - end["audio_ms"]) < 1.0

    for action in turn["actions"]:
        assert action["verb"] in ready["actions"]
        if action["verb"] in ("move", "grab", "give"):  # the typed form and the args by name agree
            assert action["args"] == {k: action[k] for k in ("object", "target") if action[k] is not None}
        if action["verb"] in ("grab", "give"):
            assert action["object"] in objects
        assert action["target"] in (characters if action["verb"] == "give" else every_id | {None})
        if audio["chunks"]:
            assert 0 <= action["at_ms"] <= end["audio_ms"]
    assert [{k: a[k] for k in ("verb", "object", "target")} for a in turn["actions"]] == end["actions"]

    playback = live["playback"]
    assert playback["ordered"] and playback["on_clock"]
    released = playback["released"]
    assert sum(r.startswith("viseme:") for r in released) == visemes["count"]
    released_actions = [r.split("@")[0] for r in released if r.startswith("action:")]
    assert released_actions == [f"action:{a['verb']}" for a in turn["actions"]]
    if audio["chunks"]:
        assert len(playback["marks"]) >= 2 and playback["marks"] == sorted(playback["marks"])
        assert abs(playback["marks"][-1] - end["audio_ms"]) < 1.0
    return turn


def test_live_conversation(console_test: list[str], scripted_server: LiveServer, tmp_path: Path) -> None:
    """The whole live run against the scripted server (its replies are fixed): the client decodes the scripted actions,
    places them on the audio timeline and releases them on the audio clock; then bad input, a spoken turn, a cancel."""
    wav = tmp_path / "request_44k.wav"
    seconds = _write_request_wav(wav)
    expected = scripted_actions(PROMPT)
    assert len(expected) == 2, "tests/data/scripted_llm.json: the prompt's reply should act twice"
    spelled = ",".join(" ".join(v for v in a.values() if v) for a in expected)

    summary = _run([*console_test, "--url", scripted_server.ws_url, "--scene", str(SCENE_FILE), "--wav", str(wav),
                    "--player", "unity_console", "--prompt", PROMPT, "--expect-actions", spelled], timeout=600)
    live = summary["live"]
    _check_ready(live)
    turn = _check_text_turn(live)
    end = turn["end"]
    assert turn["prompt"] == PROMPT and end["actions"] == expected
    assert turn["audio"]["chunks"] >= 1 and turn["deltas"] >= 3
    # the first action comes before any words, the second after the last ones: at the end of the audio timeline
    at = [a["at_ms"] for a in turn["actions"]]
    assert at[0] == 0 and at[1] == pytest.approx(end["audio_ms"], abs=100)
    assert [a["index"] for a in turn["actions"]] == [0, 1] and turn["actions"][1]["text_offset"] > 0
    released = [r.split("@") for r in live["playback"]["released"] if r.startswith("action:")]
    assert [(name, float(at_ms)) for name, at_ms in released] == [(f"action:{a['verb']}", pytest.approx(a["at_ms"])) for a in turn["actions"]]

    assert [(e["code"], e["ref"]) for e in live["errors"]] == [
        ("bad_json", None), ("invalid_message", "bad-1"), ("unknown_type", "bad-2"), ("no_response", "bad-3")]
    assert not any(e["fatal"] for e in live["errors"]) and live["usable_after_errors"]

    voice = live["voice_turn"]
    assert voice["wav_rate"] == 44100
    assert abs(voice["bytes_sent"] - 2 * 16000 * (seconds + 0.3)) < 2 * 16000 * 0.03  # 16 kHz PCM16 of it all
    words = set(re.findall(r"[a-z]+", voice["transcript"].lower()))
    assert {"fellow", "americans", "country"} <= words, voice["transcript"]
    assert voice["trigger"] == "voice" and voice["ref"] == voice["utterance_id"] and re.fullmatch(r"u\d+", voice["ref"])
    assert voice["speech_duration_ms"] > 5000 and voice["status"] == "completed"
    assert voice["audio_chunks"] >= 1 and voice["reply"].strip()

    assert live["cancelled_turn"]["status"] == "interrupted"
    assert live["closed"] == {"clean": True, "status": "NormalClosure"}


def test_live_custom_verbs(console_test: list[str], scripted_server: LiveServer, tmp_path: Path) -> None:
    """The game's own verbs end to end: the scene declares sit (seat: object) and emote (gesture: wave|bow|shrug) and
    a stool; session.ready lists them; the built-in turn decodes as before (typed object/target, args by name); the
    scripted reply "[emote bow] ... [sit stool]" comes as those verbs with their args (response.action and
    response.end), the emote before the words, the sit at the end of the audio, released on the audio clock."""
    scene = tmp_path / "ramen_shop_verbs.json"
    scene.write_text(json.dumps(scene_with_verbs(json.loads(SCENE_FILE.read_text()))))
    expected = scripted_verbs(SEAT_PROMPT)
    assert [a["verb"] for a in expected] == ["emote", "sit"], "tests/data/scripted_llm.json: the seat rule should emote, then sit"
    spelled_verbs = ",".join(a["verb"] + "".join(f" {k}={v}" for k, v in a["args"].items()) for a in expected)
    builtin = scripted_actions(PROMPT)
    spelled = ",".join(" ".join(v for v in a.values() if v) for a in builtin)

    summary = _run([*console_test, "--url", scripted_server.ws_url, "--scene", str(scene), "--steps", "text,verbs",
                    "--player", "unity_console_verbs", "--prompt", PROMPT, "--expect-actions", spelled,
                    "--verbs-prompt", SEAT_PROMPT, "--expect-verbs", spelled_verbs], timeout=300)
    live = summary["live"]
    ready = _check_ready(live)
    assert ready["scene_verbs"] == ["sit", "emote"] and {"move", "grab", "give", "sit", "emote"} == set(ready["actions"])
    # the built-ins, in a scene with verbs: typed as before, and their args by name
    turn = live["text_turn"]
    assert turn["end"]["actions"] == builtin
    assert [a["args"] for a in turn["actions"]] == [{"object": "sake_bottle"}, {"object": "sake_bottle", "target": "player"}]
    # the scene's own verbs
    verbs = live["verbs_turn"]
    assert verbs["status"] == "completed" and verbs["text"].strip() and verbs["audio_chunks"] >= 1
    assert [{"verb": a["verb"], "args": a["args"]} for a in verbs["actions"]] == expected
    assert [{"verb": a["verb"], "args": a["args"]} for a in verbs["end_actions"]] == expected
    assert all(a["object"] is None and a["target"] is None for a in verbs["actions"] + verbs["end_actions"])
    assert verbs["spelled"] == ["emote gesture=bow", "sit seat=stool"]
    at = [a["at_ms"] for a in verbs["actions"]]
    assert at[0] == 0 and at[1] == pytest.approx(verbs["audio_ms"], abs=100) and [a["index"] for a in verbs["actions"]] == [0, 1]
    playback = live["verbs_playback"]
    assert playback["ordered"] and playback["on_clock"]
    released = [r.split("@") for r in playback["released"] if r.startswith("action:")]
    assert [(name, float(at_ms)) for name, at_ms in released] == [("action:emote", pytest.approx(at[0])), ("action:sit", pytest.approx(at[1]))]
    assert live["closed"] == {"clean": True, "status": "NormalClosure"}


def test_live_turn_on_the_real_model(console_test: list[str], live_server: LiveServer) -> None:
    """One text turn against the real embedded model. Its words and actions depend on the model, the CPU and its
    kernels, so only what every answer satisfies is asserted (_check_text_turn), never which action it takes."""
    summary = _run([*console_test, "--url", live_server.ws_url, "--scene", str(SCENE_FILE), "--steps", "text",
                    "--player", "unity_console_model", "--prompt", PROMPT], timeout=600)
    live = summary["live"]
    _check_ready(live)
    turn = _check_text_turn(live)
    print(f"\nreal model: {turn['end']['text']!r} {turn['end']['actions']}")
    assert live["closed"] == {"clean": True, "status": "NormalClosure"}
    assert not {"errors", "voice_turn", "cancelled_turn"} & set(live)


def test_live_with_auth(console_test: list[str], scripted_auth_server: AuthServer) -> None:
    """A server with auth on: the client sends its player token in the handshake and talks (the scripted reply and
    its actions); without a token, or with one signed by another secret, ConnectAsync throws NpcConnectException
    with HTTP 401, the server's code and reason, at once (not a hang)."""
    from npc_runtime.access import Access

    server = scripted_auth_server
    expected = scripted_actions(PROMPT)
    spelled = ",".join(" ".join(v for v in a.values() if v) for a in expected)
    token = server.token(f"unity_auth_{uuid.uuid4().hex[:8]}")
    summary = _run([*console_test, "--url", server.ws_url, "--scene", str(SCENE_FILE), "--steps", "text", "--token", token,
                    "--player", "not_the_token_player", "--prompt", PROMPT, "--expect-actions", spelled], timeout=300)
    live = summary["live"]
    _check_ready(live)
    turn = _check_text_turn(live)
    assert turn["end"]["actions"] == expected and turn["audio"]["chunks"] >= 1
    assert live["closed"] == {"clean": True, "status": "NormalClosure"}

    forged = Access(secret=b"not the server's secret, 32+ bytes long").issue("mallory")
    for label, extra, reason in (("no token", [], "a player token or an API key is required"),
                                 ("forged token", ["--token", forged], "invalid player token")):
        summary = _run([*console_test, "--url", server.ws_url, "--scene", str(SCENE_FILE), "--steps", "refused", *extra],
                       timeout=120)
        refused = summary["live"]["refused"]
        assert refused["exception"] == "NpcConnectException", (label, refused)
        assert (refused["status"], refused["code"], refused["unauthorized"], refused["retryable"]) == (401, "unauthorized", True, False), label
        assert "HTTP 401 unauthorized" in refused["message"] and reason in refused["server_message"], (label, refused)
        assert refused["ms"] < 10000, (label, refused)  # refused at once, never a hang
    assert "connection refused: not authenticated" in "\n".join(server.log)


def test_every_package_asset_has_its_meta_file() -> None:
    """Installed from a git URL, a UPM package is immutable and Unity ignores assets without a .meta file:
    every asset (folders ending in ~ aside) has one, GUIDs unique and stable (scripts/unity_meta.py)."""
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "unity_meta.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    metas = sorted((ROOT / "clients" / "unity").rglob("*.meta"))
    guids = [line.split()[1] for m in metas for line in m.read_text(encoding="utf-8").splitlines() if line.startswith("guid:")]
    assert len(metas) >= 20 and len(set(guids)) == len(guids) == len(metas)
    assert not [m for m in metas if "~" in m.relative_to(ROOT).as_posix()]
