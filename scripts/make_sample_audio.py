#!/usr/bin/env python
"""Make the shipped speech sample: the project's own speech engine says a player line, written as a
16 kHz mono PCM16 WAV with a little silence around it (what `npc say --audio-in` and
`npc bench --mode audio` stream by default).

    .venv/bin/python scripts/make_sample_audio.py            # examples/audio/chopsticks.wav, Piper's joe voice
    .venv/bin/python scripts/make_sample_audio.py --engine espeak --out /tmp/espeak.wav

Piper samples noise on every run, so a regenerated file sounds the same but is not byte-identical.
Licence of the output: see examples/audio/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime.asr.resample import Resampler  # noqa: E402
from npc_runtime.tts.espeak import EspeakTTS  # noqa: E402
from npc_runtime.tts.piper import PiperTTS  # noqa: E402

TEXT = "Could you hand me the chopsticks?"
RATE = 16000
LEAD_MS, TAIL_MS = 300, 500


async def synthesize(engine: str, text: str) -> tuple[bytes, int]:
    tts = PiperTTS() if engine == "piper" else EspeakTTS(voice="en-us")
    await tts.warm()
    try:
        return b"".join([chunk.pcm async for chunk in tts.synthesize(text)]), tts.sample_rate
    finally:
        await tts.aclose()


def to_16k(pcm: bytes, rate: int) -> bytes:
    resampler = Resampler(rate)
    audio = np.concatenate([resampler.feed(pcm), resampler.flush()])
    silence = lambda ms: np.zeros(RATE * ms // 1000, dtype=np.float32)  # noqa: E731
    audio = np.concatenate([silence(LEAD_MS), audio, silence(TAIL_MS)])
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["piper", "espeak"], default="piper")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "audio" / "chopsticks.wav")
    args = ap.parse_args()
    pcm, rate = asyncio.run(synthesize(args.engine, args.text))
    data = to_16k(pcm, rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(args.out), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(data)
    print(f"wrote {args.out}: {len(data) / 2 / RATE:.2f} s, {args.out.stat().st_size} bytes ({args.engine})")


if __name__ == "__main__":
    main()
