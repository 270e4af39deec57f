"""The embedded engine proves itself on this CPU (issue 13): a short generation in a child process, native
kernels (llama.cpp's extra buffer types: AMX, repacked weights) or the safe ones when the native crash or give
garbage; the verdict cached per build + CPU + model; ``npc serve`` falls back, says so in one log line and in
``/readyz``, and answers. The faults are forced (``NPC_ENGINE_PROBE_FAULT``): the fallback is tested on every CPU,
whether or not its native kernels work."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from npc_runtime.llm import llama_probe
from npc_runtime.llm.base import ChatMessage, GenerationRequest
from npc_runtime.llm.llama_cpp import LlamaCppEngine, default_model_path
from npc_runtime.llm.llama_probe import ProbeResult

ROOT = Path(__file__).resolve().parents[1]
NPC = [sys.executable, "-m", "npc_runtime.cli"]


def _ok(kernels: str, nll: float) -> ProbeResult:
    return ProbeResult(kernels, True, nll=nll, prompt_tps=100.0, gen_tps=50.0, text="Paris is the capital.")  # type: ignore[arg-type]


def test_judge_and_decide() -> None:
    """Pure rules: garbage numbers or text fail a run; the safe kernels win unless the native agree with them."""
    assert llama_probe._judge(_ok("native", 3.8)).ok
    assert "garbage" in llama_probe._judge(_ok("native", 10.8)).reason
    assert "garbage" in llama_probe._judge(_ok("native", float("nan"))).reason
    assert not llama_probe._judge(dataclasses.replace(_ok("native", 3.8), text="\x00\x01\x02\x03")).ok
    crashed = ProbeResult("native", False, "crashed (SIGSEGV)")
    assert llama_probe._decide(_ok("native", 3.78), _ok("safe", 3.79)) == ("native", "native kernels verified")
    assert llama_probe._decide(crashed, _ok("safe", 3.79)) == ("safe", "native kernels crashed (SIGSEGV)")
    kernels, reason = llama_probe._decide(_ok("native", 5.2), _ok("safe", 3.79))
    assert kernels == "safe" and "garbage" in reason
    assert llama_probe._decide(_ok("native", 3.8), ProbeResult("safe", False, "hung for 180 s"))[0] == "native"
    with pytest.raises(RuntimeError, match="does not work on this CPU"):
        llama_probe._decide(crashed, ProbeResult("safe", False, "crashed (SIGILL)"))


@pytest.mark.engine
async def test_probe_on_this_cpu_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probe on this machine: whichever kernels it picks scored the passage like a working model, and the
    second call reads the verdict from the cache (keyed by build, CPU and model)."""
    monkeypatch.setenv("NPC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(llama_probe.FAULT_ENV, raising=False)
    model = default_model_path()
    first = await llama_probe.resolve(model)
    assert not first.cached and first.kernels in ("native", "safe")
    chosen = first.native if first.kernels == "native" else first.safe
    assert chosen is not None and chosen.ok and chosen.nll is not None and chosen.nll < llama_probe.MAX_NLL
    assert chosen.gen_tps and chosen.prompt_tps and chosen.text.strip()
    assert first.safe is not None and first.safe.ok  # the reference configuration works everywhere we run
    files = list((tmp_path / "engine-probe").glob("*.json"))
    assert [f.stem for f in files] == [first.key]
    second = await llama_probe.resolve(model)
    assert second.cached and (second.kernels, second.reason, second.key) == (first.kernels, first.reason, first.key)
    assert "kernels=" in second.summary() and "cached probe" in second.summary()


@pytest.mark.engine
@pytest.mark.parametrize(("fault", "why"), [("crash", "crashed (SIGSEGV)"), ("garbage", "garbage")])
async def test_forced_fault_falls_back_to_safe_kernels(fault: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A native child that dies of SIGSEGV, or computes garbage, makes the engine load the safe kernels and
    generate; an injected fault is never cached."""
    monkeypatch.setenv("NPC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(llama_probe.FAULT_ENV, fault)
    engine = LlamaCppEngine(n_ctx=1024, max_session_states=0)
    try:
        await engine.warm()
        assert "kernels=safe" in engine.status and why in engine.status, engine.status
        request = GenerationRequest(messages=[ChatMessage("user", "Say hello to the baker.")], max_tokens=12, temperature=0.0)
        text = "".join([chunk.text async for chunk in engine.stream(request)])
        assert text.strip()
    finally:
        await engine.aclose()
    assert not (tmp_path / "engine-probe").exists() or not list((tmp_path / "engine-probe").iterdir())


def _readyz(port: int, proc: subprocess.Popen[str], timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "npc serve exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return resp.read().decode()
        except (urllib.error.HTTPError, OSError):
            time.sleep(0.1)
    raise AssertionError("npc serve never became ready")


@pytest.mark.engine
def test_npc_serve_falls_back_says_so_and_answers(tmp_path: Path) -> None:
    """``npc serve`` on a machine whose native kernels crash (forced): one warning line in the log, /readyz says
    which kernels and why, and a turn is answered."""
    env = {**os.environ, "NPC_LOG_FORMAT": "json", "NPC_CACHE_DIR": str(tmp_path / "cache"),
           llama_probe.FAULT_ENV: "crash", "NPC_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([*NPC, "serve", "--port", "0", "--tts", "none", "--asr", "none", "--no-rag", "--no-memory"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    log: list[str] = []
    try:
        assert proc.stderr is not None
        port = None
        for _ in range(400):
            line = proc.stderr.readline()
            log.append(line)
            if match := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "".join(log[-20:])
        body = _readyz(port, proc)
        assert body.startswith("ready\n") and "llm: llama.cpp kernels=safe (native kernels crashed (SIGSEGV)" in body, body
        say = subprocess.run([*NPC, "say", "jin", "Good evening.", "--json", "--server", f"ws://127.0.0.1:{port}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert say.returncode == 0, say.stderr[-2000:]
        end = json.loads(say.stdout.strip().splitlines()[-1])
        assert end["type"] == "response.end" and end["status"] == "completed" and end["text"].strip(), end
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            log.extend(proc.stderr.readlines())
            proc.stderr.close()
    warnings = [json.loads(line) for line in log if "native kernels fail" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and "SIGSEGV" in warnings[0]["reason"], warnings
