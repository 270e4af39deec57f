"""Nothing lost without a word (issue 15): a knowledge store that is down is said in ``response.end.knowledge``; an
LLM server (vLLM) that cannot be reached at start is logged per attempt, shown by ``/readyz``, refused at
``session.start`` with ``not_ready``, and waited for (the server does not exit) until it comes up.

No model: the knowledge tests use a word-hash embedder and real Chroma (a local store, and a server URL where nothing
listens); the vLLM test runs a real ``npc serve --llm vllm`` process against a closed loopback port, then against a
tiny fake OpenAI-compatible HTTP server started on that port. The fake tests the runtime's start-up and readiness
logic (retry, readiness, a session and a turn once it answers), not vLLM itself (tests/test_llm_vllm.py does that).
Memory failures are in tests/test_memory.py (the store) and tests/test_memory_e2e.py (through a server)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, scene_dict
from live_server import stop_process
from server_fixture import registry, serving
from vllm_fixture import free_port

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient, ServerError
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.knowledge.base import KnowledgeBase, Retrieval
from npc_runtime.knowledge.store import KnowledgeStore
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.metrics import Metrics
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

# -- knowledge


class WordEmbedder:
    """Each word hashed to one of 64 dimensions, normalised: texts that share words are near. No model."""

    name, dim = "words", 64

    async def warm(self) -> None:
        pass

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * self.dim
            for word in re.findall(r"[a-z]+", text.lower()):
                vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            out.append([v / norm for v in vector])
        return out

    async def aclose(self) -> None:
        pass


class SlowEmbedder(WordEmbedder):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(1.0)
        return await super().embed(texts)


@dataclass
class FakePersona:
    id: str
    knowledge: list[str] = field(default_factory=list)
    use_world_knowledge: bool = False


def knowledge_root(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    (root / "jin").mkdir(parents=True, exist_ok=True)
    (root / "jin" / "cat.md").write_text("# The cat\n\nThe name of the shop cat is Mochiko, a grey cat.\n", encoding="utf-8")
    return root


def down_store() -> KnowledgeStore:
    return KnowledgeStore(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there: Chroma is down


async def test_retrieval_says_whether_it_found_nothing_or_could_not_look(tmp_path: Path) -> None:
    jin = FakePersona("jin")
    base = KnowledgeBase(knowledge_root(tmp_path), KnowledgeStore(path=tmp_path / "chroma"), WordEmbedder())
    await base.sync([jin])
    found = await base.retrieve(jin, "What is the name of the shop cat?", budget_ms=5000)
    assert isinstance(found, Retrieval) and found.outcome == "found" and "Mochiko" in found[0].text
    nothing = await base.retrieve(jin, "Weather tomorrow?", budget_ms=5000)
    assert nothing == [] and nothing.outcome == "empty"
    await base.aclose()

    down = KnowledgeBase(knowledge_root(tmp_path), down_store(), WordEmbedder())
    failed = await down.retrieve(jin, "What is the name of the shop cat?", budget_ms=5000)  # never raises
    assert failed == [] and failed.outcome == "failed" and failed.error == "knowledge_unavailable"
    await down.aclose()

    slow = KnowledgeBase(knowledge_root(tmp_path), KnowledgeStore(path=tmp_path / "chroma"), SlowEmbedder())
    late = await slow.retrieve(jin, "What is the name of the shop cat?", budget_ms=20)
    assert late == [] and late.outcome == "late"
    await slow.aclose()


@asynccontextmanager
async def knowledge_server(kb: KnowledgeBase | None, llm: FakeLLM, metrics: Metrics) -> AsyncIterator[NpcServer]:
    async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm), knowledge=kb,
                                                        retrieval_budget_ms=5000, metrics=metrics)) as server:
        try:
            yield server
        finally:
            if kb is not None:
                await kb.aclose()


async def ask(url: str, line: str) -> p.ResponseEnd:
    async with NpcClient.connect(url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", options={"text_only": True})
        events = [e async for e in client.say(line)]
    end = events[-1]
    assert isinstance(end, p.ResponseEnd), events
    return end


async def test_response_end_says_when_knowledge_was_unavailable(tmp_path: Path) -> None:
    """Chroma down: the turn still answers (never fails on knowledge), and response.end says it had no knowledge."""
    metrics = Metrics()
    kb = KnowledgeBase(knowledge_root(tmp_path), down_store(), WordEmbedder())
    async with knowledge_server(kb, FakeLLM(["Mochiko? Never heard of her."]), metrics) as server:
        end = await ask(server.url, "What is the name of the shop cat?")
        scrape = await asyncio.to_thread(http_get, f"http://127.0.0.1:{server.port}/metrics")
    assert end.status == "completed" and end.text == "Mochiko? Never heard of her." and end.error is None
    assert end.knowledge == "unavailable" and end.sources == []
    assert 'npc_knowledge_lookups_total{result="unavailable"} 1.0' in scrape[1]


async def test_response_end_says_when_knowledge_was_used_or_had_nothing(tmp_path: Path) -> None:
    kb = KnowledgeBase(knowledge_root(tmp_path), KnowledgeStore(path=tmp_path / "chroma"), WordEmbedder())
    async with registry() as personas:
        await kb.start(lambda: [personas.get(pid) for pid in personas.ids()])
    async with knowledge_server(kb, FakeLLM(["It's Mochiko.", "No idea."]), Metrics()) as server:
        used = await ask(server.url, "What is the name of the shop cat?")
        none = await ask(server.url, "Will it rain tomorrow morning, do you think?")
    assert used.knowledge == "used" and [s.file for s in used.sources] == ["jin/cat.md"]
    assert none.knowledge == "none" and none.sources == []
    async with knowledge_server(None, FakeLLM(["Hello."]), Metrics()) as server:
        assert (await ask(server.url, "What is the name of the shop cat?")).knowledge is None  # no knowledge base: no lookup


# -- readiness: session.start while the server is not ready


async def _start_error(services: Services) -> tuple[p.ErrorEvent, float]:
    async with serving(services) as server:
        services.ready.clear()  # serving() marks it ready: this server is still warming up
        async with NpcClient.connect(server.url) as client:
            started = time.monotonic()
            with pytest.raises(ServerError) as info:
                await client.start_session("jin", options={"text_only": True})
            return info.value.event, time.monotonic() - started


async def test_session_start_is_not_ready_at_once_while_the_llm_server_is_down() -> None:
    async with registry() as personas:
        services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM(["Hi."])), ready_timeout=30.0,
                            unready_reason="the LLM server cannot be reached")
        event, took = await _start_error(services)
    assert event.code == "not_ready" and event.retryable and not event.fatal and took < 1.0
    assert event.message == "the server is not ready: the LLM server cannot be reached; retry shortly"


async def test_session_start_waits_for_warm_up_but_not_for_a_server_found_down_meanwhile() -> None:
    async with registry() as personas:
        services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM(["Hi."])), ready_timeout=30.0)
        asyncio.get_running_loop().call_later(0.3, setattr, services, "unready_reason", "the LLM server cannot be reached")
        event, took = await _start_error(services)
        assert event.code == "not_ready" and 0.25 < took < 1.5
        services.unready_reason = None
        async with serving(services) as server:  # warming up normally: session.start waits and goes through
            services.ready.clear()
            asyncio.get_running_loop().call_later(0.3, services.ready.set)
            async with NpcClient.connect(server.url) as client:
                ready = await client.start_session("jin", options={"text_only": True})
        assert ready.character.id == "jin"


# -- vLLM unreachable at start


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class FakeOpenAI(BaseHTTPRequestHandler):
    """The few routes of an OpenAI-compatible server that the vLLM engine calls: ``GET /health``, ``POST
    /v1/chat/completions`` (streamed or not). Every reply says "Hello there." (TEST ONLY: not vLLM.)"""

    protocol_version = "HTTP/1.0"  # one request per connection; a stream ends when the connection closes

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if not body.get("stream"):
            data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                            "finish_reason": "length"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks = [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None},
                  {"delta": {"content": "Hello"}, "finish_reason": None},
                  {"delta": {"content": " there."}, "finish_reason": "stop"}]
        for choice in chunks:
            self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, **choice}]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@contextmanager
def fake_openai(port: int) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", port), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Process:
    proc: subprocess.Popen[str]
    port: int
    log: list[str]

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in list(self.log):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                out.append(record)
        return out

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"npc serve exited ({self.proc.returncode}):\n" + "\n".join(self.log[-30:])
            result = check()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.log[-30:]))


@contextmanager
def npc_serve_vllm(vllm_port: int, data_dir: Path) -> Iterator[Process]:
    """``npc serve --llm vllm`` (text only, no knowledge, no memory) pointed at ``vllm_port``; stopped on exit."""
    env = {**os.environ, "NPC_DATA_DIR": str(data_dir), "NPC_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "npc_runtime.cli", "serve", "--port", "0", "--log-level", "info", "--llm", "vllm",
           "--vllm-url", f"http://127.0.0.1:{vllm_port}", "--vllm-model", "fake", "--tts", "none", "--asr", "none",
           "--no-rag", "--no-memory"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    log: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())

    reader = threading.Thread(target=drain, name="npc-serve-log", daemon=True)
    reader.start()
    try:
        server = Process(proc, 0, log)
        found = server.wait_for("the listening line", lambda: next(
            (m for m in (re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line) for line in list(log)) if m), None), 60)
        server.port = int(found.group(1))
        yield server
    finally:
        stop_process(proc, reader, timeout_s=20)


async def test_vllm_down_at_start_is_said_refused_and_waited_for_until_it_comes_up(tmp_path: Path) -> None:
    vllm_port = free_port()  # nothing listens: vLLM is down
    with npc_serve_vllm(vllm_port, tmp_path / "data") as server:
        base, url = f"http://127.0.0.1:{server.port}", f"ws://127.0.0.1:{server.port}"
        # a warning per attempt, with the URL and the error
        attempts = await asyncio.to_thread(server.wait_for, "two retry warnings",
                                           lambda: (lambda a: a if len(a) >= 2 else None)(server.events("vLLM not reachable; retrying")), 30)
        assert all(a["level"] == "warning" and a["url"] == f"http://127.0.0.1:{vllm_port}" and a["error"] for a in attempts)
        assert [a["attempt"] for a in attempts[:2]] == [1, 2]
        # /readyz: 503 with the reason
        status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert status == 503 and "llm: unavailable: vLLM not reachable (attempt" in body, body
        # session.start: not_ready at once, the connection stays (no 1001 close)
        async with NpcClient.connect(url) as client:
            started = time.monotonic()
            with pytest.raises(ServerError) as info:
                await client.start_session("jin", options={"text_only": True})
            assert time.monotonic() - started < 2.0
            assert info.value.code == "not_ready" and info.value.event.retryable and not info.value.event.fatal
            assert "cannot be reached" in info.value.event.message and str(vllm_port) not in info.value.event.message
            await client.send(p.Ping())
            assert isinstance(await client.recv(timeout=5), p.Pong)
        assert server.proc.poll() is None

        with fake_openai(vllm_port):  # it comes up: the server gets ready and turns work
            await asyncio.to_thread(server.wait_for, "/readyz 200", lambda: http_get(f"{base}/readyz")[0] == 200, 30)
            assert server.events("vLLM reachable")
            status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
            assert "unavailable" not in body
            async with NpcClient.connect(url) as client:
                await client.start_session("jin", options={"text_only": True})
                events = [e async for e in client.say("Hi Jin.")]
            end = events[-1]
            assert isinstance(end, p.ResponseEnd) and end.status == "completed" and end.text == "Hello there.", events


class RejectingOpenAI(FakeOpenAI):
    """Healthy, but every request is refused as for an unknown model (HTTP 404)."""

    def do_POST(self) -> None:  # noqa: N802
        data = json.dumps({"error": {"message": "The model `nope` does not exist.", "code": 404}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


async def test_vllm_warm_reports_each_attempt_and_raises_only_a_rejection() -> None:
    """The engine alone: each failed attempt goes to on_warm_retry (then None once it answers); ``warm_timeout``
    still bounds it when set; a request the server rejects (a wrong model name) is raised at once, not retried."""
    from npc_runtime.errors import LLMRejected, LLMUnavailable
    from npc_runtime.llm.vllm import VLLMEngine

    port = free_port()
    engine = VLLMEngine(base_url=f"http://127.0.0.1:{port}", model="fake", warm_retry_max_s=0.5)
    seen: list[str | None] = []
    engine.on_warm_retry = seen.append
    warming = asyncio.create_task(engine.warm(), name="warm")
    while len(seen) < 2:
        await asyncio.sleep(0.02)
    with fake_openai(port):
        await asyncio.wait_for(warming, 10)
    assert seen[0] is not None and seen[0].startswith("vLLM not reachable (attempt 1: ") and seen[-1] is None
    await engine.aclose()

    bounded = VLLMEngine(base_url=f"http://127.0.0.1:{free_port()}", model="fake", warm_timeout=0.3)
    with pytest.raises(LLMUnavailable, match="not ready after 0.3 s"):
        await bounded.warm()
    await bounded.aclose()

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), RejectingOpenAI)
    thread = threading.Thread(target=server.serve_forever, name="rejecting-openai", daemon=True)
    thread.start()
    wrong = VLLMEngine(base_url=f"http://127.0.0.1:{port}", model="nope")
    try:
        with pytest.raises(LLMRejected, match="does not exist"):
            await asyncio.wait_for(wrong.warm(), 10)
    finally:
        await wrong.aclose()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
