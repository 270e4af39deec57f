"""Pure unit tests of the prompt profiles (compact, full, tuned), their choice, the history shaping and the
training-record renderer (no model)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import CHARACTERS, EVAL_DIR
from pydantic import ValidationError

from npc_runtime.actions import parse_action
from npc_runtime.dialogue.history import BLOCK, shape_history
from npc_runtime.dialogue.prompt import (
    PROFILES,
    HistoryEntry,
    TrainingRecord,
    build_messages,
    choose_profile,
    engine_profile,
    prefix_key,
    render_record,
)
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.settings import Settings

VERBS = ["move", "grab", "give"]
_TAG = re.compile(r"\[([^\[\]]*)\]")


def _scene(name: str) -> Scene:
    return Scene.model_validate_json((EVAL_DIR / "scenes" / name).read_text(encoding="utf-8"))


@pytest.fixture
def jin() -> Persona:
    return load_persona(CHARACTERS / "jin.yaml")


def _render(persona: Persona, scene: Scene, profile: str, **kw: Any) -> tuple[list[Any], int]:
    kw.setdefault("player_text", "Hi.")
    return build_messages(persona, VERBS, scene.without(persona.id), kw.pop("history", []), player_name="Kai",
                          profile=profile, **kw)  # type: ignore[arg-type]


def test_compact_is_the_measured_prompt(jin: Persona) -> None:
    """compact keeps what was measured to help the 135M model: a short persona, generated examples, no backstory,
    no authored example, no emotion instructions (unchanged from before the profiles)."""
    messages, n = _render(jin, _scene("ramen_shop.json"), "compact")
    system = messages[0].content
    assert "eighteen hours" not in system and "friend" not in system.split("If asked")[0]
    assert "[emotion" not in system
    assert n == 1 + 2 * 9  # nine generated examples
    assert "Sure, here's the menu. [give menu player]" not in [m.content for m in messages[1:n]]
    assert build_messages(jin, VERBS, _scene("ramen_shop.json").without("jin"), [], player_text="Hi.", player_name="Kai")[0] == messages


def test_full_carries_the_whole_persona(jin: Persona) -> None:
    messages, n = _render(jin, _scene("ramen_shop.json"), "full")
    system = messages[0].content
    assert jin.backstory.strip() in system
    assert jin.speaking_style.strip() in system
    assert all(goal in system for goal in jin.goals) and all(trait in system for trait in jin.personality)
    assert all(topic in system for topic in jin.forbidden_topics) and jin.refusal in system
    assert "[emotion NAME]" in system and "anger" in system and "joy" in system  # which tags exist and when
    assert "never say or hint that you are an AI" in system
    assert "finish every sentence" in system
    # the author's examples, as written: every one fits the scene it was written for
    pairs = [(messages[i].content, messages[i + 1].content) for i in range(1, n, 2)]
    assert pairs == [(e.player, e.reply) for e in jin.examples]


def test_full_shows_examples_that_do_not_fit_the_scene_as_style_only(jin: Persona) -> None:
    """In Nova's lab the ramen shop's ids do not exist: those examples are not exchanges (their tags would teach
    an impossible action); their words are still shown as the character's voice."""
    lab = _scene("lab.json")
    messages, n = _render(jin, lab, "full")
    replies = [messages[i + 1].content for i in range(1, n, 2)]
    for reply in replies:
        for tag in _TAG.findall(reply):
            assert parse_action(tag, lab.without("jin"), VERBS, "jin") is not None, tag
    assert "No forks in this shop, friend. Chopsticks only." in replies  # no tag: fits anywhere
    assert "Sure, here's the menu. [give menu player]" not in replies
    assert '"Sure, here\'s the menu."' in messages[0].content  # style only, tags removed


def test_tuned_has_no_few_shot_examples(jin: Persona) -> None:
    messages, n = _render(jin, _scene("ramen_shop.json"), "tuned")
    assert n == 1 and messages[0].role == "system"
    system = messages[0].content
    assert jin.backstory.strip() in system and jin.refusal in system and "[emotion NAME]" in system
    assert "[give OBJECT_ID PERSON_ID]" in system and "ramen_bowl" in system
    assert [m.role for m in messages[n:]] == ["user"]


@pytest.mark.parametrize("profile", PROFILES)
def test_each_prefix_is_stable_and_keyed_apart(jin: Persona, profile: str) -> None:
    scene = _scene("ramen_shop.json")
    first, n1 = _render(jin, scene, profile)
    history = [HistoryEntry("player", "Hi."), HistoryEntry("character", "Hello, friend.")]
    later, n2 = _render(jin, scene, profile, history=history, player_text="Hand me the menu.",
                        memory_summary='Kai said: "I like firm noodles."', facts=["The shop closes at three."])
    assert n1 == n2 and first[:n1] == later[:n2]  # nothing that changes per turn sits in the prefix
    assert later[-1].content == "Hand me the menu."
    keys = {prefix_key(jin, scene, p) for p in PROFILES}  # type: ignore[arg-type]
    assert len(keys) == len(PROFILES)


def test_auto_follows_the_persona_then_the_engine(jin: Persona) -> None:
    class VLLMish:
        name = "vllm:big-model"

    class VLLMTiny:
        name = "vllm:smollm2-135m-instruct"  # this project's vLLM default on a CPU: the prompt follows the model

    class Tuned:
        name = "llama_cpp"
        prompt_profile = "tuned"

    class Gated:
        name = "llama_cpp"
        inner = Tuned()

    assert engine_profile(FakeLLM()) == "compact"
    assert engine_profile(VLLMish()) == "full" and engine_profile(VLLMTiny()) == "compact"
    assert engine_profile(Tuned()) == "tuned" and engine_profile(Gated()) == "tuned"
    assert choose_profile("auto", jin, engine="full") == "full"
    wants_full = jin.model_copy(update={"llm": jin.llm.model_copy(update={"prompt_profile": "full"})})
    assert choose_profile("auto", wants_full, engine="compact") == "full"
    assert choose_profile("compact", wants_full, engine="full") == "compact"  # a forced setting wins
    assert Dialogue(llm=FakeLLM()).profile_for(jin) == "compact"
    assert Dialogue(llm=FakeLLM(), prompt_profile="full").profile_for(jin) == "full"


def test_the_setting_and_the_persona_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NPC_PROMPT_PROFILE", "full")
    assert Settings().prompt_profile == "full"
    monkeypatch.setenv("NPC_PROMPT_PROFILE", "large")
    with pytest.raises(ValidationError):
        Settings()
    text = (CHARACTERS / "jin.yaml").read_text(encoding="utf-8").replace("  max_tokens: 60\n", "  max_tokens: 60\n  prompt_profile: tuned\n")
    (tmp_path / "jin.yaml").write_text(text, encoding="utf-8")
    assert load_persona(tmp_path / "jin.yaml").llm.prompt_profile == "tuned"


# -- the conversation so far: the character's own replies


def test_only_the_last_replies_stay_as_turns_and_older_ones_become_facts() -> None:
    history = [
        HistoryEntry("player", "My name is Kai and I'm a courier."),
        HistoryEntry("character", "I'm sorry, I can't carry them. [give menu player]"),
        HistoryEntry("player", "Hand me the chopsticks."),
        HistoryEntry("character", "I'm sorry, I can't carry them."),
        HistoryEntry("player", "Please?"),
        HistoryEntry("character", "I'm sorry, I can't carry them."),
        HistoryEntry("player", "The sake then."),
        HistoryEntry("character", "Here. [give sake_bottle player]"),
    ]
    earlier, kept = shape_history(history, replies=2, partner_name="Kai", block=1)  # the cut at every turn
    assert earlier == ['Kai said: "My name is Kai and I\'m a courier."', "you gave menu", 'Kai asked: "Hand me the chopsticks."']
    assert [e.kind for e in kept] == ["player", "character", "player", "character"]
    said = [e.text for e in kept if e.kind == "character"]
    assert said == ["I'm sorry, I can't carry them.", "Here. [give sake_bottle player]"]
    assert not any("can't carry" in fact for fact in earlier)  # the character's words never become facts
    _, repeats = shape_history(history[:6], replies=3, partner_name="Kai")
    assert [e.text for e in repeats if e.kind == "character"].count("I'm sorry, I can't carry them.") == 1  # a repeat once


def test_the_prompt_holds_few_of_the_characters_replies(jin: Persona) -> None:
    history = []
    for i in range(12):
        history += [HistoryEntry("player", f"Tell me about bowl {i}."), HistoryEntry("character", f"Bowl {i} is good.")]
    for profile, replies in (("compact", 2), ("tuned", 2), ("full", 6)):
        messages, n = _render(jin, _scene("ramen_shop.json"), profile, history=history)
        tail = messages[n:]
        shown = sum(m.role == "assistant" for m in tail)
        assert replies <= shown < replies + BLOCK, profile  # the window moves BLOCK replies at a time
        assert tail[0].role == "system" and tail[0].content.startswith("Earlier in this conversation:")
        folded = 11 - shown  # the newest reply no longer shown
        assert f'Kai said: "Tell me about bowl {folded}."' in tail[0].content and "is good" not in tail[0].content


def test_compact_remembers_only_what_the_player_said_about_themselves(jin: Persona) -> None:
    """A 135M model shown old requests, gifts and promises apologizes or loops on them (measured: prompt.py);
    the full and tuned prompts get every fact."""
    summary = "\n".join(['Kai said: "I\'m allergic to eggs."', 'Kai asked: "Could you hand me the chopsticks?"',
                         "you gave chopsticks", 'you promised: "Tomorrow at ten."', "event: Kai paid 20 coins",
                         "Kai likes firm noodles."])  # the last: a line of another summarizer's own
    compact, n = _render(jin, _scene("ramen_shop.json"), "compact", memory_summary=summary)
    assert compact[n].content.splitlines()[1:] == ['- Kai said: "I\'m allergic to eggs."', "- Kai likes firm noodles."]
    for profile in ("full", "tuned"):
        messages, n = _render(jin, _scene("ramen_shop.json"), profile, memory_summary=summary)
        assert len(messages[n].content.splitlines()) == 1 + 6
    only_requests, n = _render(jin, _scene("ramen_shop.json"), "compact", memory_summary="you gave menu")
    assert [m.role for m in only_requests[n:]] == ["user"]  # nothing left to remember: no memory message at all


# -- training records


def _record(**update: Any) -> dict[str, Any]:
    import yaml

    persona = yaml.safe_load((CHARACTERS / "jin.yaml").read_text(encoding="utf-8"))
    record = {
        "persona": persona, "scene": _scene("ramen_shop.json").model_dump(), "player_name": "Kai",
        "memory": ['Kai said: "I\'m allergic to eggs."', "you gave ramen_bowl"],
        "facts": ["The shop closes at three in the morning."],
        "history": [{"kind": "player", "text": "Hi."}, {"kind": "character", "text": "Welcome, friend."}],
        "event": "Kai knocks a bowl off the counter.", "player": "Oops. Sorry!",
        "reply": "[emotion surprise] Careful there, friend. [grab ramen_bowl]", "id": "t1",
    }
    record.update(update)
    return record


def test_a_record_renders_as_the_runtime_builds_the_same_turn(jin: Persona) -> None:
    record = _record()
    messages, reply = render_record(record)
    assert reply == record["reply"]
    history = [HistoryEntry("player", "Hi."), HistoryEntry("character", "Welcome, friend."),
               HistoryEntry("event", "Kai knocks a bowl off the counter.")]
    runtime, n = build_messages(jin, jin.actions, _scene("ramen_shop.json").without("jin"), history, player_text="Oops. Sorry!",
                                player_name="Kai", memory_summary="\n".join(record["memory"]), facts=record["facts"], profile="tuned")
    assert messages == runtime and n == 1
    assert messages[-1].content == "(Event: Kai knocks a bowl off the counter.)\nOops. Sorry!"
    assert "allergic to eggs" in messages[1].content and "three in the morning" in messages[-2].content
    assert render_record(record, profile="compact")[0][0].content != messages[0].content


def test_a_record_in_a_scene_with_declared_verbs_renders_them_as_a_session_does(jin: Persona) -> None:
    from npc_runtime.dialogue.turn import allowed_verbs

    scene = Scene.model_validate_json((CHARACTERS.parent / "scenes" / "ramen_shop_verbs.json").read_text(encoding="utf-8"))
    record = _record(scene=scene.model_dump(), reply="[sit stool] Don't mind if I do.")
    messages, _ = render_record(record)
    history = [HistoryEntry("player", "Hi."), HistoryEntry("character", "Welcome, friend."),
               HistoryEntry("event", "Kai knocks a bowl off the counter.")]
    runtime, _ = build_messages(jin, allowed_verbs(jin, scene), scene.without("jin"), history, player_text="Oops. Sorry!",
                                player_name="Kai", memory_summary="\n".join(record["memory"]), facts=record["facts"], profile="tuned")
    assert messages == runtime
    assert "[sit OBJECT_ID] sits down on a seat" in messages[0].content and "[emote wave|bow|shrug]" in messages[0].content


def test_a_bad_record_is_refused() -> None:
    with pytest.raises(ValidationError):
        render_record(_record(speaker="jin"))  # unknown key
    with pytest.raises(ValidationError):
        render_record(_record(player=None, event=None))  # nothing happens
    assert TrainingRecord.model_validate(_record(event=None)).player == "Oops. Sorry!"
