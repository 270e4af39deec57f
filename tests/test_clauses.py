"""The streaming clause splitter. Pure unit tests."""

from __future__ import annotations

import random

import pytest

from npc_runtime.tts.clauses import ClauseSplitter


def split(text: str, **kwargs: int | None) -> list[str]:
    splitter = ClauseSplitter(**kwargs)  # type: ignore[arg-type]
    return splitter.feed(text) + splitter.flush()


def split_streamed(text: str, chunks: list[int], **kwargs: int | None) -> list[str]:
    splitter = ClauseSplitter(**kwargs)  # type: ignore[arg-type]
    units: list[str] = []
    position = 0
    for size in chunks:
        units += splitter.feed(text[position : position + size])
        position += size
    units += splitter.feed(text[position:])
    return units + splitter.flush()


REPLY = (
    'Ah, welcome back, traveller! The broth simmers for 3.5 days, e.g. through the whole festival... '
    "Mr. Tanaka swears by it; Dr. Ito does not, and the U.S. envoy asked for seconds. Prices? 1,000 yen — "
    'cheap, if you ask me. "Try it!" she said (really.) See https://ramen.example.com/menu?day=3.\n\n'
    "Also, the noodles, the egg, the pork and the scallions, which come from the hills north of the village where "
    "my grandmother grew them every spring without fail, are all made here by hand every morning before dawn"
)

CASES = [
    "Hello there. How are you?",
    "Wait... what? No!!",
    "  leading   and\ttrailing  whitespace.  ",
    "",
    "   ",
    "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen, fourteen.",
    "x" * 400 + " tail.",
    "no punctuation at all " * 20,
    "1. Go north. 2. Turn left.",
    "He said: “Leave.” Then he left… quietly.",
    REPLY,
]


def test_sentences_are_emitted_as_soon_as_they_end() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(".") == []  # "3.5" could still follow
    assert splitter.feed(" ") == []  # a lower-case word could still follow
    assert splitter.feed("How") == ["Hello there."]
    assert splitter.feed(" are you?") == []
    assert splitter.flush() == ["How are you?"]


def test_marks_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert split('"Stop!" she cried. (Really?) Yes?! Fine…  Then "Go." Now') == [
        '"Stop!" she cried.', "(Really?)", "Yes?!", "Fine…", 'Then "Go."', "Now",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "It costs 3.5 gold and weighs 1,000.25 grams today",
        "Talk to Mr. Smith and Mrs. Jones, or Dr. Who, St. Clair, Prof. Oak",
        "Bring herbs, e.g. basil, and tools, i.e. knives, to the U.S. embassy",
        "See https://example.com/a.b?c=1,2 or www.example.org/x:y for more",
        "J. R. R. Tolkien wrote it at 10:30 by the clock",
        "He paused... then went on... and on",
    ],
)
def test_never_split_inside_numbers_abbreviations_urls_ellipses(text: str) -> None:
    assert split(text, first_min_chars=None, min_chars=160) == [text]


def test_an_ellipsis_before_a_capital_ends_a_sentence() -> None:
    assert split("Well... I see. Fine… Go on") == ["Well...", "I see.", "Fine…", "Go on"]


def test_a_sentence_end_after_a_url_or_number_still_splits() -> None:
    assert split("Go to example.com. Then pay 3. Done") == ["Go to example.com.", "Then pay 3.", "Done"]


def test_a_unit_needs_a_letter() -> None:
    assert split("1. Go north. 2. Turn left.") == ["1. Go north.", "2. Turn left."]


def test_clause_ends_split_only_long_runs() -> None:
    text = "Well, the ramen, as you know, takes days to make, and the broth is the heart of it."
    assert split(text, min_chars=100, first_min_chars=None) == [text]
    assert split(text, min_chars=15, first_min_chars=25) == [
        "Well, the ramen, as you know,", "takes days to make,", "and the broth is the heart of it.",
    ]


def test_the_first_unit_is_emitted_early_at_a_clause_end() -> None:
    text = "Well, I suppose, if you really insist, I could tell you the story; it is long, though, so sit."
    splitter = ClauseSplitter(min_chars=60, first_min_chars=15)
    out = splitter.feed(text[:30])
    assert out == ["Well, I suppose,"]  # "Well," alone is too short
    rest = splitter.feed(text[30:]) + splitter.flush()
    assert rest == ["if you really insist, I could tell you the story; it is long,", "though, so sit."]
    assert split(text, min_chars=100, first_min_chars=None) == [text]


def test_dashes_are_clause_ends_only_between_words() -> None:
    text = "The broth — simmered for days — is rich; well-made noodles—firm ones—matter too."
    assert split(text, min_chars=5, first_min_chars=5) == [
        "The broth —", "simmered for days —", "is rich;", "well-made noodles—firm ones—matter too.",
    ]
    assert split("A long stretch of words here - and then more words.", min_chars=10) == [
        "A long stretch of words here -", "and then more words.",
    ]


def test_newlines_end_units() -> None:
    assert split("Menu\n- ramen\n- gyoza\n\nEnjoy") == ["Menu", "- ramen", "- gyoza", "Enjoy"]


def test_max_chars_forces_a_split_at_a_word_boundary() -> None:
    text = "word " * 100
    units = split(text, max_chars=40, min_chars=20)
    assert all(len(u) <= 40 for u in units)
    assert " ".join(units) == " ".join(text.split())
    assert units[0] == "word word word word word word word word"


def test_max_chars_prefers_a_clause_end() -> None:
    text = "a b c d e f g h i j k l m n, o p q r s t u v w x y z a b c d e f g h i j k l m n o p"
    units = split(text, max_chars=40, min_chars=40, first_min_chars=None)
    assert units[0] == "a b c d e f g h i j k l m n,"


def test_a_word_longer_than_max_chars_stays_whole() -> None:
    word = "A" * 300
    assert split(f"Look at {word} there", max_chars=50) == ["Look at", word, "there"]
    splitter = ClauseSplitter(max_chars=50)
    assert splitter.feed(word) == []  # waits for the word to end
    assert splitter.feed(" and") == [word]
    assert splitter.flush() == ["and"]


def test_flush_resets_for_the_next_reply() -> None:
    splitter = ClauseSplitter(first_min_chars=15, min_chars=100)
    assert splitter.feed("First reply, done") == []
    assert splitter.flush() == ["First reply, done"]
    assert splitter.feed("Second reply is here, ") == ["Second reply is here,"]  # the first unit again
    assert splitter.flush() == []


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        ClauseSplitter(max_chars=0)
    with pytest.raises(ValueError):
        ClauseSplitter(first_min_chars=0)


@pytest.mark.parametrize("text", CASES)
def test_units_rebuild_the_text(text: str) -> None:
    units = split(text)
    assert " ".join(units) == " ".join(text.split())
    assert all(u and u == " ".join(u.split()) for u in units)


@pytest.mark.parametrize("kwargs", [{}, {"max_chars": 40, "min_chars": 20, "first_min_chars": 8}, {"max_chars": 12}])
def test_any_chunking_gives_the_same_units(kwargs: dict[str, int]) -> None:
    rng = random.Random(20260)
    for text in CASES:
        expected = split(text, **kwargs)
        assert " ".join(expected) == " ".join(text.split())
        assert split_streamed(text, [1] * len(text), **kwargs) == expected
        for _ in range(40):
            chunks = [rng.randint(0, 9) for _ in range(len(text) // 3 + 1)]
            assert split_streamed(text, chunks, **kwargs) == expected


def test_random_texts_any_chunking() -> None:
    rng = random.Random(7)
    pieces = [
        "word", "Mr.", "3.5", "e.g.", "...", "…", ",", ";", ":", "—", "-", "!", "?", ".", '"', ")", "(", "\n",
        "\n\n", " ", "  ", "https://x.y/z?a=1", "U.S.", "x" * 30, "1,000",
    ]
    for _ in range(300):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", " "]) for _ in range(rng.randint(0, 60)))
        kwargs = rng.choice([{}, {"max_chars": 30, "min_chars": 10, "first_min_chars": 5}])
        expected = split(text, **kwargs)
        assert " ".join(expected) == " ".join(text.split())
        chunks = [rng.randint(1, 7) for _ in range(len(text))]
        assert split_streamed(text, chunks, **kwargs) == expected
