"""The time-to-first-audio budget over the real server, with real speech (espeak-ng) and a scripted LLM
whose first word is slow: a filler line (pre-synthesized) fills the silence, the reply follows it on the
audio timeline, misses are counted by cause in /metrics, and the filler stays out of the history."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from server_fixture import personas, serving  # noqa: F401  (personas: a fixture)

from npc_runtime import protocol as p
from npc_runtime.client import AudioFrame, NpcClient
from npc_runtime.dialogue.ending import hard_limit
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.metrics import Metrics
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.tts.espeak import EspeakTTS
from npc_runtime.tts.filler import FillerCache


@pytest_asyncio.fixture(loop_scope="session")
async def slow_server(personas: PersonaRegistry) -> AsyncIterator[tuple[NpcServer, Services]]:
    tts = EspeakTTS(voice="en-us")
    services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM(["Right away, friend."], token_delay=0.6)),
                        tts=tts, metrics=Metrics(), budget_ms=400.0, fillers=FillerCache())
    try:
        async with serving(services) as server:
            yield server, services
    finally:
        await tts.aclose()


async def turn(client: NpcClient, text: str) -> list[Any]:
    return [e async for e in client.say(text)]


async def test_a_late_reply_starts_with_the_filler(slow_server: tuple[NpcServer, Services]) -> None:
    server, services = slow_server
    async with NpcClient.connect(server.url) as client:
        await client.start_session("jin")
        await asyncio.sleep(0.5)  # the session-start preparation synthesizes the filler
        events = await turn(client, "Can I get a bowl?")
        session = next(iter(server.sessions))
        history = [h.text for h in session.character.history]
    audio = [e for e in events if isinstance(e, p.AudioChunkEvent)]
    end = events[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed"
    assert end.timings["filler"] == 1.0 and end.timings["budget"] == 400.0
    assert end.timings["first_audio"] < end.timings["first_speech"]  # the filler came first
    assert end.timings["first_audio"] <= 400.0 + 150.0  # near the budget, not after the slow first word
    assert audio[0].seq == 0 and audio[1].start_ms > 0 and sum(isinstance(e, AudioFrame) for e in events) == len(audio)
    assert end.text == "Right away, friend." and history[-1] == "Right away, friend."  # the filler is not in the text or history
    assert end.timings["budget_missed"] == 0.0


async def test_misses_are_counted_by_cause(slow_server: tuple[NpcServer, Services]) -> None:
    server, services = slow_server
    services.fillers = None  # no filler: the slow first word misses the budget
    async with NpcClient.connect(server.url) as client:
        await client.start_session("jin")
        events = await turn(client, "Can I get a bowl?")
    end = events[-1]
    assert end.timings["budget_missed"] == 1.0 and end.timings["filler"] == 0.0
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode())
    assert "npc_budget_misses_total{cause=\"llm\"} 1.0" in text, [row for row in text.splitlines() if "budget" in row]


async def test_a_turn_that_waited_for_the_model_is_shortened(personas: PersonaRegistry) -> None:
    """Two sessions, one model slot (the embedded engine's line): the second turn gets the model after the
    first one's whole reply, past 75% of its budget, so its reply is cut to ``latency.late_max_tokens``
    (default 40) — at the first sentence end past it, the model given a little slack to get there
    (dialogue/ending.py) — and its miss is put down to the queue; the first turn, admitted at once, is not cut."""
    from npc_runtime.gate import Gate
    from npc_runtime.llm.gated import GatedLLM

    # five sentences of ten words: the late reply ends with the fourth (word 40 would start the fifth)
    long_reply = " ".join(f"Word{i}" if i % 10 == 0 else f"word{i}." if i % 10 == 9 else f"word{i}" for i in range(50))
    fake = FakeLLM([long_reply], token_delay=0.01)
    metrics = Metrics()
    services = Services(personas=personas, dialogue=Dialogue(llm=GatedLLM(fake, Gate("language model", limit=1))),
                        metrics=metrics, budget_ms=400.0)
    async with serving(services) as server, NpcClient.connect(server.url) as a, NpcClient.connect(server.url) as b:
        await a.start_session("jin", options={"text_only": True})
        await b.start_session("jin", options={"text_only": True})
        first, second = await asyncio.gather(turn(a, "Tell me a long story."), turn(b, "And me too."))
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode())
    ends = sorted([first[-1], second[-1]], key=lambda e: e.timings["llm_start"])
    early, late = ends
    assert all(isinstance(e, p.ResponseEnd) and e.status == "completed" for e in ends)
    assert early.timings["capped"] == 0.0 and len(early.text.split()) == 50 and not early.truncated
    assert late.timings["capped"] == 1.0 and late.timings["llm_start"] >= 300.0
    assert len(late.text.split()) == 40 and late.truncated and late.text.endswith("word39.")
    assert sorted(r.max_tokens for r in fake.requests) == [hard_limit(40), hard_limit(60)]  # Jin's llm.max_tokens is 60
    assert late.timings["budget_missed"] == 1.0
    assert "npc_budget_misses_total{cause=\"queue\"} 1.0" in text, [line for line in text.splitlines() if "budget" in line]


class _SlowKnowledge:
    """Retrieval that takes 200 ms whatever its budget: the turn is late before it reaches the model."""

    async def retrieve(self, persona: Any, query: str, *, k: int, budget_ms: float) -> list[Any]:
        await asyncio.sleep(0.2)
        return []


async def test_a_turn_late_for_another_reason_is_not_shortened(personas: PersonaRegistry) -> None:
    """Past 75% of its budget before it asks the model (slow retrieval here; a slow transcript in a voice
    turn), but it did not wait for the model: cutting its reply would not bring its first audio sooner."""
    from npc_runtime.gate import Gate
    from npc_runtime.llm.gated import GatedLLM

    fake = FakeLLM([" ".join(f"word{i}" for i in range(50)) + "."])
    services = Services(personas=personas, dialogue=Dialogue(llm=GatedLLM(fake, Gate("language model", limit=1))),
                        budget_ms=100.0, knowledge=_SlowKnowledge())  # type: ignore[arg-type]
    async with serving(services) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True})
        end = (await turn(client, "Tell me a long story."))[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed"
    assert end.timings["llm_start"] >= 75.0  # late...
    assert end.timings["llm_start"] - end.timings["prompt_ready"] < 25.0  # ...but it did not wait
    assert end.timings["capped"] == 0.0 and len(end.text.split()) == 50 and fake.requests[-1].max_tokens == hard_limit(60)
