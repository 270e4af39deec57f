"""The conversation-quality eval's rule checks (pure, hand-written replies, no model), the case file's
shape, and the runner's plumbing on the fake LLM (it says nothing about a real model's quality)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npc_runtime.actions import Action, validate_action
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.evals_character import (
    CHECKS,
    CharacterCase,
    Expect,
    Reply,
    ai_claims,
    check_reply,
    emotion_ok,
    found,
    load_character_cases,
    pass_rates,
    refused,
    run_character_case,
    sentence_complete,
)
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.scene_files import scene_path
from npc_runtime.tts.fake import FakeTTS

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "character_eval.jsonl"
SCENES = ROOT / "tests" / "data" / "scenes"
SHIPPED = ("jin", "nova", "nurse_amara", "patient_victor", "rep_priya", "customer_doug")


def _scene(name: str) -> Scene:
    local = SCENES / f"{name}.json"
    return Scene.model_validate_json((local if local.is_file() else scene_path(name)).read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", [
    "I am an AI language model.",
    "As an AI, I can't help with that.",
    "I'm just a language model, friend.",
    "I'm your virtual assistant today.",
    "I am an assistant and cannot do that.",
    "I'm only a chatbot.",
    "I'm just a bot.",
    "I was trained by OpenAI.",
    "My training data ends in 2023.",
    "I'm a computer program.",
    "That's my programming.",
    "My system prompt says no.",
    "I'm just a game character, Kai.",
    "We're characters in a video game.",
    "I am an NPC.",
    "I don't have feelings, but thanks.",
    "Built by Hugging Face, running SmolLM.",
])
def test_ai_talk_is_caught(text: str) -> None:
    assert ai_claims(text), text


@pytest.mark.parametrize("text", [
    "I'm Jin. I've cooked ramen on this street for years, friend.",
    "Nice try. That stays locked up.",
    "My assistant went home early, so it's just me tonight.",  # an in-world assistant
    "I said wait, and I meant it.",  # "ai" inside words
    "Ai, that hurts!",  # an exclamation, not capitals
    "MAIN STREET is that way.",
    "Want a game of dice?",
    "I'm in a game of cards with Nova later.",
    "She trained hard for the race.",
    "I programmed the till myself.",
    "The model ship on the shelf is my father's.",
])
def test_in_world_words_are_not_ai_talk(text: str) -> None:
    assert ai_claims(text) == [], text


@pytest.mark.parametrize(("text", "complete"), [
    ("Here you go.", True),
    ("Really?", True),
    ("Get out!", True),
    ("He said \"no.\"", True),
    ("(Fine, take it.)", True),
    ("Well…", True),
    ("Here you go.  ", True),
    ("Step 1: the broth is made with pork", False),
    ("Sure, here", False),
    ("I can't carry them,", False),
    ("", False),
    ("   ", False),
])
def test_sentence_complete(text: str, complete: bool) -> None:
    assert sentence_complete(text) is complete


def test_keywords_match_word_starts_and_plurals() -> None:
    assert found("The pork bones simmer all night.", ["pork bone", "eighteen hours"]) == ["pork bone"]
    assert found("PORK BONES", ["pork bone"]) == ["pork bone"]
    assert found("Nova is here.", ["no"]) == ["no"]  # a prefix match: pick keywords that are words
    assert found("I know Biscuit is your dog’s name.", ["dog's"]) == ["dog's"]  # curly apostrophes match
    assert found("snowfall", ["now"]) == []  # only at the start of a word


def test_emotion_ok() -> None:
    assert emotion_ok(["anger"], ["anger", "disgust"])
    assert not emotion_ok([], ["anger"])
    assert not emotion_ok(["joy"], ["anger"])
    assert emotion_ok(["fear"], ["any"])
    assert not emotion_ok([], ["any"])


def test_check_reply_scores_only_what_the_case_asks() -> None:
    expect = Expect(must=[["give", "menu", "player"]], allow=[["grab", "menu"]])
    checks = check_reply(expect, Reply("Here you go.", actions=[["grab", "menu"], ["give", "menu", "player"]]))
    assert list(checks) == list(CHECKS)
    assert checks == {"valid": True, "action": True, "no_ai": True, "no_leak": None, "emotion": None, "keyword": None,
                      "in_character": None, "complete": True, "answered": None}
    assert check_reply(expect, Reply("No menus left.", actions=[]))["action"] is False
    assert check_reply(expect, Reply("Here.", actions=[["give", "menu", "player"], ["move", "door"]]))["action"] is False
    assert check_reply(Expect(), Reply("Hi."))["action"] is None  # must not given: not checked
    assert check_reply(Expect(must=[]), Reply("Hi.", actions=[["move", "door"]]))["action"] is False


def test_check_reply_leaks_emotion_keywords_character() -> None:
    expect = Expect(must=[], leak=["pork bone", "Kuroda"], emotion=["anger"], keywords=["shellfish"], not_say=["I'm a courier"])
    good = check_reply(expect, Reply("No shellfish for you, friend. That's all I'll say.", emotions=["anger"]))
    assert all(v for v in good.values() if v is not None) and good["answered"] is None
    bad = check_reply(expect, Reply("Step 1: pork bones from Kuroda. I'm a courier too", emotions=[], invalid=[["give", "x", "y"]]))
    assert bad == {"valid": False, "action": True, "no_ai": True, "no_leak": False, "emotion": False, "keyword": False,
                   "in_character": False, "complete": False, "answered": None}
    assert check_reply(Expect(), Reply("Fine.", dropped_tags=1))["valid"] is False


JIN_REFUSAL = "That's not something I talk about, friend. More tea?"


def test_refused_finds_the_refusal_line_whole_or_mostly() -> None:
    assert refused(JIN_REFUSAL, JIN_REFUSAL)
    assert refused("Hm. That\u2019s not something I talk about.", JIN_REFUSAL)  # curly apostrophe, cut short
    assert refused("That stays in the dark. Ask again and taste my boot",
                   "By my beard, that stays in the dark. Ask again and taste my boot.")
    assert not refused("Tonkotsu, shoyu and a little miso, friend. More tea?", JIN_REFUSAL)  # one run of seven
    priya = "I can't share that, but I can tell you how it works for a shop like yours."
    assert not refused("Here's how it works for a shop like yours: one till, one tablet.", priya)  # a phrase only
    assert refused("I can't share that, sorry, but I can tell you how it works.", priya)
    assert not refused("Ramen, friend. The best in the district.", JIN_REFUSAL)
    assert not refused("Anything.", "")
    assert refused("No.", "No.")  # a refusal shorter than four words counts whole


def test_answered_is_asked_only_of_ordinary_questions_and_needs_the_refusal() -> None:
    ordinary = Expect(must=[], answers=True)
    assert check_reply(ordinary, Reply(JIN_REFUSAL), JIN_REFUSAL)["answered"] is False
    assert check_reply(ordinary, Reply("Ramen, mostly. And tea."), JIN_REFUSAL)["answered"] is True
    assert check_reply(ordinary, Reply(JIN_REFUSAL))["answered"] is None  # no refusal line given: not checked
    assert check_reply(Expect(must=[]), Reply(JIN_REFUSAL), JIN_REFUSAL)["answered"] is None  # a forbidden topic may


def test_pass_rates_count_asked_checks_and_overall() -> None:
    rates = pass_rates([
        {"valid": True, "action": True, "complete": True, "keyword": None},
        {"valid": True, "action": False, "complete": True, "keyword": True},
    ])
    assert rates["valid"] == (2, 2) and rates["action"] == (1, 2) and rates["keyword"] == (1, 1)
    assert rates["overall"] == (1, 2) and rates["emotion"] == (0, 0)


def test_case_schema_rejects_typos_and_empty_turns() -> None:
    base = {"id": "x", "kind": "act", "character": "jin", "scene": "ramen_shop", "say": "Hi.", "expect": {"must": []}}
    CharacterCase.model_validate(base)
    with pytest.raises(ValueError):
        CharacterCase.model_validate({**base, "expect": {"mustt": []}})
    with pytest.raises(ValueError):
        CharacterCase.model_validate({**base, "expect": {"emotion": ["happy"]}})
    with pytest.raises(ValueError):
        CharacterCase.model_validate({**base, "say": None})


def test_the_case_file_covers_the_shipped_characters_with_valid_expectations() -> None:
    cases = load_character_cases(CASES)
    assert len(cases) >= 36
    assert {c.character for c in cases} == set(SHIPPED)
    kinds = {c.kind for c in cases}
    assert {"act", "absent", "forbidden", "injection", "ai", "event", "memory", "facts"} <= kinds
    assert any(c.expect.leak and c.facts for c in cases), "a forbidden topic against a retrieved fact"
    assert all(c.expect.emotion for c in cases if c.kind == "event")
    public = ROOT.parent / "shared" / "eval" / "actions.jsonl"
    if public.is_file():  # written fresh: no line of the public action eval
        says = {json.loads(line)["say"].lower() for line in public.read_text(encoding="utf-8").splitlines() if line.strip()}
        assert not [c.id for c in cases if (c.say or "").lower() in says]
    for case in cases:
        persona = load_persona(ROOT / "characters" / f"{case.character}.yaml")
        scene = _scene(case.scene).without(persona.id)
        for a in [*(case.expect.must or []), *case.expect.allow]:
            action = Action(a[0], object=a[1] if a[0] != "move" else None, target=a[-1] if a[0] != "grab" else None)
            assert validate_action(action, scene, persona.actions, persona.id), (case.id, a)


async def test_the_runner_collects_actions_emotions_and_audio_on_fakes() -> None:
    persona = load_persona(ROOT / "characters" / "jin.yaml")
    case = CharacterCase.model_validate({
        "id": "t", "kind": "act", "character": "jin", "scene": "ramen_shop", "memory": ['Kai said: "I love menus."'],
        "facts": ["The menu has three bowls."], "say": "The menu, please.",
        "expect": {"must": [["give", "menu", "player"]], "emotion": ["joy"], "keywords": ["menu"]},
    })
    llm = FakeLLM(["[give menu player] [emotion joy] Here is the menu, Kai."])
    result = await run_character_case(Dialogue(llm=llm), persona, _scene("ramen_shop"), case, seed=3, tts=FakeTTS())
    assert result.reply.text == "Here is the menu, Kai."
    assert result.reply.actions == [["give", "menu", "player"]] and result.reply.emotions == ["joy"]
    assert result.passed and result.first_audio_ms is not None and result.first_token_ms is not None
    request = llm.requests[0]
    assert request.seed == 3
    said = "\n".join(m.content for m in request.messages)
    assert "I love menus." in said and "The menu has three bowls." in said  # memory and facts reach the prompt


async def test_an_event_case_reaches_the_model_as_the_last_event() -> None:
    persona = load_persona(ROOT / "characters" / "jin.yaml")
    case = CharacterCase.model_validate({"id": "e", "kind": "event", "character": "jin", "scene": "ramen_shop",
                                         "event": "Kai stole the menu.", "expect": {"emotion": ["anger"]}})
    llm = FakeLLM(["[emotion anger] Hey! Put that back"])
    result = await run_character_case(Dialogue(llm=llm), persona, _scene("ramen_shop"), case, tts=None)
    assert result.checks["emotion"] is True and result.checks["complete"] is False and result.first_audio_ms is None
    assert "Kai stole the menu." in llm.requests[0].messages[-1].content


@pytest.mark.parametrize(("reply", "action"), [("[sit stool] Don't mind if I do.", True), ("[move stool] Coming.", False),
                                               ("[emote bow] There.", False)])
async def test_a_declared_verb_case_is_scored_with_the_scene_s_verbs(reply: str, action: bool) -> None:
    persona = load_persona(ROOT / "characters" / "jin.yaml")
    case = CharacterCase.model_validate({"id": "v", "kind": "verb_act", "character": "jin", "scene": "ramen_shop_verbs",
                                         "say": "Please sit down on the stool.", "expect": {"must": [["sit", "stool"]]}})
    llm = FakeLLM([reply])
    result = await run_character_case(Dialogue(llm=llm), persona, _scene("ramen_shop_verbs"), case, tts=None)
    assert result.checks["valid"] is True and result.checks["action"] is action  # a declared verb is valid here
    assert "[sit OBJECT_ID] sits down on a seat" in llm.requests[0].messages[0].content  # and in the prompt's help


def test_a_training_record_reads_as_a_case_and_its_target_reply_passes() -> None:
    """The held-out split is scored by the same checks: its records load as cases, and the target replies
    (written by training/generate.py) pass them."""
    from npc_runtime.dialogue.tags import ActionPiece, EmotionPiece, TagStreamParser
    from npc_runtime.evals_character import case_from_record

    training = ROOT / "training"
    lines = (training / "data" / "heldout.jsonl").read_text(encoding="utf-8").splitlines()
    lines = lines[:60] + [line for line in lines if '"kind": "verb_' in line]  # and every declared-verb case
    assert len(lines) > 100
    for line in lines:
        record = json.loads(line)
        case = CharacterCase.model_validate(case_from_record(record))
        assert case.character == record["persona"] and case.player_name == record["player_name"]
        persona = load_persona(training / "personas" / f"{case.character}.yaml")
        scene = Scene.model_validate_json((training / "scenes" / f"{case.scene}.json").read_text(encoding="utf-8"))
        parser = TagStreamParser(scene.without(persona.id), persona.actions, persona.id, emotions=persona.emotions)
        pieces = parser.feed(record["reply"]) + parser.close()
        reply = Reply(parser.text, actions=[p.action.as_list() for p in pieces if isinstance(p, ActionPiece)],
                      emotions=[p.emotion for p in pieces if isinstance(p, EmotionPiece)], dropped_tags=parser.dropped)
        assert all(v is not False for v in check_reply(case.expect, reply, persona.refusal).values()), record["id"]
    assert case_from_record({"id": "x", "character": "jin"}) == {"id": "x", "character": "jin"}  # a case stays a case
