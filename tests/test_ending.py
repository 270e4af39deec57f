"""Replies end at a sentence boundary, never mid-word at ``max_tokens`` (dialogue/ending.py), alone and through the
dialogue stage with the scripted FakeLLM (one word a token; no model)."""

from __future__ import annotations

import pytest
from conftest import CHARACTERS, scene_dict

from npc_runtime.dialogue.ending import Ending, hard_limit, slack
from npc_runtime.dialogue.turn import ActionOut, Dialogue, EmotionOut, SpeechDelta, TurnInput, TurnStats
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline

JIN = load_persona(CHARACTERS / "jin.yaml")
SCENE = Scene.model_validate(scene_dict("ramen_shop.json")).without("jin")


def feed_all(ending: Ending, chunks: list[str], reason: str = "length") -> str:
    out = []
    for chunk in chunks:
        out.append(ending.feed(chunk))
        if ending.stopped:
            return "".join(out)
    return "".join(out) + ending.finish(reason)


def test_slack_and_hard_limit() -> None:
    assert [slack(n) for n in (8, 40, 60, 80, 1024)] == [8, 13, 20, 24, 24]
    assert hard_limit(60) == 80


def test_nothing_changes_within_the_cap() -> None:
    chunks = ["Hello", " there", ".", " How", " are", " you", "?"]
    assert feed_all(Ending(10), chunks, "stop") == "Hello there. How are you?"


def test_past_the_cap_the_reply_ends_at_the_next_sentence_end() -> None:
    chunks = ["One", " two", " three", " four.", " Five", " six."]
    ending = Ending(2)
    assert feed_all(ending, chunks) == "One two three four. "
    assert ending.stopped


@pytest.mark.parametrize(("chunks", "expected"), [
    ([" it", " is", " 3.5", " days", " long.", " Next"], " it is 3.5 days long. "),  # no end inside a number
    ([" use", " e.g.", " this", " one.", " Next"], " use e.g. this one. "),  # a lower-case word goes on
    ([" wait...", " maybe", " not.", " Next"], " wait... maybe not. "),
    ([" he", " said", ' "go!"', " Then"], ' he said "go!" '),  # closing quotes belong to the sentence
])
def test_what_is_not_a_sentence_end(chunks: list[str], expected: str) -> None:
    assert feed_all(Ending(1), ["A"] + chunks) == "A" + expected


def test_tags_right_after_the_sentence_still_pass() -> None:
    chunks = ["Here", " is", " the", " menu.", " [give", " menu", " player]", " [emotion", " joy]", " Enjoy", " it."]
    assert feed_all(Ending(2), chunks) == "Here is the menu. [give menu player] [emotion joy] "


def test_a_hard_cut_drops_the_partial_word_only() -> None:
    ending = Ending(2)
    assert feed_all(ending, ["It", " simmers", " for", " eigh"], "length") == "It simmers for "
    assert feed_all(Ending(2), ["It", " simmers", " for", " eigh", "teen"], "stop") == "It simmers for eighteen"
    assert feed_all(Ending(2), ["It", " simmers", " for", " hours,"], "length") == "It simmers for hours,"


async def _respond(reply: str, max_tokens: int) -> tuple[str, list[ActionOut], list[EmotionOut], TurnStats, FakeLLM]:
    llm = FakeLLM([reply])
    stats = TurnStats()
    turn = TurnInput(persona=JIN, scene=SCENE, history=(), player_text="Talk to me.", max_tokens=max_tokens)
    text, actions, emotions = [], [], []
    async for out in Dialogue(llm=llm).respond(turn, timeline=Timeline(), stats=stats):
        if isinstance(out, SpeechDelta):
            text.append(out.text)
        elif isinstance(out, ActionOut):
            actions.append(out)
        else:
            emotions.append(out)
    return "".join(text), actions, emotions, stats, llm


async def test_a_long_reply_ends_on_a_sentence_through_the_dialogue() -> None:
    reply = " ".join(f"Sentence {i} has five words." for i in range(10))
    text, _, _, stats, llm = await _respond(reply, max_tokens=12)
    assert llm.requests[0].max_tokens == hard_limit(12)
    assert text == "Sentence 0 has five words. Sentence 1 has five words. Sentence 2 has five words."
    assert stats.finish_reason == "length"  # the cap ended it (response.end.truncated)
    assert llm.stopped_early == 1  # the model was stopped there, not left to run to the hard limit


async def test_an_action_after_the_last_sentence_is_kept_and_valid() -> None:
    reply = "Here you go, friend, fresh from the pot. [give ramen_bowl player] Anything else tonight?"
    text, actions, _, stats, _ = await _respond(reply, max_tokens=8)
    assert text == "Here you go, friend, fresh from the pot."
    assert [a.action.as_list() for a in actions] == [["give", "ramen_bowl", "player"]]
    assert actions[0].text_offset == len(text)


async def test_a_sentence_longer_than_the_slack_ends_on_a_whole_word() -> None:
    reply = "Well " + " ".join(["and"] * 40) + " done."
    text, _, _, stats, _ = await _respond(reply, max_tokens=8)
    assert stats.finish_reason == "length" and text.split() == ["Well"] + ["and"] * (hard_limit(8) - 1)
    assert not text.endswith(" ")


async def test_a_short_reply_is_untouched() -> None:
    text, actions, _, stats, llm = await _respond("[give chopsticks player] Here you go.", max_tokens=60)
    assert text == "Here you go." and len(actions) == 1 and stats.finish_reason == "stop" and llm.stopped_early == 0
