"""A long conversation keeps the engine's cached context valid (issue 18): the history window slides in blocks, so
turn N+1's prompt, in the model's own tokens, starts with all of turn N's prompt except at one turn in BLOCK.
No timing here: the speed is measured by scripts/bench_long_conversation.py (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import CHARACTERS

from npc_runtime.dialogue.history import BLOCK, FACTS_REPLIES, shape_history
from npc_runtime.dialogue.prompt import HistoryEntry, build_messages
from npc_runtime.llm.llama_cpp import chatml_tokens
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.scene_files import load_scene

LINES = ["Could you hand me the chopsticks?", "I'm a nurse at the hospital.", "What's good tonight?", "Grab the menu.",
         "I'm allergic to eggs.", "Tell me about your broth.", "Please give the sake to Nova.", "My sister visits soon."]
TURNS = 34


@pytest.fixture(scope="module")
def tokenize() -> Callable[[str, bool], list[int]]:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh builds it)")
    from npc_runtime.llm.llama_cpp import default_model_path

    vocab = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    return lambda text, special: vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)  # type: ignore[no-any-return]


def _shared(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("profile", ["tuned", "compact", "full"])
def test_each_turn_extends_the_last_ones_prompt_between_block_moves(tokenize, profile: str) -> None:
    jin = load_persona(CHARACTERS / "jin.yaml")
    scene = Scene.model_validate(load_scene("ramen_shop")).without("jin")
    history: list[HistoryEntry] = []
    prompts: list[list[int]] = []
    #: each turn's prompt up to its last reply shown: what the next turn must start with (what follows it, this
    #: turn's own lines — the player's, the entities it names, retrieved facts — is read on the next turn again)
    settled: list[int] = []
    prefix_tokens = 0
    for turn in range(TURNS):
        line = LINES[turn % len(LINES)]
        if turn % 7 == 3:
            history.append(HistoryEntry("event", "A customer walks in."))
        messages, n_prefix = build_messages(jin, ["move", "grab", "give"], scene, history, player_text=line,
                                            player_name="Kai", profile=profile)  # type: ignore[arg-type]
        prompts.append(chatml_tokens(tokenize, messages, add_generation_prompt=True))
        last_reply = max((i + 1 for i, m in enumerate(messages) if m.role == "assistant"), default=n_prefix)
        settled.append(len(chatml_tokens(tokenize, messages[:last_reply], add_generation_prompt=False)))
        prefix_tokens = len(chatml_tokens(tokenize, messages[:n_prefix], add_generation_prompt=False))
        history += [HistoryEntry("player", line), HistoryEntry("character", f"Reply number {turn}, friend. [emotion happy]")]

    # what the engine re-reads on each turn after the first: everything past what it shares with the last turn's prompt
    extends = [_shared(prev, cur) >= done for prev, cur, done in zip(prompts, prompts[1:], settled, strict=False)]
    moves = extends.count(False)
    assert moves <= (TURNS - 1) // 3 + 1, extends  # one turn in three at most re-reads the history...
    assert moves >= (TURNS - 1) // BLOCK - 2  # ...and the window does move (the prompt does not grow forever)
    for prev, cur, ok in zip(prompts, prompts[1:], extends, strict=False):
        assert _shared(prev, cur) >= prefix_tokens  # the persona prefix always holds
        if not ok:
            assert len(cur) < len(prev) + 40  # a move drops old turns: the prompt does not keep growing
    assert max(len(p) for p in prompts[-BLOCK * 3:]) <= max(len(p) for p in prompts[-BLOCK * 6: -BLOCK * 3]) + 40


def test_the_model_still_sees_the_recent_turns() -> None:
    history: list[HistoryEntry] = []
    for turn in range(40):
        history += [HistoryEntry("player", f"I'm customer number {turn}."), HistoryEntry("character", f"Welcome, number {turn}.")]
        earlier, kept = shape_history(history, replies=2, partner_name="Kai")
        said = [e.text for e in kept if e.kind == "character"]
        assert said[-1] == f"Welcome, number {turn}."  # the newest reply is always a chat turn
        assert min(turn + 1, 2) <= len(said) < 2 + BLOCK
        if turn + 1 > 2 + BLOCK - 1:  # something was folded: its facts are there, the newest folded one included
            folded = turn - len(said)
            assert earlier[-1] == f'Kai said: "I\'m customer number {folded}."'
            assert len(earlier) <= FACTS_REPLIES
