"""Every action emitted across the public eval is valid for its scene (by construction: the
grammar). The pass rate is a quality figure, printed (run with -s) and reported by
scripts/eval_actions.py — not asserted, it depends on the model."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CHARACTERS, EVAL_DIR

from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.evals import load_cases, load_scene, run_case
from npc_runtime.persona.loader import load_persona

pytestmark = pytest.mark.engine


async def test_every_eval_action_is_valid(llama_engine: Any) -> None:
    dialogue = Dialogue(llm=llama_engine)
    cases = load_cases(EVAL_DIR)
    assert len(cases) >= 14
    passed, emitted = 0, 0
    for case in cases:
        persona = load_persona(CHARACTERS / f"{case['character']}.yaml")
        result = await run_case(dialogue, persona, load_scene(EVAL_DIR, case["scene"]), case, seed=1)
        assert result.invalid == [], (case["id"], result.actions)
        assert "[" not in result.text and "]" not in result.text
        emitted += len(result.actions)
        passed += result.passed
    print(f"\naction eval (embedded SmolLM2-135M, seed 1): {passed}/{len(cases)} cases pass, {emitted} actions emitted, 0 invalid")
    assert emitted > 0, "the model emitted no action at all: the prompt or grammar is broken"
