"""One exception tree for the whole runtime.

Every error carries a stable ``code`` (sent on the wire in ``error`` events) and a
``retryable`` flag (whether the same request may succeed later)::

    NpcError
    ├── ProtocolError          bad input on the wire (the connection stays up)
    │     codes: bad_json, unknown_type, invalid_message, message_too_large,
    │            text_too_large, no_session, session_exists, audio_in_unavailable
    │     └── AudioError   (npc_runtime.asr) bad_audio, audio_frame_too_large, audio_overflow
    ├── asr_unavailable / asr_failed   speech recognition could not load / failed (NpcError codes)
    ├── memory_unavailable / memory_failed   the memory database cannot be opened / failed (NpcError codes);
    │                  a client is told ``memory_unavailable`` (retryable) when its lines could not be saved
    ├── not_ready (retryable)  session.start before the models are warm, or while the LLM server is down
    ├── KnowledgeError (npc_runtime.knowledge) knowledge_failed, knowledge_unavailable (retryable),
    │                  knowledge_file_unreadable (that file is skipped)
    ├── SceneError             invalid_scene: duplicate or malformed ids, too many entities, too many prompt tokens
    ├── AccessDenied (npc_runtime.access) unauthorized (HTTP 401), forbidden; the server also refuses with
    │                  origin_not_allowed (403), too_many_connections (429), start_timeout (fatal)
    ├── PersonaError           unknown_character, persona_invalid
    │     └── PersonaFileError  one YAML file that does not load (file, line, field)
    ├── GrammarError           invalid_grammar: a GBNF that llama.cpp / xgrammar rejects
    ├── LLMError               llm_failed
    │     ├── LLMUnavailable    llm_unavailable (retryable): the server went away / timed out
    │     └── LLMRejected       llm_rejected: the backend refused the request (HTTP 4xx)
    └── BusyError              busy (retryable): over capacity

Player words never go into an error ``message``: messages describe what was wrong,
not what was said.
"""

from __future__ import annotations


class NpcError(Exception):
    """Base of every runtime error."""

    code: str = "internal"
    retryable: bool = False
    fatal: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class ProtocolError(NpcError):
    code = "invalid_message"


class SceneError(NpcError):
    code = "invalid_scene"


class PersonaError(NpcError):
    code = "persona_invalid"


class PersonaFileError(PersonaError):
    """A persona file that does not validate. ``str()`` is ``file:line: field: message``."""

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        loc = f"{path}:{line}" if line is not None else path
        super().__init__(f"{loc}: {field}: {message}")
        self.detail = message


class GrammarError(NpcError):
    code = "invalid_grammar"


class LLMError(NpcError):
    code = "llm_failed"


class LLMUnavailable(LLMError):
    code = "llm_unavailable"
    retryable = True


class LLMRejected(LLMError):
    code = "llm_rejected"


class BusyError(NpcError):
    code = "busy"
    retryable = True
