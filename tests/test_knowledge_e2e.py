"""Knowledge through the server with the real models: facts that exist only in knowledge files (invented,
tests/data/knowledge/) are retrieved for the turn, reported in response.end.sources, and given to the embedded
model in its prompt; and the same through a real Chroma server (`chroma run` on loopback). How often the model's
answer repeats the fact is its quality, printed, not asserted (its words vary with the model, the CPU and its kernels)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import ROOT, scene_dict
from server_fixture import Recording, registry, serving

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.knowledge.base import KnowledgeBase
from npc_runtime.knowledge.embed import MiniLMEmbedder
from npc_runtime.knowledge.store import KnowledgeStore
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

pytestmark = pytest.mark.engine

DATA = ROOT / "tests" / "data" / "knowledge"
QUESTIONS = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedder() -> AsyncIterator[MiniLMEmbedder]:
    model = MiniLMEmbedder()
    await model.warm()
    yield model
    await model.aclose()


class _Shared:
    """The module's embedder stays open when a KnowledgeBase closes (it closes its embedder)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    async def warm(self) -> None:
        await self.inner.warm()

    async def embed(self, texts: Any) -> Any:
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        pass


def knowledge_root(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    for scope in ("jin", "world"):
        shutil.copytree(DATA / scope, root / scope)
    return root


@asynccontextmanager
async def serve(llm: Any, store: KnowledgeStore, root: Path, embedder: MiniLMEmbedder) -> AsyncIterator[NpcServer]:
    async with registry() as personas:
        kb = KnowledgeBase(root, store, _Shared(embedder))  # type: ignore[arg-type]
        await kb.start(lambda: [personas.get(pid) for pid in personas.ids()])
        try:
            async with serving(Services(personas=personas, dialogue=Dialogue(llm=llm), knowledge=kb,
                                        retrieval_budget_ms=2000)) as server:
                yield server
        finally:
            await kb.aclose()


async def ask(url: str, question: str, *, seed: int = 1) -> p.ResponseEnd:
    async with NpcClient.connect(url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={"seed": seed, "text_only": True})
        events = [e async for e in client.say(question)]
    end = events[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed", end
    return end


async def test_invented_facts_reach_the_model(tmp_path: Path, llama_engine: Any, embedder: MiniLMEmbedder) -> None:
    store = KnowledgeStore(path=tmp_path / "chroma")
    engine = Recording(llama_engine)
    retrieved = given = answered = 0
    async with serve(engine, store, knowledge_root(tmp_path), embedder) as server:
        for q in QUESTIONS:
            end = await ask(server.url, q["question"])
            hit = any(s.file == q["source"] for s in end.sources)
            fact = q["answer"].lower() in engine.prompt().lower()
            said = q["answer"].lower() in end.text.lower()
            retrieved, given, answered = retrieved + hit, given + fact, answered + said
            print(f"\n{'R' if hit else '-'}{'P' if fact else '-'}{'A' if said else '-'} {q['question']!r} -> {end.text!r} "
                  f"[{', '.join(f'{s.file}#{s.heading} {s.score:.2f}' for s in end.sources)}]")
    n = len(QUESTIONS)
    print(f"\nright file among the sources: {retrieved}/{n}; the fact in the model's prompt: {given}/{n}; "
          f"answer holds the fact: {answered}/{n} (SmolLM2-135M, not asserted)")
    assert len(engine.requests) == n
    assert retrieved >= 0.8 * n
    assert given >= 0.8 * n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_through_a_chroma_server(tmp_path: Path, llama_engine: Any, embedder: MiniLMEmbedder) -> None:
    port = _free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "server")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "chroma run did not start"
                time.sleep(0.2)
        store = KnowledgeStore(url=f"http://127.0.0.1:{port}")
        q = QUESTIONS[0]
        async with serve(llama_engine, store, knowledge_root(tmp_path), embedder) as server:
            end = await ask(server.url, q["question"])
        assert any(s.file == q["source"] for s in end.sources), end.sources
        assert not (tmp_path / "chroma").exists()  # nothing written to a local store
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_ingest_say_with_sources_and_memory(tmp_path: Path) -> None:
    """`npc ingest` (incremental), `npc say --knowledge` reporting its sources, `npc memory show|forget`."""
    root = knowledge_root(tmp_path)
    (root / "jin" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    env = {**__import__("os").environ, "NPC_DATA_DIR": str(tmp_path / "data")}
    npc = [sys.executable, "-m", "npc_runtime.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*npc, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    first = run("ingest", "--knowledge", str(root), "--character", "jin")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "jin/photo.png" in first.stdout + first.stderr  # skipped, and named
    again = run("ingest", "--knowledge", str(root), "--character", "jin")
    assert again.returncode == 0 and "2 unchanged" in again.stdout, again.stdout
    said = run("say", "jin", QUESTIONS[6]["question"], "--knowledge", str(root), "--player-id", "kai", "--text-only", "--json",
               "--seed", "1", "--scene", str(ROOT.parent / "shared" / "eval" / "scenes" / "ramen_shop.json"))
    assert said.returncode == 0, said.stderr[-2000:]
    end = json.loads(said.stdout.splitlines()[-1])
    assert end["type"] == "response.end" and any(s["file"] == QUESTIONS[6]["source"] for s in end["sources"]), end
    shown = run("memory", "show", "kai")
    assert shown.returncode == 0 and QUESTIONS[6]["question"] in shown.stdout, shown.stdout
    forgot = run("memory", "forget", "kai")
    assert forgot.returncode == 0 and "forgot 2 entries" in forgot.stdout, forgot.stdout
    assert "nothing remembered for kai" in run("memory", "show", "kai").stdout
