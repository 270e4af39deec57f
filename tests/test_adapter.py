"""Choosing and checking the embedded engine's LoRA adapter (docs/model.md): ``auto`` takes the adapter shipped in
npc_runtime/models/ when there is one, ``none`` the base model, a path that file; a file that does not match the
sha256 written beside it, or a missing one, is refused before anything loads; an engine with an adapter asks for
the tuned prompt profile (what the adapter was trained on). No model is loaded here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from npc_runtime.dialogue.prompt import engine_profile
from npc_runtime.errors import LLMUnavailable
from npc_runtime.llm.llama_cpp import ADAPTER_FILE, LlamaCppEngine, check_adapter, default_adapter_path
from npc_runtime.settings import Settings
from npc_runtime.wiring import build_llm


def _adapter(tmp_path: Path, data: bytes = b"GGUF adapter bytes", *, digest: str | None = None) -> Path:
    path = tmp_path / "npc-lora.gguf"
    path.write_bytes(data)
    (tmp_path / "npc-lora.gguf.sha256").write_text(f"{digest or hashlib.sha256(data).hexdigest()}  npc-lora.gguf\n")
    return path


def test_auto_takes_the_shipped_adapter_only_when_there_is_one() -> None:
    engine = build_llm(Settings())
    assert isinstance(engine, LlamaCppEngine)
    assert engine.adapter == default_adapter_path() == (ADAPTER_FILE if ADAPTER_FILE.is_file() else None)
    base = build_llm(Settings(llm_adapter="none"))
    assert isinstance(base, LlamaCppEngine) and base.adapter is None and engine_profile(base) == "compact"


def test_an_adapter_path_is_checked_and_selects_the_tuned_profile(tmp_path: Path) -> None:
    path = _adapter(tmp_path)
    check_adapter(path)
    engine = build_llm(Settings(llm_adapter=str(path)))
    assert isinstance(engine, LlamaCppEngine) and engine.adapter == path
    assert engine_profile(engine) == "tuned"


def test_a_corrupt_or_missing_adapter_is_refused(tmp_path: Path) -> None:
    corrupt = _adapter(tmp_path, digest="0" * 64)
    with pytest.raises(LLMUnavailable, match="corrupt"):
        LlamaCppEngine(adapter=corrupt)
    with pytest.raises(LLMUnavailable, match="not found"):
        LlamaCppEngine(adapter=tmp_path / "missing.gguf")
