"""The production LLM backend: a vLLM server behind its OpenAI-compatible HTTP API.

The only module that talks to vLLM (and the only one of ``npc_runtime.llm`` that imports
httpx). Requests go to ``POST /v1/chat/completions`` with ``"stream": true``; a grammar goes in
``"structured_outputs": {"grammar": GBNF}`` (the old ``guided_grammar`` field is accepted
and silently ignored by vLLM >= 0.12, so output would not be constrained).

Error mapping (see :mod:`npc_runtime.errors`):

* connection refused, connection dropped mid-stream, a stream that ends without a finish,
  connect / first-token / total timeouts, HTTP 502-504, ``finish_reason: "abort"``
  -> :class:`LLMUnavailable` (retryable);
* HTTP 400 whose message names the grammar -> :class:`GrammarError`; other 4xx ->
  :class:`LLMRejected`; the server's message is trimmed into ours;
* an HTTP 200 stream whose first event is ``{"error": {...}}`` (what vLLM sends when a
  streaming request fails validation, e.g. a bad grammar) -> the same mapping by its ``code``;
* HTTP 500 / other failures -> :class:`LLMError`.

Cancel-safety: :meth:`VLLMEngine.stream` is an async generator. Cancelling the task that
iterates it, or calling ``aclose()`` on it (use ``contextlib.aclosing``), closes the HTTP
response at once, which drops the connection; vLLM sees the disconnect and aborts the
request, freeing its batch slot. No await inside is left holding the response: every wait
for the server is bounded by the first-token / total deadlines. :meth:`validate_grammar`
and :meth:`warm` are plain coroutines and may be cancelled at any await.

Start-up: :meth:`warm` waits for vLLM as long as it takes (a supervisor decides when to give up):
each failed attempt logs a warning with the URL and the error and is reported to
``on_warm_retry``; the next comes after 0.5 s, doubling up to ``warm_retry_max_s``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import structlog

from npc_runtime.errors import GrammarError, LLMError, LLMRejected, LLMUnavailable
from npc_runtime.llm.base import ChatMessage, GenerationRequest, LLMChunk, plain_text

log = structlog.get_logger(__name__)

_MAX_MESSAGE = 300


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _error_from(status: int, message: str) -> LLMError | GrammarError:
    """Map an HTTP status (or the ``code`` of an error event) and the server's message."""
    msg = _trim(message) or f"HTTP {status}"
    if status == 400 and "grammar" in msg.lower():
        return GrammarError(f"vLLM rejected the grammar: {msg}")
    if status in (408, 429, 502, 503, 504):
        return LLMUnavailable(f"vLLM unavailable (HTTP {status}): {msg}")
    if 400 <= status < 500:
        return LLMRejected(f"vLLM rejected the request (HTTP {status}): {msg}")
    return LLMError(f"vLLM failed (HTTP {status}): {msg}")


def _message_of(body: Any) -> tuple[int | None, str]:
    """(code, message) out of vLLM's ``{"error": {"message", "code", ...}}`` body."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return (code if isinstance(code, int) else None), str(err.get("message", ""))
    if err is not None:
        return None, str(err)
    return None, str(body)


class VLLMEngine:
    """An :class:`~npc_runtime.llm.base.LLM` backed by a vLLM server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``; a trailing ``/v1`` is
    accepted). ``connect_timeout`` bounds opening a connection (retried ``max_retries``
    times: only a request that never reached the server is retried), ``first_token_timeout``
    the wait from sending a request to its first event, ``total_timeout`` a whole generation.
    ``warm_timeout``: how long :meth:`warm` waits for the server (None: as long as it takes),
    ``warm_retry_max_s`` the longest pause between its attempts.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        first_token_timeout: float = 15.0,
        total_timeout: float = 60.0,
        max_retries: int = 2,
        warm_timeout: float | None = None,
        warm_retry_max_s: float = 10.0,
        grammar_cache_size: int = 256,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.name = f"vllm:{model}"
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.total_timeout = total_timeout
        self.max_retries = max_retries
        self.warm_timeout = warm_timeout
        self.warm_retry_max_s = warm_retry_max_s
        #: Called by :meth:`warm` after each failed attempt with what is wrong (a line for ``/readyz``), and with
        #: None once vLLM answers.
        self.on_warm_retry: Callable[[str | None], None] | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # read=None: reads are bounded by our own first-token / total deadlines.
        timeout = httpx.Timeout(connect=connect_timeout, read=None, write=10.0, pool=connect_timeout)
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
        self._grammar_ok: OrderedDict[str, str | None] = OrderedDict()
        self._grammar_cache_size = grammar_cache_size
        self._closed = False

    # ---- requests --------------------------------------------------------------------------
    def _payload(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            # vLLM applies the chat template to these strings and parses special tokens in them: break up any marker
            "messages": [{"role": m.role, "content": plain_text(m.content)} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "repetition_penalty": request.repeat_penalty,
            "stream": stream,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.grammar is not None:
            body["structured_outputs"] = {"grammar": request.grammar}
        return body

    async def _send(self, body: dict[str, Any], deadline: float) -> httpx.Response:
        """POST and return the (streaming) response once its headers arrived. Retries a
        failed connect; anything after the request left is never retried."""
        if self._closed:
            raise LLMUnavailable("vLLM engine is closed")
        req = self._client.build_request("POST", "/v1/chat/completions", json=body)
        for attempt in range(self.max_retries + 1):
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    return await self._client.send(req, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                if attempt >= self.max_retries or time.monotonic() + 0.1 * 2**attempt >= deadline:
                    raise LLMUnavailable(f"cannot connect to vLLM at {self.base_url}: {_trim(str(e)) or type(e).__name__}") from e
                await asyncio.sleep(0.1 * 2**attempt)
            except TimeoutError as e:
                raise LLMUnavailable(f"vLLM did not answer within {self.first_token_timeout:g} s") from e
            except httpx.TransportError as e:
                raise LLMUnavailable(f"vLLM connection failed: {_trim(str(e)) or type(e).__name__}") from e
        raise AssertionError("unreachable")

    async def _raise_for_status(self, resp: httpx.Response) -> None:
        if resp.status_code == 200:
            return
        message = ""
        try:
            async with asyncio.timeout(self.first_token_timeout):
                await resp.aread()
            message = resp.text
            message = _message_of(resp.json())[1]
        except (json.JSONDecodeError, httpx.HTTPError, UnicodeDecodeError, TimeoutError):
            pass  # keep the raw text (or nothing) as the message
        raise _error_from(resp.status_code, message)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[LLMChunk]:
        """Stream the reply. The last chunk carries ``finish_reason`` (``"stop"`` or
        ``"length"``; with ``"length"`` the text may end inside an action tag). Cancel-safe:
        closing or cancelling closes the HTTP response, and vLLM aborts the request."""
        start = time.monotonic()
        total_deadline = start + self.total_timeout
        deadline = min(total_deadline, start + self.first_token_timeout)
        resp = await self._send(self._payload(request, stream=True), deadline)
        lines = resp.aiter_lines()
        try:
            await self._raise_for_status(resp)
            final: LLMChunk | None = None
            got_first = False
            while True:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError as e:
                    what = "the whole reply" if got_first else "the first token"
                    limit = self.total_timeout if got_first else self.first_token_timeout
                    raise LLMUnavailable(f"vLLM timed out waiting for {what} ({limit:g} s)") from e
                if not line.startswith("data:"):
                    continue  # blank separators, comments, other SSE fields
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    code, message = _message_of(event)
                    raise _error_from(code or 500, message)
                if not got_first:
                    got_first, deadline = True, total_deadline
                for choice in event.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content") or ""
                    reason = choice.get("finish_reason")
                    if reason is None:
                        if text:
                            yield LLMChunk(text)
                    elif reason == "abort":
                        raise LLMUnavailable("vLLM aborted the request")
                    elif reason == "error":
                        raise LLMError("vLLM failed while generating")
                    else:
                        final = LLMChunk(text, reason)
            if final is None:
                raise LLMUnavailable("vLLM closed the stream before the reply finished")
            yield final
        except (httpx.TransportError, httpx.StreamError) as e:
            raise LLMUnavailable(f"vLLM connection lost mid-stream: {_trim(str(e)) or type(e).__name__}") from e
        except (json.JSONDecodeError, AttributeError, TypeError) as e:
            raise LLMError(f"vLLM sent an unreadable event: {_trim(str(e))}") from e
        finally:
            await resp.aclose()  # drops the connection if unfinished: vLLM aborts the request
            await lines.aclose()  # type: ignore[attr-defined]

    async def _complete(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One non-streaming request; returns the JSON body or raises the mapped error."""
        resp = await self._send(body, time.monotonic() + timeout)
        try:
            await self._raise_for_status(resp)
            async with asyncio.timeout(timeout):
                await resp.aread()
            result: dict[str, Any] = resp.json()
            return result
        except TimeoutError as e:
            raise LLMUnavailable(f"vLLM timed out ({timeout:g} s)") from e
        except httpx.TransportError as e:
            raise LLMUnavailable(f"vLLM connection lost: {_trim(str(e)) or type(e).__name__}") from e
        except json.JSONDecodeError as e:
            raise LLMError("vLLM sent an unreadable reply") from e
        finally:
            await resp.aclose()

    # ---- the LLM interface ------------------------------------------------------------------
    async def warm(self) -> None:
        """Wait until ``/health`` answers 200 and one tiny request succeeds (so that the first real turn
        does not pay for lazy initialisation). While vLLM cannot be reached (or answers 5xx), each attempt
        logs a warning (URL, error), calls ``on_warm_retry`` and tries again after a pause (0.5 s, doubling,
        at most ``warm_retry_max_s``): forever, or until ``warm_timeout`` when set (then
        :class:`LLMUnavailable`). A request vLLM rejects (HTTP 4xx: a wrong model name) is raised at once."""
        started = time.monotonic()
        pause, attempt = 0.5, 0
        while True:
            attempt += 1
            try:
                await self._warm_once()
                break
            except LLMRejected:
                raise
            except LLMError as e:  # LLMUnavailable, or a 5xx while it starts
                problem = e.message
            if self.warm_timeout is not None and time.monotonic() - started >= self.warm_timeout:
                raise LLMUnavailable(f"vLLM at {self.base_url} not ready after {self.warm_timeout:g} s ({problem})")
            log.warning("vLLM not reachable; retrying", url=self.base_url, attempt=attempt, error=problem, retry_in_s=pause)
            if self.on_warm_retry is not None:
                self.on_warm_retry(f"vLLM not reachable (attempt {attempt}: {problem}); retrying in {pause:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.warm_retry_max_s)
        if attempt > 1:
            log.info("vLLM reachable", url=self.base_url, attempts=attempt, waited_s=round(time.monotonic() - started, 1))
        if self.on_warm_retry is not None:
            self.on_warm_retry(None)

    async def _warm_once(self) -> None:
        """One attempt: ``/health`` must answer 200, then a ``max_tokens=1`` request must succeed."""
        try:
            r = await self._client.get("/health", timeout=self.connect_timeout)
        except httpx.TransportError as e:
            raise LLMUnavailable(_trim(str(e)) or type(e).__name__) from e
        if r.status_code != 200:
            raise LLMUnavailable(f"/health answered HTTP {r.status_code}")
        probe = GenerationRequest(messages=[_user("Hi")], max_tokens=1, temperature=0.0)
        await self._complete(self._payload(probe, stream=False), self.total_timeout)

    async def prefill(self, request: GenerationRequest) -> None:
        """Send the request's stable prefix (its first ``prefix_messages``) with ``max_tokens=1``
        so vLLM's automatic prefix caching holds its KV blocks before the first turn. Only helps
        when later requests reach the same server (sticky routing). Best-effort: failures are
        swallowed (the turn itself will report them). Cancel-safe."""
        if request.prefix_messages <= 0:
            return
        probe = GenerationRequest(messages=request.messages[: request.prefix_messages], max_tokens=1, temperature=0.0)
        try:
            await self._complete(self._payload(probe, stream=False), self.total_timeout)
        except (LLMError, GrammarError):
            pass

    async def validate_grammar(self, grammar: str) -> None:
        """Raise :class:`GrammarError` when vLLM rejects ``grammar`` (a ``max_tokens=1``
        request with it). Verdicts are cached per grammar string (LRU); transport failures
        are raised as :class:`LLMUnavailable` and not cached."""
        if grammar in self._grammar_ok:
            self._grammar_ok.move_to_end(grammar)
            verdict = self._grammar_ok[grammar]
            if verdict is not None:
                raise GrammarError(verdict)
            return
        probe = GenerationRequest(messages=[_user("Hi")], grammar=grammar, max_tokens=1, temperature=0.0)
        try:
            await self._complete(self._payload(probe, stream=False), self.total_timeout)
            verdict = None
        except GrammarError as e:
            verdict = e.message
        self._grammar_ok[grammar] = verdict
        while len(self._grammar_ok) > self._grammar_cache_size:
            self._grammar_ok.popitem(last=False)
        if verdict is not None:
            raise GrammarError(verdict)

    async def aclose(self) -> None:
        """Close the HTTP client (and any connection still open). Idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()


def _user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)
