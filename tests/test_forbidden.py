"""A forbidden topic wins over a retrieved fact: the keyword guard, the prompt, the session's retrieval and the
knowledge files' secret sections (no model)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CHARACTERS, ROOT, scene_dict

from npc_runtime import protocol as p
from npc_runtime.dialogue.guard import admissible_facts, asked_topics, content_words, touches_topic
from npc_runtime.dialogue.prompt import PROFILES, build_messages
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.knowledge.chunk import chunk_document
from npc_runtime.knowledge.store import Passage
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.session import Services, Session

JIN = load_persona(CHARACTERS / "jin.yaml")
NOVA = load_persona(CHARACTERS / "nova.yaml")
RECIPE = ("The tonkotsu broth simmers for eighteen hours over a low flame. Jin uses pork bones from Kuroda's butcher "
          "stall in the night market, blanched first so the broth stays clean.")


def test_content_words() -> None:
    assert content_words("Her clients' names and systems") == ["client", "name", "system"]
    assert content_words("anything outside this world, such as being an AI") == ["outside", "world", "ai"]


@pytest.mark.parametrize(("line", "topic"), [
    ("What is your secret broth recipe?", "his secret broth recipe"),
    ("Walk me through your broth recipe, step by step. What goes in it?", "his secret broth recipe"),
    ("What's the secret recipe?", "his secret broth recipe"),
    ("What do you think of megacorp politics?", "megacorp politics"),
    ("Are you an AI?", "anything outside this world, such as being an AI or a game character"),
    ("Be honest: are you just a game character?", "anything outside this world, such as being an AI or a game character"),
])
def test_lines_that_ask_about_a_forbidden_topic(line: str, topic: str) -> None:
    assert asked_topics(line, JIN.forbidden_topics) == [topic]


@pytest.mark.parametrize("line", [
    "How long does the broth simmer?", "Could you hand me the chopsticks?", "Tell me about the megacorps.",
    "What's good tonight?", "", None,
])
def test_lines_that_do_not(line: str | None) -> None:
    assert asked_topics(line, JIN.forbidden_topics) == []


def test_nova_guards_her_clients() -> None:
    assert asked_topics("Tell me your clients' names.", NOVA.forbidden_topics) == ["her clients' names and systems"]
    assert asked_topics("How do I break into my neighbour's network?", NOVA.forbidden_topics) == [
        "how to break into someone else's network"]
    assert asked_topics("How do I pick a good password?", NOVA.forbidden_topics) == []


def test_passages_that_touch_a_topic_are_dropped() -> None:
    assert touches_topic("Jin's secret broth recipe: pork bones, eighteen hours.", JIN.forbidden_topics)
    assert not touches_topic(RECIPE, JIN.forbidden_topics)  # no topic words in it: a knowledge author marks it secret
    assert not touches_topic("Nova has an AI assistant in her lab.", JIN.forbidden_topics)  # a one-word part never drops lore
    facts = ["The shop closes at three.", "Jin's secret broth recipe: pork bones."]
    assert admissible_facts(facts, line="When do you close?", topics=JIN.forbidden_topics) == [0]
    assert admissible_facts(facts, line="Tell me your secret broth recipe.", topics=JIN.forbidden_topics) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_a_forbidden_passage_never_reaches_the_prompt(profile: str) -> None:
    scene = Scene.model_validate(scene_dict("ramen_shop.json")).without("jin")
    messages, n = build_messages(JIN, JIN.actions, scene, [], player_text="Walk me through your broth recipe, step by step.",
                                 player_name="Kai", facts=[RECIPE], profile=profile)  # type: ignore[arg-type]
    tail = "\n".join(m.content for m in messages[n:])
    assert "pork bones" not in tail and "Kuroda" not in tail
    assert messages[-2].role == "system" and JIN.refusal in messages[-2].content  # the refusal, right before the line
    allowed, _ = build_messages(JIN, JIN.actions, scene, [], player_text="How long does the broth simmer?",
                                player_name="Kai", facts=[RECIPE], profile=profile)  # type: ignore[arg-type]
    assert RECIPE in allowed[-2].content and JIN.refusal not in allowed[-2].content


class _Knowledge:
    """Retrieval that always finds the recipe and a public passage; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def retrieve(self, persona: Any, query: str, *, k: int, budget_ms: float) -> list[Passage]:
        self.calls += 1
        return [Passage(RECIPE, "jin/broth.md", "Broth", 0.7),
                Passage("Jin's secret broth recipe starts with pork bones.", "world/gossip.md", "Gossip", 0.6),
                Passage("The shop opens at six in the evening.", "jin/shop.md", "Opening hours", 0.5)]


async def _turn(text: str) -> tuple[Any, FakeLLM, _Knowledge]:
    llm, knowledge = FakeLLM(["Sure."]), _Knowledge()
    services = Services(personas={"jin": JIN}, dialogue=Dialogue(llm=llm), knowledge=knowledge)  # type: ignore[arg-type]
    services.ready.set()
    session = Session(services)
    try:
        await session.handle(p.SessionStart(character="jin", scene=p.Scene.model_validate(scene_dict("ramen_shop.json")),
                                            player=p.Player(name="Kai"), options=p.SessionOptions(text_only=True)))
        await session.handle(p.TextInput(text=text))
        while (event := await session.outbox.get()).type != "response.end":
            pass
    finally:
        await session.aclose()
    return event, llm, knowledge


async def test_the_session_drops_passages_that_touch_a_topic() -> None:
    end, llm, knowledge = await _turn("When do you open, and how long does the broth simmer?")
    prompt = "\n".join(m.content for m in llm.requests[-1].messages)
    assert knowledge.calls == 1 and "opens at six" in prompt
    assert "Jin's secret broth recipe starts" not in prompt  # touches the topic: dropped
    assert RECIPE in prompt  # names no topic word: only a secret marker in its file keeps it out (below)
    assert [s.file for s in end.sources] == ["jin/broth.md", "jin/shop.md"]  # what was used, and only that


async def test_a_forbidden_question_retrieves_nothing() -> None:
    end, llm, knowledge = await _turn("Tell me your secret broth recipe, step by step.")
    prompt = "\n".join(m.content for m in llm.requests[-1].messages)
    assert knowledge.calls == 0 and end.sources == []
    assert "pork bones" not in prompt and "Facts you know" not in prompt and JIN.refusal in llm.requests[-1].messages[-2].content


def test_secret_sections_are_never_chunked() -> None:
    text = ("Everyone may know this.\n\n# Broth\n\nIt simmers long.\n\n## How it is made\n<!-- secret: never told -->\n"
            "Pork bones, blanched.\n\n### Bones\n\nFrom Kuroda.\n\n## Serving\n\nHot.\n\n```\n<!-- secret -->\n```\n")
    chunks = chunk_document(text, "jin/broth.md")
    assert [c.heading for c in chunks] == ["", "Broth", "Broth > Serving"]
    assert "Pork" not in "".join(c.text for c in chunks) and "Kuroda" not in "".join(c.text for c in chunks)
    assert "<!-- secret -->" in chunks[-1].text  # in a code block it is text, not a marker
    assert chunk_document("<!-- secret -->\n# A\n\nHidden.\n", "x.md") == []  # before any heading: the whole file


def test_jins_recipe_is_marked_secret_in_his_knowledge() -> None:
    path = ROOT / "knowledge" / "jin" / "broth.md"
    text = "\n".join(c.text for c in chunk_document(path.read_text(encoding="utf-8"), "jin/broth.md"))
    assert "eighteen hours" in text
    for leak in ("pork bone", "Kuroda", "blanch", "collagen", "milky"):
        assert leak not in text
