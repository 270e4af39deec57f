"""The action grammar: its structure, its agreement with parse_action, and that llama.cpp and
xgrammar accept it. The ``engine`` tests run the real model under the grammar."""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from conftest import xgrammar_command

from npc_runtime.dialogue.grammar import (
    MAX_TAGS,
    VERBS,
    Action,
    build_action_grammar,
    parse_action,
    usable_verbs,
    validate_action,
)
from npc_runtime.dialogue.tags import TagStreamParser
from npc_runtime.errors import GrammarError
from npc_runtime.llm.base import ChatMessage, GenerationRequest
from npc_runtime.scene import Entity, Scene

RAMEN = Path(__file__).resolve().parents[2] / "shared" / "eval" / "scenes" / "ramen_shop.json"
WORDS = ["axe", "bowl", "door", "kitchen", "menu", "player", "nova", "jin", "sake", "rope", "lamp", "gate",
         "well", "tom", "mira", "cart", "bread", "coin", "key", "map"]


# -- helpers -------------------------------------------------------------------------------------


def random_scene(rng: random.Random) -> tuple[Scene, tuple[str, ...], str | None]:
    """A scene with random ids (some word-like, some not), random empty lists and verbs."""
    pool = rng.sample(WORDS, k=len(WORDS)) + [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 6)))
        + rng.choice(["", "_2", "_x9", "_b_c"]) for _ in range(12)
    ]
    ids = list(dict.fromkeys(pool))
    sizes = [rng.choice([0, 1, 2, 4]) for _ in range(3)]
    kinds = []
    for size in sizes:
        kinds.append([Entity(id=ids.pop()) for _ in range(size)])
    scene = Scene(objects=kinds[0], locations=kinds[1], characters=kinds[2])
    verbs = tuple(v for v in VERBS if rng.random() < 0.75)
    chars = scene.ids("characters")
    self_id = rng.choice([None, *chars, "someone_else"]) if rng.random() < 0.7 else None
    return scene, verbs, self_id


def rules_of(grammar: str) -> dict[str, str]:
    rules = {}
    for line in grammar.strip().splitlines():
        name, body = line.split(" ::= ", 1)
        rules[name] = body
    return rules


_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[a-z][a-z0-9-]*|[()|])')


def expand(grammar: str, rule: str = "tag") -> set[str]:
    """Every string ``rule`` derives (for the finite, quantifier-free tag sub-grammar)."""
    rules = rules_of(grammar)

    def alternatives(tokens: list[str]) -> set[str]:
        out = sequence(tokens)
        while tokens and tokens[0] == "|":
            tokens.pop(0)
            out |= sequence(tokens)
        return out

    def sequence(tokens: list[str]) -> set[str]:
        out = {""}
        while tokens and tokens[0] not in "|)":
            token = tokens.pop(0)
            if token == "(":
                part = alternatives(tokens)
                assert tokens.pop(0) == ")"
            elif token.startswith('"'):
                part = {json.loads(token)}
            else:
                part = expand_rule(token)
            out = {a + b for a in out for b in part}
        return out

    def expand_rule(name: str) -> set[str]:
        body = rules[name]
        tokens = _TOKEN.findall(body)
        assert "".join(tokens).replace(" ", "") == body.replace(" ", ""), f"not finite/simple: {body}"
        return alternatives(tokens)

    return expand_rule(rule)


def expected_tags(scene: Scene, verbs, self_id) -> set[str]:
    """The tags the spec allows, written independently of the grammar module."""
    ids = lambda kind: [i for i in scene.ids(kind) if i != self_id]  # noqa: E731
    objects, everything, people = ids("objects"), ids("objects") + ids("locations") + ids("characters"), ids("characters")
    tags = set()
    if "move" in verbs:
        tags |= {f"[move {t}]" for t in everything}
    if "grab" in verbs:
        tags |= {f"[grab {o}]" for o in objects}
    if "give" in verbs:
        tags |= {f"[give {o} {c}]" for o in objects for c in people}
    return tags


def ramen() -> Scene:
    return Scene.model_validate_json(RAMEN.read_text())


SCENES = [random_scene(random.Random(seed)) for seed in range(60)]
#: The largest scene a client may declare (64 ids of each kind).
BIGGEST = Scene(
    objects=[Entity(id=f"object_{i}") for i in range(64)],
    locations=[Entity(id=f"place_{i}") for i in range(64)],
    characters=[Entity(id=f"person_{i}") for i in range(64)],
)


# -- structure -----------------------------------------------------------------------------------


def test_ramen_grammar_has_every_verb_and_excludes_self() -> None:
    grammar = build_action_grammar(ramen(), ["move", "grab", "give"], self_id="jin")
    rules = rules_of(grammar)
    assert rules["tag"] == '"[" (move | grab | give) "]"'
    assert rules["recipient"] == '("player" | "nova")'
    assert "[give ramen_bowl nova]" in expand(grammar) and "[move window_seat]" in expand(grammar)
    assert "jin" not in grammar


@pytest.mark.parametrize(
    ("objects", "locations", "characters", "verbs", "want"),
    [
        (["a"], ["l"], ["p"], VERBS, {"move", "grab", "give"}),
        ([], ["l"], ["p"], VERBS, {"move"}),  # no objects: no grab, no give
        (["a"], ["l"], [], VERBS, {"move", "grab"}),  # nobody to give to
        (["a"], [], ["self"], VERBS, {"move", "grab"}),  # only itself: no give
        (["a"], ["l"], ["p"], ("grab",), {"grab"}),  # the persona allows less
        ([], [], [], VERBS, set()),
        ([], [], ["self"], VERBS, set()),
    ],
)
def test_verbs_left_out(objects, locations, characters, verbs, want) -> None:
    scene = Scene(
        objects=[Entity(id=i) for i in objects],
        locations=[Entity(id=i) for i in locations],
        characters=[Entity(id=i) for i in characters],
    )
    assert set(usable_verbs(scene, verbs, self_id="self")) == want
    grammar = build_action_grammar(scene, verbs, self_id="self")
    rules = rules_of(grammar)
    if want:
        assert set(re.findall(r"[a-z]+", rules["tag"])) == want
        for verb in set(VERBS) - want:
            assert verb not in rules
    else:
        assert set(rules) == {"root", "text"}


@pytest.mark.parametrize(("scene", "verbs", "self_id"), SCENES[:30])
def test_grammar_tags_match_spec_and_parse_action(scene, verbs, self_id) -> None:
    grammar = build_action_grammar(scene, verbs, self_id=self_id)
    assert grammar == build_action_grammar(scene, list(reversed(verbs)), self_id=self_id)  # deterministic
    allowed = expand(grammar) if "tag" in rules_of(grammar) else set()
    assert allowed == expected_tags(scene, verbs, self_id)
    # Exhaustive: every verb/id combination, known or not, is parsed iff the grammar can write it.
    universe = scene.all_ids() + ["ghost", "jin", "self", "x_1", str(self_id)]
    for verb in [*VERBS, "take", "fly", "MOVE"]:
        candidates = [f"{verb} {a}" for a in universe] + [f"{verb} {a} {b}" for a in universe for b in universe]
        for body in candidates:
            action = parse_action(body, scene, verbs, self_id)
            assert (action is not None) == (f"[{body}]" in allowed), body
            if action is not None:
                assert action.as_tag() == f"[{body}]" and validate_action(action, scene, verbs, self_id)


def test_grammar_dialect() -> None:
    """Only what llama.cpp and xgrammar both read: simple rule names, no wildcard."""
    for scene, verbs, self_id in SCENES:
        for limit in (None, 120):
            grammar = build_action_grammar(scene, verbs, self_id=self_id, max_text_chars=limit)
            for name, body in rules_of(grammar).items():
                assert re.fullmatch(r"[a-z][a-z0-9-]*", name)
                bare = re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', "", body)
                assert "." not in bare and "<" not in bare and "_" not in bare, body
                assert "|" not in bare or bare.count("(") >= 1, body


def test_action_lists_and_tags() -> None:
    give = Action("give", object="sake_bottle", target="nova")
    assert give.as_list() == ["give", "sake_bottle", "nova"] and give.as_tag() == "[give sake_bottle nova]"
    assert Action("move", target="door").as_list() == ["move", "door"]
    assert Action("grab", object="menu").as_tag() == "[grab menu]"
    assert parse_action("  give  sake_bottle   nova ", ramen(), VERBS, "jin") == give


def test_bad_arguments() -> None:
    assert "fly" not in build_action_grammar(ramen(), ["fly", "grab"])  # a verb the scene does not define is no tag
    with pytest.raises(TypeError):
        build_action_grammar(ramen(), "move")
    with pytest.raises(ValueError):
        build_action_grammar(ramen(), VERBS, max_text_chars=0)


# -- xgrammar ------------------------------------------------------------------------------------


def test_xgrammar_accepts_every_grammar() -> None:
    command = xgrammar_command()
    if command is None:
        pytest.skip("xgrammar is not importable and the vLLM venv is missing (scripts/setup_vllm.sh makes it)")
    items = []
    for scene, verbs, self_id in [(ramen(), VERBS, "jin"), (BIGGEST, VERBS, "person_0"), *SCENES]:
        grammar = build_action_grammar(scene, verbs, self_id=self_id)
        tags = sorted(expected_tags(scene, verbs, self_id))
        accept = ["Hello there."] + [f"Sure. {t} Enjoy." for t in tags[:3]] + [" ".join(tags[-1:] * MAX_TAGS)] * bool(tags)
        reject = ["", "line\nbreak", "[move ghost]", "[take x]"] + [t + "x" for t in tags[:1]]
        reject += [" ".join(tags[-1:] * (MAX_TAGS + 1))] * bool(tags)
        items.append({"grammar": grammar, "accept": accept, "reject": reject})
    items.append({"grammar": build_action_grammar(ramen(), VERBS, self_id="jin", max_text_chars=50)})
    items.append({"grammar": build_action_grammar(ramen(), VERBS, self_id="jin", emotions=True),
                  "accept": ["[emotion joy] Welcome! [give menu player]", "Hi. [emotion anger]"],
                  "reject": ["[emotion grumpy] Hi.", "[emotion] Hi."]})
    items.append({"grammar": build_action_grammar(Scene(), (), emotions=True), "accept": ["[emotion fear] Run!"], "reject": ["[move door]"]})
    items.append('root ::= ("a" | b')  # must fail
    script = Path(__file__).with_name("xgrammar_check.py")
    proc = subprocess.run([*command, str(script)], input=json.dumps(items), capture_output=True, text=True, timeout=300)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(items), proc.stderr[-2000:]
    assert not results[-1]["ok"]
    for item, result in zip(items[:-1], results[:-1]):
        assert result["ok"], result["error"]
        assert all(result["accepted"]) and all(result["rejected"]), (item, result)


# -- llama.cpp (real model vocabulary) -----------------------------------------------------------


@pytest.mark.engine
async def test_llama_cpp_accepts_every_grammar(llama_engine) -> None:  # noqa: F811
    for scene, verbs, self_id in [(ramen(), VERBS, "jin"), (BIGGEST, VERBS, "person_0"), *SCENES]:
        for limit in (None, 200):
            await llama_engine.validate_grammar(build_action_grammar(scene, verbs, self_id=self_id, max_text_chars=limit))
        await llama_engine.validate_grammar(build_action_grammar(scene, verbs, self_id=self_id, emotions=True))
    await llama_engine.validate_grammar(build_action_grammar(Scene(), (), emotions=True))


BROKEN = [
    'root ::= ("a" | b',
    'root ::= "a" | undefined-rule',
    'root ::= [a-',
    'start ::= "a"',
    'root ::= root "a"',
    "root ::= \"unterminated",
    "",
]


@pytest.mark.engine
@pytest.mark.parametrize("grammar", BROKEN)
async def test_broken_grammar_is_rejected_and_the_process_survives(llama_engine, grammar) -> None:  # noqa: F811
    with pytest.raises(GrammarError):
        await llama_engine.validate_grammar(grammar)
    request = GenerationRequest(messages=[ChatMessage("user", "Hi")], grammar=grammar, max_tokens=4)
    with pytest.raises(GrammarError):
        async for _ in llama_engine.stream(request):
            pass
    ok = GenerationRequest(messages=[ChatMessage("user", "Hi")], grammar='root ::= ("yes" | "no")', max_tokens=4)
    assert "".join([c.text async for c in llama_engine.stream(ok)]) in {"yes", "no"}


# -- property: the real model under random grammars ----------------------------------------------


_INSTRUCTIONS = [
    ChatMessage("system", "You are a helpful shopkeeper. Reply with one short sentence, then action tags: "
                          "[move ID] to walk somewhere, [grab OBJECT] to pick up, [give OBJECT PERSON] to hand over."),
    ChatMessage("user", "Objects: lamp. Places: gate. People: tom.\nGive me the lamp."),
    ChatMessage("assistant", "Here you go. [grab lamp] [give lamp tom]"),
    ChatMessage("user", "Objects: lamp. Places: gate. People: tom.\nGo to the gate."),
    ChatMessage("assistant", "On my way. [move gate]"),
]


def _prompt(scene: Scene, self_id, rng: random.Random) -> list[ChatMessage]:
    """The same few-shot prefix every time (llama.cpp reuses it), then the scene and a wish."""
    people = [i for i in scene.ids("characters") if i != self_id]
    objects, places = scene.ids("objects"), scene.ids("locations")
    ids = f"Objects: {', '.join(objects) or 'none'}. Places: {', '.join(places) or 'none'}. People: {', '.join(people) or 'none'}."
    wish = rng.choice(
        [f"Give me the {o}." for o in objects] + [f"Go to the {p}." for p in places]
        + [f"Walk over to {c}." for c in people] + ["Hello!"]
    )
    return [*_INSTRUCTIONS, ChatMessage("user", f"{ids}\n{wish}")]


TAG_RE = re.compile(r"\[([^\[\]]*)\]")


@pytest.mark.engine
async def test_model_output_under_random_grammars_is_always_valid(llama_engine) -> None:  # noqa: F811
    rng = random.Random(2024)
    generations = tags_seen = 0
    for scene, verbs, self_id in [(ramen(), VERBS, "jin"), *SCENES][:20]:
        grammar = build_action_grammar(scene, verbs, self_id=self_id)
        allowed = expected_tags(scene, verbs, self_id)
        request = GenerationRequest(messages=_prompt(scene, self_id, rng), grammar=grammar, max_tokens=20,
                                    temperature=0.9, seed=rng.randrange(2**31))
        chunks = [c async for c in llama_engine.stream(request)]
        raw = "".join(c.text for c in chunks)
        generations += 1
        assert "\n" not in raw and len(TAG_RE.findall(raw)) <= MAX_TAGS, raw
        for body in TAG_RE.findall(raw):
            tags_seen += 1
            assert f"[{body}]" in allowed, (raw, grammar)
            assert parse_action(body, scene, verbs, self_id) is not None
        for match in re.finditer(r"\]", raw):
            assert raw[match.end():match.end() + 1] in ("", " "), raw  # no word glued to a tag
        tail = raw[raw.rfind("[") :] if raw.count("[") > raw.count("]") else ""
        assert not tail or chunks[-1].finish_reason == "length"
        assert not tail or any(t.startswith(tail) for t in allowed), raw
        parser = TagStreamParser(scene, verbs, self_id)
        for c in chunks:
            parser.feed(c.text)
        parser.close()
        assert parser.dropped == (1 if tail else 0), raw
    print(f"\n{generations} generations under random grammars, {tags_seen} tags, all valid")
