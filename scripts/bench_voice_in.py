"""Voice-in latency: from the end of the player's voice to the final transcript and to the first reply
audio, over a set of utterances streamed in real time like a microphone; with and without partial
transcripts (the cost of partial decoding on the final latency).

    .venv/bin/python scripts/bench_voice_in.py                  # in-process server, embedded models
    .venv/bin/python scripts/bench_voice_in.py --server ws://127.0.0.1:8765 --rounds 2

Utterances: ../shared/data/jfk.flac (real speech) and player lines synthesized by Piper and espeak-ng.
The end of the voice in each recording is found offline with Silero VAD; the clock starts when the
frame holding it is sent. Prints a table of medians and writes --out JSON. Not a test: the machine is
shared and noisy; report medians from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime import protocol as p  # noqa: E402
from npc_runtime.asr.wer import wer  # noqa: E402
from npc_runtime.bench.driver import stream_utterance  # noqa: E402
from npc_runtime.bench.lines import Utterance  # noqa: E402
from npc_runtime.client import AudioFrame, NpcClient  # noqa: E402
from npc_runtime.scene_files import load_scene  # noqa: E402

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country"


def _reference(name: str) -> str:
    return JFK if name.startswith("jfk") else name.split(": ", 1)[1]

LINES = [
    "Could you hand me the chopsticks?",
    "What is in your broth today?",
    "Please move over to the counter.",
    "I would like a bowl of ramen with extra egg.",
    "How long have you been running this shop?",
    "Give me the menu, please.",
]
SCENE = load_scene("ramen_shop")


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _voice_end_ms(pcm: bytes, rate: int) -> float:
    """Where the voice ends in a recording (Silero VAD, offline)."""
    from npc_runtime.bench.lines import speech_spans

    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    spans = speech_spans(audio, rate)
    return (spans[-1][1] if spans else len(audio)) / rate * 1000.0


async def _utterances() -> list[tuple[str, bytes, int]]:
    from faster_whisper.audio import decode_audio

    from npc_runtime.tts.espeak import EspeakTTS
    from npc_runtime.tts.piper import PiperTTS

    out = [("jfk.flac (real)", _pcm16(decode_audio(str(ROOT.parent / "shared" / "data" / "jfk.flac"), sampling_rate=16000)), 16000)]
    for name, tts, lines in (("piper", PiperTTS(), LINES), ("espeak", EspeakTTS(voice="en-us"), LINES[:3])):
        await tts.warm()
        for line in lines:
            pcm = b"".join([c.pcm async for c in tts.synthesize(line)])
            out.append((f"{name}: {line}", pcm, tts.sample_rate))
        await tts.aclose()
    return out


async def _one(client: NpcClient, pcm: bytes, rate: int, voice_end_ms: float) -> dict[str, Any]:
    """Stream one recording in real time, then silence; time the events from the voice's end."""
    marks: dict[str, float] = {}
    sender = asyncio.create_task(stream_utterance(client, Utterance("", pcm, rate, voice_end_ms), marks))
    result: dict[str, Any] = {}
    try:
        async with asyncio.timeout(90):
            async for event in client.events():
                now = time.monotonic()
                if isinstance(event, p.TranscriptFinal):
                    marks.setdefault("final", now)
                    result["text"], result["server_final_ms"] = event.text, event.timings.get("final_ms")
                    result["speculative_hit"] = bool(event.timings.get("speculative_hit"))
                    if not event.text.strip():
                        break
                elif isinstance(event, p.TranscriptPartial):
                    result["partials"] = result.get("partials", 0) + 1
                elif isinstance(event, AudioFrame):
                    marks.setdefault("first_audio", now)
                elif isinstance(event, p.ResponseEnd):
                    result["reply"] = event.text
                    break
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    t0 = marks.get("t0", float("nan"))  # the frame holding the end of the voice was sent
    result["final_ms"] = (marks.get("final", float("nan")) - t0) * 1000.0
    result["first_audio_ms"] = (marks.get("first_audio", float("nan")) - t0) * 1000.0
    return result


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import AsyncExitStack

    utterances = await _utterances()
    ends = [_voice_end_ms(pcm, rate) for _, pcm, rate in utterances]
    async with AsyncExitStack() as stack:
        url = args.server
        if url is None:
            from npc_runtime.server import NpcServer
            from npc_runtime.settings import Settings
            from npc_runtime.wiring import build_runtime

            runtime = await build_runtime(Settings(port=0, asr=args.asr))
            stack.push_async_callback(runtime.aclose)
            server = NpcServer(runtime.services, host="127.0.0.1", port=0)
            await server.start()
            stack.push_async_callback(server.aclose)
            await runtime.warm()
            url = server.url
        async with NpcClient.connect(url) as client:  # warm-up (the persona's prompt prefix), not counted
            await client.start_session("jin", scene=SCENE, options={"seed": 1, "audio_in": {"sample_rate": utterances[1][2]}})
            await _one(client, utterances[1][1], utterances[1][2], ends[1])
        results: dict[str, list[dict[str, Any]]] = {"partials on": [], "partials off": []}
        for _ in range(args.rounds):
            for mode in results:
                for (name, pcm, rate), end in zip(utterances, ends):
                    # JFK pauses ~1.1 s mid-sentence: it needs a longer end-of-turn silence to stay one turn.
                    silence = max(args.end_silence_ms, 1400) if name.startswith("jfk") else args.end_silence_ms
                    async with NpcClient.connect(url) as client:
                        await client.start_session("jin", scene=SCENE, options={
                            "seed": 1, "audio_in": {"sample_rate": rate},
                            "listen": {"partials": mode == "partials on", "end_silence_ms": silence}})
                        r = await _one(client, pcm, rate, end)
                    r["utterance"], r["mode"], r["end_silence_ms"] = name, mode, silence
                    r["final_after_silence_ms"] = r["final_ms"] - silence
                    r["wer"] = round(wer(_reference(name), r.get("text", "")), 3)
                    results[mode].append(r)
                    print(f"  {mode:12s} {name[:44]:44s} final {r['final_ms']:6.0f} ms  first audio "
                          f"{r['first_audio_ms']:6.0f} ms  heard {r.get('text', '')!r}", file=sys.stderr, flush=True)
    summary = {}
    for mode, rows in results.items():
        med = lambda key, rows=rows: statistics.median([r[key] for r in rows if r.get(key) == r.get(key)])  # noqa: E731 (NaN-free)
        summary[mode] = {
            "n": len(rows), "end_silence_ms": args.end_silence_ms,
            "final_ms_median": round(med("final_ms"), 1),
            "final_after_silence_ms_median": round(med("final_after_silence_ms"), 1),
            "wer_pooled": round(statistics.fmean([r["wer"] for r in rows]), 3),
            "first_audio_ms_median": round(med("first_audio_ms"), 1),
            "server_final_ms_median": round(med("server_final_ms"), 1),
            "speculative_hits": sum(1 for r in rows if r.get("speculative_hit")),
        }
    return {"machine": f"{platform.machine()}, {platform.processor() or '?'}, {__import__('os').cpu_count()} cores",
            "asr": args.asr, "summary": summary, "rows": [r for rows in results.values() for r in rows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", help="ws://HOST:PORT of a running server (default: in-process, embedded models)")
    ap.add_argument("--asr", default="tiny.en", help="in-process ASR model (tiny.en, base, path)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--end-silence-ms", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("bench_voice_in.json"))
    args = ap.parse_args()
    report = asyncio.run(_run(args))
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'mode':14s} {'n':>3s} {'end→final p50':>14s} {'  − silence':>12s} {'end→1st audio p50':>18s} {'spec. hits':>10s} {'WER':>6s}")
    for mode, s in report["summary"].items():
        print(f"{mode:14s} {s['n']:3d} {s['final_ms_median']:12.0f} ms {s['final_after_silence_ms_median']:9.0f} ms "
              f"{s['first_audio_ms_median']:16.0f} ms {s['speculative_hits']:10d} {s['wer_pooled']:6.1%}")
    print(f"(the end-of-turn silence, {args.end_silence_ms} ms — 1400 ms for jfk — is part of the times; wrote {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
