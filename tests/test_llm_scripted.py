"""The scripted engine (test only: the client tests' fixed replies) and how settings select it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npc_runtime.llm.base import ChatMessage, GenerationRequest
from npc_runtime.llm.scripted import Script, ScriptedLLM
from npc_runtime.settings import Settings
from npc_runtime.wiring import build_llm

CLIENT_SCRIPT = Path(__file__).resolve().parent / "data" / "scripted_llm.json"


def request(*said: str) -> GenerationRequest:
    messages = [ChatMessage("system", "You are Jin. The word chopsticks is in the prompt, not the player's line.")]
    for i, text in enumerate(said):
        messages += [ChatMessage("user", text)] + ([ChatMessage("assistant", "Hm.")] if i < len(said) - 1 else [])
    return GenerationRequest(messages=messages, max_tokens=60)


async def reply(llm: ScriptedLLM, req: GenerationRequest) -> str:
    return "".join([chunk.text async for chunk in llm.stream(req)])


async def test_the_first_matching_rule_of_the_last_user_message_answers() -> None:
    llm = ScriptedLLM(Script.model_validate({
        "rules": [{"regex": r"whole (story|history)", "reply": "Long ago."},
                  {"match": "CHOPSTICKS", "reply": "Here. [give chopsticks player] Enjoy."}],
        "default": "Welcome in.",
    }))
    assert await reply(llm, request("Could you hand me the chopsticks?")) == "Here. [give chopsticks player] Enjoy."
    assert await reply(llm, request("Tell me the WHOLE history, chopsticks and all.")) == "Long ago."
    assert await reply(llm, request("Chopsticks?", "How is business?")) == "Welcome in."  # only the last user message
    assert await reply(llm, request("a.b")) == "Welcome in."  # match is a substring, not a regex


async def test_warm_prefill_and_grammar_checks_work_like_the_fake_engine() -> None:
    llm = build_llm(Settings(llm="scripted", llm_script=CLIENT_SCRIPT))
    assert isinstance(llm, ScriptedLLM) and llm.name == "scripted"
    await llm.warm()
    await llm.prefill(request("hello"))
    await llm.validate_grammar('root ::= "a"')
    chunks = [c async for c in llm.stream(request("Please pour me some sake."))]
    assert len(chunks) > 3 and chunks[-1].finish_reason == "stop"
    assert "[give sake_bottle player]" in "".join(c.text for c in chunks)
    await llm.aclose()


def test_settings_select_it_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPC_LLM", "scripted")
    monkeypatch.setenv("NPC_LLM_SCRIPT", str(CLIENT_SCRIPT))
    settings = Settings()
    assert (settings.llm, settings.llm_script) == ("scripted", CLIENT_SCRIPT)
    assert isinstance(build_llm(settings), ScriptedLLM)
    with pytest.raises(ValueError, match="NPC_LLM_SCRIPT"):
        build_llm(Settings(llm="scripted", llm_script=None))


@pytest.mark.parametrize("script", [
    {"rules": [{"match": "x", "regex": "x", "reply": "y"}], "default": "d"},
    {"rules": [{"reply": "y"}], "default": "d"},
    {"rules": [{"regex": "(", "reply": "y"}], "default": "d"},
    {"rules": [], "default": "d", "temperature": 0.2},
    {"rules": []},
])
def test_a_bad_script_is_refused_naming_its_file(tmp_path: Path, script: dict[str, object]) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    with pytest.raises(ValueError, match="not a valid LLM script"):
        ScriptedLLM.from_file(path)
