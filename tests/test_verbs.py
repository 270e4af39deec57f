"""Verbs as data (issue 16): the game's own actions, declared in the scene, go through the same grammar, tag parser,
prompt help, protocol events and checks as the built-ins. Unit tests and a real server with the fake engine here;
the real embedded model in test_declared_verbs_on_the_embedded_model (engine tier), vLLM in tests/test_e2e_vllm.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CHARACTERS
from server_fixture import registry, serving

from npc_runtime import protocol as p
from npc_runtime.actions import BUILTINS, Action, action_problem, parse_action, usable_verbs, validate_action, vocabulary
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.grammar import build_action_grammar
from npc_runtime.dialogue.prompt import build_messages
from npc_runtime.dialogue.tags import TagStreamParser
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import ProtocolError
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.session import Services

ROOT = Path(__file__).resolve().parents[1]
SCENE = json.loads((ROOT / "scenes" / "ramen_shop_verbs.json").read_text())
SIT = {"name": "sit", "description": "sits down on a seat", "args": [{"name": "seat", "type": "object"}]}


def scene(**changes: Any) -> Scene:
    return Scene.model_validate({**SCENE, **changes})


def test_the_builtins_are_defined_like_any_verb() -> None:
    assert [v.name for v in BUILTINS] == ["move", "grab", "give"]
    give = vocabulary(None)["give"]
    assert [(a.name, a.type) for a in give.args] == [("object", "object"), ("target", "character")]
    assert Action("give", object="menu", target="player").arguments == {"object": "menu", "target": "player"}


def test_declared_verbs_parse_and_validate_like_the_builtins() -> None:
    s = scene()
    verbs = ["move", "grab", "give"]
    assert usable_verbs(s, verbs, self_id="jin") == ("move", "grab", "give", "sit", "emote")
    sit = parse_action("sit stool", s, verbs, "jin")
    assert sit == Action("sit", args=(("seat", "stool"),)) and sit.as_tag() == "[sit stool]" and sit.object is None
    bow = parse_action("emote  bow", s, verbs, "jin")
    assert bow is not None and bow.arguments == {"gesture": "bow"} and validate_action(bow, s, verbs, "jin")
    for bad in ("emote dance", "sit door", "sit", "sit stool stool", "dance stool", "emote player"):
        assert parse_action(bad, s, verbs, "jin") is None, bad
    assert action_problem("emote dance", s, verbs, "jin") == "'dance' is not one of wave, bow, shrug"
    assert action_problem("sit door", s, verbs, "jin") == "'door' is not an object in the scene"
    assert action_problem("dance stool", s, verbs, "jin").startswith("unknown verb 'dance'")
    # a scene without the verbs: no such tag
    assert parse_action("sit stool", scene(verbs=[]), verbs, "jin") is None


def test_every_argument_type() -> None:
    s = scene(verbs=[
        {"name": "open_door", "description": "opens a door", "args": [{"name": "door", "type": "location"}]},
        {"name": "follow", "description": "follows someone", "args": [{"name": "who", "type": "character"}]},
        {"name": "point_at", "description": "points at anything", "args": [{"name": "what", "type": "any"}]},
        {"name": "trade", "description": "trades a thing for another with someone",
         "args": [{"name": "mine", "type": "object"}, {"name": "theirs", "type": "object"}, {"name": "with_whom", "type": "character"}]},
        {"name": "nod", "description": "nods", "args": []},
    ])
    ok = {"open_door door": True, "open_door menu": False, "follow nova": True, "follow jin": False, "follow door": False,
          "point_at menu": True, "point_at door": True, "point_at nova": True, "trade menu chopsticks nova": True,
          "trade menu door nova": False, "nod": True, "nod now": False}
    for body, valid in ok.items():
        assert (parse_action(body, s, [], "jin") is not None) is valid, body
    grammar = build_action_grammar(s, [], self_id="jin")
    assert 'v-open-door ::= "open_door " location' in grammar and 'v-nod ::= "nod"' in grammar
    assert 'v-trade ::= "trade " object " " object " " recipient' in grammar


def test_the_grammar_adds_declared_verbs_and_keeps_the_builtins_as_before() -> None:
    plain = build_action_grammar(scene(verbs=[]), ["move", "grab", "give"], self_id="jin", emotions=True)
    declared = build_action_grammar(scene(), ["move", "grab", "give"], self_id="jin", emotions=True)
    assert 'tag ::= "[" (move | grab | give | emotion) "]"' in plain and 'give ::= "give " object " " recipient' in plain
    assert 'tag ::= "[" (move | grab | give | v-sit | v-emote | emotion) "]"' in declared
    assert 'v-sit ::= "sit " object' in declared and 'v-emote-gesture ::= ("wave" | "bow" | "shrug")' in declared
    assert set(plain.splitlines()) <= set(declared.splitlines()) | {'tag ::= "[" (move | grab | give | emotion) "]"'}


def test_the_tag_parser_streams_declared_verbs() -> None:
    parser = TagStreamParser(scene(), ["move"], "jin", emotions=True)
    pieces = [*parser.feed("Of course. [sit st"), *parser.feed("ool] [emote bow] [emote dance] There."), *parser.close()]
    actions = [x.action for x in pieces if hasattr(x, "action")]
    assert actions == [Action("sit", args=(("seat", "stool"),)), Action("emote", args=(("gesture", "bow"),))]


def test_the_prompt_explains_declared_verbs_on_every_profile() -> None:
    jin = load_persona(CHARACTERS / "jin.yaml")
    for profile in ("compact", "full", "tuned"):
        messages, _ = build_messages(jin, ["move", "grab", "give", "sit", "emote"], scene(), [], player_text="Take a seat.",
                                     player_name="Kai", profile=profile)
        text = "\n".join(m.content for m in messages)
        assert "[sit OBJECT_ID] sits down on a seat" in text and "[emote wave|bow|shrug] makes a gesture" in text, profile


@pytest.mark.parametrize(("verbs", "fragment"), [
    ([SIT, SIT], "declared twice"),
    ([{**SIT, "name": "give"}], "built in"),
    ([{**SIT, "name": "Sit"}], "verbs.0.name"),
    ([{**SIT, "name": "x" * 33}], "verbs.0.name"),
    ([{**SIT, "args": [{"name": "a", "type": "vehicle"}]}], "verbs.0.args.0.type"),
    ([{**SIT, "args": [{"name": "a"}]}], "either a type"),
    ([{**SIT, "args": [{"name": "a", "type": "object", "values": ["x"]}]}], "either a type"),
    ([{**SIT, "args": [{"name": f"a{i}", "type": "object"} for i in range(5)]}], "verbs.0.args"),
    ([{**SIT, "name": f"v{i}"} for i in range(33)], "verbs"),
    ([{**SIT, "description": ""}], "verbs.0.description"),
])
def test_bad_declarations_are_refused_naming_the_field(verbs: list[dict[str, Any]], fragment: str) -> None:
    frame = json.dumps({"type": "session.start", "id": "s1", "character": "jin", "scene": {**SCENE, "verbs": verbs}})
    with pytest.raises(ProtocolError) as info:
        p.parse_client_message(frame)
    assert info.value.code in ("invalid_message", "invalid_scene") and fragment in info.value.message, info.value.message


def test_a_persona_may_list_verbs_its_scene_declares(tmp_path: Path) -> None:
    from npc_runtime.persona.loader import PersonaFileError

    jin = (CHARACTERS / "jin.yaml").read_text()
    listed = jin.replace("actions: [move, grab, give]", "actions: [move, grab, give, sit]")
    (tmp_path / "jin.yaml").write_text(listed)
    with pytest.raises(PersonaFileError, match="'sit' is not a verb") as info:
        load_persona(tmp_path / "jin.yaml")
    assert info.value.field == "actions" and info.value.line == 29
    declared = listed.replace("\nscene:\n", "\nscene:\n  verbs: [{name: sit, description: sits down on a seat, args: [{name: seat, type: object}]}]\n", 1)
    (tmp_path / "jin.yaml").write_text(declared)
    assert load_persona(tmp_path / "jin.yaml").actions == ["move", "grab", "give", "sit"]


async def test_a_declared_verb_end_to_end_through_the_server() -> None:
    llm = FakeLLM(["Sit? Gladly. [sit stool] [emote bow] Thank you."])
    async with registry() as personas:
        async with serving(Services(personas=personas, dialogue=Dialogue(llm=llm))) as server:
            async with NpcClient.connect(server.url) as client:
                ready = await client.start_session("jin", scene=SCENE)
                assert {"sit", "emote"} <= set(ready.actions)
                events = [e async for e in client.say("Take a seat and bow.")]
                actions = [e for e in events if isinstance(e, p.ActionEvent)]
                assert [(a.verb, a.args) for a in actions] == [("sit", {"seat": "stool"}), ("emote", {"gesture": "bow"})]
                assert actions[0].object is None and actions[0].target is None
                end = events[-1]
                assert isinstance(end, p.ResponseEnd) and [(a.verb, a.args) for a in end.actions] == [("sit", {"seat": "stool"}), ("emote", {"gesture": "bow"})]
                assert "[sit OBJECT_ID] sits down on a seat" in "\n".join(m.content for m in llm.requests[-1].messages)
                # scene.update takes the verbs away: the tags no longer parse
                await client.send(p.SceneUpdate(scene=Scene.model_validate({**SCENE, "verbs": []})))
                assert isinstance(await client.recv(timeout=5), p.SceneUpdated)
                events = [e async for e in client.say("Sit down.")]
                assert not [e for e in events if isinstance(e, p.ActionEvent) and e.verb in ("sit", "emote")]
            async with NpcClient.connect(server.url) as client:
                bad = {**SCENE, "verbs": [SIT, SIT]}
                await client.send({"type": "session.start", "id": "s1", "character": "jin", "scene": bad})
                error = await client.recv(timeout=5)
                assert isinstance(error, p.ErrorEvent) and error.ref == "s1" and "declared twice" in error.message
                assert error.code == "invalid_scene"
                await client.start_session("jin", scene=SCENE)  # the connection stays usable


def test_recorded_sessions_still_decode() -> None:
    folder = ROOT / "tests" / "data" / "sessions"
    frames = [line for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line.strip()]
    assert frames
    for line in frames:
        record = json.loads(line)
        frame = record.get("frame") if isinstance(record, dict) and "frame" in record else line
        if isinstance(frame, str) and '"response.action"' in frame:
            event = p.parse_server_event(frame)
            assert isinstance(event, p.ActionEvent) and event.verb in ("move", "grab", "give")


# -- real engines: the grammar, the engine and the tag parser carry declared verbs ------------------------------------

async def forced_declared_tags(engine: Any, *, seed: int = 1) -> list[Action]:
    """One real generation whose grammar is the scene's action grammar with only the declared verbs as tags and a tag
    first: proves the engine accepts the grammar and emits declared tags that the tag parser turns into actions. (It
    tests the pipeline, not the model's judgement: which verb a model picks is measured in docs/model.md.)"""
    from npc_runtime.llm.base import GenerationRequest

    jin = load_persona(CHARACTERS / "jin.yaml")
    s = scene().without("jin")
    grammar = build_action_grammar(s, [], self_id="jin")  # the declared verbs only
    assert 'tag ::= "[" (v-sit | v-emote) "]"' in grammar
    grammar = grammar.replace("root ::= (text seq1?) | seq1", "root ::= seq1")
    messages, prefix = build_messages(jin, ["sit", "emote"], s, [], player_text="Take a seat on the stool and give us a bow.",
                                      player_name="Kai", profile="compact")
    request = GenerationRequest(messages=messages, grammar=grammar, max_tokens=24, temperature=0.7, seed=seed, prefix_messages=prefix)
    parser = TagStreamParser(s, ["sit", "emote"], "jin")
    pieces = []
    async for chunk in engine.stream(request):
        pieces += parser.feed(chunk.text)
    pieces += parser.close()
    return [x.action for x in pieces if hasattr(x, "action")]


@pytest.mark.engine
async def test_declared_verbs_on_the_embedded_model(llama_engine: Any) -> None:  # noqa: F811
    s = scene().without("jin")
    for seed in (1, 2):
        actions = await forced_declared_tags(llama_engine, seed=seed)
        assert actions and actions[0].verb in ("sit", "emote"), actions
        assert all(validate_action(a, s, ["sit", "emote"], "jin") for a in actions)
        assert all(a.arguments in ({"seat": "stool"}, {"gesture": "wave"}, {"gesture": "bow"}, {"gesture": "shrug"}) or a.verb == "sit"
                   for a in actions)
