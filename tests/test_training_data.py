"""The NPC training data (training/, issue 14): the personas pass the persona checker, the split holds, and
the committed exchanges are exactly what the seeded generator writes (it validates every reply with the
runtime's tag parser and the eval's rule checks, so a stale or hand-edited file fails here)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from npc_runtime.persona.loader import persona_files, read_persona_file
from npc_runtime.scene import Scene

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"
SHIPPED_IDS = {"jin", "nova", "nurse_amara", "patient_victor", "rep_priya", "customer_doug"}


def _records(split: str) -> list[dict]:
    lines = (TRAINING / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_personas_and_scenes_are_valid_and_many() -> None:
    files = persona_files(TRAINING / "personas")
    results = [read_persona_file(p) for p in files]
    assert [e for r in results for e in r.errors] == []
    personas = [r.persona for r in results if r.persona is not None]
    assert len(personas) >= 32
    assert not {p.id for p in personas} & SHIPPED_IDS
    assert any(len(p.actions) < 3 for p in personas) and any(not p.actions for p in personas)
    assert all(p.forbidden_topics and p.refusal and p.backstory and p.goals and p.speaking_style for p in personas)
    scenes = sorted((TRAINING / "scenes").glob("*.json"))
    assert len(scenes) >= 44
    for path in scenes:
        scene = Scene.model_validate_json(path.read_text(encoding="utf-8"))
        assert "player" in scene.ids("characters"), path.name
    assert not {p.stem for p in scenes} & {p.stem for p in (ROOT / "scenes").glob("*.json")}


def test_the_split_keeps_held_out_personas_and_scenes_out_of_train() -> None:
    split = json.loads((TRAINING / "split.json").read_text(encoding="utf-8"))
    held_personas, held_scenes = set(split["heldout_personas"]), set(split["heldout_scenes"])
    assert len(held_personas) >= 6 and len(held_scenes) >= 8
    train, heldout = _records("train"), _records("heldout")
    assert len(train) >= 2500 and len(heldout) >= 300
    def base(scene: str) -> str:  # a verb scene (hilde_forge__verbs1) is held out with the scene it is made from
        return scene.split("__verbs")[0]

    assert not [r["id"] for r in train if r["persona"] in held_personas or base(r["scene"]) in held_scenes]
    assert all(r["persona"] in held_personas or base(r["scene"]) in held_scenes for r in heldout)
    assert {r["persona"] for r in heldout} >= held_personas and {base(r["scene"]) for r in heldout} == held_scenes
    kinds = Counter(r["kind"] for r in train)
    assert set(kinds) == {r["kind"] for r in heldout}
    assert min(kinds.values()) >= 50, kinds


def test_the_committed_data_is_what_the_generator_writes() -> None:
    done = subprocess.run([sys.executable, str(TRAINING / "generate.py"), "--check"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_declared_verbs_are_asked_for_in_verb_scenes_and_some_are_never_trained() -> None:
    sys.path.insert(0, str(TRAINING))
    from verbs import HELDOUT_VERBS, POOL

    assert len(POOL) >= 25
    train, heldout = _records("train"), _records("heldout")
    for split, records in (("train", train), ("heldout", heldout)):
        for r in records:
            scene = Scene.model_validate_json((TRAINING / "scenes" / f"{r['scene']}.json").read_text(encoding="utf-8"))
            assert r["kind"].startswith("verb_") == ("__verbs" in r["scene"]) == bool(scene.verbs), r["id"]
            assert len(scene.verbs) <= 3
            declared = {v.name for v in scene.verbs}
            if r["kind"] == "verb_act":  # the declared verb, with valid arguments (generate.py checks them)
                assert [a[0] for a in r["expect"]["must"]] == [r["reply"][1:].split("]")[0].split()[0]] and r["expect"]["must"][0][0] in declared
            elif r["kind"] == "verb_builtin":
                assert r["expect"]["must"] and all(a[0] in ("move", "grab", "give") for a in r["expect"]["must"])
            elif r["kind"] in ("verb_absent", "verb_near"):
                assert r["expect"]["must"] == [] and "[" not in r["reply"]
            if split == "train":
                assert not declared & HELDOUT_VERBS, r["id"]
    trained = {r["expect"]["must"][0][0] for r in train if r["kind"] == "verb_act"}
    assert len(trained) >= 25
    held = Counter(r["expect"]["must"][0][0] in HELDOUT_VERBS for r in heldout if r["kind"] == "verb_act")
    assert held[True] >= 10 and held[False] >= 10  # verbs never trained on and verbs trained in other scenes
