"""The load: N clients, each its own session, each doing its turns one after the other.

A turn is measured at the client on ``time.monotonic``: from the moment the line was sent (text)
or the frame holding the end of the voice was sent (audio) to the final transcript (audio), the
first ``response.text.delta``, the first audio frame and ``response.end``; the server's own
``response.end`` timings are kept beside them.

Nothing hangs: a turn that outlives ``turn_timeout`` is recorded as ``timeout`` and the client
goes on with a new session; a refused session (``busy`` or any error) or a lost connection takes
one turn's slot, so every client finishes after exactly ``turns`` rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from npc_runtime import protocol as p
from npc_runtime.bench.lines import Utterance
from npc_runtime.client import AudioFrame, ConnectionClosed, InvalidStatus, NpcClient, ServerError, WebSocketException

#: This run's id, in the bench players' ids.
RUN_ID = uuid.uuid4().hex[:8]

Mode = Literal["text", "audio"]
FRAME_MS = 20
BUSY = "busy"
#: Session-level errors that do not end a turn: the server goes on (and so does the turn).
_NON_TERMINAL = frozenset({"audio_overflow"})
#: WebSocket close code 1013 "try again later": how a full server closes a refused connection.
CLOSE_TRY_AGAIN_LATER = 1013
#: Seconds a client waits after a refused session or a lost connection before trying again.
RETRY_DELAY_S = 0.5


@dataclass(slots=True)
class TurnRow:
    """One measured turn. Times are ms at the client from the turn's start; ``server`` is the
    ``response.end`` timings. ``status``: the response's (completed, interrupted, failed) or
    no_response, busy, error, timeout."""

    client: int
    turn: int
    line: str
    status: str = "no_response"
    transcript_ms: float | None = None
    first_text_ms: float | None = None
    first_audio_ms: float | None = None
    end_ms: float | None = None
    server: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    busy: bool = False
    budget_missed: bool = False
    heard: str | None = None
    reply_chars: int = 0
    audio_ms: float = 0.0
    #: Monotonic clock at the turn's start and end (for the throughput window; not in the JSON).
    started: float = 0.0
    finished: float = 0.0

    def as_dict(self, origin: float) -> dict[str, Any]:
        row = asdict(self)
        row["started_s"] = round(self.started - origin, 3)
        row["finished_s"] = round(self.finished - origin, 3)
        del row["started"], row["finished"]
        return row


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What every client does. ``lines``: typed lines (text) or utterances (audio), used in turn
    from an offset per client; ``warmup``: the uncounted opening line or utterance."""

    url: str
    mode: Mode
    clients: int
    turns: int
    warmup: int
    character: str
    scene: dict[str, Any]
    seed: int
    lines: Sequence[str] | Sequence[Utterance]
    warmup_line: str | Utterance
    turn_timeout: float = 120.0

    def line_for(self, client: int, turn: int) -> str | Utterance:
        return self.lines[(self.seed + client + turn) % len(self.lines)]

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"seed": self.seed}
        if self.mode == "audio":
            assert isinstance(self.warmup_line, Utterance)
            options["audio_in"] = {"sample_rate": self.warmup_line.rate}
        return options


class _NewSession(Exception):
    """The session is no longer usable (timeout, lost connection): open another."""


def _ms(mark: float | None, t0: float | None) -> float | None:
    return None if mark is None or t0 is None else round((mark - t0) * 1000.0, 1)


async def _read_turn(client: NpcClient, row: TurnRow, marks: dict[str, float]) -> str | None:
    """Read events until this turn's ``response.end`` (or an error that ends it); fill ``row``.
    Returns the response id when a response ended with audio (to acknowledge its playback)."""
    response_id: str | None = None
    async for event in client.events():
        now = time.monotonic()
        if isinstance(event, AudioFrame):
            if response_id is not None:
                marks.setdefault("first_audio", now)
        elif isinstance(event, p.TranscriptFinal):
            if "transcript" not in marks:
                marks["transcript"] = now
                row.heard = event.text
            if response_id is None and (event.backchannel or not event.text.strip()):
                row.errors.append("empty_transcript" if not event.text.strip() else "backchannel")
                return None
        elif isinstance(event, p.ResponseStart):
            response_id = response_id or event.response_id
        elif isinstance(event, p.TextDelta) and event.response_id == response_id:
            marks.setdefault("first_text", now)
        elif isinstance(event, p.ResponseEnd) and event.response_id == response_id:
            marks["end"] = now
            row.status = "busy" if row.busy and event.status == "failed" else event.status
            row.server = dict(event.timings)
            row.budget_missed = event.timings.get("budget_missed", 0) > 0
            row.reply_chars, row.audio_ms = len(event.text), event.audio_ms or 0.0
            return response_id if row.audio_ms else None
        elif isinstance(event, p.ErrorEvent):
            if event.code == BUSY:
                row.busy = True
            else:
                row.errors.append(event.code)
            if event.response_id is None and response_id is None and event.code not in _NON_TERMINAL:
                row.status = BUSY if event.code == BUSY else "error"
                if event.fatal:
                    raise _NewSession(event.code)
                return None
    row.status = "error"
    row.errors.append("connection")
    raise _NewSession("connection closed")


async def stream_utterance(client: NpcClient, utterance: Utterance, marks: dict[str, float]) -> None:
    """Stream ``utterance`` in real time, 20 ms frames, then silence like an open microphone,
    until cancelled. Marks ``t0`` when the frame holding the end of the voice is sent."""
    step = utterance.rate * FRAME_MS // 1000 * 2
    frames = [utterance.pcm[i:i + step] for i in range(0, len(utterance.pcm), step)]
    end_frame = min(int(utterance.voice_end_ms // FRAME_MS), len(frames) - 1)
    silence = bytes(step)
    loop = asyncio.get_running_loop()
    start, i = loop.time(), 0
    while True:
        frame = frames[i] if i < len(frames) else silence
        await client.send_audio(frame if len(frame) % 2 == 0 else frame[:-1])
        if i == end_frame:
            marks["t0"] = time.monotonic()
        i += 1
        delay = start + i * FRAME_MS / 1000.0 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_turn(client: NpcClient, plan: LoadPlan, row: TurnRow, line: str | Utterance) -> None:
    """One turn, measured into ``row``. Raises :class:`_NewSession` when the session is spent."""
    marks: dict[str, float] = {}
    row.started = time.monotonic()
    mic: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(plan.turn_timeout):
            if isinstance(line, Utterance):
                mic = asyncio.create_task(stream_utterance(client, line, marks), name=f"bench-mic-{row.client}")
            else:
                await client.send(p.TextInput(text=line))
                marks["t0"] = time.monotonic()
            heard_id = await _read_turn(client, row, marks)
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
    if heard_id is not None:  # the bench plays nothing: the player "heard" it all at once
        try:
            await client.playback_mark(heard_id, row.audio_ms)
        except WebSocketException as exc:  # the turn is measured; the next one needs a new session
            raise _NewSession(str(exc)) from None


def _label(line: str | Utterance) -> str:
    return line.name if isinstance(line, Utterance) else line


async def run_client(index: int, plan: LoadPlan, record: Callable[[TurnRow], None],
                     ready: Callable[[p.SessionReady], None]) -> None:
    """One client: sessions (player ``bench_<run>_<index>``: a fresh player per run, so the server's memory of
    earlier runs does not lengthen the prompts; ids allow no ``-``) until it has recorded
    ``plan.turns`` rows.
    A session that fails before a measured turn (refused, warm-up timed out, connection lost)
    takes one turn's slot, so this always ends."""
    done = 0
    while done < plan.turns:
        slot = TurnRow(client=index, turn=done, line=_label(plan.line_for(index, done)), started=time.monotonic())
        try:
            async with NpcClient.connect(plan.url, open_timeout=plan.turn_timeout) as client:
                session = await asyncio.wait_for(client.start_session(
                    plan.character, scene=plan.scene, player_id=f"bench_{RUN_ID}_{index}", options=plan.options()),
                    plan.turn_timeout)
                if plan.mode == "audio" and session.audio_in is None:
                    raise ServerError(p.ErrorEvent(code="audio_in_unavailable",
                                                   message="the server runs no speech recognition"))
                ready(session)
                for _ in range(plan.warmup):  # uncounted: the session-start prefill is done after it
                    warm = TurnRow(client=index, turn=-1, line="warmup")
                    try:
                        await run_turn(client, plan, warm, plan.warmup_line)
                    except _NewSession:
                        _fail(slot, warm.status, BUSY if warm.busy else (warm.errors or ["error"])[-1])
                        raise
                while done < plan.turns:
                    line = plan.line_for(index, done)
                    row = TurnRow(client=index, turn=done, line=_label(line))
                    try:
                        await run_turn(client, plan, row, line)
                    finally:
                        record(row)
                        done += 1
                continue
        except _NewSession:
            if slot.status == "no_response":
                continue  # a measured turn failed: it is recorded
        except ServerError as exc:  # the session was refused (busy, unknown_character, ...)
            _fail(slot, BUSY if exc.code == BUSY else "error", exc.code)
        except TimeoutError:
            _fail(slot, "timeout", "timeout")
        except (WebSocketException, OSError) as exc:
            code = _refusal(exc)
            _fail(slot, BUSY if code == BUSY else "error", code)
        record(slot)
        done += 1
        await asyncio.sleep(RETRY_DELAY_S)


def _refusal(exc: BaseException) -> str:
    """``busy`` for a connection refused for capacity (closed with 1013, or HTTP 503); else ``connection``.
    A full server sends a ``busy`` error and closes at once: the close can overtake our ``session.start``."""
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == CLOSE_TRY_AGAIN_LATER:
        return BUSY
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 503:
        return BUSY
    return "connection"


def _fail(row: TurnRow, status: str, code: str) -> None:
    row.status = status
    if code == BUSY:
        row.busy = True
    else:
        row.errors.append(code)
    row.finished = time.monotonic()
