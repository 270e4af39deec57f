"""Shared fixtures. Real-engine fixtures live in llama_fixture.py / vllm_fixture.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llama_fixture import llama_engine  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EVAL_DIR = SHARED / "eval"
CHARACTERS = ROOT / "characters"

try:
    from vllm_fixture import vllm_server  # noqa: F401  (fixture)
except ImportError:  # pragma: no cover - the vLLM helper module is optional
    pass


def scene_dict(name: str) -> dict[str, Any]:
    return json.loads((EVAL_DIR / "scenes" / name).read_text(encoding="utf-8"))


@pytest.fixture
def ramen_scene() -> dict[str, Any]:
    return scene_dict("ramen_shop.json")


@pytest.fixture
def lab_scene() -> dict[str, Any]:
    return scene_dict("lab.json")
