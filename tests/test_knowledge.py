"""npc_runtime.knowledge: the chunker (pure), then ingest and retrieval with the real embedder
(all-MiniLM-L6-v2, loaded once for the module) and real Chroma (local, and a `chroma run` server)."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from npc_runtime.knowledge.base import KnowledgeBase, source_scope
from npc_runtime.knowledge.chunk import Chunk, chunk_document, read_document
from npc_runtime.knowledge.cli import ingest_main
from npc_runtime.knowledge.embed import MiniLMEmbedder
from npc_runtime.knowledge.errors import KnowledgeFileError
from npc_runtime.knowledge.ingest import ingest_folder
from npc_runtime.knowledge.store import KnowledgeStore, collection_name
from npc_runtime.persona.schema import Persona

DATA = Path(__file__).resolve().parent / "data" / "knowledge"


@dataclass
class FakePersona:
    id: str
    knowledge: list[str] = field(default_factory=list)
    use_world_knowledge: bool = True


# --- the chunker ---------------------------------------------------------------------------------------


def test_markdown_headings_become_breadcrumbs() -> None:
    text = ("Intro before any heading.\n\n# Broth\n\nIt is milky.\n\n## Bones\n\nPork bones, blanched.\n\n"
            "### Blanching ###\n\nTen minutes.\n\n## Tare\n\nSoy.\n\n```\n# a comment, not a heading\n```\n\n# Noodles\n\nThin.\n")
    chunks = chunk_document(text, "jin/broth.md")
    assert [(c.index, c.heading) for c in chunks] == [
        (0, ""), (1, "Broth"), (2, "Broth > Bones"), (3, "Broth > Bones > Blanching"), (4, "Broth > Tare"), (5, "Noodles")]
    assert chunks[0].text == "Intro before any heading."
    assert chunks[3].text == "Broth > Bones > Blanching\nTen minutes."
    assert "# a comment, not a heading" in chunks[4].text
    assert chunks[2].id == "jin/broth.md#2"


def test_paragraphs_are_packed_with_overlap() -> None:
    paragraphs = [f"Paragraph {i} says something. It ends with fact number {i}." for i in range(12)]
    chunks = chunk_document("# Notes\n\n" + "\n\n".join(paragraphs), "n.md", max_chars=200, overlap_chars=60)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("Notes\n")
        assert len(chunk.text) <= 200 + 60 + len("Notes\n") + 1
    for i, paragraph in enumerate(paragraphs):  # every paragraph whole in some chunk, in order
        assert any(paragraph in c.text for c in chunks), i
    for before, after in zip(chunks, chunks[1:], strict=False):  # the overlap: the end of the previous chunk
        overlap = after.text.split("\n")[1]
        assert before.text.endswith(overlap)
        assert overlap[0].isupper() and len(overlap) <= 60  # cut at a sentence start


def test_long_paragraph_splits_at_sentences() -> None:
    sentences = [f"Sentence {i} is about the broth." for i in range(40)]
    chunks = chunk_document(" ".join(sentences), "a.txt", kind="text", max_chars=150, overlap_chars=0)
    assert len(chunks) >= 8
    assert all(len(c.text) <= 150 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert " ".join(c.text for c in chunks) == " ".join(sentences)
    giant = chunk_document("x" * 500, "b.txt", kind="text", max_chars=100, overlap_chars=0)  # no boundary at all
    assert [len(c.text) for c in giant] == [100] * 5


def test_text_files_have_no_headings() -> None:
    chunks = chunk_document("# not a heading in a text file\n\nSecond paragraph.", "a.txt", kind="text")
    assert [(c.heading, c.text) for c in chunks] == [("", "# not a heading in a text file\n\nSecond paragraph.")]


@pytest.mark.parametrize("text", ["", "   \n\n\t", "# Only a heading\n\n## And another\n"])
def test_empty_documents_have_no_chunks(text: str) -> None:
    assert chunk_document(text, "a.md") == []


def test_read_document(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    (tmp_path / "b.rst").write_text("plain", encoding="utf-8")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "d.txt").write_bytes(b"abc\x00def")
    (tmp_path / "e.txt").write_bytes("café".encode("latin-1"))
    assert read_document(tmp_path / "a.md") == ("# A\n\ntext", "markdown")
    assert read_document(tmp_path / "b.rst") == ("plain", "text")
    for name, reason in [("c.png", "not a text document"), ("d.txt", "binary content, not text"), ("e.txt", "not UTF-8 text")]:
        with pytest.raises(KnowledgeFileError) as info:
            read_document(tmp_path / name)
        assert info.value.code == "knowledge_file_unreadable"
        assert info.value.reason == reason
        assert name in info.value.message


def _tiny_pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_read_pdf(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    (tmp_path / "menu.pdf").write_bytes(_tiny_pdf("The shop opens at nine."))
    assert read_document(tmp_path / "menu.pdf") == ("The shop opens at nine.", "text")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 nothing else")
    with pytest.raises(KnowledgeFileError, match="unreadable PDF"):
        read_document(tmp_path / "broken.pdf")


def test_scopes_and_collection_names(tmp_path: Path) -> None:
    persona = Persona(id="jin", name="Jin", role="cook", knowledge=["extra/menu.md", str(tmp_path / "abs")])
    base = KnowledgeBase(tmp_path / "kn", KnowledgeStore(path=tmp_path / "s"), MiniLMEmbedder(), poll_s=1)
    scopes = base.scopes_for(persona)
    assert scopes[:2] == [("jin", tmp_path / "kn" / "jin"), ("world", tmp_path / "kn" / "world")]
    assert scopes[2] == (source_scope(tmp_path / "kn" / "extra" / "menu.md"), tmp_path / "kn" / "extra" / "menu.md")
    assert scopes[3][1] == tmp_path / "abs" and scopes[3][0].startswith("src_") and len(scopes[3][0]) == 12
    assert [s for s, _ in base.scopes_for(persona.model_copy(update={"use_world_knowledge": False}))][:2] == ["jin", scopes[2][0]]
    assert collection_name("jin") == "knowledge_jin"
    assert collection_name("jin_").startswith("knowledge_jin_-")
    with pytest.raises(ValueError):
        collection_name("../x")


# --- real embedder and Chroma ----------------------------------------------------------------------------


class CountingEmbedder:
    """The shared embedder, counting what it is asked to embed; closing it is the fixture's job."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts = 0

    async def warm(self) -> None:
        await self.inner.warm()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        pass


@pytest.fixture(scope="module")
async def embedder() -> AsyncIterator[MiniLMEmbedder]:
    model = MiniLMEmbedder()
    started = time.perf_counter()
    await model.warm()
    print(f"\nembedder load: {time.perf_counter() - started:.1f} s")
    yield model
    await model.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KnowledgeStore]:
    knowledge_store = KnowledgeStore(path=tmp_path / "not" / "yet" / "there")
    yield knowledge_store
    await knowledge_store.aclose()


async def _search(store: KnowledgeStore, embedder: CountingEmbedder | MiniLMEmbedder, scope: str, query: str, k: int = 3):
    [vector] = await embedder.embed([query])
    return await store.query(scope, vector, k)


@pytest.mark.engine
async def test_ingest_is_incremental(tmp_path: Path, store: KnowledgeStore, embedder: MiniLMEmbedder) -> None:
    root = tmp_path / "kn"
    folder = root / "jin"
    folder.mkdir(parents=True)
    (folder / "tare.md").write_text("# Tare\n\nThe secret ingredient is smoked yuzu peel.\n", encoding="utf-8")
    (folder / "cat.md").write_text("# Cat\n\nThe shop's cat is called Mochiko.\n", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("The mayor is Selene Marchetti.\n", encoding="utf-8")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "dump.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / ".hidden.md").write_text("ignored", encoding="utf-8")
    counting = CountingEmbedder(embedder)
    progress: list[tuple[int, int]] = []

    with capture_logs() as logs:
        first = await ingest_folder(store, counting, "jin", folder, root=root, progress=lambda d, t: progress.append((d, t)))
    assert store.path is not None and store.path.is_dir()  # created
    assert (first.added, first.updated, first.unchanged, first.removed, first.chunks) == (3, 0, 0, 0, 3)
    assert first.skipped == [("jin/dump.txt", "binary content, not text"), ("jin/photo.png", "not a text document")]
    assert {(e["event"], e["file"]) for e in logs if e["log_level"] == "warning"} == {
        ("knowledge_file_skipped", "jin/dump.txt"), ("knowledge_file_skipped", "jin/photo.png")}
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)
    assert first.summary().startswith("jin: 3 files (3 added, 0 updated, 0 unchanged, 0 removed), 3 chunks, 2 skipped: jin/dump.txt")
    assert sorted(await store.file_hashes("jin")) == ["jin/cat.md", "jin/sub/notes.txt", "jin/tare.md"]
    top = (await _search(store, counting, "jin", "What's the name of your cat?"))[0]
    assert (top.source, top.heading) == ("jin/cat.md", "Cat") and top.text == "Cat\nThe shop's cat is called Mochiko."

    counting.texts = 0
    second = await ingest_folder(store, counting, "jin", folder, root=root)
    assert (second.added, second.updated, second.unchanged, second.removed, second.embedded) == (0, 0, 3, 0, 0)
    assert counting.texts == 0  # nothing embedded

    (folder / "tare.md").write_text("# Tare\n\nThe secret ingredient is black garlic oil.\n", encoding="utf-8")
    (folder / "cat.md").unlink()
    third = await ingest_folder(store, counting, "jin", folder, root=root)
    assert (third.added, third.updated, third.unchanged, third.removed, third.chunks) == (0, 1, 1, 1, 2)
    assert counting.texts == 1
    assert all(p.source != "jin/cat.md" for p in await _search(store, counting, "jin", "What's the name of your cat?", k=5))
    assert "black garlic" in (await _search(store, counting, "jin", "secret ingredient"))[0].text

    empty = tmp_path / "empty"
    empty.mkdir()
    for nothing in (empty, tmp_path / "missing"):
        report = await ingest_folder(store, counting, "world", nothing, root=tmp_path)
        assert (report.files, report.removed, report.chunks, report.skipped) == (0, 0, 0, [])
    assert await store.query("world", [1.0] + [0.0] * 383, 3) == []


def _questions() -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.engine
async def test_retrieval_hit_rate(store: KnowledgeStore, embedder: MiniLMEmbedder) -> None:
    base = KnowledgeBase(DATA, store, CountingEmbedder(embedder), poll_s=60)
    jin = FakePersona("jin")
    started = time.perf_counter()
    reports = await base.sync([jin])
    ingest_s = time.perf_counter() - started
    chunks = sum(r.chunks for r in reports)
    assert [r.scope for r in reports] == ["jin", "world"] and all(not r.skipped for r in reports)
    print(f"\ningest: {chunks} chunks from {sum(r.files for r in reports)} files in {ingest_s * 1000:.0f} ms")
    questions = _questions()
    assert len(questions) >= 10
    hits, times = 0, []
    for q in questions:
        t0 = time.perf_counter()
        passages = await base.retrieve(jin, q["question"], k=3, budget_ms=5000)
        times.append((time.perf_counter() - t0) * 1000)
        hit = any(p.source == q["source"] and p.heading == q["heading"] and q["answer"] in p.text for p in passages)
        hits += hit
        if not hit:
            print(f"miss: {q['question']!r} -> {[(p.source, p.heading, round(p.score, 2)) for p in passages]}")
    rate = hits / len(questions)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"hit rate (top 3): {hits}/{len(questions)} = {rate:.0%}; retrieve ms p50 {statistics.median(times):.1f} p95 {p95:.1f}")
    assert rate >= 0.8
    await base.store.aclose()


@pytest.mark.engine
async def test_retrieve_never_raises(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = KnowledgeStore(path=tmp_path / "s")
    base = KnowledgeBase(DATA, store, CountingEmbedder(embedder), poll_s=60)
    jin = FakePersona("jin")
    with capture_logs() as logs:
        assert await base.retrieve(jin, "What was your grandmother's name?", budget_ms=0.01) == []
    assert [e["event"] for e in logs] == ["knowledge_retrieve_late"]
    assert await base.retrieve(jin, "   ") == []
    await store.aclose()
    with capture_logs() as logs:
        assert await base.retrieve(jin, "What was your grandmother's name?", budget_ms=5000) == []
    assert [(e["event"], e["code"]) for e in logs] == [("knowledge_retrieve_failed", "knowledge_unavailable")]
    await base.aclose()


@pytest.mark.engine
async def test_start_picks_up_edits(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    root = tmp_path / "kn"
    (root / "jin").mkdir(parents=True)
    (root / "jin" / "cat.md").write_text("# Cat\n\nThe shop's cat is called Mochiko.\n", encoding="utf-8")
    counting = CountingEmbedder(embedder)
    base = KnowledgeBase(root, KnowledgeStore(path=tmp_path / "s"), counting, poll_s=0.05)
    jin = FakePersona("jin", use_world_knowledge=False)
    personas = [jin]
    await base.start(lambda: personas)
    question = "Who is the mayor of the ward?"
    assert all("Marchetti" not in p.text for p in await base.retrieve(jin, question, budget_ms=5000, min_score=-1))
    (root / "jin" / "ward.md").write_text("# Ward\n\nThe mayor of the ward is Selene Marchetti.\n", encoding="utf-8")
    (root / "world").mkdir()
    (root / "world" / "eels.md").write_text("# Eels\n\nGlowing eels come from the Tarrow River.\n", encoding="utf-8")
    personas.append(FakePersona("nova"))  # a new persona: its scopes (and world) are ingested too
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = await base.retrieve(jin, question, budget_ms=5000)
        if found and "Marchetti" in found[0].text and await base.store.count("world") == 1:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the edit was not picked up")
    texts = counting.texts
    await asyncio.sleep(0.3)  # nothing changed: the polls embed nothing
    assert counting.texts == texts
    task = base._task
    await base.aclose()
    assert task is not None and task.done()
    await base.aclose()  # idempotent


# --- a Chroma server -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    chroma = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen([str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "server")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("chroma run did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.engine
async def test_chroma_server(chroma_server: str, embedder: MiniLMEmbedder) -> None:
    store = KnowledgeStore(url=chroma_server)
    await store.open()
    base = KnowledgeBase(DATA, store, CountingEmbedder(embedder), poll_s=60)
    reports = await base.sync([FakePersona("jin", use_world_knowledge=False)])
    assert [(r.scope, r.added) for r in reports] == [("jin", 2)]
    passages = await base.retrieve(FakePersona("jin", use_world_knowledge=False), "What's the name of your cat?", budget_ms=5000)
    assert passages and "Mochiko" in passages[0].text and passages[0].source == "jin/history.md"
    again = await base.sync([FakePersona("jin", use_world_knowledge=False)])
    assert again[0].unchanged == 2
    await store.aclose()


async def test_unreachable_server() -> None:
    store = KnowledgeStore(url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(Exception) as info:
        await store.open()
    assert info.value.code == "knowledge_unavailable" and info.value.retryable  # type: ignore[attr-defined]
    with pytest.raises(Exception) as info:
        await store.count("jin")
    assert info.value.code == "knowledge_unavailable"  # type: ignore[attr-defined]
    await store.aclose()


# --- npc ingest --------------------------------------------------------------------------------------------


@pytest.mark.engine
def test_ingest_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    characters = tmp_path / "characters"
    characters.mkdir()
    (characters / "jin.yaml").write_text("id: jin\nname: Jin\nrole: cook\n", encoding="utf-8")
    root = tmp_path / "knowledge"
    (root / "jin").mkdir(parents=True)
    (root / "jin" / "cat.md").write_text("# Cat\n\nThe shop's cat is called Mochiko.\n", encoding="utf-8")
    (root / "jin" / "photo.png").write_bytes(b"\x89PNG")
    args = {"root": root, "characters_dir": characters, "data_dir": tmp_path / "data", "chroma_url": None}
    with capture_logs():  # structlog's default would print to stdout; npc configures it to stderr
        assert ingest_main(character=None, **args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["jin: 1 files (1 added, 0 updated, 0 unchanged, 0 removed), 1 chunks, 1 skipped: jin/photo.png (not a text document)",
                   "world: 0 files (0 added, 0 updated, 0 unchanged, 0 removed), 0 chunks"]
    assert (tmp_path / "data" / "chroma").is_dir()
    with capture_logs():
        assert ingest_main(character="jin", **args) == 0
    assert capsys.readouterr().out.startswith("jin: 1 files (0 added, 0 updated, 1 unchanged, 0 removed)")
    assert ingest_main(character="nova", **args) == 1
    assert "unknown character 'nova'" in capsys.readouterr().err
    assert ingest_main(character=None, **{**args, "chroma_url": f"http://127.0.0.1:{_free_port()}"}) == 1
    err = capsys.readouterr().err.strip()
    assert "cannot be reached" in err and "\n" not in err


def test_chunk_ids_are_stable() -> None:
    assert Chunk("a.md", "", 3, "x").id == "a.md#3"
