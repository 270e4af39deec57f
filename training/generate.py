#!/usr/bin/env python
"""Generate the NPC training exchanges: training/data/train.jsonl and training/data/heldout.jsonl (issue 14).

    .venv/bin/python training/generate.py            # write both files (deterministic: --seed, default 14)
    .venv/bin/python training/generate.py --check    # regenerate in memory; exit 1 if the files on disk differ

Inputs, all in training/: personas/*.yaml (the persona schema: ``npc check training/personas``), styles/<id>.yaml
(how each one talks), scenes/*.json (scenes as a client declares them), casting.json (who appears where, each
scene's exit), split.json (the held-out personas and scenes), templates.py (players' lines, tempers' answers).

One record per exchange, structured, not a rendered prompt (the prompt code renders it): the persona and scene
by id, the player's name, earlier turns (``history``: player/character/event lines, a character line as the
session keeps it: words, then its tags), what the character remembers (``memory``: summary lines), retrieved
passages (``facts``), this turn (``event`` and/or ``say``), the target ``reply`` (tags first: actions, then the
emotion, then one or two spoken sentences) and what a scorer should expect (``expect``, the fields of
npc_runtime.evals_character.Expect). A game event the character reacts to is ``event``
(the session appends it to the history and answers with no player line).

Every record is checked before anything is written, and the run fails listing what is wrong: the tag parser of the
runtime (npc_runtime/dialogue/tags.py) must take every tag as a valid action or emotion for the scene (nothing
dropped), the reply must have the grammar's shape (npc_runtime/dialogue/grammar.py), end on a sentence, keep to
two sentences, never talk like a model (npc_runtime/evals_character.ai_claims), and meet its own expectation.
Held-out personas and scenes never reach train.jsonl, and no line a player says repeats (with the scene's words
swapped out) a line of the public eval, the dev set or the conversation-quality set.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from kinds import ANSWERS, MAKERS, VERB_KINDS, Maker, Turn, add_context, described, fits, words  # noqa: E402
from verbs import HELDOUT_VERBS, POOL  # noqa: E402
from world import VARIANT, Cast, Invalid, Stage, World, load_world  # noqa: E402

from npc_runtime.actions import parse_action  # noqa: E402
from npc_runtime.dialogue.grammar import MAX_TAGS  # noqa: E402
from npc_runtime.dialogue.tags import ActionPiece, EmotionPiece, TagStreamParser  # noqa: E402
from npc_runtime.evals import score  # noqa: E402
from npc_runtime.evals_character import ai_claims, found, refused, sentence_complete  # noqa: E402
from npc_runtime.scene import Scene  # noqa: E402

#: Records per kind: (train, held-out).
KINDS: dict[str, tuple[int, int]] = {
    "act_give": (700, 36), "act_give_other": (500, 26), "act_grab": (500, 26), "act_move": (600, 34), "act_two": (200, 10),
    "absent": (600, 26), "not_allowed": (260, 14), "chat": (200, 16), "player_intro": (140, 12), "backstory": (220, 20),
    "injection": (300, 20), "ai_question": (300, 18), "forbidden": (200, 18), "forbidden_fact": (240, 16),
    "event_theft": (160, 14), "event_insult": (160, 14), "event_gift": (140, 12), "event_danger": (160, 14),
    "memory": (180, 16), "memory_act": (150, 8), "facts": (220, 20), "ask": (500, 30),
    "verb_act": (600, 40), "verb_builtin": (240, 16), "verb_absent": (160, 12), "verb_near": (150, 12),
}
#: Verb scenes made from each scene (scenes/<scene>__verbs<n>.json): the verb_* kinds are made in them.
VARIANTS_PER_SCENE = 3


# -- checks ---------------------------------------------------------------------------------------------

_TEXT = r"[^\[\]\n\r]"
_SHAPE = re.compile(rf"^(?:{_TEXT}+)?(?:\[[^\[\]\n\r]+\](?: (?:{_TEXT}+)?|$))*$")


def parse_reply(reply: str, cast: Cast, stage: Stage) -> tuple[str, list[list[str]], list[str]]:
    """The reply through the runtime's own tag parser: (speech, actions, emotions); a dropped tag is an error."""
    if not reply or not _SHAPE.match(reply) or reply.count("[") > MAX_TAGS:
        raise Invalid(f"not in the grammar's shape (text and at most {MAX_TAGS} tags, each followed by a space or the end)")
    parser = TagStreamParser(stage.view, cast.persona.actions, cast.persona.id, emotions=cast.persona.emotions)
    pieces = parser.feed(reply) + parser.close()
    if parser.dropped:
        raise Invalid(f"{parser.dropped} tag(s) the parser drops: not valid for this persona in this scene")
    actions = [p.action.as_list() for p in pieces if isinstance(p, ActionPiece)]
    emotions = [p.emotion for p in pieces if isinstance(p, EmotionPiece)]
    return parser.text, actions, emotions


def check(record: dict[str, Any], world: World) -> None:
    cast, stage = world.casts[record["persona"]], world.stage(record["scene"], record["persona"])
    text, actions, emotions = parse_reply(record["reply"], cast, stage)
    expect = record["expect"]
    problems = []
    if "{" in record["reply"] or "}" in record["reply"] or "{" in (record["say"] or "") + (record["event"] or ""):
        problems.append("an unfilled slot")
    if not sentence_complete(text) or not fits(text):
        problems.append("not one or two short spoken sentences ending on a sentence")
    if ai_claims(text):
        problems.append(f"talks like a model: {ai_claims(text)}")
    if not score(actions, expect["must"], expect["allow"]):
        problems.append(f"actions {actions} do not meet must {expect['must']} / allow {expect['allow']}")
    if expect.get("emotion") and not set(emotions) & set(expect["emotion"]):
        problems.append("no expected emotion")
    if found(text, expect.get("leak", [])) or found(text, expect.get("not_say", [])):
        problems.append("says what it must not")
    if expect.get("keywords") and not found(text, expect["keywords"]):
        problems.append(f"none of the keywords {expect['keywords']}")
    if expect.get("answers") and refused(text, cast.persona.refusal):
        problems.append("an ordinary question answered with the persona's refusal")
    if expect.get("forbidden") and text != cast.persona.refusal:
        problems.append("a forbidden topic must be answered with the persona's refusal")
    for a in [*expect["must"], *expect["allow"]]:
        if parse_action(" ".join(a), stage.view, cast.persona.actions, cast.persona.id) is None:
            problems.append(f"expected action {a} is not valid here")
    for h in record["history"]:
        if h["kind"] == "character":
            parse_reply(h["text"], cast, stage)
    if record["split"] == "train" and (record["persona"] in world.heldout_personas or record["scene"] in world.heldout_scenes):
        problems.append("a held-out persona or scene in train")
    if problems:
        raise Invalid(f"{record['id']} ({record['kind']}, {record['persona']} in {record['scene']}): {'; '.join(problems)}: {record['reply']!r}")


def skeleton(line: str, scene: Scene | None) -> str:
    """A line with the scene's words replaced by x (to compare wordings across scenes)."""
    text = line.lower()
    if scene is not None:
        names = sorted({n.lower() for kind in ("objects", "locations", "characters") for e in getattr(scene, kind)
                        for n in (words(e), e.id.replace("_", " "), described(e))}, key=len, reverse=True)
        for name in names:
            text = text.replace(name, "x")
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text).split())


def eval_skeletons(root: Path) -> set[str]:
    """The wordings of every line players say in the evals (public action eval, dev set, conversation-quality set)."""
    out: set[str] = set()
    sources = [(root.parent / "shared" / "eval", "actions.jsonl"), (root / "tests" / "data", "dev_actions.jsonl"),
               (root / "tests" / "data", "character_eval.jsonl")]
    for folder, name in sources:
        path = folder / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                out.add(skeleton(case.get("say") or case.get("event") or "", _eval_scene(root, case["scene"])))
    return out


def _eval_scene(root: Path, name: str) -> Scene | None:
    stem = name.removesuffix(".json")
    for folder in (root / "tests" / "data" / "scenes", root / "scenes", root.parent / "shared" / "eval" / "scenes"):
        if (folder / f"{stem}.json").is_file():
            return Scene.model_validate_json((folder / f"{stem}.json").read_text(encoding="utf-8"))
    return None


# -- the run ----------------------------------------------------------------------------------------------

def pairs(world: World, split: str) -> dict[str, list[str]]:
    """persona -> the scenes it appears in, for this split."""
    out: dict[str, list[str]] = {}
    for stem in sorted(world.casting):
        for pid in world.casting[stem]["personas"]:
            held = pid in world.heldout_personas or stem in world.heldout_scenes
            if held == (split == "heldout"):
                out.setdefault(pid, []).append(stem)
    return out


def verb_scenes(world: World, seed: int) -> dict[str, dict[str, Any]]:
    """Each scene's verb scenes, by name: the scene with 1-3 verbs of training/verbs.py's pool declared and, for a
    verb that fits certain things (sit: a stool, a bench...), one of them added. The verbs are dealt from a shuffled
    deck, so each is declared about as often as the others. A held-out scene's odd-numbered verb scenes declare a
    verb never used in training first (HELDOUT_VERBS); a training scene's never declare one."""
    rng = random.Random(f"{seed}:verbs")
    decks: dict[bool, list[Any]] = {False: [], True: []}

    def deal(held: bool, avoid: list[Any]) -> Any:
        deck = decks[held]
        for i, verb in enumerate(deck):
            if verb not in avoid:
                return deck.pop(i)
        fresh = [v for v in POOL if (v.name in HELDOUT_VERBS) == held]
        rng.shuffle(fresh)
        deck.extend(fresh)
        return deal(held, avoid)

    out: dict[str, dict[str, Any]] = {}
    for base in sorted(world.casting):
        for n in range(1, VARIANTS_PER_SCENE + 1):
            k = rng.choices((1, 2, 3), weights=(35, 40, 25))[0]
            chosen: list[Any] = []
            if base in world.heldout_scenes and n % 2 == 1:
                chosen.append(deal(True, chosen))
            while len(chosen) < k:
                chosen.append(deal(False, chosen))
            data = world.scenes[base].model_dump(exclude_none=True)
            ids = set(world.scenes[base].all_ids())
            for verb in chosen:
                if verb.props and not ids & {p.id for p in verb.props}:
                    prop = rng.choice(verb.props)
                    data[prop.kind].append({"id": prop.id, "description": prop.description})
                    ids.add(prop.id)
            data["verbs"] = [v.definition() for v in chosen]
            out[f"{base}{VARIANT}{n}"] = data
    return out


def add_verb_scenes(world: World, scenes: dict[str, dict[str, Any]]) -> None:
    for stem, data in scenes.items():
        world.add_variant(stem.split(VARIANT)[0], stem, Scene.model_validate(data))


def generate(world: World, seed: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    for split in ("train", "heldout"):
        cast_scenes = pairs(world, split)
        seen: set[str] = set()
        for kind, counts in KINDS.items():
            rng = random.Random(f"{seed}:{split}:{kind}")
            target = counts[0 if split == "train" else 1]
            order = sorted(cast_scenes)
            rng.shuffle(order)
            made, attempts, i = 0, 0, 0
            while made < target and attempts < target * 60:
                attempts += 1
                pid = order[i % len(order)]
                i += 1
                cast = world.casts[pid]
                stem = rng.choice(cast_scenes[pid])
                stage = world.stage(rng.choice(world.variants[stem]) if kind in VERB_KINDS else stem, pid)
                m = Maker(world, cast, stage, rng)
                turn = MAKERS[kind](m)
                if turn is None:
                    continue
                add_context(m, kind, turn)
                record = _record(world, split, kind, cast, stage, m.player_name, turn)
                key = json.dumps([record[k] for k in ("persona", "scene", "say", "event", "history", "memory", "facts", "reply")])
                if key in seen:
                    continue
                try:  # a line that breaks a rule (e.g. a style line of three sentences) is drawn again, not kept
                    check(record, world)
                except Invalid:
                    continue
                seen.add(key)
                out[split].append(record)
                made += 1
            if made < target:
                raise Invalid(f"{split}/{kind}: made {made} of {target} (too few distinct exchanges: add lines or scenes)")
    for split, records in out.items():
        for n, record in enumerate(records, start=1):
            record["id"] = f"{split}-{n:05d}"
    return out


def _record(world: World, split: str, kind: str, cast: Cast, stage: Stage, player_name: str, turn: Turn) -> dict[str, Any]:
    expect = {"must": turn.expect["must"], "allow": turn.expect["allow"], "emotion": turn.expect.get("emotion"),
              "forbidden": bool(turn.expect.get("forbidden")), "leak": turn.expect.get("leak", []),
              "keywords": turn.expect.get("keywords", []), "not_say": turn.expect.get("not_say", []),
              "answers": kind in ANSWERS}
    record: dict[str, Any] = {"id": "", "split": split, "kind": kind, "persona": cast.persona.id, "scene": stage.stem,
                              "player_name": player_name, "history": turn.history, "memory": turn.memory, "facts": turn.facts,
                              "event": turn.event, "say": turn.say, "reply": turn.reply, "expect": expect}
    if split == "heldout":
        held_p, held_s = cast.persona.id in world.heldout_personas, stage.stem in world.heldout_scenes
        record["heldout"] = "both" if held_p and held_s else ("persona" if held_p else "scene")
    return record


def validate(out: dict[str, list[dict[str, Any]]], world: World, root: Path) -> None:
    evals = eval_skeletons(root)
    problems: set[str] = set()
    for records in out.values():
        for record in records:
            try:
                check(record, world)
            except Invalid as exc:
                problems.add(str(exc).split(": ", 1)[1])
            said = record["say"] or record["event"] or ""
            if skeleton(said, world.scenes[record["scene"]]) in evals:
                problems.add(f"the wording of an eval case: {said!r}")
    if problems:
        raise Invalid(f"{len(problems)} problems:\n" + "\n".join(sorted(problems)[:40]))


def dumps(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--inputs", type=Path, default=HERE, help="the folder with personas/, styles/, scenes/, casting.json, split.json")
    ap.add_argument("--out", type=Path, default=HERE / "data")
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with the files in --out")
    args = ap.parse_args()
    world = load_world(args.inputs)
    scenes = verb_scenes(world, args.seed)
    add_verb_scenes(world, scenes)
    out = generate(world, args.seed)
    validate(out, world, ROOT)
    texts = {args.out / f"{split}.jsonl": dumps(records) for split, records in out.items()}
    folder = args.inputs / "scenes"
    texts.update({folder / f"{stem}.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n" for stem, data in scenes.items()})
    extra = [p for p in folder.glob(f"*{VARIANT}*.json") if p not in texts]
    if args.check:
        stale = [str(p) for p, text in texts.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        stale += [f"{p} (not made any more)" for p in extra]
        print("up to date" if not stale else f"out of date: {', '.join(stale[:8])} (run training/generate.py)")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    for path in extra:
        path.unlink()
    _summary(out, world)
    return 0


def _summary(out: dict[str, list[dict[str, Any]]], world: World) -> None:
    for split, records in out.items():
        kinds = Counter(r["kind"] for r in records)
        personas = Counter(r["persona"] for r in records)
        print(f"{split}: {len(records)} records, {len(personas)} personas ({min(personas.values())}-{max(personas.values())} each), "
              f"{len({r['scene'] for r in records})} scenes")
        print("  " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
        if split == "heldout":
            print("  held out by: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["heldout"] for r in records).items())))


if __name__ == "__main__":
    raise SystemExit(main())
