"""Batched generation on the embedded engine (issue 18, npc_runtime/llm/llama_batch.py), with the real SmolLM2 model
and the shipped LoRA adapter: turns decoded together, each held by its own grammar, one cancelled while the other
goes on. No timing assertions: the speed is measured with `npc bench` (docs/performance.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from conftest import CHARACTERS

from npc_runtime.dialogue.tags import ActionPiece, TagStreamParser
from npc_runtime.dialogue.turn import Dialogue, TurnInput, allowed_verbs
from npc_runtime.errors import LLMUnavailable
from npc_runtime.llm.base import ChatMessage, GenerationRequest, LLMChunk
from npc_runtime.persona.loader import load_persona
from npc_runtime.scene import Scene
from npc_runtime.scene_files import load_scene

pytestmark = pytest.mark.engine

LOOPING = 'root ::= ("tick ")+ "end"'  # cannot finish before max_tokens in practice


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def batched() -> AsyncIterator[object]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh builds it)")
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_adapter_path, default_model_path

    try:
        path = default_model_path()
    except LLMUnavailable as exc:
        pytest.skip(str(exc))
    engine = LlamaCppEngine(model_path=path, seed=1234, adapter=default_adapter_path(), batch=4)
    await engine.warm()
    try:
        yield engine
    finally:
        await engine.aclose()


JIN = load_persona(CHARACTERS / "jin.yaml")
SCENE = Scene.model_validate(load_scene("ramen_shop")).without("jin")


def turn_request(engine: object, line: str, *, session: str, seed: int = 7, temperature: float | None = None) -> GenerationRequest:
    """The request a session's turn makes: the tuned prompt and the scene's action grammar."""
    dialogue = Dialogue(llm=engine)  # type: ignore[arg-type]
    turn = TurnInput(persona=JIN, scene=SCENE, history=(), player_text=line, player_name="Kai", seed=seed, session_key=session)
    request = dialogue._request(turn, allowed_verbs(JIN, SCENE))
    return request if temperature is None else dataclasses.replace(request, temperature=temperature)


def actions_of(text: str) -> tuple[list[ActionPiece], str]:
    """The reply's actions, as the session parses them (an invalid tag is dropped: counted in ``dropped``)."""
    parser = TagStreamParser(SCENE, allowed_verbs(JIN, SCENE), "jin", emotions=True)
    pieces = [*parser.feed(text), *parser.close()]
    speech = "".join(getattr(p, "text", "") for p in pieces if not isinstance(p, ActionPiece))
    assert parser.dropped == 0, text  # every tag the grammar let through is a valid action of the scene
    return [p for p in pieces if isinstance(p, ActionPiece)], speech


async def test_two_sessions_decode_together_each_held_by_its_grammar(batched) -> None:
    order: list[str] = []
    texts: dict[str, str] = {}
    finish: dict[str, str | None] = {}

    async def run(name: str, line: str) -> None:
        chunks: list[LLMChunk] = []
        async for chunk in batched.stream(turn_request(batched, line, session=name)):
            order.append(name)
            chunks.append(chunk)
        texts[name], finish[name] = "".join(c.text for c in chunks), chunks[-1].finish_reason

    await asyncio.gather(run("a", "Could you hand me the chopsticks?"), run("b", "Please give me the menu."))
    print(f"\nbatched replies: {texts}")
    assert set(finish.values()) <= {"stop", "length"}
    for name in ("a", "b"):
        _, speech = actions_of(texts[name])
        assert speech.strip(), texts[name]
    # decoded together: each one's chunks arrive while the other is still generating
    first_b, last_a = order.index("b"), len(order) - 1 - order[::-1].index("a")
    first_a, last_b = order.index("a"), len(order) - 1 - order[::-1].index("b")
    assert first_b < last_a and first_a < last_b, order


async def test_a_turn_joins_the_running_batch(batched) -> None:
    order: list[str] = []
    started = asyncio.Event()

    async def long() -> None:
        async for _ in batched.stream(GenerationRequest(messages=[ChatMessage("user", "Count")], grammar=LOOPING, max_tokens=120, seed=1)):
            order.append("long")
            if len(order) == 3:
                started.set()

    async def late() -> None:
        await started.wait()
        async for _ in batched.stream(turn_request(batched, "What's good tonight?", session="late")):
            order.append("late")

    await asyncio.gather(long(), late())
    # the late turn's reply starts while the long one is still generating: it did not wait for it to end
    last_long = len(order) - 1 - order[::-1].index("long")
    assert "late" in order and 2 < order.index("late") < last_long, order


async def test_cancelling_one_sequence_leaves_the_other_running(batched) -> None:
    victim = batched.stream(GenerationRequest(messages=[ChatMessage("user", "Count")], grammar=LOOPING, max_tokens=200, seed=2))
    other_chunks: list[LLMChunk] = []
    victim_seen = 0

    async def other() -> None:
        async for chunk in batched.stream(turn_request(batched, "Hand me the chopsticks, please.", session="other")):
            other_chunks.append(chunk)

    task = asyncio.create_task(other(), name="other-turn")
    async for _ in victim:
        victim_seen += 1
        if victim_seen == 4:
            break
    await victim.aclose()  # returns once its sequence has left the batch
    await task
    assert victim_seen == 4
    assert other_chunks and other_chunks[-1].finish_reason in {"stop", "length"}
    actions_of("".join(c.text for c in other_chunks))
    again = [c async for c in batched.stream(GenerationRequest(messages=[ChatMessage("user", "Hi")], grammar='root ::= ("yes" | "no")', max_tokens=4))]
    assert "".join(c.text for c in again) in {"yes", "no"}


async def test_one_sequence_through_the_batched_path_is_the_adapters_reply(batched) -> None:
    """One turn alone, greedy: a sensible, grammar-held reply that the unbatched engine with the same adapter also
    gives (the adapter applies to the batched context; a bare model answers differently)."""
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_adapter_path, default_model_path

    request = turn_request(batched, "Could you hand me the chopsticks?", session="alone", temperature=0.0)
    reply = "".join([c.text async for c in batched.stream(request)])
    actions, speech = actions_of(reply)
    print(f"\nbatched, greedy: {reply!r}")
    assert speech.strip() and len(speech.split()) >= 2
    single = LlamaCppEngine(model_path=default_model_path(), seed=1234, adapter=default_adapter_path())
    try:
        await single.warm()
        expected = "".join([c.text async for c in single.stream(dataclasses.replace(request, session_key=None))])
    finally:
        await single.aclose()
    assert reply == expected
    assert batched.stats.prefix in {"loaded", "hit", "saved", "session"}


async def test_a_session_comes_back_to_its_own_sequence(batched) -> None:
    first = turn_request(batched, "Hi Jin.", session="again")
    reply = "".join([c.text async for c in batched.stream(first)])
    messages = [*first.messages, ChatMessage("assistant", reply), ChatMessage("user", "Hand me the menu.")]
    follow = dataclasses.replace(first, messages=messages)
    [c async for c in batched.stream(follow)]
    stats = batched.stats
    print(f"\nsecond turn: {stats}")
    assert stats.prefix == "session"
    assert stats.evaluated_tokens < stats.prompt_tokens - stats.prefix_tokens  # only the new lines were read


async def test_a_session_pushed_out_of_its_slot_comes_back_from_its_saved_state(batched) -> None:
    """More conversations than slots: the least recently used one is saved (a state blob) and restored on its
    next turn, so it still reads only its new lines."""
    first = turn_request(batched, "Hi Jin, I'm back.", session="evicted")
    reply = "".join([c.text async for c in batched.stream(first)])
    for i in range(batched.batch + 1):  # every slot taken by another conversation since
        [c async for c in batched.stream(turn_request(batched, "What's good tonight?", session=f"crowd{i}"))]
    messages = [*first.messages, ChatMessage("assistant", reply), ChatMessage("user", "Hand me the menu.")]
    [c async for c in batched.stream(dataclasses.replace(first, messages=messages))]
    stats = batched.stats
    assert stats.prefix == "session"
    assert stats.evaluated_tokens < stats.prompt_tokens - stats.prefix_tokens


async def test_a_prompt_longer_than_a_slot_is_refused_and_the_batch_goes_on(batched) -> None:
    from npc_runtime.errors import LLMRejected

    huge = GenerationRequest(messages=[ChatMessage("user", "tick " * 5000)], max_tokens=4)
    with pytest.raises(LLMRejected):
        [c async for c in batched.stream(huge)]
    again = [c async for c in batched.stream(GenerationRequest(messages=[ChatMessage("user", "Hi")], grammar='root ::= ("yes" | "no")', max_tokens=4))]
    assert "".join(c.text for c in again) in {"yes", "no"}


async def test_closing_the_engine_ends_a_running_stream() -> None:
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_model_path

    engine = LlamaCppEngine(model_path=default_model_path(), seed=1, batch=2)
    await engine.warm()
    stream = engine.stream(GenerationRequest(messages=[ChatMessage("user", "Count")], grammar=LOOPING, max_tokens=400))
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            await engine.aclose()  # stops every sequence, frees the context once the loop has left
    assert 3 <= seen < 400
    with pytest.raises(LLMUnavailable):
        [c async for c in engine.stream(GenerationRequest(messages=[ChatMessage("user", "Hi")], max_tokens=2))]
