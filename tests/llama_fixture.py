"""The real embedded engine, loaded once per test session.

Import ``llama_engine`` into a test module (or conftest.py) to use it. Tests that use it are
marked ``engine``; they skip with a reason when llama-cpp-python or the GGUF is missing. ``NPC_LLM_BATCH=N`` in the
environment runs them on the batched engine (npc_runtime/llm/llama_batch.py), as it does the server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from npc_runtime.errors import LLMUnavailable


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def llama_engine() -> AsyncIterator[object]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh builds it)")
    from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_model_path

    try:
        path = default_model_path()
    except LLMUnavailable as exc:
        pytest.skip(str(exc))
    engine = LlamaCppEngine(model_path=path, seed=1234, batch=int(os.environ.get("NPC_LLM_BATCH") or 0))
    await engine.warm()
    try:
        yield engine
    finally:
        await engine.aclose()
