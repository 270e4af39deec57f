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

from npc_runtime.actions import EMOTIONS, VERBS, Action, Targets, parse_action, usable_definitions, usable_verbs, validate_action
from npc_runtime.scene import Scene

__all__ = ["VERBS", "Action", "build_action_grammar", "gbnf_literal", "parse_action", "usable_verbs", "validate_action"]

#: At most this many tags in one reply (a weak model must not loop on tags forever).
MAX_TAGS = 4

#: Speech text: anything but brackets (reserved for tags) and line breaks (one paragraph).
TEXT_CHAR = r"[^\[\]\n\r]"


def build_action_grammar(
    scene: Scene,
    verbs: Sequence[str],
    *,
    self_id: str | None = None,
    max_text_chars: int | None = None,
    emotions: bool = False,
) -> str:
    """One GBNF string for a reply: ``text? (tag (" " text? (tag ...)?)?)?`` with at most
    :data:`MAX_TAGS` tags, each followed by a space or the end of the reply (never glued to a
    word). The reply is never empty. With no usable verb the grammar is plain text.

    ``max_text_chars`` bounds each run of text between tags (``{1,N}`` repetition). With
    ``emotions``, ``[emotion <name>]`` (one of :data:`~npc_runtime.actions.EMOTIONS`) is a tag too."""
    if max_text_chars is not None and max_text_chars < 1:
        raise ValueError("max_text_chars must be at least 1")
    use = usable_definitions(scene, verbs, self_id=self_id)
    tags = [_verb_rule(v.name) for v in use] + (["emotion"] if emotions else [])
    text_rule = f"{TEXT_CHAR}+" if max_text_chars is None else f"{TEXT_CHAR}{{1,{max_text_chars}}}"
    if not tags:
        return f"root ::= text\ntext ::= {text_rule}\n"
    t = Targets.of(scene, self_id)
    lines = ["root ::= (text seq1?) | seq1"]
    for k in range(1, MAX_TAGS):
        lines.append(f'seq{k} ::= tag (" " text? seq{k + 1}?)?')
    lines.append(f'seq{MAX_TAGS} ::= tag (" " text?)?')
    lines.append('tag ::= "[" (' + " | ".join(tags) + ') "]"')
    if emotions:
        lines.append('emotion ::= "emotion " ' + _alternatives(EMOTIONS))
    kinds: list[str] = []  # entity argument types used, in first-use order
    for verb in use:
        parts = [gbnf_literal(verb.name + " " if verb.args else verb.name)]
        for arg in verb.args:
            if arg.values is not None:
                rule = f"{_verb_rule(verb.name)}-{arg.name.replace('_', '-')}"
                lines.append(f"{rule} ::= {_alternatives(arg.values)}")
            else:
                rule = _KIND_RULES[arg.type or "any"]
                if rule not in kinds:
                    kinds.append(rule)
            parts.append(rule)
        lines.append(f"{_verb_rule(verb.name)} ::= {parts[0]}" + "".join(f' {p}' if i == 0 else f' " " {p}' for i, p in enumerate(parts[1:])))
    choices = {"object": t.objects, "move-target": t.any, "recipient": t.characters, "location": t.locations}  # rule order
    for rule in sorted(kinds, key=list(choices).index):
        lines.append(f"{rule} ::= " + _alternatives(choices[rule]))
    lines.append(f"text ::= {text_rule}")
    return "\n".join(lines) + "\n"


#: GBNF rule of each entity argument type (the built-ins' names of old, so their grammar reads as before).
_KIND_RULES = {"object": "object", "location": "location", "character": "recipient", "any": "move-target"}


def _verb_rule(name: str) -> str:
    """A verb's GBNF rule name: the built-ins keep theirs; a declared verb gets ``v-`` and ``-`` for ``_`` (llama.cpp
    rejects ``_`` in rule names, and the prefix keeps it clear of the grammar's own rules)."""
    return name if name in VERBS else "v-" + name.replace("_", "-")


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


