"""The connection: one :class:`Session` per WebSocket, its state machine, its ordered outbox, and the dispatch of
every client message.

The server feeds parsed client messages to :meth:`Session.handle` and microphone frames to
:meth:`Session.feed_audio`, and drains :attr:`Session.outbox` into the socket, in order. ``session.start`` opens the
session's :class:`~.character.Character` and one for each cast member; a new utterance, a reacting game event or
``response.cancel`` interrupts whoever speaks. Errors become ``error`` events; the session stays usable.
:meth:`Session.aclose` cancels and awaits every task the session owns.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from typing import assert_never

import structlog

from npc_runtime import protocol as p
from npc_runtime.access import OPEN, Identity
from npc_runtime.dialogue.turn import allowed_verbs
from npc_runtime.errors import NpcError, ProtocolError
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.session.character import Character
from npc_runtime.session.converse import converse
from npc_runtime.session.ledger import Recent
from npc_runtime.session.response import Outgoing, Response
from npc_runtime.session.services import Services, wait_ready
from npc_runtime.session.states import State, Trigger, next_state
from npc_runtime.session.voice_input import VoiceInput, listen_settings

log = structlog.get_logger(__name__)


class Session:
    """One WebSocket conversation: a character, and the others present (its cast)."""

    def __init__(self, services: Services, *, clock: Callable[[], float] | None = None, outbox_size: int = 4096,
                 identity: Identity = OPEN) -> None:
        self.services = services
        #: Who the connection is (its credential): with a player token, the player id is the token's.
        self.identity = identity
        #: A ``session.start`` arrived (the server's start deadline only waits for that, not for the models).
        self.start_requested = False
        self.clock = clock or time.monotonic
        self.id = uuid.uuid4().hex[:12]
        self.state = State.AWAITING_START
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=outbox_size)
        self.player = p.Player()
        self.options = p.SessionOptions()
        #: The session's character (None until session.start), and the other characters present.
        self.character: Character | None = None
        self.cast: dict[str, Character] = {}
        self.voice: VoiceInput | None = None
        #: Finished responses (all characters), so that late playback marks still find theirs.
        self.recent = Recent()
        self._response_ids = itertools.count(1)
        self._converse_task: asyncio.Task[None] | None = None

    # -- output

    async def emit(self, event: Outgoing) -> None:
        if self.state is not State.CLOSED:
            if isinstance(event, p.ErrorEvent) and self.services.metrics is not None:
                self.services.metrics.error(event.code)
            await self.outbox.put(event)

    async def send_error(self, exc: NpcError, ref: str | None = None) -> None:
        await self.emit(p.ErrorEvent(code=exc.code, message=exc.message, ref=ref, retryable=exc.retryable, fatal=exc.fatal))

    # -- input

    async def handle(self, msg: p.ClientMessage) -> None:
        """Act on one parsed client message. Errors become ``error`` events; the session stays usable."""
        try:
            await self._dispatch(msg)
        except NpcError as exc:
            await self.send_error(exc, getattr(msg, "id", None))

    async def _dispatch(self, msg: p.ClientMessage) -> None:
        if self.state is State.AWAITING_START and not isinstance(msg, p.Ping | p.SessionStart):
            raise ProtocolError(f"send session.start before {msg.type}", code="no_session")
        match msg:
            case p.Ping():
                await self.emit(p.Pong(ref=msg.id))
            case p.SessionStart():
                await self._start(msg)
            case p.TextInput():
                await self._player_turn(msg)
            case p.Converse():
                await self._converse(msg)
            case p.GameEvent():
                await self._game_event(msg)
            case p.SceneUpdate():
                await self._scene_update(msg)
            case p.ResponseCancel():
                await self._cancel(msg)
            case p.PlaybackMark():
                await self._on_mark(msg)
            case p.AudioCommit():
                self._require_voice().commit()
            case p.AudioClear():
                self._require_voice().clear()
            case _:
                assert_never(msg)

    async def feed_audio(self, pcm: bytes) -> None:
        """A binary frame from the client: microphone audio."""
        try:
            if self.state is State.AWAITING_START:
                raise ProtocolError("send session.start before audio", code="no_session")
            await self._require_voice().feed(pcm)
        except NpcError as exc:
            await self.send_error(exc)

    def _require_voice(self) -> VoiceInput:
        if self.voice is None:
            raise ProtocolError("this server runs no speech recognition: send input.text", code="audio_in_unavailable")
        return self.voice

    # -- start

    async def _start(self, msg: p.SessionStart) -> None:
        if self.state is not State.AWAITING_START:
            raise ProtocolError("the session has already started; open a new connection for another", code="session_exists")
        self.start_requested = True  # the start deadline waits for this start (the models may still be loading) ...
        try:
            await self._begin(msg)
        except BaseException:
            self.start_requested = self.state is not State.AWAITING_START  # ... and not for one that failed
            raise

    async def _begin(self, msg: p.SessionStart) -> None:
        msg = self._as_identity(msg)
        persona = self.services.personas.get(msg.character)
        if len(set(msg.cast)) != len(msg.cast) or msg.character in msg.cast:
            raise ProtocolError("cast: each other character once, not the session's own", code="invalid_message")
        cast = [self.services.personas.get(cid) for cid in msg.cast]  # unknown_character before anything starts
        await wait_ready(self.services)
        await self._check_scene(persona, msg.scene.without(persona.id), msg.player.name)
        self.player, self.options = msg.player, msg.options
        main = self.character = await self._open(persona, msg.scene)
        self.state = next_state(self.state, Trigger.START)
        structlog.contextvars.bind_contextvars(session_id=self.id, character=persona.id)
        log.info("session started", objects=len(main.scene.objects), cast=len(cast))
        self._start_listening(persona)
        for member in cast:
            self.cast[member.id] = await self._open(member, msg.scene)
        await self.emit(p.SessionReady(
            session_id=self.id, character=p.CharacterInfo(id=persona.id, name=persona.name),
            actions=allowed_verbs(persona, main.scene),
            audio=p.AudioFormat(sample_rate=main.tts.sample_rate) if main.audio and main.tts is not None else None,
            audio_in=msg.options.audio_in if self.voice is not None else None,
            listen=self.voice.settings if self.voice is not None else None,
            mood=persona.mood,
            cast=[p.CharacterInfo(id=m.id, name=m.name) for m in cast],
        ))
        for who in self._everyone():  # after session.ready: the session goes on, without what was remembered
            if who.memory.recall_failed is not None:
                await self.emit(p.ErrorEvent(
                    code="memory_unavailable", retryable=True,
                    message=f"what {who.id} remembers of the player could not be read ({who.memory.recall_failed}); "
                            "the conversation starts fresh and is still saved",
                ))

    async def _open(self, persona: Persona, scene: Scene) -> Character:
        character = Character(self.services, persona, player=self.player, options=self.options, scene=scene,
                              emit=self.emit, clock=self.clock, session_id=self.id,
                              new_response_id=self._new_response_id, on_end=self._response_ended)
        await character.memory.recall()
        character.prepare()
        return character

    def _new_response_id(self) -> str:
        return f"r{next(self._response_ids)}-{self.id[:6]}"

    async def _check_scene(self, persona: Persona, scene: Scene, player_name: str | None) -> None:
        """A scene too costly for the prompt is refused (``invalid_scene``) before anything uses it."""
        await self.services.dialogue.check_scene(persona, scene, player_name=player_name,
                                                 max_scene_tokens=self.services.scene_max_tokens)

    def _as_identity(self, msg: p.SessionStart) -> p.SessionStart:
        """``msg`` as this connection's credential allows: characters the token names, and the token's player id
        (a client's own ``player.id`` is ignored then)."""
        identity = self.identity
        for cid in (msg.character, *msg.cast):
            if not identity.allows(cid):
                raise ProtocolError(f"this player token does not allow talking to {cid!r}", code="forbidden")
        if identity.trusted:
            return msg
        if msg.player.id is not None and msg.player.id != identity.player_id:
            log.info("player.id ignored: the player token names the player")
        player = msg.player.model_copy(update={"id": identity.player_id, "name": msg.player.name or identity.name})
        return msg.model_copy(update={"player": player})

    def _start_listening(self, persona: Persona) -> None:
        if self.services.asr is None or self.services.vad is None:
            return
        self.voice = VoiceInput(self.services, listen_settings(persona, self.options), self.options.audio_in.sample_rate,
                                hearer=self, emit=self.emit, clock=self.clock, session_id=self.id)
        self.voice.start()

    # -- the characters

    def _main(self) -> Character:
        assert self.character is not None
        return self.character

    def _everyone(self) -> list[Character]:
        return [self._main(), *self.cast.values()]

    def _member(self, character: str | None) -> Character:
        main = self._main()
        if character is None or character == main.id:
            return main
        if character not in self.cast:
            raise ProtocolError(f"{character!r} is not in this scene (session.start cast)", code="not_in_scene")
        return self.cast[character]

    def _respond(self, who: Character, *, player_text: str | None, trigger: p.Trigger, ref: str | None,
                 started_at: float | None = None, query: str | None = None) -> Response:
        self.state = next_state(self.state, Trigger.RESPOND)
        return who.respond(player_text=player_text, trigger=trigger, ref=ref, started_at=started_at, query=query)

    def _response_ended(self, response: Response) -> None:
        self.recent.add(response)
        if self.state is State.RESPONDING and all(c.response is None for c in self._everyone()):
            self.state = next_state(self.state, Trigger.DONE)

    def _running(self, response_id: str | None = None) -> Response | None:
        return next((c.response for c in self._everyone()
                     if c.response is not None and response_id in (None, c.response.id)), None)

    async def _interrupt_scene(self) -> None:
        """The player speaks: stop a conversation among the characters and whoever is speaking."""
        await self._stop_converse()
        for character in self._everyone():
            await character.interrupt()

    # -- the messages

    async def _player_turn(self, msg: p.TextInput) -> None:
        member = self._member(msg.to)
        await self._interrupt_scene()
        for other in self._everyone():
            if other is not member:  # the others hear it too
                other.hears("event", f"{self.player.name or 'The player'} said to {member.persona.name}: {msg.text}")
        member.hears("player", msg.text)
        self._respond(member, player_text=msg.text, trigger="text", ref=msg.id)

    async def _game_event(self, msg: p.GameEvent) -> None:
        main = self._main()
        if msg.react:
            await self._interrupt_scene()
        for character in self._everyone():  # everyone present perceives it; only this character reacts
            character.hears("event", msg.description)
        await self.emit(p.EventAccepted(ref=msg.id, reacting=msg.react))
        if msg.react:
            self._respond(main, player_text=None, trigger="game_event", ref=msg.id, query=msg.description)
        else:
            main.remember()

    async def _scene_update(self, msg: p.SceneUpdate) -> None:
        main = self._main()
        await self._check_scene(main.persona, msg.scene.without(main.id), self.player.name)
        for character in self._everyone():
            character.see(msg.scene)
        s = main.scene
        await self.emit(p.SceneUpdated(objects=len(s.objects), locations=len(s.locations), characters=len(s.characters)))

    async def _cancel(self, msg: p.ResponseCancel) -> None:
        response = self._running(msg.response_id)
        if response is None:
            raise ProtocolError("no response in progress with that id", code="no_response")
        await response.interrupt()

    async def _converse(self, msg: p.Converse) -> None:
        order = msg.characters or [c.id for c in self._everyone()]
        members = {cid: self._member(cid) for cid in order}
        if len(members) < 2:
            raise ProtocolError("a conversation needs two characters: start the session with a cast", code="no_cast")
        await self._interrupt_scene()
        self._converse_task = asyncio.create_task(converse(msg, order, members, self._respond, self.emit), name=f"converse-{self.id}")

    async def _stop_converse(self) -> None:
        task, self._converse_task = self._converse_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- what the player heard

    async def _on_mark(self, msg: p.PlaybackMark) -> None:
        response = self._running(msg.response_id) or self.recent.find(msg.response_id)
        if response is None:
            log.debug("playback mark for an unknown or old response", ref_response=msg.response_id)
            return
        response.playback.marked(msg.played_ms)
        if msg.stopped and not response.playback.cut:  # the client stopped playback on its own: cut it there
            log.info("playback stopped by the client", response=response.id, played_ms=msg.played_ms, running=not response.ended)
            response.stop_playback()
            if not response.ended:  # nothing more of it will be played: stop making it
                await response.interrupt()
                return  # its end records what was heard
        if response.playback.cut:
            self._member(response.speaker_id).heard_changed(response)

    # -- voice input (the Hearer of :class:`VoiceInput`)

    def speaking_response(self) -> Response | None:
        running = self._running()
        if running is not None:
            return running
        last = self.recent.last()
        if last is not None and not last.playback.cut and last.playback.playing_until() > self.clock():
            return last
        return None

    async def barge_in(self, target: Response) -> None:
        """Stop the character: its audio on the client, and its response if still running."""
        log.info("barge-in", response=target.id, running=not target.ended)
        target.stop_playback()
        await self.emit(p.ResponseInterrupted(response_id=target.id, speaker=target.speaker_id))
        if not target.ended:
            await self._stop_converse()
            await target.interrupt()
        else:
            self._member(target.speaker_id).heard_changed(target)

    async def heard(self, text: str, utterance_id: str, speech_end_wall: float) -> None:
        if self.state is State.CLOSED:
            return
        await self._interrupt_scene()
        main = self._main()
        main.hears("player", text)
        self._respond(main, player_text=text, trigger="voice", ref=utterance_id, started_at=speech_end_wall)

    # -- for the server

    @property
    def responding(self) -> bool:
        """A character's response is running."""
        return self.character is not None and self._running() is not None

    async def save(self) -> None:
        """Write everything said so far to memory now, the last reply included, and wait until it is written (the
        server's drain does this before its 1001 close, so the server the player reconnects to has it all)."""
        if self.character is not None:
            for character in self._everyone():
                character.remember(everything=True)
                await character.memory.wait()

    # -- close

    async def aclose(self) -> None:
        """Cancel and await everything the session owns; write what was said to memory. Idempotent."""
        await self._stop_converse()
        self.state = next_state(self.state, Trigger.CLOSE)
        if self.voice is not None:
            await self.voice.aclose()
        if self.character is not None:
            for character in self._everyone():
                await character.aclose()
