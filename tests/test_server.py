"""A real server on 127.0.0.1:0 driven by a real client (websockets) — with the scripted engine:
these test the server's handling of connections and bad input, not the model."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import CHARACTERS, scene_dict
from server_fixture import registry, serving
from websockets.asyncio.client import connect

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient, ServerError
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.metrics import Metrics
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services


@pytest_asyncio.fixture
async def server() -> AsyncIterator[NpcServer]:
    personas = PersonaRegistry(CHARACTERS, poll_interval=0.05)
    await personas.start()
    llm = FakeLLM(["Here you go. [give chopsticks player]"], token_delay=0.01)
    services = Services(personas=personas, dialogue=Dialogue(llm=llm), metrics=Metrics())
    srv = NpcServer(services, host="127.0.0.1", port=0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.aclose()
        await personas.aclose()


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_healthz_live_readyz_when_warm_and_metrics(server: NpcServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert await asyncio.to_thread(_http_get, f"{base}/healthz") == (200, "ok\n")
    assert (await asyncio.to_thread(_http_get, f"{base}/readyz"))[0] == 503
    server.services.ready.set()
    assert await asyncio.to_thread(_http_get, f"{base}/readyz") == (200, "ready\n")
    async with NpcClient.connect(server.url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"))
        [e async for e in client.say("Chopsticks?")]
        await client.send_raw("{nope")
        await client.recv(timeout=5)
        status, text = await asyncio.to_thread(_http_get, f"{base}/metrics")
    assert status == 200
    assert "npc_sessions_active 1.0" in text
    assert 'npc_turns_total{status="completed",trigger="text"} 1.0' in text
    assert 'npc_turn_stage_seconds_count{stage="first_text"} 1.0' in text
    assert 'npc_errors_total{code="bad_json"} 1.0' in text
    assert "npc_engine_queue_depth" in text
    assert (await asyncio.to_thread(_http_get, f"http://127.0.0.1:{server.port}/nothing"))[0] == 404


async def test_a_text_turn_over_the_wire(server: NpcServer) -> None:
    server.services.ready.set()
    async with NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_name="Kai")
        assert ready.actions == ["move", "grab", "give"]
        events = [e async for e in client.say("Chopsticks?")]
    assert events[-1].type == "response.end" and events[-1].status == "completed"
    assert "".join(e.text for e in events if e.type == "response.text.delta") == "Here you go."
    assert [(e.verb, e.object, e.target) for e in events if e.type == "response.action"] == [("give", "chopsticks", "player")]


BAD_FRAMES: list[tuple[Any, str]] = [
    ("{nope", "bad_json"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "input.text", "text": 5}', "invalid_message"),
    (json.dumps({"type": "input.text", "text": "x" * 3000}), "text_too_large"),
    (json.dumps({"type": "input.text", "text": "x" * 100_000}), "message_too_large"),
    (b"\x00\x01binary", "audio_in_unavailable"),
    (json.dumps({"type": "scene.update", "scene": {"objects": [{"id": "a"}, {"id": "a"}]}}), "invalid_scene"),
]


async def test_bad_input_gets_errors_and_the_connection_stays_usable(server: NpcServer) -> None:
    server.services.ready.set()
    async with NpcClient.connect(server.url) as client:
        await client.send_raw('{"type": "input.text", "text": "too early", "id": "e0"}')
        err = await client.recv(timeout=5)
        assert (err.code, err.ref) == ("no_session", "e0")
        with pytest.raises(ServerError) as info:
            await client.start_session("ghost")
        assert info.value.code == "unknown_character"
        await client.send_raw(json.dumps({"type": "session.start", "character": "jin", "scene": {"objects": [{"id": "x"}, {"id": "x"}]}}))
        assert (await client.recv(timeout=5)).code == "invalid_scene"
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"))
        for frame, code in BAD_FRAMES:
            await client.send_raw(frame)
            event = await client.recv(timeout=5)
            assert event.type == "error" and event.code == code, (frame[:40], event)
            assert event.fatal is False
        events = [e async for e in client.say("still there?")]
        assert events[-1].status == "completed"


async def test_a_bad_client_does_not_disturb_another(server: NpcServer) -> None:
    server.services.ready.set()
    async with NpcClient.connect(server.url) as good, connect(server.url) as bad:
        await good.start_session("nova", scene=scene_dict("lab.json"))
        await good.send(p.TextInput(text="hi"))
        for _ in range(20):
            await bad.send("{garbage")
        await bad.send(b"\xff" * 2_000_000)  # over the hard frame limit: only this connection closes
        events = [e async for e in good._until_end()]
        assert events[-1].type == "response.end" and events[-1].status == "completed"
        with pytest.raises(Exception):
            for _ in range(30):
                await asyncio.wait_for(bad.recv(), 5)
    assert len(server.sessions) == 0 or all(s.state.value != "responding" for s in server.sessions)


async def test_disconnect_mid_response_cleans_up(server: NpcServer) -> None:
    server.services.ready.set()
    before = set(asyncio.all_tasks())
    for _ in range(5):
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin")
            await client.send(p.TextInput(text="talk"))
            await client.recv(timeout=5)
    for _ in range(50):
        if not server.sessions:
            break
        await asyncio.sleep(0.02)
    assert server.sessions == set()
    leftover = {t for t in asyncio.all_tasks() - before if not t.done() and t.get_name().startswith(("turn-", "write-"))}
    assert leftover == set()


async def test_persona_files_reload_live_and_a_broken_edit_keeps_the_last_good(tmp_path: Any) -> None:
    import shutil

    for name in ("jin.yaml", "nova.yaml"):
        shutil.copy(CHARACTERS / name, tmp_path / name)
    personas = PersonaRegistry(tmp_path, poll_interval=0.05)
    await personas.start()
    llm = FakeLLM(["Hi."])
    services = Services(personas=personas, dialogue=Dialogue(llm=llm))
    services.ready.set()
    srv = NpcServer(services, host="127.0.0.1", port=0)
    await srv.start()
    jin = tmp_path / "jin.yaml"
    original = jin.read_text()

    async def wait_for(predicate: Any) -> None:
        for _ in range(200):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("timed out")

    try:
        async with NpcClient.connect(srv.url) as client:
            await client.start_session("jin")
            [e async for e in client.say("hello")]
            assert "You are Jin," in llm.requests[-1].messages[0].content
            version = personas.version("jin")
            jin.write_text(original.replace("name: Jin\n", "name: Jinbei\n"))
            await wait_for(lambda: personas.version("jin") > version)
            [e async for e in client.say("hello again")]
            assert "You are Jinbei," in llm.requests[-1].messages[0].content
            jin.write_text(original.replace("temperature:", "temperatur:"))
            await wait_for(lambda: bool(personas.errors()))
            assert "jin.yaml" in str(personas.errors()[0]) and "temperatur" in str(personas.errors()[0])
            events = [e async for e in client.say("still you?")]
            assert events[-1].status == "completed"
            assert "You are Jinbei," in llm.requests[-1].messages[0].content
    finally:
        await srv.aclose()
        await personas.aclose()


async def test_overload_gets_busy_and_the_admitted_sessions_finish() -> None:
    """Past max_sessions a connection gets `busy` (fatal, retryable) and is closed; past the LLM's waiting
    line a turn fails at once with `busy`; the admitted ones finish; nothing hangs."""
    from npc_runtime.gate import Gate
    from npc_runtime.llm.gated import GatedLLM

    llm = GatedLLM(FakeLLM(["One two three four five six seven eight."], token_delay=0.05), Gate("LLM", limit=1, max_waiting=1))
    async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm), metrics=Metrics(),
                                                        max_sessions=3)) as srv:
        async with asyncio.timeout(60):
            async with NpcClient.connect(srv.url) as a, NpcClient.connect(srv.url) as b, NpcClient.connect(srv.url) as c:
                for client in (a, b, c):
                    await client.start_session("jin", options={"text_only": True})
                async with connect(srv.url) as refused:  # the fourth: the server is full
                    event = p.parse_server_event(await refused.recv())
                    assert (event.code, event.fatal, event.retryable) == ("busy", True, True)
                    await refused.wait_closed()
                    assert refused.close_code == 1013
                ends = await asyncio.gather(*[_say(client, "Count for me.") for client in (a, b, c)])
        statuses = sorted((e.status, e.error) for e in ends)
        assert statuses == [("completed", None), ("completed", None), ("failed", "busy")], statuses
        status, text = await asyncio.to_thread(_http_get, f"http://127.0.0.1:{srv.port}/metrics")
        assert "npc_sessions_refused_total 1.0" in text and 'npc_errors_total{code="busy"} 2.0' in text


async def test_a_burst_of_new_sessions_does_not_make_their_turns_busy() -> None:
    """Each session.start warms the prompt prefix (a prefill); on a busy model that warm-up is skipped instead
    of taking a place in the line, so sessions that start together and speak at once are all admitted
    (limit 1 + 2 waiting = 3 turns)."""
    from npc_runtime.gate import Gate
    from npc_runtime.llm.gated import GatedLLM

    fake = FakeLLM(["One two three four five six seven eight."], token_delay=0.05)
    llm = GatedLLM(fake, Gate("LLM", limit=1, max_waiting=2))
    async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm))) as srv:
        async with asyncio.timeout(60):
            async with NpcClient.connect(srv.url) as a, NpcClient.connect(srv.url) as b, NpcClient.connect(srv.url) as c:
                clients = (a, b, c)
                await asyncio.gather(*[client.start_session("jin", options={"text_only": True}) for client in clients])
                async with llm.gate.slot():  # the model is busy: a new session's warm-up does not wait for it
                    async with NpcClient.connect(srv.url) as d:
                        await asyncio.wait_for(d.start_session("jin", options={"text_only": True}), 5)
                        await asyncio.sleep(0.2)
                        assert not llm.gate.waiting
                prefills = len(fake.prefills)
                ends = await asyncio.gather(*[_say(client, "Count for me.") for client in clients])
    assert [e.status for e in ends] == ["completed"] * 3, [(e.status, e.error) for e in ends]
    assert 1 <= prefills <= 3


async def _say(client: NpcClient, text: str) -> p.ResponseEnd:
    events = [e async for e in client.say(text)]
    end = [e for e in events if isinstance(e, p.ResponseEnd)]
    assert end, events
    return end[-1]
