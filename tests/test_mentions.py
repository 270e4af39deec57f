"""The scene entities a player's line names (npc_runtime.dialogue.mentions) and where the tuned prompt shows them."""

from __future__ import annotations

from npc_runtime.dialogue.history import HistoryEntry
from npc_runtime.dialogue.mentions import MAX_MENTIONS, mentioned, mentions_message
from npc_runtime.dialogue.prompt import build_messages
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene

SCENE = Scene.model_validate({
    "name": "a hangar",
    "objects": [
        {"id": "fuel_can", "description": "a jerry can of aviation fuel"},
        {"id": "kettle", "description": "a dented kettle"},
        {"id": "tea_kettle", "description": "the good tea kettle"},
        {"id": "tea_flask", "description": "a flask of sweet tea"},
        {"id": "tool_box", "description": "a red tool box"},
    ],
    "locations": [{"id": "runway", "description": "the grass runway"}],
    "characters": [
        {"id": "player", "name": "Kai"},
        {"id": "nun_passenger", "name": "Sister Clara", "description": "a nun flying upriver"},
        {"id": "mechanic_tomi", "name": "Tomi"},
        {"id": "jax", "name": "Jax"},
    ],
})


def ids(text: str) -> list[str]:
    return [m.entity.id for m in mentioned(text, SCENE, self_id="jax")]


def test_names_ids_descriptions_and_last_words_find_their_entity() -> None:
    assert ids("Make sure Sister Clara gets the fuel can.") == ["nun_passenger", "fuel_can"]
    assert ids("Clara wants the jerry can of aviation fuel.") == ["nun_passenger", "fuel_can"]  # a name's own word
    assert ids("Pass Tomi the flask, would you?") == ["mechanic_tomi", "tea_flask"]  # an id's last word
    assert ids("Walk me to the runway.") == ["runway"]
    assert ids("SISTER   CLARA needs the Kettles.") == ["nun_passenger", "kettle"]  # case, spacing, a plural


def test_the_longest_name_wins_and_common_words_are_never_names() -> None:
    assert ids("Grab the tea kettle.") == ["tea_kettle"]  # not kettle as well
    assert ids("Can you hand me that box? I can wait.") == []  # "can", "box" alone name nothing
    assert ids("Hand me the tool box.") == ["tool_box"]
    assert ids("Hello Jax, I'm Kai.") == []  # the speaker and the player need no id
    assert ids("Kettle, kettle, kettle.") == ["kettle"]  # named thrice, shown once
    assert ids("") == []


def test_at_most_a_few_are_shown() -> None:
    line = "The kettle, the flask, the fuel can, the runway, Tomi and Sister Clara."
    assert len(mentioned(line, SCENE)) == MAX_MENTIONS


def test_the_message_quotes_what_was_said() -> None:
    message = mentions_message(mentioned("Give Clara the flask.", SCENE), player_name="Kai")
    assert message.role == "system"
    assert message.content == 'Kai\'s line names: "Clara" = nun_passenger; "flask" = tea_flask.'
    assert mentions_message(mentioned("the flask", SCENE), player_name=None).content.startswith("The player's line")


def test_only_the_tuned_profile_shows_them_right_before_the_line() -> None:
    persona = Persona.model_validate({"id": "jax", "name": "Jax", "role": "bush pilot", "refusal": "Classified."})
    history = [HistoryEntry("player", "Hi."), HistoryEntry("character", "Hey.")]
    line = "Give Sister Clara the fuel can."
    tuned, _ = build_messages(persona, ["give"], SCENE.without("jax"), history, player_text=line, player_name="Kai",
                              profile="tuned")
    assert tuned[-1].content == line
    assert tuned[-2].content == 'Kai\'s line names: "Sister Clara" = nun_passenger; "fuel can" = fuel_can.'
    assert sum("line names" in m.content for m in tuned) == 1  # the earlier turns get none
    for profile in ("compact", "full"):
        messages, _ = build_messages(persona, ["give"], SCENE.without("jax"), history, player_text=line,
                                     player_name="Kai", profile=profile)
        assert not any("line names" in m.content for m in messages)
    quiet, _ = build_messages(persona, ["give"], SCENE.without("jax"), history, player_text="How are you?",
                              player_name="Kai", profile="tuned")
    assert not any("line names" in m.content for m in quiet)
