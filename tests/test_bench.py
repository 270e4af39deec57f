"""``npc bench`` against a real server on 127.0.0.1:0: the scripted engine (FakeLLM) for the load
logic and the report; real ASR (faster-whisper tiny.en + Silero VAD) and espeak-ng for audio mode.
These check the figures' shape, never their values (timings belong in benchmarks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from server_fixture import personas  # noqa: F401  (a fixture)
from websockets.asyncio.server import ServerConnection, serve

from npc_runtime.bench import bench_main
from npc_runtime.bench.report import stage_durations
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import NpcError
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.settings import Settings
from npc_runtime.tts.fake import FakeTTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ServerFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def start_server(personas: PersonaRegistry) -> AsyncIterator[ServerFactory]:
    servers: list[NpcServer] = []

    async def start(**services: Any) -> NpcServer:
        srv = NpcServer(Services(personas=personas, **services), host="127.0.0.1", port=0)
        srv.services.ready.set()
        await srv.start()
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            await srv.aclose()


def _bench(tmp_path: Path, url: str, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"clients": 1, "turns": 1, "mode": "text", "warmup": 0, "turn_timeout": 30.0}
    args.update(kwargs)
    return bench_main(out=tmp_path, server=url, settings=Settings(), **args)


async def test_text_mode_writes_the_json_and_a_png(start_server: ServerFactory, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    llm = FakeLLM(["Here you go. [give chopsticks player] Careful, it's hot."], token_delay=0.002)
    srv = await start_server(dialogue=Dialogue(llm=llm), tts=FakeTTS(ms_per_char=5.0))
    assert await _bench(tmp_path, srv.url, clients=3, turns=2, warmup=1) == 0

    report = json.loads((tmp_path / "bench.json").read_text())
    rows = report["rows"]
    assert len(rows) == 6 and report["counts"]["turns"] == 6
    assert {(r["client"], r["turn"]) for r in rows} == {(c, t) for c in range(3) for t in range(2)}
    assert all(r["status"] == "completed" and not r["errors"] for r in rows)
    assert len(llm.requests) == 9  # 6 measured + 3 warm-up turns
    for r in rows:
        assert 0 <= r["first_text_ms"] <= r["end_ms"] and 0 <= r["first_audio_ms"] <= r["end_ms"]
        assert r["server"]["first_text"] <= r["server"]["end"]
    assert report["stages"]["client"]["first_audio"]["n"] == 6
    assert report["stages"]["client"]["transcript"]["n"] == 0
    s = report["stages"]["client"]["end"]
    assert s["p50"] <= s["p95"] <= s["p99"]
    assert report["throughput"]["turns_per_s"] > 0 and report["busy"] == 0 and report["errors"] == {}
    assert {"cpu", "cores", "python", "platform"} <= set(report["machine"])
    assert report["server"]["character"]["id"] == "jin"

    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert "first_audio" in capsys.readouterr().out


async def test_busy_refusals_are_counted_not_fatal(start_server: ServerFactory, tmp_path: Path) -> None:
    llm = FakeLLM(fail_with=NpcError("over capacity", code="busy", retryable=True))
    srv = await start_server(dialogue=Dialogue(llm=llm))
    assert await _bench(tmp_path / "turn", srv.url, clients=2, turns=2) == 1  # nothing answered
    report = json.loads((tmp_path / "turn" / "bench.json").read_text())
    assert report["busy"] == 4 and report["counts"]["by_status"] == {"busy": 4}
    assert (tmp_path / "turn" / "bench.png").read_bytes().startswith(PNG_MAGIC)


async def test_a_refused_session_takes_its_turn_and_the_client_goes_on(tmp_path: Path) -> None:
    """As a full NpcServer does: a fatal ``busy`` error at once, then close 1013 (which can overtake
    the client's session.start); the turn slot is counted busy either way."""
    refusal = json.dumps({"type": "error", "response_id": None, "code": "busy", "message": "the server is full",
                          "retryable": True, "fatal": True})

    async def refuse(ws: ServerConnection) -> None:
        await ws.send(refusal)
        await ws.close(1013, "server full")

    async with serve(refuse, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        assert await _bench(tmp_path, f"ws://127.0.0.1:{port}", clients=2, turns=2, warmup=1) == 1
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["busy"] == 4 and len(report["rows"]) == 4


async def test_a_turn_past_its_timeout_is_recorded_and_the_client_goes_on(start_server: ServerFactory,
                                                                          tmp_path: Path) -> None:
    llm = FakeLLM(["word " * 50], token_delay=0.1)
    srv = await start_server(dialogue=Dialogue(llm=llm))
    assert await _bench(tmp_path, srv.url, turns=2, turn_timeout=0.3) == 1
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["timeout", "timeout"]
    assert report["errors"] == {"timeout": 2} and report["counts"]["timeouts"] == 2
    assert len(llm.requests) == 2  # a new session for the second turn: the first one's was dropped


async def test_a_text_only_server_plots_first_text(start_server: ServerFactory, tmp_path: Path) -> None:
    srv = await start_server(dialogue=Dialogue(llm=FakeLLM(["Sure."])))
    assert await _bench(tmp_path, srv.url) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["server"]["audio"] is None
    assert report["stages"]["client"]["first_audio"]["n"] == 0 and report["stages"]["client"]["first_text"]["n"] == 1
    assert (tmp_path / "bench.png").read_bytes().startswith(PNG_MAGIC)


def test_stage_durations_follow_the_timeline() -> None:
    timings = {"transcript_final": 600.0, "prompt_ready": 650.0, "first_token": 900.0, "first_text": 950.0,
               "first_audio": 1200.0, "end": 2000.0, "chunks": 12.0}
    assert stage_durations(timings) == {"transcript": 600.0, "prompt": 50.0, "first token": 250.0,
                                        "first text": 50.0, "first audio": 250.0}
    # a filler's audio before the first text: that stage counts 0, the next runs from the latest mark
    assert stage_durations({"first_speech": 300.0, "first_text": 900.0, "first_audio": 1000.0}) == {
        "first text": 900.0, "first audio": 100.0, "first sent": 0.0}


@pytest.mark.engine
async def test_audio_mode_streams_real_speech(start_server: ServerFactory, tmp_path: Path) -> None:
    from npc_runtime.asr.vad import SileroVAD
    from npc_runtime.asr.whisper import WhisperASR
    from npc_runtime.tts.espeak import EspeakTTS

    asr, vad, tts = WhisperASR("tiny.en"), SileroVAD(), EspeakTTS(voice="en-us")
    for engine in (vad, asr, tts):
        await engine.warm()
    try:
        srv = await start_server(dialogue=Dialogue(llm=FakeLLM(["Coming right up."])), tts=tts, asr=asr, vad=vad)
        assert await _bench(tmp_path, srv.url, mode="audio", turn_timeout=60.0) == 0
    finally:
        await asr.aclose()
        await vad.aclose()
        await tts.aclose()
    report = json.loads((tmp_path / "bench.json").read_text())
    (row,) = report["rows"]
    assert row["status"] == "completed", row
    assert row["heard"] and 0 < row["transcript_ms"] <= row["first_text_ms"] <= row["end_ms"]
    # the first utterance: the speech sample shipped in examples/audio/ (a plain clone has nothing beside it)
    assert report["config"]["lines"][0] == "chopsticks.wav" and "chopsticks" in row["heard"].lower()
    assert report["stages"]["client"]["transcript"]["n"] == 1
    assert "transcript_final" in report["stages"]["server"]
    assert report["server"]["audio_in"] is not None
