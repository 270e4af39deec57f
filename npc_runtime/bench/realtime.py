"""The bench's clients over the OpenAI-Realtime-compatible endpoint (``npc bench --protocol realtime``).

Same plan, same lines, same measurement as :mod:`.driver` (native), through ``/v1/realtime``: a session is
``session.update`` (character, scene, seed, server VAD; audio mode turns input transcription on) answered by
``session.updated``; a typed turn is ``conversation.item.create`` + ``response.create`` (the clock starts when both
are sent); a spoken one streams 20 ms ``input_audio_buffer.append`` frames at 24 kHz in real time (the clock starts
when the frame holding the end of the voice is sent). Marks: the input transcript
(``conversation.item.input_audio_transcription.completed``), the first transcript or text delta, the first
``response.output_audio.delta``, ``response.done`` (its ``response.npc.timings`` are the server's). The client is
:class:`npc_runtime.realtime.client.RealtimeClient` (plain JSON over ``websockets``): the bench needs nothing beyond the
runtime's own dependencies.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from npc_runtime import protocol as p
from npc_runtime.bench.driver import BUSY, FRAME_MS, RETRY_DELAY_S, RUN_ID, LoadPlan, TurnRow, _fail, _label, _ms, _NewSession
from npc_runtime.bench.lines import Utterance
from npc_runtime.realtime.client import RealtimeClient, WebSocketException, realtime_url

RATE = 24000
#: Which endpoint a load goes through: the native protocol (``/``) or the Realtime one (``/v1/realtime``).
Protocol = Literal["native", "realtime"]
_STATUS = {"completed": "completed", "incomplete": "completed", "cancelled": "interrupted", "failed": "failed"}


def to_24k(utterance: Utterance) -> tuple[bytes, float]:
    """The utterance's PCM16 at 24 kHz (linear interpolation: the bench's input, not a product path) and where its
    voice ends (ms, unchanged)."""
    if utterance.rate == RATE:
        return utterance.pcm, utterance.voice_end_ms
    x = np.frombuffer(utterance.pcm, dtype="<i2").astype(np.float32)
    n = int(round(len(x) * RATE / utterance.rate))
    y = np.interp(np.arange(n) * (utterance.rate / RATE), np.arange(len(x)), x)
    return np.clip(y, -32768, 32767).astype("<i2").tobytes(), utterance.voice_end_ms


async def _start(conn: RealtimeClient, plan: LoadPlan, index: int) -> dict[str, Any]:
    session: dict[str, Any] = {"type": "realtime", "npc": {"scene": plan.scene, "seed": plan.seed,
                                                           "player": {"id": f"bench_{RUN_ID}_{index}"}}}
    if plan.mode == "audio":
        session["audio"] = {"input": {"transcription": {"model": "whisper"}, "turn_detection": {"type": "server_vad"}}}
    await conn.send({"type": "session.update", "session": session})
    while True:
        event = await conn.recv()
        if event["type"] == "session.updated":
            return event
        if event["type"] == "error":
            raise _Refused(event["error"].get("code") or "error")


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def _read_turn(conn: RealtimeClient, row: TurnRow, marks: dict[str, float]) -> tuple[str, int] | None:
    """Read this turn's events into ``row``; the reply's message item and its audio length (ms) when it had audio."""
    response_id: str | None = None
    while True:
        event = await conn.recv()
        now, kind = time.monotonic(), event["type"]
        if kind == "conversation.item.input_audio_transcription.completed":
            if "transcript" not in marks:
                marks["transcript"] = now
                row.heard = event.get("transcript")
            if not (event.get("transcript") or "").strip() or (event.get("npc") or {}).get("backchannel"):
                row.errors.append("empty_transcript" if not (event.get("transcript") or "").strip() else "backchannel")
                return None
        elif kind == "response.created":
            response_id = response_id or event["response"]["id"]
        elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta") and event.get("response_id") == response_id:
            marks.setdefault("first_text", now)
        elif kind == "response.output_audio.delta" and event.get("response_id") == response_id:
            marks.setdefault("first_audio", now)
        elif kind == "response.done" and event["response"]["id"] == response_id:
            marks["end"] = now
            response = event["response"]
            npc = response.get("npc") or {}
            row.status = _STATUS.get(response.get("status"), "failed")
            row.server = dict(npc.get("timings") or {})
            row.budget_missed = row.server.get("budget_missed", 0) > 0
            transcript = next((c.get("transcript") or c.get("text") or "" for item in response.get("output", [])
                               if item.get("type") == "message" for c in item.get("content", [])), "")
            row.reply_chars, row.audio_ms = len(transcript), float(npc.get("audio_ms") or 0.0)
            item = next((i["id"] for i in response.get("output", []) if i.get("type") == "message"), None)
            return (item, max(0, int(row.audio_ms) - 1)) if item is not None and row.audio_ms else None
        elif kind == "error":
            code = (event.get("error") or {}).get("code") or "error"
            if code == BUSY:
                row.busy = True
            else:
                row.errors.append(code)
            if response_id is None and code != "audio_overflow":
                row.status = BUSY if code == BUSY else "error"
                return None


async def _stream(conn: RealtimeClient, utterance: Utterance, marks: dict[str, float]) -> None:
    pcm, voice_end_ms = to_24k(utterance)
    step = RATE * FRAME_MS // 1000 * 2
    frames = [pcm[i:i + step] for i in range(0, len(pcm), step)]
    end_frame = min(int(voice_end_ms // FRAME_MS), len(frames) - 1)
    silence = bytes(step)
    loop = asyncio.get_running_loop()
    start, i = loop.time(), 0
    while True:
        frame = frames[i] if i < len(frames) else silence
        await conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode("ascii")})
        if i == end_frame:
            marks["t0"] = time.monotonic()
        i += 1
        delay = start + i * FRAME_MS / 1000.0 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_turn(conn: RealtimeClient, plan: LoadPlan, row: TurnRow, line: str | Utterance) -> None:
    marks: dict[str, float] = {}
    row.started = time.monotonic()
    mic: asyncio.Task[None] | None = None
    heard: tuple[str, int] | None = None
    try:
        async with asyncio.timeout(plan.turn_timeout):
            if isinstance(line, Utterance):
                mic = asyncio.create_task(_stream(conn, line, marks), name=f"bench-rt-mic-{row.client}")
            else:
                await conn.send({"type": "conversation.item.create",
                                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": line}]}})
                await conn.send({"type": "response.create"})
                marks["t0"] = time.monotonic()
            heard = await _read_turn(conn, row, marks)
    except TimeoutError:
        row.status = "timeout"
        row.errors.append("timeout")
        raise _NewSession("timeout") from None
    except (WebSocketException, OSError) as exc:
        row.status = "error"
        row.errors.append("connection")
        raise _NewSession(str(exc)) from None
    finally:
        if mic is not None:
            mic.cancel()
            await asyncio.gather(mic, return_exceptions=True)
        row.finished = time.monotonic()
        t0 = marks.get("t0")
        row.transcript_ms = _ms(marks.get("transcript"), t0)
        row.first_text_ms = _ms(marks.get("first_text"), t0)
        row.first_audio_ms = _ms(marks.get("first_audio"), t0)
        row.end_ms = _ms(marks.get("end"), t0)
    if heard is not None:  # as the native bench's playback.mark: the player "heard" it all at once
        try:
            await conn.send({"type": "conversation.item.truncate", "item_id": heard[0], "content_index": 0, "audio_end_ms": heard[1]})
        except WebSocketException as exc:
            raise _NewSession(str(exc)) from None


async def run_realtime_client(index: int, plan: LoadPlan, record: Callable[[TurnRow], None],
                              ready: Callable[[p.SessionReady], None]) -> None:
    """One client over ``/v1/realtime``; like :func:`npc_runtime.bench.driver.run_client` (``ready`` is not called:
    the Realtime session does not carry the native ``session.ready``)."""
    url = realtime_url(plan.url, plan.character)
    done = 0
    while done < plan.turns:
        slot = TurnRow(client=index, turn=done, line=_label(plan.line_for(index, done)), started=time.monotonic())
        try:
            async with RealtimeClient.connect(url, open_timeout=plan.turn_timeout) as conn:
                await asyncio.wait_for(_start(conn, plan, index), plan.turn_timeout)
                for _ in range(plan.warmup):
                    warm = TurnRow(client=index, turn=-1, line="warmup")
                    try:
                        await run_turn(conn, plan, warm, plan.warmup_line)
                    except _NewSession:
                        _fail(slot, warm.status, BUSY if warm.busy else (warm.errors or ["error"])[-1])
                        raise
                while done < plan.turns:
                    line = plan.line_for(index, done)
                    row = TurnRow(client=index, turn=done, line=_label(line))
                    try:
                        await run_turn(conn, plan, row, line)
                    finally:
                        record(row)
                        done += 1
                continue
        except _NewSession:
            if slot.status == "no_response":
                continue
        except _Refused as exc:
            _fail(slot, BUSY if exc.code == BUSY else "error", exc.code)
        except TimeoutError:
            _fail(slot, "timeout", "timeout")
        except (WebSocketException, OSError):
            _fail(slot, "error", "connection")
        record(slot)
        done += 1
        await asyncio.sleep(RETRY_DELAY_S)
