"""Per-character knowledge (RAG): documents chunked, embedded with all-MiniLM-L6-v2, kept in Chroma.

Modules: ``chunk`` (pure: documents to chunks), ``embed`` (the embedder, engine thread ``embed``),
``store`` (Chroma, engine thread ``chroma``), ``ingest`` (incremental folder ingest), ``base``
(:class:`KnowledgeBase`, what the runtime uses), ``cli`` (``npc ingest``). Importing this package
loads no engine library: chromadb, sentence-transformers and torch load in their threads.
"""

from npc_runtime.knowledge.base import KnowledgeBase
from npc_runtime.knowledge.chunk import Chunk, chunk_document, read_document
from npc_runtime.knowledge.embed import Embedder, MiniLMEmbedder
from npc_runtime.knowledge.errors import KnowledgeError, KnowledgeFileError, KnowledgeUnavailable
from npc_runtime.knowledge.ingest import IngestReport, ingest_folder
from npc_runtime.knowledge.store import KnowledgeStore, Passage

__all__ = [
    "Chunk", "Embedder", "IngestReport", "KnowledgeBase", "KnowledgeError", "KnowledgeFileError", "KnowledgeStore",
    "KnowledgeUnavailable", "MiniLMEmbedder", "Passage", "chunk_document", "ingest_folder", "read_document",
]
