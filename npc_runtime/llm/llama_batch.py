"""Batched generation for the embedded engine (issue 18): every waiting turn decoded together, one llama.cpp
context, one sequence per turn, still one engine thread.

**Layout.** The model is loaded once (the :class:`~npc_runtime.llm.llama_cpp._Worker`'s ``Llama``: tokenizer, LoRA
adapter, grammar checks); this module makes a second context on the same model with ``n_seq_max`` sequences and a
unified KV cache (``kv_unified``: sequences share cells, so a copy is free), applies the adapter to it, and decodes
with ``llama_batch``/``llama_decode``. Sequence ids are a pool:

* a **prefix** sequence per ``cache_key`` (LRU of ``max_prefix_states``) holds a character's persona prefix; a new
  turn starts with ``llama_memory_seq_cp`` of it (the cells are shared, not copied);
* a **session** sequence per ``session_key`` (LRU of ``max_session_states``) stays in the cache after its turn: the
  next turn keeps what its prompt shares and removes the rest (``llama_memory_seq_rm``) — no state save/restore;
* an **active** sequence per turn being generated.

**Continuous batching.** :class:`Batcher` runs one loop on the engine thread while there is work: each step it runs
queued calls (grammar checks, metadata), admits new turns (they join the running batch at the next step), builds
one batch — the next token of every generating sequence plus up to ``prefill_chunk`` prompt tokens of those still
reading their prompt (the whole batch when nobody is generating) — decodes it, and samples each sequence with its
own sampler chain (penalties, the turn's grammar, top-k/top-p/min-p/temperature, its seed). A turn's stop flag
(closing its stream) retires its sequence at the next step; the others go on. The loop ends when nothing is left,
and starts again with the next request.
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
from npc_runtime.errors import GrammarError, LLMError, LLMRejected, NpcError
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
    grammar: Any = None  # the grammar's own sampler (checked lazily: see BatchWorker._sample)
    pending: int | None = None  # sampled, not yet decoded
    generated: int = 0
    held: str = ""  # text kept back: it may be the start of a stop string
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    prefix_only: bool = False
    t0: float = 0.0
    first: float | None = None
    context: str | None = None
    reused: int = 0

    @property
    def reading(self) -> bool:
        return len(self.tokens) < len(self.prompt)


class BatchWorker:
    """The batched context over a loaded ``_Worker``'s model. Not thread-safe: engine thread only."""

    def __init__(self, base: Any, *, n_ctx: int, n_cells: int, n_seqs: int, max_active: int, prefill_chunk: int,
                 n_batch: int = 512) -> None:
        self.base, self.n_ctx, self.n_cells, self.n_seqs = base, n_ctx, n_cells, n_seqs
        self.max_active, self.prefill_chunk, self.n_batch = max_active, prefill_chunk, n_batch
        self.lib: Any = None
        self.ctx: Any = None
        self.mem: Any = None
        self.batch: Any = None
        self.vocab: Any = None
        self.free: list[int] = []
        self.prefixes: OrderedDict[str, tuple[int, tuple[int, ...]]] = OrderedDict()
        self.sessions: OrderedDict[str, tuple[int, list[int]]] = OrderedDict()
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
        # the unbatched context's own parameters (threads, flash attention off, rope, ...), with room for sequences
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_cells
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seqs
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = self.base.config["n_threads"]
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
        # the candidates of one sampling (every token, its logit), reused: ids set once, logits copied in per token
        self.candidates = (lib.llama_token_data * self.n_vocab)()
        view = np.frombuffer(self.candidates, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self.ids = np.arange(self.n_vocab, dtype=np.int32)
        self.id_view, self.logit_view, self.p_view = view["id"], view["logit"], view["p"]
        self.one = (lib.llama_token_data * 1)()
        self.free = list(range(self.n_seqs - 1, -1, -1))

    def close(self) -> None:
        for seq in list(self.active.values()) + list(self.waiting):
            self._free_sampler(seq)
        self.active.clear()
        self.waiting.clear()
        if self.ctx is not None:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
        self.base.close()

    # -- sequence ids

    def _take_id(self) -> int | None:
        if not self.free:
            self._evict_one()
        return self.free.pop() if self.free else None

    def _release(self, seq_id: int) -> None:
        self.lib.llama_memory_seq_rm(self.mem, seq_id, -1, -1)
        self.free.append(seq_id)

    def _evict_one(self) -> bool:
        """Free the least recently used idle session's sequence, else the least recently used prefix's."""
        for lru in (self.sessions, self.prefixes):
            if lru:
                _, (seq_id, _) = lru.popitem(last=False)
                self._release(seq_id)
                return True
        return False

    # -- admission

    def submit(self, seq: _Seq) -> None:
        self.waiting.append(seq)

    def admit(self) -> None:
        """Move waiting turns into the batch (up to ``max_active``); a turn that cannot start ends with its error."""
        while self.waiting and len(self.active) < self.max_active:
            seq = self.waiting.popleft()
            if seq.stop.is_set():
                seq.emit(_DONE)
                continue
            try:
                self._start(seq)
            except NpcError as exc:
                self._free_sampler(seq)
                if seq.seq_id >= 0:
                    self._release(seq.seq_id)
                seq.emit(exc)
                seq.emit(_DONE)

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
        if prefix is not None and prefix[1] != tuple(tokens[:n_prefix]):
            del self.prefixes[key]  # type: ignore[arg-type]  # the persona changed
            self._release(prefix[0])
            prefix = None
        if seq.prefix_only and prefix is not None:
            self.prefixes.move_to_end(key)  # type: ignore[arg-type]
            seq.context = "hit"
            seq.emit(_DONE)
            return
        if not seq.prefix_only and not request.max_tokens:
            seq.emit(LLMChunk("", "length"))
            seq.emit(_DONE)
            return
        own = self.sessions.pop(request.session_key, None) if request.session_key and not seq.prefix_only else None
        shared_own = _shared(own[1], tokens) if own else 0
        if own is not None and shared_own >= (n_prefix if prefix is not None else 1):
            seq.seq_id, seq.tokens, seq.context = own[0], list(own[1]), "session"
        else:
            if own is not None:
                self._release(own[0])
            seq_id = self._take_id()
            if seq_id is None:
                raise LLMRejected("no sequence free in the batched engine")
            seq.seq_id = seq_id
            if prefix is not None:
                self.lib.llama_memory_seq_cp(self.mem, prefix[0], seq_id, -1, -1)
                self.prefixes.move_to_end(key)  # type: ignore[arg-type]
                seq.tokens, seq.context = list(prefix[1]), "loaded"
            else:
                seq.context = "saved" if key else None
        # keep only what the prompt shares; at least its last token is read again (its logits start the reply)
        keep = min(_shared(seq.tokens, tokens), len(tokens) - 1)
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
                part = seq.prompt[start:start + budget]
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
        while True:
            rc = lib.llama_decode(self.ctx, batch)
            if rc == 0:
                return
            if rc == 1 and self._evict_one():  # no room in the KV cache: drop an idle session or prefix, retry
                continue
            raise LLMError(f"llama_decode failed ({rc}) with {len(entries)} tokens in the batch")

    def _cache_prefix(self, seq: _Seq) -> None:
        """Once a turn has read its persona prefix, keep a copy of it for the next turns of that character."""
        key = seq.request.cache_key
        if not key or not seq.n_prefix or len(seq.tokens) < seq.n_prefix or key in self.prefixes:
            return
        if seq.prefix_only:
            return  # the warm-up's own sequence becomes the prefix when it retires
        seq_id = self._take_id()
        if seq_id is None:
            return
        self.lib.llama_memory_seq_cp(self.mem, seq.seq_id, seq_id, 0, seq.n_prefix)
        self._keep_prefix(key, seq_id, tuple(seq.prompt[:seq.n_prefix]))

    def _keep_prefix(self, key: str, seq_id: int, tokens: tuple[int, ...]) -> None:
        self.prefixes[key] = (seq_id, tokens)
        while len(self.prefixes) > self.base.max_prefix_states:
            _, (old, _) = self.prefixes.popitem(last=False)
            self._release(old)

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
        key, request = seq.request.cache_key, seq.request
        if seq.prefix_only and key and not seq.reading:
            if key in self.prefixes:
                self._release(seq.seq_id)
            else:
                self._keep_prefix(key, seq.seq_id, tuple(seq.tokens))
        elif request.session_key and self.base.max_session_states and not seq.prefix_only:
            old = self.sessions.pop(request.session_key, None)
            if old is not None:
                self._release(old[0])
            self.sessions[request.session_key] = (seq.seq_id, seq.tokens)
            while len(self.sessions) > self.base.max_session_states:
                _, (gone, _) = self.sessions.popitem(last=False)
                self._release(gone)
        else:
            self._release(seq.seq_id)
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
            self._release(seq.seq_id)
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
            raise LLMError("the engine is closed")
        future: Future[Any] = Future()
        with self._lock:
            self._calls.append((fn, args, future))
        self._kick()
        return await asyncio.wrap_future(future)

    async def stream(self, request: GenerationRequest, *, prefix_only: bool = False) -> AsyncIterator[LLMChunk]:
        if self.thread.closed:
            raise LLMError("the engine is closed")
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

