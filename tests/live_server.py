"""Real ``npc serve`` processes on free loopback ports, shared by the tests of the game-engine clients (Unity, Unreal,
web), each started once per run:

* ``live_server``: every default (SmolLM2 embedded, Piper, tiny.en + Silero, knowledge, memory). Its words and
  actions depend on the model, the CPU and its kernels: tests on it assert only what every model answer satisfies.
* ``scripted_server``: the same server and speech engines, but the test-only scripted LLM (``NPC_LLM=scripted``)
  answering from tests/data/scripted_llm.json, so a client test knows which words and actions it will receive.
* ``scripted_auth_server``: the scripted server with auth on (``--auth-secret-file``: 48 random bytes in a temp file):
  a handshake without a valid player token gets HTTP 401. ``scripted_auth_server.token("alice")`` mints a valid one.

conftest.py imports the fixtures (imported into several test modules instead, each module would start its own)::

    def test_x(live_server: LiveServer) -> None:
        live_server.ws_url   # ws://127.0.0.1:PORT
        live_server.http_url # http://127.0.0.1:PORT
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The scripted server's replies (rules: words in the player's last message -> reply with action tags).
SCRIPT = ROOT / "tests" / "data" / "scripted_llm.json"


def missing_toolchain(reason: str) -> None:
    """A client test's compiler or browser is not installed: fail under ``NPC_REQUIRE_CLIENTS=1`` (set by
    scripts/test.sh, which installs them: CI must run these tests), else skip."""
    if os.environ.get("NPC_REQUIRE_CLIENTS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


NPC = [sys.executable, "-m", "npc_runtime.cli"]

#: The game's own verbs the client tests declare in their scene (issue 16, verbs as data), with the object they name.
SCENE_VERBS: list[dict[str, Any]] = [
    {"name": "sit", "description": "sits down on a seat", "args": [{"name": "seat", "type": "object"}]},
    {"name": "emote", "description": "makes a gesture", "args": [{"name": "gesture", "values": ["wave", "bow", "shrug"]}]},
]
STOOL = {"id": "stool", "name": "stool", "description": "a free wooden stool at the counter"}
#: The scripted server answers this with the scene's own verbs (tests/data/scripted_llm.json): an emote, then a sit.
SEAT_PROMPT = "Take a seat, please."
#: Each verb's argument names, in the order its tag names them: the built-ins, then SCENE_VERBS.
ARG_NAMES: dict[str, tuple[str, ...]] = {
    "move": ("target",), "grab": ("object",), "give": ("object", "target"),
    **{v["name"]: tuple(a["name"] for a in v["args"]) for v in SCENE_VERBS},
}
_TAG = re.compile(r"\[([a-z][a-z0-9_]*)((?: [a-z0-9_]+)*)\]")


def scene_with_verbs(scene: dict[str, Any]) -> dict[str, Any]:
    """``scene`` (a scene JSON) plus the stool and SCENE_VERBS: what a client declares to test the game's own verbs."""
    return {**scene, "objects": [*scene.get("objects", []), STOOL], "verbs": SCENE_VERBS}


def scripted_verbs(said: str) -> list[dict[str, Any]]:
    """The actions of the scripted server's reply to ``said`` (read from SCRIPT), in order, as data: ``{verb, args}``
    with every argument by name (the built-ins' and SCENE_VERBS'); emotion tags are not actions."""
    from npc_runtime.llm.base import ChatMessage, GenerationRequest
    from npc_runtime.llm.scripted import ScriptedLLM

    reply = ScriptedLLM.from_file(SCRIPT).reply_for(GenerationRequest(messages=[ChatMessage("user", said)]))
    actions = []
    for verb, values in _TAG.findall(reply):
        if verb == "emotion":
            continue
        names = ARG_NAMES[verb]
        words = values.split()
        assert len(words) == len(names), f"{SCRIPT}: [{verb}{values}] needs {len(names)} arguments"
        actions.append({"verb": verb, "args": dict(zip(names, words))})
    return actions


def scripted_actions(said: str) -> list[dict[str, str | None]]:
    """The actions of the scripted server's reply to ``said`` as ``{verb, object, target}`` (the arguments of those
    names, else None): the built-ins' typed form, which every client still decodes."""
    return [{"verb": a["verb"], "object": a["args"].get("object"), "target": a["args"].get("target")} for a in scripted_verbs(said)]


def action_as_data(action: dict[str, Any]) -> dict[str, Any]:
    """A ``response.action`` or ``response.end.actions`` entry as ``{verb, args}``. A server from before verbs were data
    sends no ``args``: a built-in's come from its ``object``/``target``."""
    if action.get("args") is not None:
        return {"verb": action["verb"], "args": dict(action["args"])}
    return {"verb": action["verb"], "args": {n: action[n] for n in ARG_NAMES.get(action["verb"], ()) if action.get(n) is not None}}


@dataclass
class LiveServer:
    port: int
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        """The server's last log lines (for assertion messages)."""
        return "\n".join(self.log[-lines:])


def _wait_ready(server: LiveServer, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"npc serve exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError:
            pass
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"npc serve never became ready:\n{server.log_tail()}")


def _serve(data_dir: Path, env: dict[str, str], args: Sequence[str] = ()) -> Iterator[LiveServer]:
    """``npc serve --port 0 [args]`` with ``env`` over the environment, ready (models warm); stopped on exit."""
    env = {**os.environ, "NPC_DATA_DIR": str(data_dir), "NPC_LOG_FORMAT": "json", **env}
    proc = subprocess.Popen([*NPC, "serve", "--port", "0", "--log-level", "info", *args], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    port = None
    log: list[str] = []
    for _ in range(400):
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line.rstrip())
        match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        proc.kill()
        raise AssertionError("npc serve printed no listening line:\n" + "\n".join(log[-40:]))
    server = LiveServer(port=port, proc=proc, log=log)

    def drain() -> None:  # keep reading the log so the pipe never fills and blocks the server
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())

    reader = threading.Thread(target=drain, name="npc-serve-log", daemon=True)
    reader.start()
    try:
        _wait_ready(server)
        yield server
    finally:
        stop_process(proc, reader)


def stop_process(proc: subprocess.Popen[str], reader: threading.Thread, *, timeout_s: float = 30.0) -> None:
    """Stop a server process (SIGTERM, then SIGKILL after ``timeout_s``) and its log reader."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    reader.join(timeout=5)
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``npc serve`` with its defaults: the real embedded model."""
    yield from _serve(tmp_path_factory.mktemp("live-npc-data"), {})


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``npc serve`` with its defaults but the scripted LLM (TEST ONLY): replies fixed by SCRIPT."""
    yield from _serve(tmp_path_factory.mktemp("scripted-npc-data"), {"NPC_LLM": "scripted", "NPC_LLM_SCRIPT": str(SCRIPT)})


@dataclass
class AuthServer(LiveServer):
    """A live server with auth on, and the policy that signs its player tokens."""

    access: Any = None  # npc_runtime.access.Access, read from the server's own secret file

    def token(self, player_id: str, *, ttl_s: float = 600.0) -> str:
        """A valid player token (HS256 JWT, ``sub`` = ``player_id``) for this server."""
        return str(self.access.issue(player_id, ttl_s=ttl_s))


_AUTH_SERVER: dict[str, AuthServer] = {}


@pytest.fixture(scope="session")
def scripted_auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AuthServer:
    """The scripted server with auth on (``--auth-secret-file``, 48 random bytes): a handshake needs a player token.

    Started once per run even though several test modules import this fixture (tests/conftest.py does not): the
    server is kept here and stopped when the run ends."""
    if "server" not in _AUTH_SERVER:
        from npc_runtime.access import load_access

        folder = tmp_path_factory.mktemp("auth-npc")
        secret = os.urandom(48)
        while len(secret.strip()) != len(secret):  # the server strips the file's whitespace: keep all 48 bytes
            secret = os.urandom(48)
        secret_file = folder / "auth-secret"
        secret_file.write_bytes(secret)
        secret_file.chmod(0o600)
        access = load_access(secret_file=secret_file, api_key_file=None, environ={})
        assert access.secret == secret
        env = {"NPC_LLM": "scripted", "NPC_LLM_SCRIPT": str(SCRIPT)}
        serving = _serve(folder / "data", env, ["--auth-secret-file", str(secret_file)])
        server = next(serving)
        request.config.add_cleanup(serving.close)
        _AUTH_SERVER["server"] = AuthServer(port=server.port, proc=server.proc, log=server.log, access=access)
    return _AUTH_SERVER["server"]
