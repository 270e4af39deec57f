"""Phonemes with durations → OVR viseme cues; the client mapping tables. Pure unit tests."""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from npc_runtime.tts.visemes import (
    FALLBACK_VISEME,
    IPA_TO_VISEME,
    VISEMES,
    VisemeCue,
    phonemes_to_cues,
    viseme_for,
    word_end_samples,
)

RATE = 22050
CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "visemes"

# "Hello, how are you today?" as Piper (en_US, espeak-ng "həlˈoʊ, hˌaʊ ɑːɹ juː tədˈeɪ?") emits its alignments:
# BOS, one entry per code point (stress, length marks and spaces included, diphthongs split), the punctuation
# espeak-ng keeps, EOS. Sample counts are multiples of the 256-sample hop, as the model's are.
HELLO = [
    ("^", 1792), ("h", 1024), ("ə", 1280), ("l", 1536), ("ˈ", 256), ("o", 2304), ("ʊ", 2048), (",", 4608),
    (" ", 512), ("h", 768), ("ˌ", 0), ("a", 2560), ("ʊ", 1536), (" ", 256), ("ɑ", 1792), ("ː", 512), ("ɹ", 1280),
    (" ", 256), ("j", 1024), ("u", 1792), ("ː", 256), (" ", 512), ("t", 1280), ("ə", 1024), ("d", 1280), ("ˈ", 256),
    ("e", 2560), ("ɪ", 2304), ("?", 1024), ("$", 3840),
]
HELLO_VISEMES = [
    "sil", "kk", "E", "nn", "oh", "ou", "sil",  # həlˈoʊ,
    "kk", "aa", "ou", "aa", "RR", "ih", "ou",  # hˌaʊ ɑːɹ juː
    "DD", "E", "DD", "E", "ih", "sil",  # tədˈeɪ?
]

# Every symbol espeak-ng (and so Piper) writes for English (en-us, en-gb and friends), single code points.
ENGLISH_PHONES = "ə ɚ æ ɑ ɒ ɔ ɛ ɜ ɝ ɪ i ʊ u ʌ ɐ o e a ᵻ p b t d k ɡ g f v θ ð s z ʃ ʒ h m n ŋ l ɹ r w j ɾ ʔ x ç ɬ ʍ"
MARKS = ["ˈ", "ˌ", "ː", "ˑ", "\u0329", "\u0303", "\u0361", "˞", "ʰ"]  # stress, length, syllabic, nasal, tie, r-colour


def ms(samples: int) -> float:
    return samples * 1000.0 / RATE


def assert_well_formed(cues: list[VisemeCue], start: int, total: int) -> None:
    assert cues, "non-empty audio gives cues"
    assert cues[0].start_ms == ms(start)
    assert cues[-1].end_ms == ms(start + total)
    for before, after in zip(cues, cues[1:]):
        assert before.end_ms == after.start_ms
        assert before.viseme != after.viseme
    for cue in cues:
        assert cue.viseme in VISEMES
        assert cue.end_ms > cue.start_ms


# ---- the table ----


def test_every_english_symbol_has_a_viseme() -> None:
    for symbol in ENGLISH_PHONES.split():
        assert symbol in IPA_TO_VISEME, symbol
    assert set(IPA_TO_VISEME.values()) == set(VISEMES) - {"sil"}


@pytest.mark.parametrize(
    ("symbol", "viseme"),
    [
        ("p", "PP"), ("b", "PP"), ("m", "PP"), ("f", "FF"), ("v", "FF"), ("θ", "TH"), ("ð", "TH"),
        ("t", "DD"), ("d", "DD"), ("ɾ", "DD"), ("k", "kk"), ("ɡ", "kk"), ("ŋ", "kk"), ("h", "kk"), ("ʔ", "kk"),
        ("ʃ", "CH"), ("ʒ", "CH"), ("tʃ", "CH"), ("dʒ", "CH"), ("t͡ʃ", "CH"), ("s", "SS"), ("z", "SS"),
        ("n", "nn"), ("l", "nn"), ("n̩", "nn"), ("ɹ", "RR"), ("ɚ", "RR"), ("ɝ", "RR"), ("ə˞", "RR"),
        ("ɑ", "aa"), ("ɑː", "aa"), ("æ", "aa"), ("ʌ", "aa"), ("ɐ", "aa"), ("ɛ", "E"), ("ə", "E"), ("ɜː", "E"),
        ("ɪ", "ih"), ("i", "ih"), ("iː", "ih"), ("j", "ih"), ("ɔ", "oh"), ("o", "oh"), ("u", "ou"), ("ʊ", "ou"),
        ("w", "ou"), ("ɑ̃", "aa"), ("ɛ̃", "E"),
    ],
)
def test_symbols(symbol: str, viseme: str) -> None:
    assert viseme_for(unicodedata.normalize("NFD", symbol)) == viseme


def test_unknown_letter_falls_back() -> None:
    assert viseme_for("Ж") == FALLBACK_VISEME
    cues = phonemes_to_cues([("^", 100), ("Ж", 300), ("$", 100)], RATE)
    assert [c.viseme for c in cues] == ["sil", FALLBACK_VISEME, "sil"]


def test_unknown_symbols_join_the_previous_sound() -> None:
    cues = phonemes_to_cues([("a", 300), ("7", 100), ("\U0001f600", 100), ("_", 50)], RATE)
    assert cues == [VisemeCue("aa", 0.0, ms(550))]


# ---- Piper's alignment ----


def test_hello_as_piper_emits_it() -> None:
    total = sum(n for _, n in HELLO)
    cues = phonemes_to_cues(HELLO, RATE)
    assert [c.viseme for c in cues] == HELLO_VISEMES
    assert_well_formed(cues, 0, total)


def test_piper_alignment_objects_are_accepted() -> None:
    @dataclass
    class PhonemeAlignment:  # the shape of piper.voice.PhonemeAlignment
        phoneme: str
        phoneme_ids: list[int]
        num_samples: int

    objects = [PhonemeAlignment(p, [0], n) for p, n in HELLO]
    assert phonemes_to_cues(objects, RATE) == phonemes_to_cues(HELLO, RATE)


def test_engine_phoneme_objects_and_espeak_word_marks() -> None:
    @dataclass(frozen=True, slots=True)
    class Phoneme:  # the shape of npc_runtime.tts.base.Phoneme
        ipa: str
        samples: int

    # espeak-ng events: whole phoneme names, "|" before the first phoneme, zero-length " " at word events
    seq = [Phoneme("|", 200), Phoneme("h", 300), Phoneme("aɪ", 900), Phoneme(" ", 0), Phoneme("ð", 250),
           Phoneme("ɛɹ", 500), Phoneme("|", 400)]
    cues = phonemes_to_cues(seq, RATE)
    assert [c.viseme for c in cues] == ["sil", "kk", "aa", "ih", "TH", "E", "RR", "sil"]
    assert_well_formed(cues, 0, 2550)
    assert word_end_samples(seq) == [1400, 2150]


def test_offset_shifts_every_cue() -> None:
    base = phonemes_to_cues(HELLO, RATE)
    shifted = phonemes_to_cues(HELLO, RATE, offset_samples=44100)
    assert [c.viseme for c in shifted] == [c.viseme for c in base]
    for a, b in zip(base, shifted):
        assert b.start_ms == pytest.approx(a.start_ms + 2000.0)
        assert b.end_ms == pytest.approx(a.end_ms + 2000.0)
    assert_well_formed(shifted, 44100, sum(n for _, n in HELLO))


def test_stress_and_length_marks_go_to_the_previous_phoneme() -> None:
    cues = phonemes_to_cues([("d", 100), ("ˈ", 50), ("ɑ", 200), ("ː", 70)], RATE)
    assert cues == [VisemeCue("DD", 0.0, ms(150)), VisemeCue("aa", ms(150), ms(420))]


def test_a_leading_mark_goes_to_the_next_phoneme() -> None:
    cues = phonemes_to_cues([("ˈ", 40), ("ɑ", 200)], RATE)
    assert cues == [VisemeCue("aa", 0.0, ms(240))]


def test_a_short_space_joins_the_previous_word_a_long_one_is_silence() -> None:
    short = phonemes_to_cues([("ɑ", 1000), (" ", 512), ("p", 1000)], RATE)
    assert short == [VisemeCue("aa", 0.0, ms(1512)), VisemeCue("PP", ms(1512), ms(2512))]
    long = phonemes_to_cues([("ɑ", 1000), (" ", 4410), ("p", 1000)], RATE)  # 200 ms
    assert [c.viseme for c in long] == ["aa", "sil", "PP"]
    assert long[1].end_ms - long[1].start_ms == pytest.approx(200.0)
    closed = phonemes_to_cues([("ɑ", 1000), (" ", 512), ("p", 1000)], RATE, min_pause_ms=10)
    assert [c.viseme for c in closed] == ["aa", "sil", "PP"]


def test_diphthong_halves_keep_their_own_visemes() -> None:
    cues = phonemes_to_cues([("a", 600), ("ɪ", 400)], RATE)
    assert [(c.viseme, c.end_ms - c.start_ms) for c in cues] == [("aa", ms(600)), ("ih", pytest.approx(ms(400)))]


def test_espeak_entries_holding_several_symbols_are_shared_out() -> None:
    cues = phonemes_to_cues([("aɪ", 1001), ("tʃ", 300), ("ɜː", 200)], RATE)
    assert [c.viseme for c in cues] == ["aa", "ih", "CH", "E"]
    assert cues[0].end_ms == ms(501)  # the remainder goes to the first half
    assert cues[-1].end_ms == ms(1501)


def test_affricates_split_per_code_point_are_one_cue() -> None:
    split = phonemes_to_cues([("ɪ", 300), ("t", 100), ("ʃ", 200)], RATE)
    tied = phonemes_to_cues([("ɪ", 300), ("t", 100), ("\u0361", 0), ("ʃ", 200)], RATE)
    assert split == tied == [VisemeCue("ih", 0.0, ms(300)), VisemeCue("CH", ms(300), ms(600))]
    cats = phonemes_to_cues([("æ", 300), ("t", 100), ("s", 200)], RATE)
    assert [c.viseme for c in cats] == ["aa", "DD", "SS"]


def test_consecutive_identical_visemes_merge() -> None:
    cues = phonemes_to_cues([("p", 100), ("b", 100), ("m", 100), (".", 100), ("$", 100)], RATE)
    assert cues == [VisemeCue("PP", 0.0, ms(300)), VisemeCue("sil", ms(300), ms(500))]


def test_zero_length_entries_make_no_cue_and_empty_audio_no_cues() -> None:
    cues = phonemes_to_cues([("^", 0), ("a", 100), ("ɪ", 0), ("$", 0)], RATE)
    assert cues == [VisemeCue("aa", 0.0, ms(100))]
    assert phonemes_to_cues([], RATE) == []
    assert phonemes_to_cues([("^", 0), ("$", 0)], RATE) == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        phonemes_to_cues([("a", -1)], RATE)
    with pytest.raises(ValueError):
        phonemes_to_cues([("a", 1)], 0)
    with pytest.raises(TypeError):
        phonemes_to_cues([object()], RATE)


def test_random_sequences_are_covered_exactly() -> None:
    rng = random.Random(1234)
    alphabet = ENGLISH_PHONES.split() + MARKS + [" ", ",", ".", "?", "^", "$", "_", "Ж", "aɪ", "tʃ"]
    for _ in range(300):
        seq = [(rng.choice(alphabet), rng.choice([0, 1, 37, 256, 512, 2048])) for _ in range(rng.randint(1, 40))]
        total = sum(n for _, n in seq)
        offset = rng.randint(0, 10**6)
        cues = phonemes_to_cues(seq, RATE, offset_samples=offset, min_pause_ms=rng.choice([0.0, 50.0, 100.0]))
        if total == 0:
            assert cues == []
        else:
            assert_well_formed(cues, offset, total)


# ---- word boundaries ----


def test_word_ends_in_piper_alignment() -> None:
    ends = word_end_samples(HELLO)
    positions, position = {}, 0
    for i, (_, n) in enumerate(HELLO):
        positions[i] = position
        position += n
    # Hello | , ; how | space ; are | space ; you | space ; today | ?
    assert ends == [positions[7], positions[13], positions[17], positions[21], positions[28]]
    assert word_end_samples(HELLO, offset_samples=1000) == [e + 1000 for e in ends]


def test_the_last_word_ends_at_its_last_phoneme_without_punctuation() -> None:
    assert word_end_samples([("h", 10), ("aɪ", 20)]) == [30]
    assert word_end_samples([("^", 5), (" ", 5), ("$", 5)]) == []


# ---- the client tables ----


ARKIT_SHAPES = {
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
}


def test_arkit_table() -> None:
    table = json.loads((CLIENTS / "ovr_to_arkit.json").read_text(encoding="utf-8"))["visemes"]
    assert set(table) == set(VISEMES)
    assert table["sil"] == {}
    for viseme, weights in table.items():
        for shape, weight in weights.items():
            assert shape in ARKIT_SHAPES, (viseme, shape)
            assert 0.0 <= weight <= 1.0, (viseme, shape)
        if viseme != "sil":
            assert weights, viseme
        if "mouthClose" in weights:
            assert weights["mouthClose"] <= weights.get("jawOpen", 0.0)
    assert table["aa"]["jawOpen"] == max(w.get("jawOpen", 0.0) for w in table.values())
    assert {"mouthPressLeft", "mouthPressRight", "mouthClose"} <= set(table["PP"])
    assert {"mouthPucker", "mouthFunnel"} <= set(table["ou"])


def test_azure_table() -> None:
    doc = json.loads((CLIENTS / "ovr_to_azure.json").read_text(encoding="utf-8"))
    table = doc["visemes"]
    assert set(table) == set(VISEMES)
    assert all(isinstance(i, int) and 0 <= i <= 21 for i in table.values())
    assert table["sil"] == 0 and table["PP"] == 21 and table["aa"] == 2
    assert sorted(int(k) for k in doc["azure_ids"]) == list(range(22))
