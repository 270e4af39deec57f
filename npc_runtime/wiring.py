"""Settings → concrete engines. The only module that names a backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from npc_runtime.asr.base import ASR
from npc_runtime.asr.vad import SileroVAD
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import NpcError
from npc_runtime.gate import Gate
from npc_runtime.llm.base import LLM
from npc_runtime.llm.gated import GatedLLM
from npc_runtime.metrics import Metrics
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.persona.schema import Persona
from npc_runtime.session import Services
from npc_runtime.settings import Settings
from npc_runtime.tts.base import TTS
from npc_runtime.tts.filler import FillerCache

if TYPE_CHECKING:
    from npc_runtime.knowledge.base import KnowledgeBase
    from npc_runtime.memory import Memory

log = structlog.get_logger(__name__)

#: The ``/readyz`` line while the LLM server cannot be reached.
_LLM_DOWN = "llm: unavailable: "


def build_asr(settings: Settings) -> tuple[ASR | None, ASR | None, SileroVAD | None]:
    """Speech recognition for finals and for partials (two engines, one thread each: a final never
    waits behind a partial decode) and voice activity detection; all None when ``asr`` is none."""
    if settings.asr == "none":
        return None, None, None
    from npc_runtime.asr.whisper import WhisperASR

    final = WhisperASR(settings.asr, language=settings.asr_language)
    partial = WhisperASR(settings.asr, language=settings.asr_language, thread_name="whisper-partial") if settings.asr_partials_engine else None
    return final, partial, SileroVAD()


def build_knowledge(settings: Settings) -> "KnowledgeBase | None":
    """The per-character knowledge base (embedder + Chroma store), or None when RAG is off."""
    if not settings.rag:
        return None
    from npc_runtime.knowledge.base import KnowledgeBase
    from npc_runtime.knowledge.embed import MiniLMEmbedder
    from npc_runtime.knowledge.store import KnowledgeStore

    store = KnowledgeStore(url=settings.chroma_url) if settings.chroma_url else KnowledgeStore(path=settings.data_dir / "chroma")
    return KnowledgeBase(settings.knowledge_dir, store, MiniLMEmbedder(), poll_s=settings.knowledge_poll_s)


def build_memory(settings: Settings) -> "Memory | None":
    """Memory in PostgreSQL (``memory_url``: shared by every server given it), else in SQLite in ``data_dir``."""
    if not settings.memory:
        return None
    if settings.memory_url:
        from npc_runtime.memory.postgres import PostgresMemoryStore

        return PostgresMemoryStore(settings.memory_url, keep_recent=settings.memory_keep_recent)
    from npc_runtime.memory import MemoryStore

    return MemoryStore(settings.data_dir / "memory.sqlite3", keep_recent=settings.memory_keep_recent)


def build_llm(settings: Settings) -> LLM:
    if settings.llm == "scripted":  # test only: fixed replies for client tests (npc_runtime/llm/scripted.py)
        from npc_runtime.llm.scripted import ScriptedLLM

        if settings.llm_script is None:
            raise ValueError("llm=scripted needs llm_script (NPC_LLM_SCRIPT): the script file")
        return ScriptedLLM.from_file(settings.llm_script)
    if settings.llm == "vllm":
        from npc_runtime.llm.vllm import VLLMEngine

        return VLLMEngine(base_url=settings.vllm_url, model=settings.vllm_model, api_key=settings.vllm_api_key)
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_adapter_path, default_model_path

    adapter = {"auto": default_adapter_path(), "none": None}.get(settings.llm_adapter, settings.llm_adapter)
    return LlamaCppEngine(
        model_path=str(settings.model_path or default_model_path()),
        n_ctx=settings.n_ctx, n_threads=settings.llm_threads, n_threads_batch=settings.llm_threads,
        max_session_states=settings.llm_session_states, kernels=settings.llm_kernels, adapter=adapter, batch=settings.llm_batch,
    )


class VoiceBank:
    """The speech engine of each persona's voice (engine, voice, speed), made on first use and
    shared by every persona with the same voice. ``settings.tts`` = ``auto`` follows the persona,
    ``piper``/``espeak`` force one engine for all, ``none`` turns audio off."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[tuple[str, str | None, float], TTS | None] = {}

    def __call__(self, persona: Persona) -> TTS | None:
        mode = self.settings.tts
        if mode == "none":
            return None
        engine = persona.voice.engine if mode == "auto" else mode
        voice = self.settings.tts_voice or (persona.voice.voice if engine == persona.voice.engine else None)
        key = (engine, voice, persona.voice.speed)
        if key not in self._engines:
            self._engines[key] = self._make(*key)
        return self._engines[key]

    @staticmethod
    def _make(engine: str, voice: str | None, speed: float) -> TTS:
        if engine == "espeak":
            from npc_runtime.tts.espeak import EspeakTTS

            return EspeakTTS(voice=voice or "en-us", speed=speed)
        if engine == "coqui":
            from npc_runtime.tts.coqui import CoquiTTS

            return CoquiTTS(model_path=voice or "", speed=speed)
        from npc_runtime.tts.piper import PiperTTS

        return PiperTTS(voice=voice, speed=speed)

    async def warm(self, personas: list[Persona]) -> None:
        """Load every persona's voice. A voice that cannot load is logged and turned off (its
        sessions are text only) rather than keeping the server down."""
        for persona in personas:
            tts = self(persona)
            if tts is None:
                continue
            try:
                await tts.warm()
            except NpcError as exc:
                log.error("voice unavailable; this character speaks text only", character=persona.id, code=exc.code, error=exc.message)
                await tts.aclose()
                for key, engine in self._engines.items():
                    if engine is tts:
                        self._engines[key] = None

    async def aclose(self) -> None:
        for tts in self._engines.values():
            if tts is not None:
                await tts.aclose()


@dataclass(slots=True)
class Runtime:
    """Everything a server needs, owned together: :meth:`aclose` releases it all."""

    settings: Settings
    personas: PersonaRegistry
    llm: LLM
    services: Services
    voices: VoiceBank

    async def warm(self) -> None:
        """Load and warm the models, then mark the runtime ready (``/healthz`` turns 200)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if hasattr(self.llm, "on_warm_retry"):  # an LLM server that may be down (vLLM): say so while waiting for it
            self.llm.on_warm_retry = self._llm_unreachable  # type: ignore[attr-defined]
        await self.llm.warm()
        if getattr(self.llm, "status", ""):
            self.services.engine_status.append(f"llm: {self.llm.status}")  # type: ignore[attr-defined]
        personas = [self.personas.get(pid) for pid in self.personas.ids()]
        await self.voices.warm(personas)
        if self.services.fillers is not None:  # every voice's filler, ready before the first turn
            for persona in personas:
                tts = self.voices(persona)
                if tts is not None and persona.latency.filler:
                    try:
                        await self.services.fillers.ensure(tts, persona.latency.filler)
                    except NpcError as exc:
                        log.warning("filler synthesis failed", character=persona.id, code=exc.code)
        memory, knowledge = self.services.memory, self.services.knowledge
        if memory is not None:
            await memory.open()
        if knowledge is not None:
            try:
                await knowledge.start(lambda: [self.personas.get(pid) for pid in self.personas.ids()])
            except NpcError as exc:  # an unreachable Chroma server: turns go on without passages
                log.error("knowledge unavailable; answering without it", code=exc.code, error=exc.message)
        if self.services.asr is not None and self.services.vad is not None:
            await self.services.vad.warm()
            await self.services.asr.warm()
            if self.services.asr_partial is not None:
                await self.services.asr_partial.warm()
        self.services.ready.set()
        log.info("models warm", llm=self.llm.name, seconds=round(loop.time() - t0, 2))

    def _llm_unreachable(self, problem: str | None) -> None:
        """The LLM server could not be reached (``problem``), or now can (None): the ``/readyz`` line, and
        the reason session.start gives (not_ready at once, not a wait for models that are not coming)."""
        status = self.services.engine_status
        status[:] = [line for line in status if not line.startswith(_LLM_DOWN)]
        if problem is None:
            self.services.unready_reason = None
        else:
            status.append(_LLM_DOWN + problem)
            self.services.unready_reason = "the LLM server cannot be reached"

    async def aclose(self) -> None:
        await self.personas.aclose()
        await self.llm.aclose()
        await self.voices.aclose()
        for asr in (self.services.asr, self.services.asr_partial):
            if asr is not None:
                await asr.aclose()
        if self.services.knowledge is not None:
            await self.services.knowledge.aclose()
        if self.services.memory is not None:
            await self.services.memory.aclose()
        if self.services.vad is not None:
            await self.services.vad.aclose()


async def build_runtime(settings: Settings, *, llm: LLM | None = None) -> Runtime:
    """Load personas (and start watching them) and build the engines; does not warm them."""
    personas = PersonaRegistry(settings.characters_dir, poll_interval=settings.persona_poll_s)
    await personas.start()
    engine = llm or build_llm(settings)
    limit = settings.llm_concurrency or (8 if settings.llm == "vllm" else settings.llm_batch or 1)
    gated = GatedLLM(engine, Gate("LLM", limit=limit, max_waiting=settings.llm_max_waiting))
    voices = VoiceBank(settings)
    asr, asr_partial, vad = build_asr(settings)
    services = Services(personas=personas, dialogue=Dialogue(llm=gated, prompt_profile=settings.prompt_profile), voices=voices, asr=asr, vad=vad, asr_partial=asr_partial,
                        knowledge=build_knowledge(settings), memory=build_memory(settings),
                        retrieval_k=settings.retrieval_k, retrieval_budget_ms=settings.retrieval_budget_ms,
                        metrics=Metrics(), max_sessions=settings.max_sessions, asr_max_waiting=settings.asr_max_waiting, budget_ms=float(settings.first_audio_budget_ms),
                        fillers=FillerCache(), facts_max_chars=settings.facts_max_chars,
                        scene_max_tokens=settings.scene_max_tokens)
    return Runtime(settings=settings, personas=personas, llm=engine, services=services, voices=voices)
