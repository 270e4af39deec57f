"""Two servers behind a real load balancer (docs/deploy.md; issue 18, part 4).

A real PostgreSQL (tests/pg_fixture.py), two ``npc serve`` processes on free loopback ports with the same
``--memory-url``, and HAProxy (Debian's package, scripts/setup_services.sh) in front of them with the configuration
docs/deploy.md gives (deploy/haproxy.cfg, ports filled in): WebSocket upgrade, health checks on ``/readyz``,
stickiness on the ``player`` query parameter, redispatch. A player tells the server it lands on a fact; that server is
stopped with SIGTERM (drain: the running response finishes, then the connection is closed with 1001); the player
reconnects through the balancer, lands on the other server, and that server recalls the player's memory (its log's
``remembered`` line counts the entries, and the shared database holds the fact: ``npc memory show``). ``npc bench``
through the balancer at 8 clients: both servers get sessions. The drain itself, in-process: a running response
finishes and then the socket closes with 1001, or is cut at the drain timeout; the listener is closed meanwhile.

The scripted LLM (TEST ONLY: fixed replies) runs the memory and balancer logic fast; the same test runs on the real
embedded model with ``-m engine``, where nothing asserts the model's words.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import scene_dict
from live_server import SCRIPT, stop_process
from pg_fixture import PgServer, free_port, postgres  # noqa: F401  (fixture)
from server_fixture import registry, serving
from websockets.exceptions import ConnectionClosed

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.session import Services

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
FACT = "My name is Kai and I'm allergic to eggs."


def _haproxy() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        message = "HAProxy is not installed (scripts/setup_services.sh installs it)"
        if os.environ.get("NPC_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Node:
    """One ``npc serve`` process and its log (JSON lines)."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    reader: threading.Thread
    log: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in list(self.log):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def sessions(self) -> float:
        """``npc_sessions_total`` from its /metrics."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        match = re.search(r"^npc_sessions_total (\S+)$", text, re.MULTILINE)
        assert match, text[:500]
        return float(match.group(1))

    def tail(self) -> str:
        return "\n".join(self.log[-30:])


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _wait(what: str, check: Any, timeout_s: float, detail: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout_s:g} s\n{detail()}")


@contextmanager
def node(name: str, memory_url: str, data_dir: Path, env: dict[str, str]) -> Iterator[Node]:
    """``npc serve --memory-url`` on a free loopback port, ready; stopped (SIGTERM, drained) on exit."""
    port = free_port()
    args = [sys.executable, "-m", "npc_runtime.cli", "serve", "--port", str(port), "--memory-url", memory_url,
            "--tts", "none", "--asr", "none", "--no-rag", "--data-dir", str(data_dir), "--log-format", "json",
            "--drain-timeout", "20"]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **env})
    log: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())

    reader = threading.Thread(target=read, name=f"npc-serve-{name}", daemon=True)
    reader.start()
    server = Node(name, proc, port, reader, log)
    try:
        _wait(f"server {name} ready", lambda: proc.poll() is not None or _status(f"{server.http}/readyz") == 200, 300,
              server.tail)
        assert proc.poll() is None, f"npc serve exited early:\n{server.tail()}"
        yield server
    finally:
        stop_process(proc, reader)


@contextmanager
def balancer(nodes: list[Node], tmp: Path) -> Iterator[str]:
    """HAProxy with deploy/haproxy.cfg (its ports filled in) in front of ``nodes``; its ws:// URL."""
    haproxy = _haproxy()
    port = free_port()
    config = HAPROXY_CFG.read_text(encoding="utf-8")
    config = config.replace("bind 127.0.0.1:8765", f"bind 127.0.0.1:{port}")
    servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.port} check" for n in nodes)
    config = re.sub(r"(?m)^    server npc\d .*\n(    server npc\d .*\n)*", servers + "\n", config)
    path = tmp / "haproxy.cfg"
    path.write_text(config, encoding="utf-8")
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())

    reader = threading.Thread(target=read, name="haproxy", daemon=True)
    reader.start()
    try:
        # every server seen up by the health checks: /readyz through the balancer, as many times as there are servers
        _wait("the balancer", lambda: all(_status(f"http://127.0.0.1:{port}/readyz") == 200 for _ in nodes), 30,
              lambda: "\n".join(log[-20:]))
        time.sleep(1.0)  # the checks' rise count (docs/deploy.md: rise 2, inter 500ms)
        yield f"ws://127.0.0.1:{port}"
    finally:
        stop_process(proc, reader, timeout_s=10)


ENGINES = [
    pytest.param({"NPC_LLM": "scripted", "NPC_LLM_SCRIPT": str(SCRIPT)}, id="scripted"),
    pytest.param({}, id="embedded", marks=pytest.mark.engine),
]


@pytest.fixture(params=ENGINES)
def cluster(request: pytest.FixtureRequest, postgres: PgServer, tmp_path: Path) -> Iterator[tuple[str, list[Node], str]]:  # noqa: F811
    """(balancer URL, [server a, server b], memory URL)."""
    url = postgres.new_database("deploy")
    env = request.param
    with node("npc1", url, tmp_path / "a", env) as a, node("npc2", url, tmp_path / "b", env) as b, \
            balancer([a, b], tmp_path) as lb:
        yield lb, [a, b], url


def _npc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "npc_runtime.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=False)


async def _which(nodes: list[Node], before: list[float]) -> Node:
    """The one server whose session count grew since ``before``."""
    grown = [n for n, b in zip(nodes, before) if n.sessions() > b]
    assert len(grown) == 1, [(n.name, n.sessions(), b) for n, b in zip(nodes, before)]
    return grown[0]


async def test_a_drained_server_hands_its_player_to_the_other_with_the_memory(cluster: tuple[str, list[Node], str]) -> None:
    lb, nodes, memory_url = cluster
    scene = scene_dict("ramen_shop.json")
    player_url = f"{lb}/?player=kai"

    before = [n.sessions() for n in nodes]
    async with NpcClient.connect(player_url) as client:
        await client.start_session("jin", scene=scene, player_id="kai", player_name="Kai")
        first = await _which(nodes, before)
        [*_, end] = [e async for e in client.say(FACT)]
        assert isinstance(end, p.ResponseEnd) and end.status == "completed"

        # sticky: the same player's next connection lands on the same server
        before = [n.sessions() for n in nodes]
        async with NpcClient.connect(player_url) as again:
            await again.start_session("nova", scene=scene_dict("lab.json"), player_id="kai")
            assert await _which(nodes, before) is first

        # a response is running when the server is told to stop: it finishes, then the connection closes with 1001
        await client.send(p.TextInput(text="Tell me the whole story of this shop."))
        events: list[Any] = []
        while not any(isinstance(e, p.ResponseStart) for e in events):
            events.append(await client.recv(timeout=60))
        first.proc.terminate()  # SIGTERM: drain
        code = None
        try:
            while True:
                events.append(await client.recv(timeout=60))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
        ends = [e for e in events if isinstance(e, p.ResponseEnd)]
        assert code == 1001, (code, first.tail())
        assert [e.status for e in ends] == ["completed"], [type(e).__name__ for e in events]
    assert first.proc.wait(timeout=60) == 0, first.tail()
    assert first.events("draining") and first.events("drained; closing connections (1001)")[0]["responses_cut"] == 0

    other = next(n for n in nodes if n is not first)
    before = [n.sessions() for n in nodes if n is other]
    async with NpcClient.connect(player_url) as client:  # reconnect through the balancer: the other server
        await client.start_session("jin", scene=scene, player_id="kai", player_name="Kai")
        assert other.sessions() == before[0] + 1, "the reconnect did not land on the other server"
        [*_, end] = [e async for e in client.say("Do you remember what I can't eat?")]
        assert isinstance(end, p.ResponseEnd) and end.status == "completed"
    remembered = [r for r in other.events("remembered")]
    # what it recalled at session.start: all four lines, the reply that was running at the drain included (the drain
    # writes memory before its 1001 close: Session.save)
    assert remembered and remembered[-1]["entries"] >= 4, other.tail()
    shown = _npc("memory", "show", "kai", "jin", "--memory-url", memory_url, "--all")
    assert shown.returncode == 0 and f"player> {FACT}" in shown.stdout, shown.stdout + shown.stderr


async def test_bench_through_the_balancer_splits_the_load(cluster: tuple[str, list[Node], str], tmp_path: Path) -> None:
    lb, nodes, _ = cluster
    before = [n.sessions() for n in nodes]
    out = tmp_path / "bench"
    done = _npc("bench", "--server", lb, "--clients", "8", "--turns", "2", "--mode", "text", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "bench.json").read_text())
    got = [n.sessions() - b for n, b in zip(nodes, before)]
    assert all(g >= 1 for g in got) and sum(got) >= 8, got  # both servers served clients of the one bench
    assert report["config"]["clients"] == 8 and report["throughput"]["answered"] >= 16, report.get("throughput")


# -- the drain itself, in-process (a real server and client on loopback; the fake engine's replies take their time)

async def _drain_case(token_delay: float, drain_timeout_s: float) -> tuple[list[Any], int | None, list[dict[str, Any]], bool]:
    """A turn is running when the server drains: the client's events, the close code, the drain's log, and whether a
    new connection could still be made during the drain."""
    reply = "Long ago, before this shop had a sign, my grandmother cooked broth in a single iron pot every morning."
    async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(
            llm=FakeLLM([reply], token_delay=token_delay)))) as server:
        url = server.url  # (a drained server has no listening socket, so no port, left)
        async with NpcClient.connect(url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai")
            await client.send(p.TextInput(text="Tell me the whole story."))
            events: list[Any] = []
            while not any(isinstance(e, p.TextDelta) for e in events):
                events.append(await client.recv(timeout=20))
            with structlog.testing.capture_logs() as logs:
                draining = asyncio.create_task(server.drain(drain_timeout_s), name="drain")
                await asyncio.sleep(0.05)
                assert server.draining
                refused = False
                try:
                    async with NpcClient.connect(url, open_timeout=2):
                        pass
                except OSError:
                    refused = True
                code = None
                try:
                    while True:
                        events.append(await client.recv(timeout=20))
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd is not None else None
                await asyncio.wait_for(draining, 30)
    return events, code, [e for e in logs if e["event"].startswith("drained")], refused


async def test_drain_lets_the_running_response_finish_then_closes_with_1001() -> None:
    events, code, drained, refused = await _drain_case(token_delay=0.03, drain_timeout_s=20)
    assert refused, "the listener still accepted a connection while draining"
    ends = [e for e in events if isinstance(e, p.ResponseEnd)]
    assert [e.status for e in ends] == ["completed"] and code == 1001
    assert [e["responses_cut"] for e in drained] == [0]


async def test_drain_cuts_what_is_still_running_at_its_timeout() -> None:
    events, code, drained, _ = await _drain_case(token_delay=0.5, drain_timeout_s=0.3)
    assert code == 1001 and not any(isinstance(e, p.ResponseEnd) and e.status == "completed" for e in events)
    assert [e["responses_cut"] for e in drained] == [1]
