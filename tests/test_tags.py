"""The streaming tag splitter: pure unit tests (no model)."""

from __future__ import annotations

import random

import pytest

from npc_runtime.dialogue.grammar import Action
from npc_runtime.dialogue.tags import MAX_TAG_BODY, ActionPiece, TagStreamParser, TextPiece
from npc_runtime.scene import Entity, Scene

VERBS = ("move", "grab", "give")
SCENE = Scene(
    objects=[Entity(id="ramen_bowl"), Entity(id="menu")],
    locations=[Entity(id="door"), Entity(id="counter")],
    characters=[Entity(id="player"), Entity(id="nova"), Entity(id="jin")],
)


def run(chunks: list[str], *, verbs=VERBS, self_id: str | None = "jin"):
    """Feed ``chunks``; return (speech, [(action, offset)], dropped, pieces)."""
    parser = TagStreamParser(SCENE, verbs, self_id)
    pieces = []
    for chunk in chunks:
        pieces += parser.feed(chunk)
    pieces += parser.close()
    speech = "".join(p.text for p in pieces if isinstance(p, TextPiece))
    actions = [(p.action, p.text_offset) for p in pieces if isinstance(p, ActionPiece)]
    assert speech == parser.text
    assert [a for a, _ in actions] == parser.actions
    return speech, actions, parser.dropped, pieces


def chunkings(text: str, rng: random.Random) -> list[list[str]]:
    """Whole, char by char, and a few random chunkings of ``text``."""
    out = [[text], list(text)]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), k=rng.randint(0, min(6, len(text) - 1)))) if len(text) > 1 else []
        bounds = [0, *cuts, len(text)]
        out.append([text[a:b] for a, b in zip(bounds, bounds[1:])])
    return out


GIVE = Action("give", object="ramen_bowl", target="player")
GRAB = Action("grab", object="ramen_bowl")
MOVE = Action("move", target="door")

CASES = [
    ("Sure. [give ramen_bowl player] Here.", "Sure. Here.", [(GIVE, 5)], 0),
    ("Here you go. [give ramen_bowl player]", "Here you go.", [(GIVE, 12)], 0),
    ("Here you go. [grab ramen_bowl] [give ramen_bowl player]", "Here you go.", [(GRAB, 12), (GIVE, 12)], 0),
    ("[move door] Coming!", "Coming!", [(MOVE, 0)], 0),
    ("  Hello   there  ", "Hello there", [], 0),
    ("One.[move door]Two.", "One. Two.", [(MOVE, 4)], 0),
    ("I [fly away] cannot.", "I cannot.", [], 1),
    ("No [give ramen_bowl jin] way.", "No way.", [], 1),  # self is never a recipient
    ("No [give ramen_bowl counter] way.", "No way.", [], 1),  # a location is not a recipient
    ("Cut [give ramen_bo", "Cut", [], 1),  # max_tokens inside a tag
    ("Open [move [move door] ok", "Open ok", [(MOVE, 4)], 1),
    ("stray ] bracket", "stray bracket", [], 0),
    ("Here you go [give ramen_bowl player].", "Here you go.", [(GIVE, 11)], 0),
    ("Wait , what", "Wait , what", [], 0),  # only a removed tag swallows the space
    ("[]", "", [], 1),
    ("", "", [], 0),
]


@pytest.mark.parametrize(("raw", "speech", "actions", "dropped"), CASES)
def test_cases_in_any_chunking(raw: str, speech: str, actions: list, dropped: int) -> None:
    rng = random.Random(raw)
    for chunks in chunkings(raw, rng) if raw else [[raw]]:
        got_speech, got_actions, got_dropped, _ = run(chunks)
        assert (got_speech, got_actions, got_dropped) == (speech, actions, dropped), chunks


def test_random_texts_chunking_invariant() -> None:
    rng = random.Random(7)
    atoms = ["Hi", "there", ",", " ", "  ", "[give ramen_bowl player]", "[grab menu]", "[move nova]", "[bad]",
             "[give menu", "]", "ok.", "\n", "x" * 5]
    for _ in range(200):
        raw = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        reference = run([raw])[:3]
        for chunks in chunkings(raw, rng)[1:] if len(raw) > 1 else []:
            assert run(chunks)[:3] == reference, (raw, chunks)
        speech = reference[0]
        assert "[" not in speech and "]" not in speech and "  " not in speech
        assert speech == speech.strip()


def test_text_is_emitted_before_the_reply_ends() -> None:
    parser = TagStreamParser(SCENE, VERBS, "jin")
    assert parser.feed("Hello") == [TextPiece("Hello")]
    assert parser.feed(" ") == []  # whitespace waits for the next word
    assert parser.feed("there [gi") == [TextPiece(" there")]
    assert parser.feed("ve ramen_bowl player]") == [ActionPiece(GIVE, 11)]
    assert parser.feed(" ok") == [TextPiece(" ok")]
    assert parser.close() == []
    assert parser.text == "Hello there ok"


def test_long_bracket_body_is_not_a_tag() -> None:
    body = "a" * (MAX_TAG_BODY + 5)
    speech, actions, dropped, _ = run(["Well [", body, " then."])
    assert dropped == 1 and actions == []
    assert "[" not in speech and speech.startswith("Well ") and speech.endswith("then.")


def test_verbs_not_allowed_are_dropped() -> None:
    speech, actions, dropped, _ = run(["Sure [move door] [grab menu]."], verbs=("grab",))
    assert actions == [(Action("grab", object="menu"), 4)]
    assert dropped == 1 and speech == "Sure."


def test_feed_after_close_is_an_error() -> None:
    parser = TagStreamParser(SCENE, VERBS)
    parser.close()
    assert parser.close() == []
    with pytest.raises(RuntimeError):
        parser.feed("x")
