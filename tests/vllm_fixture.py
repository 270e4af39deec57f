"""A real vLLM server on loopback for the ``vllm``-marked tests.

``vllm_server`` (session scope) starts ``scripts/vllm_server.sh`` on a free 127.0.0.1 port,
waits until ``/health`` answers (up to ``NPC_VLLM_START_TIMEOUT`` s, default 180) and kills
the server's process group at the end. Without the environment made by
``scripts/setup_vllm.sh`` the tests are skipped — or fail when ``NPC_REQUIRE_VLLM=1``.

Import it from ``tests/conftest.py`` (``from vllm_fixture import vllm_server``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / "scripts" / "vllm_server.sh"
MODEL_NAME = "smollm2-135m-instruct"


def vllm_home() -> Path:
    return Path(os.environ.get("NPC_VLLM_HOME") or Path.home() / ".cache" / "npc_runtime" / "vllm")


def vllm_env_problem() -> str | None:
    """Why the vLLM environment is unusable, or None when it is there."""
    home = vllm_home()
    model_dir = Path(os.environ.get("NPC_VLLM_MODEL_DIR") or home / "models" / "smollm2-135m-instruct-bf16")
    if not (home / "venv" / "bin" / "python").exists():
        return f"no vLLM venv at {home / 'venv'} (run scripts/setup_vllm.sh)"
    if not (model_dir / "config.json").exists():
        return f"no converted model at {model_dir} (run scripts/setup_vllm.sh)"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("NPC_REQUIRE_VLLM") == "1":
        pytest.fail(f"NPC_REQUIRE_VLLM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SHM = Path("/dev/shm")


def _shm_names() -> set[str]:
    try:
        return {p.name for p in SHM.iterdir() if p.name.startswith(("psm_", "sem.mp-"))}
    except OSError:
        return set()


def _mapped_shm() -> set[str]:
    """Names under /dev/shm that some live process still maps."""
    names: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text(errors="replace")
        except OSError:
            continue
        names.update(line.rsplit("/dev/shm/", 1)[1].split()[0] for line in text.splitlines() if "/dev/shm/" in line)
    return names


@dataclass
class VLLMServer:
    base_url: str
    model: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_after_s: float = 0.0
    shm_before: frozenset[str] = frozenset()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def kill(self, sig: int = signal.SIGTERM, wait_s: float = 20.0) -> None:
        """Signal the whole process group (API server, engine core, worker), then reap."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Children may outlive the leader for a moment: make sure the group is gone.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
            time.sleep(0.5)
        except ProcessLookupError:
            pass
        # A killed vLLM leaves its shared-memory message queues (~400 MB, sparse) in /dev/shm:
        # remove the ones it created that no live process maps any more.
        for name in (_shm_names() - self.shm_before) - _mapped_shm():
            (SHM / name).unlink(missing_ok=True)


def start_vllm_server(log_path: Path, *, timeout_s: float | None = None) -> VLLMServer:
    """Start scripts/vllm_server.sh on a free port and wait for /health (fails on timeout)."""
    timeout_s = timeout_s or float(os.environ.get("NPC_VLLM_START_TIMEOUT", "180"))
    port = free_port()
    shm_before = frozenset(_shm_names())
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", str(SERVER_SCRIPT), str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=REPO,
        )
    server = VLLMServer(f"http://127.0.0.1:{port}", MODEL_NAME, port, proc, log_path, shm_before=shm_before)
    t0 = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                server.kill()
                pytest.fail(f"vLLM server exited with {proc.returncode} while starting:\n{server.log_tail()}",
                            pytrace=False)
            try:
                if client.get(f"{server.base_url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > timeout_s:
                server.kill()
                pytest.fail(f"vLLM server not ready after {timeout_s:g} s:\n{server.log_tail()}", pytrace=False)
            time.sleep(0.5)
    server.ready_after_s = time.monotonic() - t0
    return server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    problem = vllm_env_problem()
    if problem:
        skip_or_fail(problem)
    server = start_vllm_server(tmp_path_factory.mktemp("vllm") / "server.log")
    print(f"\nvLLM server ready on {server.base_url} after {server.ready_after_s:.1f} s (log {server.log_path})")
    try:
        yield server
    finally:
        server.kill()
