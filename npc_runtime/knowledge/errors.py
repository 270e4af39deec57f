"""The knowledge errors (a branch of :mod:`npc_runtime.errors`' tree)::

    NpcError
    └── KnowledgeError          knowledge_failed: the store or the embedder broke on a call
          ├── KnowledgeUnavailable   knowledge_unavailable (retryable): the Chroma server cannot be
          │                          reached, the embedding model cannot load, the engine is closed
          └── KnowledgeFileError     knowledge_file_unreadable: one document that cannot be read as
                                     text (ingest skips it with a warning)

Messages name files and describe problems; they never quote a document's text.
"""

from __future__ import annotations

from pathlib import Path

from npc_runtime.errors import NpcError

__all__ = ["KnowledgeError", "KnowledgeFileError", "KnowledgeUnavailable"]


class KnowledgeError(NpcError):
    code = "knowledge_failed"


class KnowledgeUnavailable(KnowledgeError):
    code = "knowledge_unavailable"
    retryable = True


class KnowledgeFileError(KnowledgeError):
    """A document that cannot be read as text. ``reason`` is short (``"not a text document"``);
    ``str()`` is ``path: reason``."""

    code = "knowledge_file_unreadable"

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")
