"""Batched generation for the embedded engine (issue 18): every waiting turn decoded together, one llama.cpp
context, one sequence per turn, still one engine thread.

**Layout.** The model is loaded once (the :class:`~npc_runtime.llm.llama_cpp._Worker`'s ``Llama``: tokenizer, LoRA
adapter, grammar checks); this module makes a second context on the same model with ``n_seq_max`` = the batch size
and **one KV stream per sequence** (``kv_unified`` off: measured, a unified cache makes every sequence attend over
every other sequence's cells — a 128-token read took 806 ms instead of 202 with 3,000 other cells in use), applies the
adapter to it, and decodes with ``llama_batch``/``llama_decode``. Each sequence id is a **slot**:

* a slot runs one turn at a time; between turns it keeps its session's context, so the session's next turn keeps
  what its prompt shares and removes the rest (``llama_memory_seq_rm``);
* when a turn needs a slot and none is empty, the least recently used idle slot's session is saved as a state blob
  (``llama_state_seq_get_data``, LRU of ``max_session_states``) and restored into a slot when it comes back;
* a character's persona **prefix** is saved as a blob the first time a turn has read it (LRU of
  ``max_prefix_states``) and restored into the slot of each new conversation (``llama_state_seq_set_data``: a copy,
  ~15 ms, instead of reading ~550 tokens).

**Continuous batching.** :class:`Batcher` runs one loop on the engine thread while there is work: each step it runs
queued calls (grammar checks, metadata), admits new turns (they join the running batch at the next step), builds
one batch — the next token of every generating sequence plus up to ``prefill_chunk`` prompt tokens of those still
reading their prompt (the whole batch when nobody is generating) — decodes it, and samples each sequence with its
own sampler chain (penalties, top-k/top-p/min-p/temperature, its seed) and its own grammar, checked lazily. A
turn's stop flag (closing its stream) retires its sequence at the next step; the others go on. The loop ends when
nothing is left, and starts again with the next request.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import GrammarError, LLMError, LLMRejected, LLMUnavailable, NpcError
from npc_runtime.llm.base import GenerationRequest, LLMChunk

log = structlog.get_logger(__name__)

_DONE = object()
_STOP_STRINGS = ("<|im_end|>", "<|im_start|>")
_TOP_K, _MIN_P, _PENALTY_LAST_N = 40, 0.05, 64  # llama-cpp-python's defaults (the unbatched path uses them)


@dataclass(slots=True)
class _Seq:
    """One turn (or one prefix warm-up) in flight. Engine thread only, except ``stop``."""

    request: GenerationRequest
    emit: Callable[[object], None]
    stop: threading.Event
    prompt: list[int] = field(default_factory=list)
    n_prefix: int = 0
    seq_id: int = -1
    #: Tokens in this sequence's KV cells, in order (the prompt read so far, then the reply).
    tokens: list[int] = field(default_factory=list)
    sampler: Any = None  # the chain without the grammar
    grammar: Any = None  # the grammar's own sampler (checked lazily: see BatchWorker._pick)
    pending: int | None = None  # sampled, not yet decoded
    generated: int = 0
    held: str = ""  # text kept back: it may be the start of a stop string
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    prefix_only: bool = False
    save_prefix: bool = False  # save a blob of the persona prefix once it is read
    t0: float = 0.0
    first: float | None = None
    context: str | None = None
    reused: int = 0

    @property
    def reading(self) -> bool:
        return len(self.tokens) < len(self.prompt)


@dataclass(frozen=True, slots=True)
class _Blob:
    """A sequence's KV state, saved (``llama_state_seq_get_data``), and the tokens it holds."""

    tokens: tuple[int, ...]
    data: Any
    size: int


class BatchWorker:
    """The batched context over a loaded ``_Worker``'s model. Not thread-safe: engine thread only."""

    def __init__(self, base: Any, *, n_ctx: int, slots: int, prefill_chunk: int, n_batch: int = 512) -> None:
        self.base, self.n_ctx, self.n_slots = base, n_ctx, slots
        self.prefill_chunk, self.n_batch = prefill_chunk, n_batch
        self.max_active = slots
        self.lib: Any = None
        self.ctx: Any = None
        self.mem: Any = None
        self.batch: Any = None
        self.vocab: Any = None
        #: Slots not running a turn, least recently used first: the session whose context each still holds (or None).
        self.idle: OrderedDict[int, tuple[str | None, list[int]]] = OrderedDict()
        self.prefixes: OrderedDict[str, _Blob] = OrderedDict()
        self.saved: OrderedDict[str, _Blob] = OrderedDict()
        self.active: dict[int, _Seq] = {}
        self.waiting: deque[_Seq] = deque()
        self.stats: Any = None
        self.steps = 0

    # -- set-up

    def load(self) -> None:
        if self.ctx is not None:
            return
        self.base.load()
        lib = self.lib = self.base.lib
        llm = self.base.llm
        # the unbatched context's own parameters (threads, flash attention off, rope, ...), with one stream per slot
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_ctx * self.n_slots
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_slots
        params.kv_unified = False
        ctx = lib.llama_init_from_model(llm.model, params)
        if not ctx:
            raise LLMError("llama.cpp could not make the batched context")
        self.ctx, self.mem = ctx, lib.llama_get_memory(ctx)
        adapter = getattr(llm, "_lora_adapter", None)
        if adapter is not None:
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if lib.llama_set_adapters_lora(ctx, adapters, 1, scales):
                raise LLMError("llama.cpp could not apply the LoRA adapter to the batched context")
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self.vocab = lib.llama_model_get_vocab(llm.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        # the candidates of one sampling (every token, its logit), reused: every field rewritten per token
        self.candidates = (lib.llama_token_data * self.n_vocab)()
        view = np.frombuffer(self.candidates, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self.ids = np.arange(self.n_vocab, dtype=np.int32)
        self.id_view, self.logit_view, self.p_view = view["id"], view["logit"], view["p"]
        self.one = (lib.llama_token_data * 1)()
        self.idle = OrderedDict((slot, (None, [])) for slot in range(self.n_slots))

    def close(self) -> None:
        for seq in list(self.active.values()) + list(self.waiting):
            self._free_sampler(seq)
        self.active.clear()
        self.waiting.clear()
        self.prefixes.clear()
        self.saved.clear()
        if self.ctx is not None:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
        self.base.close()

    # -- slots and saved states

    def _snapshot(self, slot: int, tokens: list[int] | tuple[int, ...]) -> _Blob:
        lib = self.lib
        size = lib.llama_state_seq_get_size(self.ctx, slot)
        data = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(self.ctx, data, size, slot)
        return _Blob(tuple(tokens), data, written)

    def _restore(self, blob: _Blob, slot: int) -> None:
        if self.lib.llama_state_seq_set_data(self.ctx, blob.data, blob.size, slot) != blob.size:
            raise LLMError("llama.cpp could not restore a saved sequence state")

    @staticmethod
    def _keep(lru: OrderedDict[str, _Blob], key: str, blob: _Blob, limit: int) -> None:
        lru[key] = blob
        lru.move_to_end(key)
        while len(lru) > limit:
            lru.popitem(last=False)

    def _claim(self, session: str | None) -> tuple[int, list[int]]:
        """A slot for a new turn, and the tokens it holds: the session's own slot if it still holds it, else an
        empty one, else the least recently used idle slot (its session saved as a blob first)."""
        if session is not None:
            for slot, (owner, tokens) in self.idle.items():
                if owner == session:
                    del self.idle[slot]
                    return slot, tokens
        slot = next((s for s, (owner, _) in self.idle.items() if owner is None), None)
        if slot is None:
            slot, (owner, tokens) = next(iter(self.idle.items()))
            if owner is not None and tokens and self.base.max_session_states:
                self._keep(self.saved, owner, self._snapshot(slot, tokens), self.base.max_session_states)
        del self.idle[slot]
        self.lib.llama_memory_seq_rm(self.mem, slot, -1, -1)
        return slot, []

    # -- admission

    def submit(self, seq: _Seq) -> None:
        self.waiting.append(seq)

    def admit(self) -> None:
        """Move waiting turns into the batch (one slot each); a turn that cannot start ends with its error."""
        deferred: list[_Seq] = []
        while self.waiting and self.idle:
            seq = self.waiting.popleft()
            if seq.stop.is_set():
                seq.emit(_DONE)
                continue
            if self._prefix_in_flight(seq.request.cache_key):
                deferred.append(seq)  # that prefix is being read (a session-start warm-up): wait for it, read it once
                continue
            try:
                self._start(seq)
            except NpcError as exc:
                self._free_sampler(seq)
                if seq.seq_id >= 0:
                    self.lib.llama_memory_seq_rm(self.mem, seq.seq_id, -1, -1)
                    self.idle[seq.seq_id] = (None, [])
                seq.emit(exc)
                seq.emit(_DONE)
        self.waiting.extendleft(reversed(deferred))

    def _prefix_in_flight(self, key: str | None) -> bool:
        return key is not None and any(s.save_prefix and s.request.cache_key == key and len(s.tokens) < s.n_prefix
                                       for s in self.active.values())

    def _start(self, seq: _Seq) -> None:
        request = seq.request
        seq.t0 = time.perf_counter()
        tokens, n_prefix = self.base.prompt_tokens(request)
        if seq.prefix_only:
            tokens = tokens[:n_prefix]
        if len(tokens) >= self.n_ctx:
            raise LLMRejected(f"the prompt has {len(tokens)} tokens; the context holds {self.n_ctx}")
        seq.prompt, seq.n_prefix = tokens, n_prefix
        key = request.cache_key if n_prefix else None
        prefix = self.prefixes.get(key) if key else None
        if prefix is not None and prefix.tokens != tuple(tokens[:n_prefix]):
            del self.prefixes[key]  # type: ignore[arg-type]  # the persona changed
            prefix = None
        if seq.prefix_only and prefix is not None:
            self.prefixes.move_to_end(key)  # type: ignore[arg-type]
            seq.emit(_DONE)
            return
        if not seq.prefix_only and not request.max_tokens:
            seq.emit(LLMChunk("", "length"))
            seq.emit(_DONE)
            return
        session = request.session_key if not seq.prefix_only else None
        seq.seq_id, seq.tokens = self._claim(session)
        held = _shared(seq.tokens, tokens)
        seq.context = "session" if held else None
        saved = self.saved.get(session) if session else None
        for blob, name in ((saved, "session"), (prefix, "loaded")):
            if blob is not None and _shared(blob.tokens, tokens) > max(held, n_prefix - 1 if name == "session" else 0):
                self._restore(blob, seq.seq_id)
                seq.tokens, held, seq.context = list(blob.tokens), _shared(blob.tokens, tokens), name
                break
        if saved is not None:
            del self.saved[session]  # type: ignore[arg-type]  # the slot holds it now (saved again if evicted)
        if prefix is not None:
            self.prefixes.move_to_end(key)  # type: ignore[arg-type]
        elif key:
            seq.save_prefix, seq.context = True, seq.context or "saved"
        # keep only what the prompt shares; at least its last token is read again (its logits start the reply)
        keep = min(held, len(tokens) - 1)
        if keep < len(seq.tokens):
            self.lib.llama_memory_seq_rm(self.mem, seq.seq_id, keep, -1)
            del seq.tokens[keep:]
        seq.reused = keep
        if not seq.prefix_only:
            seq.grammar = self._grammar(request)
            seq.sampler = self._sampler(request)
        self.active[seq.seq_id] = seq

    def _sampler(self, request: GenerationRequest) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if request.repeat_penalty != 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
                lib.llama_vocab_n_tokens(self.vocab), _PENALTY_LAST_N, request.repeat_penalty, 0.0, 0.0))
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            seed = request.seed if request.seed is not None else random.getrandbits(32)
            for sampler in (lib.llama_sampler_init_top_k(_TOP_K), lib.llama_sampler_init_top_p(request.top_p, 1),
                            lib.llama_sampler_init_min_p(_MIN_P, 1), lib.llama_sampler_init_temp(request.temperature),
                            lib.llama_sampler_init_dist(seed)):
                lib.llama_sampler_chain_add(chain, sampler)
        return chain

    def _grammar(self, request: GenerationRequest) -> Any:
        if not request.grammar:
            return None
        grammar = self.lib.llama_sampler_init_grammar(self.vocab, request.grammar.encode("utf-8"), b"root")
        if not grammar:
            raise GrammarError("invalid grammar: llama.cpp rejected it")
        return grammar

    def _free_sampler(self, seq: _Seq) -> None:
        for name in ("sampler", "grammar"):
            sampler = getattr(seq, name)
            if sampler is not None:
                self.lib.llama_sampler_free(sampler)
                setattr(seq, name, None)

    # -- one step

    def step(self) -> None:
        """Decode one batch: every generating sequence's next token, then prompt tokens of those still reading."""
        for seq in [s for s in self.active.values() if s.stop.is_set()]:
            self._retire(seq, None)
        if not self.active:
            return
        entries: list[tuple[_Seq, int, int, bool]] = []  # (sequence, token, position, wants logits)
        for seq in self.active.values():
            if not seq.reading and seq.pending is not None:
                entries.append((seq, seq.pending, len(seq.tokens), True))
        budget = self.n_batch - len(entries)
        if entries:
            budget = min(budget, self.prefill_chunk)
        for seq in self.active.values():
            if budget <= 0:
                break
            if seq.reading:
                start = len(seq.tokens)
                end = start + budget
                if seq.save_prefix and start < seq.n_prefix:
                    end = min(end, seq.n_prefix)  # the prefix's blob is saved when exactly the prefix is read
                part = seq.prompt[start:end]
                budget -= len(part)
                last = start + len(part) == len(seq.prompt)
                entries += [(seq, tok, start + i, last and i == len(part) - 1) for i, tok in enumerate(part)]
        if not entries:
            return
        self._decode(entries)
        self.steps += 1
        outputs: list[tuple[_Seq, int]] = []
        for index, (seq, tok, _pos, logits) in enumerate(entries):
            if not seq.reading:  # a generating sequence's sampled token: now in the cache
                seq.pending = None
            seq.tokens.append(tok)
            if logits:
                outputs.append((seq, index))
        for seq in {id(s): s for s, *_ in entries}.values():
            self._cache_prefix(seq)
        for seq, index in outputs:
            if seq.prefix_only:
                self._retire(seq, None)
            else:
                self._sample(seq, index)

    def _decode(self, entries: list[tuple[_Seq, int, int, bool]]) -> None:
        batch, lib = self.batch, self.lib
        for i, (seq, tok, pos, logits) in enumerate(entries):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq.seq_id
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        rc = lib.llama_decode(self.ctx, batch)
        if rc != 0:
            raise LLMError(f"llama_decode failed ({rc}) with {len(entries)} tokens in the batch")

    def _cache_prefix(self, seq: _Seq) -> None:
        """Once a turn has read exactly its persona prefix, save it for the next conversations of that character."""
        key = seq.request.cache_key
        if not seq.save_prefix or not key or len(seq.tokens) != seq.n_prefix:
            return
        seq.save_prefix = False
        self._keep(self.prefixes, key, self._snapshot(seq.seq_id, seq.tokens), self.base.max_prefix_states)

    def _candidates(self, index: int) -> Any:
        """Every token with its logit at batch position ``index``, as a fresh ``llama_token_data_array``."""
        logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
        self.id_view[:] = self.ids  # the samplers sort the array in place: every field is written again
        self.logit_view[:] = logits
        self.p_view[:] = 0.0
        return self.lib.llama_token_data_array(self.candidates, self.n_vocab, -1, False)

    def _pick(self, seq: _Seq, index: int) -> int:
        """Sample the next token. The grammar is checked lazily (llama.cpp's own default order): the chain samples
        from every token, the grammar checks only the token chosen, and only when it rejects it does the grammar
        filter every token before the chain samples again. A full grammar pass over the 49k-token vocabulary at
        every token halved generation speed; in a batch it would be paid once per sequence per step."""
        lib = self.lib
        cur = self._candidates(index)
        lib.llama_sampler_apply(seq.sampler, ctypes.byref(cur))
        tok = int(self.candidates[cur.selected].id)
        if seq.grammar is not None:
            self.one[0].id, self.one[0].logit, self.one[0].p = tok, 0.0, 0.0
            single = lib.llama_token_data_array(self.one, 1, -1, False)
            lib.llama_sampler_apply(seq.grammar, ctypes.byref(single))
            if self.one[0].logit == -math.inf:  # rejected: filter every token by the grammar, then sample
                cur = self._candidates(index)
                lib.llama_sampler_apply(seq.grammar, ctypes.byref(cur))
                lib.llama_sampler_apply(seq.sampler, ctypes.byref(cur))
                tok = int(self.candidates[cur.selected].id)
            lib.llama_sampler_accept(seq.grammar, tok)
        lib.llama_sampler_accept(seq.sampler, tok)
        return tok

    def _sample(self, seq: _Seq, index: int) -> None:
        lib = self.lib
        tok = self._pick(seq, index)
        if seq.first is None:
            seq.first = time.perf_counter()
        if lib.llama_vocab_is_eog(self.vocab, tok):
            self._retire(seq, "stop", seq.held)
            return
        seq.generated += 1
        seq.pending = tok
        text = seq.held + seq.decoder.decode(self._piece(tok))
        stops = (*_STOP_STRINGS, *seq.request.stop)
        hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if hit >= 0:
            seq.held = ""
            self._retire(seq, "stop", text[:hit])
            return
        keep = max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        out, seq.held = (text[:-keep], text[-keep:]) if keep else (text, "")
        if seq.generated >= seq.request.max_tokens:
            self._retire(seq, "length", text)
            return
        if out:
            seq.emit(LLMChunk(out))

    def _piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _retire(self, seq: _Seq, finish: str | None, text: str = "") -> None:
        """End a sequence: its last chunk (unless it was stopped), its KV kept as the session's or freed."""
        self.active.pop(seq.seq_id, None)
        self._free_sampler(seq)
        seq.pending = None  # sampled, never decoded: not in the cache
        if finish is not None:
            seq.emit(LLMChunk(text, finish))
        self._record(seq)
        request = seq.request
        keep = request.session_key if request.session_key and self.base.max_session_states and not seq.prefix_only else None
        self.idle[seq.seq_id] = (keep, seq.tokens)  # the slot keeps the session's context for its next turn
        self.idle.move_to_end(seq.seq_id)
        seq.emit(_DONE)

    def _record(self, seq: _Seq) -> None:
        from npc_runtime.llm.llama_cpp import LlamaStats  # noqa: PLC0415 - the stats type lives with the engine

        stats = LlamaStats(prompt_tokens=len(seq.prompt), prefix_tokens=seq.n_prefix, prefix=seq.context,
                           reused_tokens=seq.reused, evaluated_tokens=len(seq.prompt) - seq.reused,
                           completion_tokens=seq.generated)
        if seq.first is not None:
            stats.ttft_s = seq.first - seq.t0
            stats.generation_s = time.perf_counter() - seq.first
        if not seq.prefix_only:
            self.stats = stats

    def fail_all(self, exc: NpcError) -> None:
        for seq in list(self.active.values()):
            self.active.pop(seq.seq_id, None)
            self._free_sampler(seq)
            self.lib.llama_memory_seq_rm(self.mem, seq.seq_id, -1, -1)
            self.idle[seq.seq_id] = (None, [])
            seq.emit(exc)
            seq.emit(_DONE)


def _shared(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


class Batcher:
    """Schedules a :class:`BatchWorker` on an :class:`EngineThread`: one loop job runs while there is work."""

    def __init__(self, thread: EngineThread, worker: BatchWorker) -> None:
        self.thread, self.worker = thread, worker
        self._lock = threading.Lock()
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = deque()
        self._incoming: deque[_Seq] = deque()
        self._running = False
        self._job: asyncio.Future[Any] | None = None
        self._stops: set[threading.Event] = set()

    def _kick(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        self._job = asyncio.ensure_future(self.thread.call(self._loop))
        self._job.add_done_callback(self._loop_ended)

    def _loop_ended(self, job: asyncio.Future[Any]) -> None:
        """The loop job could not run (the engine closed): whatever is queued gets the error."""
        if job.cancelled() or job.exception() is None:
            return
        exc = job.exception()
        with self._lock:
            self._running = False
            calls, incoming = list(self._calls), list(self._incoming)
            self._calls.clear()
            self._incoming.clear()
        for _fn, _args, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)  # type: ignore[arg-type]
        for seq in incoming:
            seq.emit(exc)
            seq.emit(_DONE)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the engine thread between two steps. A cancelled call still runs."""
        if self.thread.closed:
            raise LLMUnavailable("the llm-llama engine is closed")
        future: Future[Any] = Future()
        with self._lock:
            self._calls.append((fn, args, future))
        self._kick()
        return await asyncio.wrap_future(future)

    async def stream(self, request: GenerationRequest, *, prefix_only: bool = False) -> AsyncIterator[LLMChunk]:
        if self.thread.closed:
            raise LLMUnavailable("the llm-llama engine is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        finished = loop.create_future()

        def emit(item: object) -> None:
            def put() -> None:
                if item is _DONE and not finished.done():
                    finished.set_result(None)
                queue.put_nowait(item)

            try:
                loop.call_soon_threadsafe(put)
            except RuntimeError:  # the loop is gone: nobody is listening
                pass

        seq = _Seq(request=request, emit=emit, stop=threading.Event(), prefix_only=prefix_only)
        self._stops.add(seq.stop)
        with self._lock:
            self._incoming.append(seq)
        self._kick()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            seq.stop.set()
            self._stops.discard(seq.stop)
            if not finished.done():
                await asyncio.shield(finished)  # the sequence leaves the batch at the next step

    def stop_all(self) -> None:
        for stop in list(self._stops):
            stop.set()

    def _loop(self) -> None:
        worker = self.worker
        while True:
            with self._lock:
                calls = list(self._calls)
                self._calls.clear()
                incoming = list(self._incoming)
                self._incoming.clear()
                if not calls and not incoming and not worker.active and not worker.waiting:
                    self._running = False
                    return
            for fn, args, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        future.set_exception(exc)
            if incoming and worker.ctx is None:
                try:
                    worker.load()
                except Exception as exc:  # noqa: BLE001 - every waiting turn gets the error
                    for seq in incoming:
                        seq.emit(LLMError(f"llama.cpp could not load the model: {type(exc).__name__}"))
                        seq.emit(_DONE)
                    continue
            for seq in incoming:
                worker.submit(seq)
            try:
                worker.admit()
                worker.step()
            except NpcError as exc:
                worker.fail_all(exc)
            except Exception as exc:  # noqa: BLE001 - reported to every turn in the batch
                log.exception("batched step failed")
                failure = LLMError(f"llama.cpp batched step failed: {type(exc).__name__}")
                failure.__cause__ = exc
                worker.fail_all(failure)

