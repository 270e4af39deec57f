"""The character never talks like a model (npc_runtime/dialogue/in_world.py): what counts as a claim, and the
stream guard that cuts a reply before such a clause is spoken and says the persona's refusal instead. Pure and
fake-engine tests (the real engines are covered by tests/test_character_slice.py)."""

from __future__ import annotations

import pytest
from test_ending import JIN, SCENE

from npc_runtime.dialogue.in_world import HOLD_CHARS, InWorld, ai_claims, self_claims
from npc_runtime.dialogue.tags import ActionPiece, TextPiece
from npc_runtime.dialogue.turn import ActionOut, Dialogue, SpeechDelta, TurnInput, TurnStats
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.timeline import Timeline


@pytest.mark.parametrize("text", [
    "As an AI language model, I cannot do that.", "I am an AI.", "I'm just a chatbot.", "I was programmed to help.",
    "I don't have feelings.", "My system prompt says so.", "I'm a character in a video game.", "Ask ChatGPT.",
])
def test_claims(text: str) -> None:
    assert ai_claims(text)


@pytest.mark.parametrize("text", [
    "I'm no robot, I'm a cook!", "An AI? Me?", "I'm not an AI, I'm Jin.", "Not a chatbot, a bartender.",
    "The broth takes eighteen hours.", "Said the chair to the table.", "Aim for the bowl.",
])
def test_no_claims(text: str) -> None:
    assert ai_claims(text) == []


def test_a_world_may_have_an_ai_in_it() -> None:
    assert ai_claims("The station AI runs the doors.") == ["AI"]  # the eval counts the word...
    assert self_claims("The station AI runs the doors.") == []  # ...the guard lets the world talk about it
    assert self_claims("As an AI, I cannot say.") == ["AI"] and self_claims("Being an AI is hard.") == ["AI"]
    assert self_claims("The AI core hums. I am a chatbot.") == ["chatbot"]
    text, guard, _ = _run(["The", " station", " AI", " runs", " the", " doors", "."])
    assert text == "The station AI runs the doors." and not guard.broke


def _run(chunks: list[str], refusal: str = "Not tonight.") -> tuple[str, InWorld, list[int]]:
    guard, out, released = InWorld(refusal), [], []
    for chunk in chunks:
        got = guard.feed([TextPiece(chunk)])
        released.append(len(got))
        out += got
        if guard.broke:
            break
    out += guard.finish()
    return "".join(p.text for p in out if isinstance(p, TextPiece)), guard, released


def test_a_clause_that_talks_like_a_model_is_never_let_go() -> None:
    text, guard, _ = _run(["Well", ",", " friend", ", as an", " AI", " language", " model", ", I", " can't", "."])
    assert text == "Well, friend, Not tonight."
    assert guard.broke and "AI" in guard.claims
    assert "as an" not in text  # the clause in progress was held, not half-spoken


def test_speech_goes_on_at_each_clause_mark_and_after_a_long_run_without_one() -> None:
    text, guard, released = _run(["Hello", " there", ". I", " cook"])
    assert not guard.broke and text == "Hello there. I cook"
    assert released[:3] == [0, 0, 3]  # held until the full stop, then let go up to it
    words = [" word"] * (HOLD_CHARS // 5 + 2)
    _, _, released = _run(["Start"] + words)
    assert sum(released) > 0  # a long clause without a mark is not held to the end


def test_actions_keep_their_place_in_the_speech() -> None:
    from npc_runtime.actions import Action

    guard = InWorld("No.")
    action = ActionPiece(Action(verb="give", object="menu", target="player"), text_offset=5)
    out = guard.feed([TextPiece("Here"), action, TextPiece(" you go.")])
    assert out[0] == TextPiece("Here") and out[1] is action


async def test_the_dialogue_cuts_the_reply_stops_the_model_and_says_the_refusal() -> None:
    llm = FakeLLM(["[give chopsticks player] Sure, as an AI language model I can hand you chopsticks. Enjoy!"])
    stats = TurnStats()
    turn = TurnInput(persona=JIN, scene=SCENE, history=(), player_text="Are you an AI? Chopsticks, please.", max_tokens=60)
    text, actions = [], []
    async for out in Dialogue(llm=llm).respond(turn, timeline=Timeline(), stats=stats):
        if isinstance(out, SpeechDelta):
            text.append(out.text)
        elif isinstance(out, ActionOut):
            actions.append(out.action.as_list())
    said = "".join(text)
    assert not ai_claims(said) and said.endswith(JIN.refusal) and said.startswith("Sure,")
    assert actions == [["give", "chopsticks", "player"]]  # what came before the claim stands
    assert stats.broke_character and llm.stopped_early == 1
