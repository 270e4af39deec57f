"""A scripted LLM engine for testing *clients* against the real server (``NPC_LLM=scripted``,
``NPC_LLM_SCRIPT=<file>``): every reply comes from a small script file, so a game-engine client's
test knows which words and actions it will receive and can check what the client does with them.

Test-only. It proves nothing about a model: it ignores the grammar, the sampling and the prompt
(only the player's last message picks the reply). Never use it to claim that a model works.

The script is JSON (or YAML)::

    {"token_delay_s": 0.02,
     "rules": [{"match": "chopsticks", "reply": "[give chopsticks player] Here you go."},
               {"regex": "whole (story|history)", "reply": "Long ago, ..."}],
     "default": "Welcome in."}

The first rule whose ``match`` (a case-insensitive substring) or ``regex`` (case-insensitive,
``re.search``) finds the last user message gives the reply; otherwise ``default``. Replies are
written as the model would write them, action tags included; the session parses and validates
them as it does a model's, so a tag must name ids of the scene the client declares.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from npc_runtime.llm.base import GenerationRequest
from npc_runtime.llm.fake import FakeLLM


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str | None = Field(default=None, min_length=1)
    regex: str | None = Field(default=None, min_length=1)
    reply: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_pattern(self) -> Rule:
        if (self.match is None) == (self.regex is None):
            raise ValueError("a rule needs exactly one of match, regex")
        try:
            re.compile(self.regex or "")
        except re.error as exc:
            raise ValueError(f"regex {self.regex!r}: {exc}") from None
        return self

    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.regex if self.regex is not None else re.escape(self.match or ""), re.IGNORECASE)


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    rules: list[Rule] = Field(default_factory=list)
    default: str = Field(min_length=1)
    token_delay_s: float = Field(default=0.0, ge=0.0, le=1.0)


class ScriptedLLM(FakeLLM):
    """:class:`FakeLLM` streaming the reply that ``script`` gives for the request's last user message."""

    name = "scripted"

    def __init__(self, script: Script) -> None:
        super().__init__(self.reply_for, token_delay=script.token_delay_s)
        self.script = script
        self._rules = [(rule.pattern(), rule.reply) for rule in script.rules]

    @classmethod
    def from_file(cls, path: Path) -> ScriptedLLM:
        """Reads and checks a script; ``ValueError`` naming the file when it is not a valid one."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return cls(Script.model_validate(data))
        except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a valid LLM script: {exc}") from None

    def reply_for(self, request: GenerationRequest) -> str:
        said = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        return next((reply for pattern, reply in self._rules if pattern.search(said)), self.script.default)
