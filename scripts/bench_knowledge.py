"""Knowledge benchmark: ingest throughput, retrieval latency at 1k and 10k chunks, and retrieval's share of
the time to first audio in real turns.

    .venv/bin/python scripts/bench_knowledge.py --out bench_knowledge.json

1. Ingest: a generated corpus (Markdown files of realistic paragraphs, ~600 characters per chunk) through
   ``ingest_folder`` into a fresh local Chroma store: chunks/s (embedding dominates).
2. Retrieval: ``KnowledgeBase.retrieve`` (embed the query + search the character's and world's collections) over
   the invented-facts set (tests/data/knowledge) plus filler chunks up to 1,000 and 10,000 per collection. Filler
   vectors are random unit vectors (embedding 10k real chunks takes ~10 min here; the search cost does not depend
   on what the vectors mean). p50/p95 over the 14 questions x ``--repeat``.
3. In a turn: an in-process server (SmolLM2 + Piper + knowledge), the 14 questions, each in a fresh session:
   the ``retrieval`` and ``first_audio`` marks of response.end (ms from the turn's start).
Not a test: the machine is shared and noisy; report medians from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime.knowledge.base import KnowledgeBase  # noqa: E402
from npc_runtime.knowledge.chunk import Chunk  # noqa: E402
from npc_runtime.knowledge.embed import MiniLMEmbedder  # noqa: E402
from npc_runtime.knowledge.ingest import ingest_folder  # noqa: E402
from npc_runtime.knowledge.store import KnowledgeStore  # noqa: E402
from npc_runtime.scene_files import load_scene  # noqa: E402

DATA = ROOT / "tests" / "data" / "knowledge"
QUESTIONS = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
WORDS = ("broth noodle harbour lantern rain market neon tower stall counter kitchen bowl pork kelp miso tea "
         "festival canal ferry train mayor council engineer fisherman recipe knife stool window sign alley").split()


def _paragraph(rng: random.Random, chars: int = 600) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))
        out.append(sentence.capitalize() + ".")
    return " ".join(out)


def _corpus(folder: Path, files: int, paragraphs: int, rng: random.Random) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        body = [f"# Document {i}"]
        for j in range(paragraphs):
            body += [f"## Part {j}", _paragraph(rng)]
        (folder / f"doc{i:03d}.md").write_text("\n\n".join(body) + "\n", encoding="utf-8")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class _Persona:
    def __init__(self, pid: str) -> None:
        self.id, self.knowledge, self.use_world_knowledge = pid, [], True


async def bench_ingest(tmp: Path, embedder: MiniLMEmbedder, files: int, paragraphs: int) -> dict[str, Any]:
    _corpus(tmp / "corpus" / "bench", files, paragraphs, random.Random(1))
    store = KnowledgeStore(path=tmp / "ingest-store")
    await store.open()
    t0 = time.perf_counter()
    report = await ingest_folder(store, embedder, "bench", tmp / "corpus" / "bench", root=tmp / "corpus")
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = await ingest_folder(store, embedder, "bench", tmp / "corpus" / "bench", root=tmp / "corpus")
    unchanged_s = time.perf_counter() - t1
    await store.aclose()
    return {"files": files, "chunks": report.chunks, "seconds": round(seconds, 2),
            "chunks_per_s": round(report.chunks / seconds, 1), "reingest_unchanged_s": round(unchanged_s, 3),
            "unchanged_files": again.unchanged}


async def bench_retrieval(tmp: Path, embedder: MiniLMEmbedder, size: int, repeat: int) -> dict[str, Any]:
    root = tmp / f"kn{size}"
    for scope in ("jin", "world"):
        shutil.copytree(DATA / scope, root / scope)
    store = KnowledgeStore(path=tmp / f"store{size}")
    kb = KnowledgeBase(root, store, embedder)
    persona = _Persona("jin")
    await store.open()
    await kb.sync([persona])
    rng = np.random.default_rng(size)
    for scope in ("jin", "world"):
        have = await store.count(scope)
        for start in range(0, size - have, 1000):
            n = min(1000, size - have - start)
            vectors = rng.normal(size=(n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            source = f"filler/batch{start}.md"  # one "file" per 1,000 filler chunks
            chunks = [Chunk(source=source, heading="Filler", index=i, text=f"filler {start + i}") for i in range(n)]
            await store.replace_file(scope, source, "x", chunks, vectors.tolist())
    counts = {scope: await store.count(scope) for scope in ("jin", "world")}
    times, hits = [], 0
    for _ in range(repeat):
        for q in QUESTIONS:
            t0 = time.perf_counter()
            passages = await kb.retrieve(persona, q["question"], k=3, budget_ms=5000)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t0) * 1000)
            hits += any(p.source == q["source"] for p in passages)
    await store.aclose()
    return {"chunks_per_collection": counts, "queries": len(times), "p50_ms": round(_pct(times, 50), 1),
            "p95_ms": round(_pct(times, 95), 1), "hit_rate_top3": round(hits / len(times), 3)}


async def bench_turns(tmp: Path, *, rag: bool = True) -> dict[str, Any]:
    from npc_runtime import protocol as p
    from npc_runtime.client import NpcClient
    from npc_runtime.server import NpcServer
    from npc_runtime.settings import Settings
    from npc_runtime.wiring import build_runtime

    root = tmp / f"turn-knowledge-{rag}"
    for scope in ("jin", "world"):
        shutil.copytree(DATA / scope, root / scope)
    runtime = await build_runtime(Settings(port=0, knowledge_dir=root, data_dir=tmp / f"turn-data-{rag}", memory=False, asr="none", rag=rag))
    server = NpcServer(runtime.services, host="127.0.0.1", port=0)
    await server.start()
    await runtime.warm()
    scene = load_scene("ramen_shop")
    rows = []
    try:
        for i, q in enumerate([QUESTIONS[0], *QUESTIONS]):
            async with NpcClient.connect(server.url) as client:
                await client.start_session("jin", scene=scene, options={"seed": 1})
                await asyncio.sleep(0.5 if i else 8.0)  # let the session-start prefill finish (warm turn)
                end = [e async for e in client.say(q["question"])][-1]
            assert isinstance(end, p.ResponseEnd)
            if i:  # the first is a warm-up
                rows.append({"retrieval_ms": end.timings.get("retrieval", 0.0), "first_audio_ms": end.timings.get("first_audio"),
                             "first_token_ms": end.timings.get("first_token"), "sources": len(end.sources)})
    finally:
        await server.aclose()
        await runtime.aclose()
    med = lambda key: round(statistics.median(r[key] for r in rows if r[key] is not None), 1)  # noqa: E731
    return {"turns": len(rows), "rag": rag, "retrieval_ms_p50": med("retrieval_ms"), "first_token_ms_p50": med("first_token_ms"),
            "first_audio_ms_p50": med("first_audio_ms"),
            "retrieval_share_of_first_audio": round(statistics.median(r["retrieval_ms"] / r["first_audio_ms"] for r in rows
                                                                     if r["first_audio_ms"]), 3)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    embedder = MiniLMEmbedder()
    try:
        t0 = time.perf_counter()
        await embedder.warm()
        report: dict[str, Any] = {"embedder_load_s": round(time.perf_counter() - t0, 2)}
        report["ingest"] = await bench_ingest(tmp, embedder, args.files, args.paragraphs)
        print("ingest", report["ingest"], file=sys.stderr, flush=True)
        report["retrieval"] = {}
        for size in (1000, 10000):
            report["retrieval"][str(size)] = r = await bench_retrieval(tmp, embedder, size, args.repeat)
            print(f"retrieval at {size}", r, file=sys.stderr, flush=True)
        await embedder.aclose()
        if not args.no_turns:
            report["turns"] = await bench_turns(tmp)
            print("turns", report["turns"], file=sys.stderr, flush=True)
            report["turns_no_rag"] = await bench_turns(tmp, rag=False)
            print("turns without rag", report["turns_no_rag"], file=sys.stderr, flush=True)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--paragraphs", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--no-turns", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench_knowledge.json"))
    args = ap.parse_args()
    report = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    ing = report["ingest"]
    print(f"\ningest: {ing['chunks']} chunks in {ing['seconds']} s = {ing['chunks_per_s']} chunks/s "
          f"(unchanged re-ingest {ing['reingest_unchanged_s']} s)")
    for size, r in report["retrieval"].items():
        print(f"retrieval, {size} chunks per collection: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, hit rate {r['hit_rate_top3']:.0%}")
    if "turns" in report:
        t = report["turns"]
        n = report["turns_no_rag"]
        print(f"in a turn: retrieval {t['retrieval_ms_p50']} ms of {t['first_audio_ms_p50']} ms to first audio "
              f"(median share {t['retrieval_share_of_first_audio']:.1%}); first token {t['first_token_ms_p50']} ms with the "
              f"passages in the prompt vs {n['first_token_ms_p50']} ms without (first audio {n['first_audio_ms_p50']} ms)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
