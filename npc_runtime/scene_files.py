"""The scenes shipped in the checkout's ``scenes/`` folder, and reading a scene by path or by name.

``--scene`` takes a JSON file, or the bare name of a shipped scene (``ramen_shop`` for
``scenes/ramen_shop.json``). A file that exists always wins; a bare name (no folder, no suffix)
that is not a file is looked up in :data:`SCENES_DIR`. Returns plain dicts: the server validates a
scene when a session starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The scenes the README, the examples and ``npc bench`` use (next to the package in the checkout).
SCENES_DIR = Path(__file__).resolve().parents[1] / "scenes"
DEFAULT_SCENE = "ramen_shop"


def shipped_scenes() -> list[str]:
    """The names of the shipped scenes, sorted."""
    return sorted(p.stem for p in SCENES_DIR.glob("*.json"))


def scene_path(spec: str | Path) -> Path:
    """The file ``spec`` names: itself when it is a file or looks like a path, else ``scenes/<spec>.json``."""
    path = Path(spec)
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    return SCENES_DIR / f"{path.name}.json"


def load_scene(spec: str | Path) -> dict[str, Any]:
    """A scene as a dict, from a path or a shipped scene's name. Raises ``OSError`` (missing or
    unreadable; a bare name that is no shipped scene says which ones there are) or ``ValueError`` (not JSON)."""
    path = scene_path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path.parent == SCENES_DIR and Path(spec) != path:
            raise FileNotFoundError(f"no file {spec} and no shipped scene {Path(spec).name!r} "
                                    f"(shipped: {', '.join(shipped_scenes()) or 'none'})") from None
        raise
    return json.loads(text)
