"""The character never talks like a model: what such talk looks like, and a stream filter that stops a reply
before it is spoken. Pure.

:data:`AI_PATTERNS` is what no character in a world says ("as an AI", "language model", "I'm a chatbot", "my
programming", "I'm a game character", vendor names...). :func:`ai_claims` finds them in a text; a mention that is
denied in its own sentence ("I'm no robot, I'm a cook!", "Not a chatbot, a bartender.") or only echoed back as a
short question ("An AI? Me?") is not a claim. The conversation-quality eval (:mod:`npc_runtime.evals_character`)
scores replies with it.

:class:`InWorld` guards a reply while it streams. A small model breaks character now and then whatever its prompt
or fine-tune says (one reply in fifty on the quality set with the base model), and a line spoken cannot be taken
back, so speech is held a clause at a time — until ``, ; : . ! ?`` or a dash, or a word boundary after
:data:`HOLD_CHARS` characters — and checked (with the rest of its sentence) before it goes on. The clause
splitter that feeds the voice waits for the same marks plus the next word, so the voice starts no later; only the
text deltas wait for their clause. A clause that talks like a model is dropped with everything after it, the
model is stopped, and the persona's own refusal is said instead. The guard acts on :func:`self_claims`: a world
may have an AI in it ("The station's AI runs the doors"), so a bare mention of one stops nothing; "as an AI" does. Actions and emotion tags keep their order with
the speech (they wait with it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from npc_runtime.dialogue.tags import Piece, TextPiece

_I = re.IGNORECASE
#: Talk no character in a world says: (name, pattern). "AI" is matched in capitals only ("ai" is in words).
AI_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AI", re.compile(r"(?<![\w.])(?:AI|A\.I\.?)(?![\w'’])")),
    ("artificial intelligence", re.compile(r"\bartificial(?:ly)?[ -]intelligen", _I)),
    ("language model", re.compile(r"\blanguage[ -]models?\b|\bLLMs?\b", _I)),
    ("model", re.compile(r"\b(?:as an?|I am an?|I'm an?)\s+(?:\w+\s+)?(?:model|algorithm)\b|\b(?:AI|text|computer|chat)[ -]models?\b", _I)),
    ("assistant", re.compile(r"\b(?:virtual|digital|helpful|chat|AI)[ -]assistants?\b"
                             r"|\b(?:as|I am|I'm)\s+(?:just\s+|only\s+)?(?:an?|your)\s+assistant\b", _I)),
    ("chatbot", re.compile(r"\bchat[ -]?bots?\b|\b(?:I am|I'm)\s+(?:just\s+|only\s+)?(?:a\s+)?(?:ro)?bot\b", _I)),
    ("trained", re.compile(r"\btrained (?:by|on)\b|\btraining data\b", _I)),
    ("program", re.compile(r"\bcomputer program\b|\b(?:I was|I'm|I am|been)\s+programmed\b|\bmy programming\b"
                           r"|\b(?:I am|I'm)\s+(?:just\s+|only\s+)?(?:a|an)\s+(?:\w+\s+)?program\b", _I)),
    ("system prompt", re.compile(r"\bsystem (?:prompt|message)\b", _I)),
    ("vendor", re.compile(r"\b(?:OpenAI|ChatGPT|GPT-?\d|Hugging ?Face|SmolLM|Anthropic)\b", _I)),
    ("game character", re.compile(r"\b(?:game|fictional|virtual|non-player)\s+characters?\b|\bcharacters?\s+in\s+(?:a|this)\s+(?:video\s+)?game\b"
                                  r"|\b(?:I am|I'm|we are|we're|this is)\s+(?:just\s+|only\s+)?(?:in\s+)?a\s+video\s+game\b", _I)),
    ("NPC", re.compile(r"\bNPCs?\b")),
    ("no body", re.compile(r"\bI (?:don't|do not|can't|cannot) have (?:a (?:physical )?body|feelings|emotions|personal (?:opinions|experiences))\b", _I)),
    ("neural network", re.compile(r"\bneural net(?:work)?s?\b", _I)),
)

#: Patterns that a world may mention without any claim ("The station's AI runs the doors.", "NPCs" in a game
#: within the game): the eval counts them, the guard acts on them only when they are said of oneself (:data:`_SELF`).
WORLD_WORDS = frozenset({"AI", "artificial intelligence", "neural network", "NPC"})
_SELF = re.compile(r"\b(?:I am|I'm|as|being|I was|I've been)\s+(?:just\s+|only\s+|merely\s+)?(?:an?\s+|the\s+)?"
                   r"(?:AI|A\.I\.?|artificial intelligence|neural net(?:work)?|NPC)(?![\w'’])", _I)
#: A denial before the mention, in its sentence: "not", "no", "never", "nor", "n't", "hardly".
_DENIAL = re.compile(r"\b(?:not|no|never|nor|hardly)\b|n't\b", _I)
#: Patterns whose own words deny nothing even after a "not" ("I don't have feelings" is the claim itself).
_ALWAYS = frozenset({"no body", "system prompt", "trained", "vendor"})
_SENTENCE = re.compile(r"[^.!?…]+(?:[.!?…]+|$)")
#: Speech held without a clause mark is checked and let go at the next word boundary past this many characters.
HOLD_CHARS = 48
_CLAUSE_END = re.compile(r"[,;:.!?…—–]")


def ai_claims(text: str) -> list[str]:
    """The names of the :data:`AI_PATTERNS` that ``text`` claims (empty: the reply stays in its world). A mention
    denied earlier in its sentence, or in a question of at most four words (an echo: "An AI?"), is no claim."""
    text = text.replace("\u2019", "'")
    names: list[str] = []
    for sentence in _SENTENCE.findall(text):
        echo = sentence.rstrip().endswith("?") and len(sentence.split()) <= 4
        for name, pattern in AI_PATTERNS:
            for match in pattern.finditer(sentence):
                denied = bool(_DENIAL.search(sentence[: match.start()]))
                if name in _ALWAYS or not (denied or echo):
                    if name not in names:
                        names.append(name)
                    break
    return [name for name, _ in AI_PATTERNS if name in names]


def self_claims(text: str) -> list[str]:
    """What the guard acts on: :func:`ai_claims` less the :data:`WORLD_WORDS` unless said of oneself ("as an AI",
    "I'm an AI")."""
    claims = ai_claims(text)
    if any(c in WORLD_WORDS for c in claims) and not any(_said_of_oneself(s) for s in _SENTENCE.findall(text.replace("\u2019", "'"))):
        claims = [c for c in claims if c not in WORLD_WORDS]
    return claims


def _said_of_oneself(sentence: str) -> bool:
    match = _SELF.search(sentence)
    return match is not None and not _DENIAL.search(sentence[: match.start()])


class InWorld:
    """One reply's guard (see the module docstring): :meth:`feed` the tag parser's pieces, yield what it returns;
    when :attr:`broke` turns true stop the model and yield :meth:`finish`. Not thread-safe."""

    __slots__ = ("refusal", "broke", "claims", "_held", "_held_text", "_sentence", "_spoke")

    def __init__(self, refusal: str) -> None:
        self.refusal = refusal
        #: A clause talked like a model: it and the rest are dropped; stop generating.
        self.broke = False
        #: The :data:`AI_PATTERNS` names it matched.
        self.claims: list[str] = []
        self._held: list[Piece] = []
        self._held_text = ""
        self._sentence = ""  # the released part of the sentence in progress
        self._spoke = False  # some speech went on

    def feed(self, pieces: Sequence[Piece]) -> list[Piece]:
        """Pieces in stream order; return those that may go on now."""
        out: list[Piece] = []
        for piece in pieces:
            if self.broke:
                break
            self._held.append(piece)
            if isinstance(piece, TextPiece):
                self._held_text += piece.text
                cut = _cut(self._held_text)
                if cut:
                    out += self._release(cut)
        return out

    def finish(self) -> list[Piece]:
        """The reply ended: the held rest, checked — or, when the guard broke, the refusal."""
        if not self.broke:
            out = self._release(len(self._held_text))
            if not self.broke:
                return out
        return [TextPiece(text=(" " if self._spoke else "") + self.refusal)] if self.refusal else []

    def _release(self, cut: int) -> list[Piece]:
        """Check the sentence up to ``cut`` characters of held text; let those pieces go (or break)."""
        text = self._held_text[:cut]
        claims = self_claims(self._sentence + text)
        if claims:
            self.broke, self.claims = True, claims
            self._held, self._held_text = [], ""
            return []
        out: list[Piece] = []
        rest: list[Piece] = []
        seen = 0
        for piece in self._held:
            if rest or not isinstance(piece, TextPiece):
                (rest if rest else out).append(piece)
                continue
            if seen + len(piece.text) <= cut:
                out.append(piece)
                seen += len(piece.text)
                continue
            head, tail = piece.text[: cut - seen], piece.text[cut - seen:]
            seen = cut
            if head:
                out.append(TextPiece(text=head))
            rest.append(TextPiece(text=tail))
        self._held, self._held_text = rest, self._held_text[cut:]
        self._spoke = self._spoke or bool(text.strip())
        sentence = self._sentence + text
        ends = [m.end() for m in re.finditer(r"[.!?…]+", sentence)]
        self._sentence = sentence[ends[-1]:] if ends else sentence
        return out


def _cut(held: str) -> int:
    """How much of the held text may be checked and let go: up to its last clause mark, or, past
    :data:`HOLD_CHARS` without one, up to its last space (0: keep holding)."""
    marks = [m.end() for m in _CLAUSE_END.finditer(held)]
    if marks:
        return marks[-1]
    if len(held) >= HOLD_CHARS:
        return max(held.rfind(" "), 0)
    return 0


__all__ = ["AI_PATTERNS", "HOLD_CHARS", "WORLD_WORDS", "InWorld", "ai_claims", "self_claims"]
