"""The per-turn action grammar (GBNF) and the parser/validator of the tags it allows.

The character's reply is one spoken paragraph with inline action tags::

    Sure, here you go. [grab ramen_bowl] [give ramen_bowl player] Enjoy!

``build_action_grammar`` turns a scene and the verbs a persona allows into one GBNF string that
only admits tags naming declared ids, so the model *cannot* produce an unknown verb or id.
``parse_action`` applies exactly the same rules to a tag body; it is the defense in depth for
backends that might ignore the grammar.

The GBNF keeps to the dialect that llama.cpp and xgrammar (vLLM) both accept: no ``.``
wildcard, no token references, every alternative list in parentheses, escaped string
literals, rule names of lowercase letters and ``-`` only (llama.cpp rejects ``_``), and no
``{m,n}`` repetition unless ``max_text_chars`` asks for it.

Pure functions, no I/O: safe to call anywhere, and deterministic (the same inputs give the
same string, so callers can cache per scene).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npc_runtime.scene import Scene

#: The whole action vocabulary, in the order the grammar lists it.
VERBS: tuple[str, ...] = ("move", "grab", "give")

#: At most this many tags in one reply (a weak model must not loop on tags forever).
MAX_TAGS = 4

#: Speech text: anything but brackets (reserved for tags) and line breaks (one paragraph).
TEXT_CHAR = r"[^\[\]\n\r]"


@dataclass(frozen=True, slots=True)
class Action:
    """One parsed action. ``give``: ``object`` to the character ``target``; ``grab``:
    ``object``; ``move``: to ``target`` (an object, a location or a character)."""

    verb: str
    object: str | None = None
    target: str | None = None

    def as_list(self) -> list[str]:
        """``["give", obj, char]``, ``["grab", obj]``, ``["move", target]`` (eval format)."""
        return [self.verb, *(a for a in (self.object, self.target) if a is not None)]

    def as_tag(self) -> str:
        """The tag text the model writes, e.g. ``[give ramen_bowl player]``."""
        return "[" + " ".join(self.as_list()) + "]"


@dataclass(frozen=True, slots=True)
class _Targets:
    """The ids each verb may name, after removing the character itself."""

    objects: tuple[str, ...]
    move_targets: tuple[str, ...]
    recipients: tuple[str, ...]

    @classmethod
    def of(cls, scene: Scene, self_id: str | None) -> "_Targets":
        def keep(kind: str) -> tuple[str, ...]:
            return tuple(i for i in scene.ids(kind) if i != self_id)

        objects, locations, characters = keep("objects"), keep("locations"), keep("characters")
        return cls(objects, objects + locations + characters, characters)


def usable_verbs(scene: Scene, verbs: Sequence[str], *, self_id: str | None = None) -> tuple[str, ...]:
    """The verbs, in canonical order, that the persona allows *and* the scene gives something
    to act on (no objects: no grab/give; no other character: no give; nothing: no move)."""
    _check_verbs(verbs)
    t = _Targets.of(scene, self_id)
    possible = {"move": bool(t.move_targets), "grab": bool(t.objects), "give": bool(t.objects and t.recipients)}
    return tuple(v for v in VERBS if v in verbs and possible[v])


def build_action_grammar(
    scene: Scene,
    verbs: Sequence[str],
    *,
    self_id: str | None = None,
    max_text_chars: int | None = None,
) -> str:
    """One GBNF string for a reply: ``text? (tag (" " text? (tag ...)?)?)?`` with at most
    :data:`MAX_TAGS` tags, each followed by a space or the end of the reply (never glued to a
    word). The reply is never empty. With no usable verb the grammar is plain text.

    ``max_text_chars`` bounds each run of text between tags (``{1,N}`` repetition)."""
    if max_text_chars is not None and max_text_chars < 1:
        raise ValueError("max_text_chars must be at least 1")
    use = usable_verbs(scene, verbs, self_id=self_id)
    text_rule = f"{TEXT_CHAR}+" if max_text_chars is None else f"{TEXT_CHAR}{{1,{max_text_chars}}}"
    if not use:
        return f"root ::= text\ntext ::= {text_rule}\n"
    t = _Targets.of(scene, self_id)
    lines = ["root ::= (text seq1?) | seq1"]
    for k in range(1, MAX_TAGS):
        lines.append(f'seq{k} ::= tag (" " text? seq{k + 1}?)?')
    lines.append(f'seq{MAX_TAGS} ::= tag (" " text?)?')
    lines.append('tag ::= "[" (' + " | ".join(use) + ') "]"')
    if "move" in use:
        lines.append('move ::= "move " move-target')
    if "grab" in use:
        lines.append('grab ::= "grab " object')
    if "give" in use:
        lines.append('give ::= "give " object " " recipient')
    if "grab" in use or "give" in use:
        lines.append("object ::= " + _alternatives(t.objects))
    if "move" in use:
        lines.append("move-target ::= " + _alternatives(t.move_targets))
    if "give" in use:
        lines.append("recipient ::= " + _alternatives(t.recipients))
    lines.append(f"text ::= {text_rule}")
    return "\n".join(lines) + "\n"


def parse_action(
    tag_body: str,
    scene: Scene,
    verbs: Sequence[str],
    self_id: str | None = None,
) -> Action | None:
    """Parse the inside of a tag (``"give ramen_bowl player"``, without brackets) into an
    :class:`Action`, or ``None`` when the grammar would not have allowed it. Tolerates
    surrounding and repeated whitespace; ids and verbs must match exactly."""
    words = tag_body.split()
    if not words:
        return None
    verb, args = words[0], words[1:]
    if verb == "move" and len(args) == 1:
        action = Action("move", target=args[0])
    elif verb == "grab" and len(args) == 1:
        action = Action("grab", object=args[0])
    elif verb == "give" and len(args) == 2:
        action = Action("give", object=args[0], target=args[1])
    else:
        return None
    return action if validate_action(action, scene, verbs, self_id) else None


def validate_action(action: Action, scene: Scene, verbs: Sequence[str], self_id: str | None = None) -> bool:
    """Whether the grammar built for the same inputs admits ``action`` (same rules exactly)."""
    if action.verb not in usable_verbs(scene, verbs, self_id=self_id):
        return False
    t = _Targets.of(scene, self_id)
    if action.verb == "move":
        return action.object is None and action.target in t.move_targets
    if action.verb == "grab":
        return action.target is None and action.object in t.objects
    return action.object in t.objects and action.target in t.recipients


def gbnf_literal(value: str) -> str:
    """``value`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _alternatives(ids: Sequence[str]) -> str:
    return "(" + " | ".join(gbnf_literal(i) for i in ids) + ")"


def _check_verbs(verbs: Sequence[str]) -> None:
    if isinstance(verbs, str):
        raise TypeError("verbs must be a sequence of verb names, not a string")
    unknown = sorted(set(verbs) - set(VERBS))
    if unknown:
        raise ValueError(f"unknown verbs {unknown}; the vocabulary is {list(VERBS)}")
