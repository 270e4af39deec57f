"""The public action eval (``../shared/eval``): run each case through the dialogue stage with a
real engine and score it. Used by ``scripts/eval_actions.py`` and the eval test."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npc_runtime.dialogue.grammar import validate_action
from npc_runtime.dialogue.turn import ActionOut, Dialogue, SpeechDelta, TurnInput, TurnStats, allowed_verbs
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline


@dataclass(slots=True)
class CaseResult:
    case_id: str
    say: str
    text: str
    actions: list[list[str]]
    invalid: list[list[str]]
    passed: bool
    first_text_ms: float | None
    end_ms: float
    must: list[list[str]] = field(default_factory=list)


def load_cases(eval_dir: Path) -> list[dict[str, Any]]:
    lines = (eval_dir / "actions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_scene(eval_dir: Path, name: str) -> Scene:
    return Scene.model_validate_json((eval_dir / "scenes" / name).read_text(encoding="utf-8"))


def score(actions: Sequence[list[str]], must: Sequence[list[str]], allow: Sequence[list[str]]) -> bool:
    """A case passes when every ``must`` action appears and nothing outside ``must + allow`` does."""
    ok = [list(a) for a in must] + [list(a) for a in allow]
    return all(list(m) in actions for m in must) and all(a in ok for a in actions)


async def run_case(dialogue: Dialogue, persona: Persona, scene: Scene, case: dict[str, Any], *, seed: int | None = 1, player_name: str | None = "Kai") -> CaseResult:
    scene = scene.without(persona.id)
    timeline, stats = Timeline(), TurnStats()
    turn = TurnInput(persona=persona, scene=scene, history=(), player_text=case["say"], player_name=player_name, seed=seed)
    text, actions = [], []
    async for out in dialogue.respond(turn, timeline=timeline, stats=stats):
        if isinstance(out, SpeechDelta):
            timeline.mark("first_text")
            text.append(out.text)
        elif isinstance(out, ActionOut):
            actions.append(out.action)
    timeline.mark("end")
    verbs = allowed_verbs(persona, scene)
    as_lists = [a.as_list() for a in actions]
    invalid = [a.as_list() for a in actions if not validate_action(a, scene, verbs, persona.id)]
    marks = timeline.as_ms()
    return CaseResult(
        case_id=case["id"], say=case["say"], text="".join(text), actions=as_lists, invalid=invalid,
        passed=score(as_lists, case["must"], case["allow"]), first_text_ms=marks.get("first_text"), end_ms=marks["end"],
        must=case["must"],
    )

