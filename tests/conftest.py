"""Shared fixtures. Real-engine fixtures live in llama_fixture.py / vllm_fixture.py."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import live_server, scripted_server  # noqa: F401  (fixtures: here, so each starts once per run)
from llama_fixture import llama_engine  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EVAL_DIR = SHARED / "eval"
CHARACTERS = ROOT / "characters"

try:
    from vllm_fixture import vllm_server  # noqa: F401  (fixture)
except ImportError:  # pragma: no cover - the vLLM helper module is optional
    pass


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests (and the `npc` commands they start) keep their knowledge store and memory in a fresh folder,
    never in the repository's .npc-data/."""
    path = tmp_path_factory.mktemp("npc-data")
    old = os.environ.get("NPC_DATA_DIR")
    os.environ["NPC_DATA_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NPC_DATA_DIR", None)
    else:
        os.environ["NPC_DATA_DIR"] = old


def scene_dict(name: str) -> dict[str, Any]:
    return json.loads((EVAL_DIR / "scenes" / name).read_text(encoding="utf-8"))


@pytest.fixture
def ramen_scene() -> dict[str, Any]:
    return scene_dict("ramen_shop.json")


@pytest.fixture
def lab_scene() -> dict[str, Any]:
    return scene_dict("lab.json")


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens two /dev/null files at import and never closes them; once torch is loaded
    too, Python reports them at exit (ResourceWarning). Close them when the run is over."""
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None and not handle.closed:
            handle.close()


def xgrammar_command() -> list[str] | None:
    """A Python that can import xgrammar (vLLM's grammar backend): this one, or the vLLM venv's
    (scripts/setup_vllm.sh); None when neither (tests that need it skip)."""
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        home = Path(os.environ.get("NPC_VLLM_HOME", Path.home() / ".cache" / "npc_runtime" / "vllm"))
        python = home / "venv" / "bin" / "python"
        return [str(python)] if python.is_file() else None
    return [sys.executable]
