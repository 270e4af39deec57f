"""One worker thread per engine: every call into a CPU-bound engine runs there.

Engines (llama.cpp, Piper, espeak-ng, ...) are not thread-safe and their work blocks: each gets
an :class:`EngineThread`, a single-thread executor. ``stream(work)`` runs ``work(stop, emit)``
in the thread and turns what it emits into an async iterator; closing that iterator (or
cancelling its consumer) sets ``stop`` and waits until ``work`` returns, because cancelling an
awaited thread call does not stop the thread. Pure asyncio + threading; no engine imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from npc_runtime.errors import NpcError

T = TypeVar("T")
_DONE = object()
#: Every engine thread alive (for the queue-depth metric).
_ALL: "weakref.WeakSet[EngineThread]" = weakref.WeakSet()


class EngineThread:
    """One worker thread that owns an engine.

    ``stream(work)`` runs ``work(stop, emit)`` in the thread; items passed to ``emit`` come out
    of the async iterator as they are made, an exception emitted is raised there. Closing the
    iterator sets ``stop`` and waits for ``work`` to return. ``closed_error`` and ``failure``
    make the engine's own errors: for a call after :meth:`aclose`, and for an unexpected
    exception escaping ``work``.
    """

    def __init__(self, name: str, *, closed_error: Callable[[str], NpcError], failure: Callable[[str], NpcError]) -> None:
        self.name = name
        self._closed_error, self._failure = closed_error, failure
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._stops: dict[threading.Event, object] = {}  # stop flag -> owner of the stream
        self.closed = False
        self._pending = 0  # jobs submitted and not finished (queued + running)
        self._lock = threading.Lock()
        _ALL.add(self)

    @property
    def pending(self) -> int:
        """Jobs waiting for the thread or running on it: this engine's queue depth."""
        return self._pending

    @staticmethod
    def all() -> list["EngineThread"]:
        return [t for t in list(_ALL) if not t.closed]

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            self._pending += 1
        job = self._executor.submit(fn, *args)
        job.add_done_callback(self._job_done)
        return job

    def _job_done(self, _job: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the thread. A cancelled call still finishes there."""
        if self.closed:
            raise self._closed_error(f"the {self.name} engine is closed")
        return await asyncio.wrap_future(self._submit(fn, *args))

    async def stream(self, work: Callable[[threading.Event, Callable[[object], None]], None], *,
                     owner: object = None) -> AsyncIterator[Any]:
        """Cancel-safe: when the iterator is closed, the work has stopped."""
        if self.closed:
            raise self._closed_error(f"the {self.name} engine is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                if not stop.is_set():
                    work(stop, emit)
            except NpcError as exc:
                emit(exc)
            except Exception as exc:  # noqa: BLE001 - reported to the awaiting coroutine
                failure = self._failure(f"{self.name} failed: {type(exc).__name__}")  # no exception text: it may quote the input
                failure.__cause__ = exc
                emit(failure)
            finally:
                emit(_DONE)

        self._stops[stop] = owner
        job = self._submit(run)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            self._stops.pop(stop, None)
            await wait_stopped(job)

    def stop_all(self, owner: object = None) -> None:
        """Set the stop flag of every stream (of ``owner``'s only, when given)."""
        for stop, stream_owner in list(self._stops.items()):
            if owner is None or stream_owner is owner:
                stop.set()

    async def aclose(self, final: Callable[[], None] | None = None) -> None:
        """Stop every stream, run ``final`` in the thread (to free the engine), end the thread."""
        if self.closed:
            return
        self.closed = True
        self.stop_all()
        job = self._executor.submit(final or (lambda: None))
        self._executor.shutdown(wait=False)
        await wait_stopped(job)


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``contextlib.aclosing`` for any async iterator: close it (if it can be) on the way out, so
    that a consumer closed early closes the stream it was reading at once, not at garbage collection."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def wait_stopped(job: Future[Any]) -> None:
    """Wait for an engine-thread job without being cut short by a cancellation (the job stops
    at its next check of the stop flag)."""
    wrapped = asyncio.wrap_future(job)
    try:
        await asyncio.shield(wrapped)
    except asyncio.CancelledError:
        wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise
