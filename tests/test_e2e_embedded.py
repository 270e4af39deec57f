"""End to end on the real embedded model: a real server on 127.0.0.1:0, the real client, the
`npc` CLI in-process and against `npc serve`. Marked ``engine``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import CHARACTERS, EVAL_DIR, ROOT, scene_dict
from server_fixture import registry, serving

from npc_runtime.client import NpcClient
from npc_runtime.dialogue.grammar import parse_action
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.protocol import parse_server_event
from npc_runtime.scene import Scene
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

pytestmark = pytest.mark.engine
NPC = [sys.executable, "-m", "npc_runtime.cli"]
RAMEN = str(EVAL_DIR / "scenes" / "ramen_shop.json")


@pytest_asyncio.fixture(loop_scope="session")
async def real_server(llama_engine: Any) -> AsyncIterator[NpcServer]:
    async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llama_engine))) as server:
        yield server


def _valid_for(scene: dict[str, Any], events: list[Any], self_id: str) -> None:
    sc = Scene.model_validate(scene).without(self_id)
    for e in events:
        if e.type == "response.action":
            body = " ".join(x for x in (e.verb, e.object, e.target) if x)
            assert parse_action(body, sc, ["move", "grab", "give"], self_id=self_id) is not None, body


async def test_text_turn_streams_and_acts_validly(real_server: NpcServer) -> None:
    scene = scene_dict("ramen_shop.json")
    async with NpcClient.connect(real_server.url) as client:
        await client.start_session("jin", scene=scene, player_name="Kai", options={"seed": 3})
        for utterance in ("Could you hand me the chopsticks?", "How is business tonight?"):
            events = [e async for e in client.say(utterance)]
            deltas = [e for e in events if e.type == "response.text.delta"]
            end = events[-1]
            assert end.type == "response.end" and end.status == "completed"
            assert len(deltas) >= 2, "text must stream in several deltas"
            assert end.text == "".join(d.text for d in deltas) and "[" not in end.text and end.text.strip()
            assert {e.response_id for e in events} == {end.response_id}
            _valid_for(scene, events, "jin")
            assert end.timings["first_text"] <= end.timings["end"]


async def test_interrupting_the_real_engine(real_server: NpcServer) -> None:
    async with NpcClient.connect(real_server.url) as client:
        await client.start_session("nova", scene=scene_dict("lab.json"), options={"max_tokens": 200})
        await client.send_raw(json.dumps({"type": "input.text", "text": "Tell me everything about your work, in detail."}))
        first = await client.recv(timeout=30)
        assert first.type == "response.start"
        await client.send_raw(json.dumps({"type": "response.cancel"}))
        events = []
        while True:
            event = await client.recv(timeout=30)
            events.append(event)
            if event.type == "response.end":
                break
        assert events[-1].status in ("interrupted", "completed")
        after = [e async for e in client.say("Sorry, go on.")]
        assert after[-1].status == "completed"


def _run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NPC, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _check_json_lines(out: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session.ready" and kinds[-1] == "response.end", kinds
    assert "response.text.delta" in kinds
    return events


def test_cli_say_in_process_json() -> None:
    proc = _run_cli("say", "jin", "Could you hand me the chopsticks?", "--scene", RAMEN, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = _check_json_lines(proc.stdout)
    _valid_for(scene_dict("ramen_shop.json"), [parse_server_event(json.dumps(e)) for e in events], "jin")


def _wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 120) -> list[int]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "npc serve exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                seen.append(resp.status)
                return seen
        except urllib.error.HTTPError as exc:
            seen.append(exc.code)
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("server never became healthy")


async def _espeak_wav(path: Path, text: str) -> None:
    """A spoken request (espeak-ng, 22,050 Hz WAV: the server resamples it)."""
    from npc_runtime.tts.espeak import EspeakTTS

    tts = EspeakTTS(voice="en-us")
    pcm = b"".join([c.pcm async for c in tts.synthesize(text)])
    await tts.aclose()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(tts.sample_rate)
        out.writeframes(pcm)


def test_cli_say_against_npc_serve(tmp_path: Path) -> None:
    env = {**os.environ, "NPC_LOG_FORMAT": "json"}
    proc = subprocess.Popen([*NPC, "serve", "--port", "0"], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        port = None
        for _ in range(200):
            line = proc.stderr.readline()
            match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "no listening line"
        statuses = _wait_healthy(port, proc)
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}
        result = _run_cli("say", "jin", "Could you hand me the chopsticks?", "--scene", RAMEN, "--json", "--server", f"ws://127.0.0.1:{port}")
        assert result.returncode == 0, result.stderr[-2000:]
        _check_json_lines(result.stdout)
        wav = tmp_path / "request.wav"
        asyncio.run(_espeak_wav(wav, "Could you hand me the chopsticks?"))
        spoken = _run_cli("say", "jin", "--audio-in", str(wav), "--scene", RAMEN, "--json", "--server", f"ws://127.0.0.1:{port}")
        assert spoken.returncode == 0, spoken.stderr[-2000:]
        events = [json.loads(line) for line in spoken.stdout.splitlines() if line.strip()]
        kinds = [e["type"] for e in events]
        assert kinds.index("speech.started") < kinds.index("transcript.final") < kinds.index("response.start") and kinds[-1] == "response.end"
        assert "chopsticks" in next(e for e in events if e["type"] == "transcript.final")["text"].lower()
        bad = _run_cli("say", "ghost", "hello", "--json", "--server", f"ws://127.0.0.1:{port}")
        assert bad.returncode == 1 and json.loads(bad.stdout.splitlines()[0])["code"] == "unknown_character"
        for example in sorted((ROOT / "examples").glob("0*.py")):
            run = subprocess.run([sys.executable, str(example), f"ws://127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=180)
            assert run.returncode == 0, (example.name, run.stderr[-2000:])
            assert "response.end" in run.stdout
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0


async def test_session_start_prefills_so_the_first_turn_is_warm(real_server: NpcServer, llama_engine: Any) -> None:
    scene = {**scene_dict("lab.json"), "name": f"lab {time.monotonic_ns()}"}  # a scene never seen: a new prefix
    async with NpcClient.connect(real_server.url) as client:
        await client.start_session("nova", scene=scene, player_name="Kai")
        events = [e async for e in client.say("Hello there.")]
    assert events[-1].status == "completed"
    assert llama_engine.stats.prefix in ({"loaded"} if llama_engine.batch else {"hit"}), llama_engine.stats  # batched: restored
    assert llama_engine.stats.reused_tokens >= llama_engine.stats.prefix_tokens


def test_cli_chat_reads_lines_until_an_empty_one() -> None:
    proc = subprocess.run(
        [*NPC, "chat", "nova", "--scene", str(EVAL_DIR / "scenes" / "lab.json"), "--player-name", "Kai"],
        cwd=ROOT, input="Hi Nova.\nWhat is that board?\n\n", capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Talking to Nova.")
    assert proc.stdout.count("Nova> ") == 2 and proc.stdout.count("(completed;") == 2


def test_npc_check_reports_file_line_field(tmp_path: Any) -> None:
    (tmp_path / "bad.yaml").write_text("id: bad\nname: Bad\nrole: a test\nllm:\n  temprature: 0.3\n")
    proc = _run_cli("check", str(tmp_path))
    assert proc.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:5: llm.temprature:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert _run_cli("check", str(CHARACTERS)).stdout.strip() == f"OK: {len(list(CHARACTERS.glob('*.yaml')))} personas"
