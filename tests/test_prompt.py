"""Pure unit tests of the prompt builder (no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import CHARACTERS, EVAL_DIR

from npc_runtime.dialogue.grammar import parse_action
from npc_runtime.dialogue.prompt import HistoryEntry, build_messages, prefix_key, scene_examples, tags_first, turn_messages
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene

DEV_SCENES = Path(__file__).resolve().parent / "data" / "scenes"
VERBS = ["move", "grab", "give"]
_TAG = re.compile(r"\[([^\[\]]*)\]")


def _scene(path: Path) -> Scene:
    return Scene.model_validate_json(path.read_text(encoding="utf-8"))


SCENES = {p.name: _scene(p) for p in [*sorted((EVAL_DIR / "scenes").glob("*.json")), *sorted(DEV_SCENES.glob("*.json"))]}


@pytest.fixture(params=["jin", "nova"])
def persona(request: pytest.FixtureRequest):
    return load_persona(CHARACTERS / f"{request.param}.yaml")


def test_prefix_is_stable_across_turns(persona) -> None:
    scene = SCENES["ramen_shop.json"].without(persona.id)
    m1, n1 = build_messages(persona, VERBS, scene, [], player_text="Hi.", player_name="Kai")
    history = [HistoryEntry("player", "Hi."), HistoryEntry("character", "Hello, friend.")]
    m2, n2 = build_messages(persona, VERBS, scene, history, player_text="Hand me the menu.", player_name="Kai")
    assert n1 == n2 and m1[:n1] == m2[:n2]
    assert m2[-1].content == "Hand me the menu."
    assert persona.name in m1[0].content


def test_prefix_changes_with_the_scene(persona) -> None:
    a, b = SCENES["ramen_shop.json"].without(persona.id), SCENES["forge.json"].without(persona.id)
    ma, na = build_messages(persona, VERBS, a, [], player_text="Hi.", player_name="Kai")
    mb, nb = build_messages(persona, VERBS, b, [], player_text="Hi.", player_name="Kai")
    assert ma[:na] != mb[:nb]
    assert prefix_key(persona, a) != prefix_key(persona, b)
    assert prefix_key(persona, a) == prefix_key(persona, SCENES["ramen_shop.json"].without(persona.id))


@pytest.mark.parametrize("name", sorted(SCENES))
def test_scene_ids_appear_in_the_system_message(persona, name: str) -> None:
    scene = SCENES[name].without(persona.id)
    messages, _ = build_messages(persona, VERBS, scene, [], player_text="Hi.", player_name="Kai")
    for entity_id in scene.all_ids():
        assert entity_id in messages[0].content


@pytest.mark.parametrize("name", sorted(SCENES))
def test_examples_only_use_ids_of_the_scene(persona, name: str) -> None:
    scene = SCENES[name].without(persona.id)
    messages, prefix_len = build_messages(persona, VERBS, scene, [], player_text="Hi.", player_name="Kai")
    replies = [m.content for m in messages[1:prefix_len] if m.role == "assistant"]
    assert replies, "the prefix has no few-shot example"
    tags = [t for r in replies for t in _TAG.findall(r)]
    assert tags
    for tag in tags:
        assert parse_action(tag, scene, VERBS, persona.id) is not None, tag
    # roles alternate user/assistant after the system message
    assert [m.role for m in messages[1:prefix_len]] == ["user", "assistant"] * ((prefix_len - 1) // 2)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_generated_examples_cover_each_verb_and_no_tag_answers(name: str) -> None:
    scene = SCENES[name].without("jin")
    pairs = scene_examples(scene, self_id="jin", verbs=VERBS)
    verbs_used = {t.split()[0] for _, r in pairs for t in _TAG.findall(r)}
    assert verbs_used == set(VERBS)
    assert any(not _TAG.search(r) for _, r in pairs)  # refusals / small talk teach "no tag"
    for _, reply in pairs:
        assert reply == tags_first(reply)


def test_no_verbs_means_no_tags(persona) -> None:
    scene = SCENES["lab.json"].without(persona.id)
    messages, prefix_len = build_messages(persona, [], scene, [], player_text="Hi.", player_name="Kai")
    assert not any(_TAG.search(m.content) for m in messages[1:prefix_len])


def test_examples_handle_a_sparse_scene(persona) -> None:
    scene = Scene(objects=[{"id": "cup"}], characters=[{"id": "player", "name": "Kai"}])
    messages, prefix_len = build_messages(persona, VERBS, scene, [], player_text="Hi.", player_name="Kai")
    for m in messages[1:prefix_len]:
        for tag in _TAG.findall(m.content):
            assert parse_action(tag, scene, VERBS, persona.id) is not None, tag


def test_tags_first() -> None:
    assert tags_first("Sure. [grab x] [give x player] Enjoy!") == "[grab x] [give x player] Sure. Enjoy!"
    assert tags_first("No tag here.") == "No tag here."
    assert tags_first("[move door]") == "[move door]"


def test_events_are_folded_into_the_next_user_message() -> None:
    history = [
        HistoryEntry("event", "The lights went out."),
        HistoryEntry("player", "What happened?"),
        HistoryEntry("character", "Power cut."),
        HistoryEntry("event", "A siren wails."),
    ]
    messages = turn_messages(history, player_text="Should we leave?")
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert messages[0].content == "(Event: The lights went out.)\nWhat happened?"
    assert messages[-1].content == "(Event: A siren wails.)\nShould we leave?"


def test_dev_set_is_well_formed() -> None:
    lines = (Path(__file__).resolve().parent / "data" / "dev_actions.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    assert len(cases) >= 40
    assert len({c["id"] for c in cases}) == len(cases)
    for case in cases:
        persona = load_persona(CHARACTERS / f"{case['character']}.yaml")
        scene = SCENES[case["scene"]].without(persona.id)
        for action in case["must"] + case["allow"]:
            assert parse_action(" ".join(action), scene, VERBS, persona.id) is not None, (case["id"], action)


def test_brief_memory_and_facts_take_their_places() -> None:
    from npc_runtime.dialogue.prompt import HistoryEntry as H
    from npc_runtime.dialogue.prompt import build_messages
    from npc_runtime.persona.loader import load_persona

    persona = load_persona(CHARACTERS / "jin.yaml")
    history = [H("player", "Hi."), H("character", "Welcome, friend.")]
    plain, plain_prefix = build_messages(persona, ["give"], Scene(), history, player_text="Broth?", player_name="Kai")
    messages, prefix = build_messages(persona, ["give"], Scene(), history, player_text="Broth?", player_name="Kai",
                                      brief="You are in a hurry.", memory_summary="Kai likes firm noodles.",
                                      facts=["The broth simmers for eighteen hours."])
    assert prefix == plain_prefix and messages[:prefix] == plain[:prefix]  # the cached prefix is unchanged
    tail = [(m.role, m.content) for m in messages[prefix:]]
    assert tail[0] == ("system", "You are in a hurry.")
    assert tail[1][0] == "system" and "Kai likes firm noodles." in tail[1][1] and "with Kai" in tail[1][1]
    assert tail[-2][0] == "system" and "eighteen hours" in tail[-2][1]  # facts right before the player's line
    assert tail[-1] == ("user", "Broth?")
