"""Settings → concrete engines. The only module that names a backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.base import LLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.session import Services
from npc_runtime.settings import Settings
from npc_runtime.tts.base import TTS

log = structlog.get_logger(__name__)


def build_llm(settings: Settings) -> LLM:
    if settings.llm == "vllm":
        from npc_runtime.llm.vllm import VLLMEngine

        return VLLMEngine(base_url=settings.vllm_url, model=settings.vllm_model, api_key=settings.vllm_api_key)
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_model_path

    return LlamaCppEngine(
        model_path=str(settings.model_path or default_model_path()),
        n_ctx=settings.n_ctx, n_threads=settings.llm_threads, n_threads_batch=settings.llm_threads,
    )


def build_tts(settings: Settings) -> TTS | None:
    if settings.tts == "none":
        return None
    if settings.tts == "espeak":
        from npc_runtime.tts.espeak import EspeakTTS

        return EspeakTTS(voice=settings.tts_voice or "en-us")
    from npc_runtime.tts.piper import PiperTTS

    return PiperTTS(voice=settings.tts_voice)


@dataclass(slots=True)
class Runtime:
    """Everything a server needs, owned together: :meth:`aclose` releases it all."""

    settings: Settings
    personas: PersonaRegistry
    llm: LLM
    services: Services

    async def warm(self) -> None:
        """Load and warm the models, then mark the runtime ready (``/healthz`` turns 200)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await self.llm.warm()
        if self.services.tts is not None:
            await self.services.tts.warm()
        self.services.ready.set()
        log.info("models warm", llm=self.llm.name, seconds=round(loop.time() - t0, 2))

    async def aclose(self) -> None:
        await self.personas.aclose()
        await self.llm.aclose()
        if self.services.tts is not None:
            await self.services.tts.aclose()


async def build_runtime(settings: Settings, *, llm: LLM | None = None, tts: TTS | None = None) -> Runtime:
    """Load personas (and start watching them) and build the engines; does not warm them."""
    personas = PersonaRegistry(settings.characters_dir, poll_interval=settings.persona_poll_s)
    await personas.start()
    engine = llm or build_llm(settings)
    services = Services(personas=personas, dialogue=Dialogue(llm=engine), tts=tts if tts is not None else build_tts(settings))
    return Runtime(settings=settings, personas=personas, llm=engine, services=services)
