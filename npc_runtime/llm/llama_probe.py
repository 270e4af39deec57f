"""Does the embedded engine work on this CPU? A short generation in a child process says so.

llama.cpp is built for the CPU it is installed on (``-march=native``), and its fastest CPU paths — weights
repacked into "extra buffer types" (AMX tiles on Intel Xeons, interleaved AVX blocks) — are the least
tested. On an Intel Xeon with AMX, llama-cpp-python 0.3.36 built by GCC 12 crashes at the first matrix
product (docs/hardware.md has the root cause). So before the engine loads the model in the server's
process, a child process loads it with the *native* configuration and checks that it

* does not crash or hang (a signal or a timeout kills only the child),
* gives sane numbers: the mean negative log-likelihood of a fixed English passage stays far below that of
  a uniform guess (``ln 49152`` ≈ 10.8 nats for SmolLM2) and within a margin of the *safe*
  configuration's (no extra buffer types: llama.cpp's plain quantized kernels), which is also probed,
* generates: a greedy continuation of a chat prompt yields printable text.

The verdict — ``native`` or ``safe`` — is cached per build and CPU (the native libraries' identity, the CPU
model and flags, the model file) under ``$NPC_CACHE_DIR`` (default ``~/.cache/npc_runtime``), so only a
new build, a new machine or a new model pays the few seconds. ``scripts/setup.sh`` runs it right after
building (``python -m npc_runtime.llm.llama_probe``); ``npc serve`` runs it before its warm-up when no
verdict is cached.

Test-only fault injection: ``NPC_ENGINE_PROBE_FAULT=crash`` makes the native child die of SIGSEGV before
its first decode, ``garbage`` makes it compute with a broken normalisation (numbers, not words, go wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

Kernels = Literal["native", "safe"]

#: A plain English passage: a working model predicts it well (~3-5 nats a token), a broken one does not.
PASSAGE = ("The old harbour town wakes early. Fishermen carry their nets down to the boats, the baker opens "
           "his shop before sunrise, and the smell of fresh bread drifts along the narrow streets. By noon the "
           "market is full of people buying fish, vegetables and warm loaves for their families.")
CHAT_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
MAX_NLL = 7.0            #: nats per token; uniform over SmolLM2's vocabulary is 10.8
MAX_NLL_GAP = 0.5        #: native vs safe; kernels differ in rounding only (a few hundredths here)
GENERATE_TOKENS = 24
PROBE_TIMEOUT_S = 180.0
FAULT_ENV = "NPC_ENGINE_PROBE_FAULT"


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """One configuration's run in a child process."""

    kernels: Kernels
    ok: bool
    reason: str = ""              #: why it failed ("" when ok)
    nll: float | None = None      #: mean nats per token of PASSAGE
    prompt_tps: float | None = None
    gen_tps: float | None = None
    text: str = ""                #: the greedy continuation (for the log; never compared to a constant)
    buffers: str = ""             #: the model buffers llama.cpp used (e.g. "AMX, CPU_Mapped")


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Which kernels the engine uses on this build and CPU, and why."""

    kernels: Kernels
    reason: str
    key: str
    cpu: str
    native: ProbeResult
    safe: ProbeResult | None
    cached: bool = False

    def summary(self) -> str:
        """One line for logs and ``/readyz``."""
        src = "cached probe" if self.cached else "probe"
        speed = next((r for r in (self.native, self.safe) if r is not None and r.kernels == self.kernels), None)
        tps = f", {speed.gen_tps:.0f} tok/s" if speed is not None and speed.gen_tps else ""
        return f"llama.cpp kernels={self.kernels} ({self.reason}; {src}{tps}; cpu: {self.cpu})"


# -- loading llama.cpp with or without extra buffer types (also used by the engine) ----------------


@contextlib.contextmanager
def _model_params(llama_cpp: Any, *, extra_bufts: bool) -> Iterator[None]:
    """``Llama()`` takes no ``use_extra_bufts`` argument: hand it default model params with the field
    set. Only for the duration of one constructor call, in the thread that makes it."""
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def patched() -> Any:
        params = original()
        params.use_extra_bufts = extra_bufts
        return params

    module.llama_model_default_params = patched
    try:
        yield
    finally:
        module.llama_model_default_params = original


def load_llama(llama_cpp: Any, config: dict[str, Any], *, kernels: Kernels) -> Any:
    """``llama_cpp.Llama(**config)`` with the native (extra buffer types) or safe kernels."""
    with _model_params(llama_cpp, extra_bufts=kernels == "native"):
        return llama_cpp.Llama(**config, verbose=False)


# -- identity of build + CPU + model ------------------------------------------------------------


def cpu_description() -> str:
    """The CPU model and its SIMD/matrix features that matter to llama.cpp's kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
            elif name.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    shown = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")) or f in ("avx2", "fma", "f16c", "asimd", "sve"))
    return f"{model} [{' '.join(shown) or 'no AVX2'}]"


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.split(":", 1)[0].strip() in ("flags", "Features"):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    return platform.machine()


def _native_libs() -> list[tuple[str, int, int]]:
    """The llama_cpp package's native libraries: a rebuild changes their size or time."""
    try:
        dist = importlib.metadata.distribution("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return []
    libs = []
    for file in dist.files or []:
        if ".so" in file.name or file.name.endswith((".dylib", ".dll")):
            path = Path(str(file.locate()))
            with contextlib.suppress(OSError):
                st = path.stat()
                libs.append((file.name, st.st_size, st.st_mtime_ns))
    return sorted(libs)


def probe_key(model_path: Path) -> str:
    """A digest of everything the verdict depends on."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    st = model_path.stat()
    ident = {"llama_cpp": version, "libs": _native_libs(), "cpu": cpu_description(), "flags": _cpu_flags(),
             "model": [model_path.name, st.st_size], "python": platform.python_version()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def cache_dir() -> Path:
    if os.environ.get("NPC_CACHE_DIR"):
        return Path(os.environ["NPC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "npc_runtime"


# -- the child: run one configuration --------------------------------------------------------------


def _log_softmax_nll(scores: Any, tokens: list[int]) -> float:
    import numpy as np

    logits = np.asarray(scores[: len(tokens) - 1], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    picked = logits[np.arange(len(tokens) - 1), tokens[1:]]
    return float((logz - picked).mean())


def run_child(model_path: Path, kernels: Kernels) -> dict[str, Any]:
    """Load, score PASSAGE, generate greedily; the figures as a dict (crashes are the parent's to see)."""
    import llama_cpp

    fault = os.environ.get(FAULT_ENV, "") if kernels == "native" else ""
    config: dict[str, Any] = dict(model_path=str(model_path), n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True)
    if fault == "garbage":  # numbers go wrong, words still come out: what a miscompiled kernel looks like
        config["kv_overrides"] = {"llama.attention.layer_norm_rms_epsilon": 1.0e4}
        kernels = "safe"  # on every CPU, so that the injected fault is the only one
    buffers: list[str] = []

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: Any) -> None:  # "load_tensors: AMX model buffer size = ..."
        line = text.decode("utf-8", errors="replace")
        if "model buffer size" in line:
            buffers.append(line.split(":", 1)[-1].split("model buffer")[0].strip())

    llama_cpp.llama_log_set(on_log, None)
    llm = load_llama(llama_cpp, config, kernels=kernels)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    tokens = llm.tokenize(PASSAGE.encode(), add_bos=False)
    t0 = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - t0
    nll = _log_softmax_nll(llm.scores, tokens)
    llm.reset()
    prompt = llm.tokenize(CHAT_PROMPT.encode(), add_bos=False, special=True)
    out, first = [], None
    for i, token in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True)):
        if i == 0:
            first = time.perf_counter()
        if token == llm.token_eos() or i >= GENERATE_TOKENS:
            break
        out.append(token)
    gen_s = time.perf_counter() - first if first is not None else 0.0
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    llm.close()
    return {"nll": nll, "prompt_tps": len(tokens) / prompt_s if prompt_s else None,
            "gen_tps": (len(out) - 1) / gen_s if gen_s and len(out) > 1 else None, "text": text,
            "buffers": ", ".join(dict.fromkeys(buffers))}


# -- the parent: judge each configuration, decide, cache -------------------------------------------


def _signal_name(returncode: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(-returncode).name
    return f"signal {-returncode}"


async def probe(model_path: Path, kernels: Kernels, *, timeout: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Run one configuration in a child process and judge what it gives back."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "npc_runtime.llm.llama_probe", "--child", kernels, "--model", str(model_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ProbeResult(kernels, False, f"hung for {timeout:.0f} s")
    if proc.returncode and proc.returncode < 0:
        return ProbeResult(kernels, False, f"crashed ({_signal_name(proc.returncode)})")
    tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
    try:
        figures = json.loads(out.decode().strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return ProbeResult(kernels, False, f"failed (exit {proc.returncode}): {tail[0][:200]}")
    result = ProbeResult(kernels, True, **figures)
    return _judge(result)


def _judge(result: ProbeResult) -> ProbeResult:
    nll, text = result.nll, result.text
    if nll is None or not math.isfinite(nll) or nll > MAX_NLL:
        return dataclasses.replace(result, ok=False, reason=f"garbage (passage scored {nll:.1f} nats/token, limit {MAX_NLL})")
    if not text.strip() or sum(c.isprintable() or c.isspace() for c in text) < 0.9 * len(text):
        return dataclasses.replace(result, ok=False, reason="garbage (no printable text generated)")
    return result


def _decide(native: ProbeResult, safe: ProbeResult) -> tuple[Kernels, str]:
    if not safe.ok and not native.ok:
        raise RuntimeError(f"llama.cpp does not work on this CPU: native kernels {native.reason}; safe kernels {safe.reason}")
    if not native.ok:
        return "safe", f"native kernels {native.reason}"
    if not safe.ok:
        return "native", f"safe kernels {safe.reason}"
    assert native.nll is not None and safe.nll is not None
    if abs(native.nll - safe.nll) > MAX_NLL_GAP:
        return "safe", f"native kernels give garbage ({native.nll:.2f} vs {safe.nll:.2f} nats/token)"
    return "native", "native kernels verified"


async def resolve(model_path: Path, *, refresh: bool = False, timeout: float = PROBE_TIMEOUT_S) -> Verdict:
    """The cached verdict for this build, CPU and model, or a new one (both configurations probed, one
    after the other: never two models loading at once). Raises RuntimeError when neither works."""
    key = probe_key(model_path)
    path = cache_dir() / "engine-probe" / f"{key}.json"
    fault = os.environ.get(FAULT_ENV, "")
    if not refresh and not fault and path.is_file():
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text())
            native = ProbeResult(**data["native"])
            safe = ProbeResult(**data["safe"]) if data.get("safe") else None
            return Verdict(data["kernels"], data["reason"], key, data["cpu"], native, safe, cached=True)
    native = await probe(model_path, "native", timeout=timeout)
    safe = await probe(model_path, "safe", timeout=timeout)
    kernels, reason = _decide(native, safe)
    verdict = Verdict(kernels, reason, key, cpu_description(), native, safe)
    if not fault:  # an injected fault is never remembered
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**dataclasses.asdict(verdict), "cached": True}, indent=1))
        tmp.replace(path)
    return verdict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npc_runtime.llm.llama_probe",
                                 description="Prove the embedded engine works on this CPU; print and cache the verdict.")
    ap.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2)")
    ap.add_argument("--refresh", action="store_true", help="probe again even when a verdict is cached")
    ap.add_argument("--json", action="store_true", help="print the verdict as JSON")
    ap.add_argument("--child", choices=["native", "safe"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.model is None:
        from npc_runtime.llm.llama_cpp import default_model_path

        args.model = default_model_path()
    if args.child:
        print(json.dumps(run_child(args.model, args.child)), flush=True)
        return 0
    try:
        verdict = asyncio.run(resolve(args.model, refresh=args.refresh))
    except RuntimeError as exc:
        print(f"engine probe: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(verdict), indent=1))
    else:
        for r in (verdict.native, verdict.safe):
            if r is not None:
                state = "ok" if r.ok else r.reason
                figures = f"{r.nll:.2f} nats/token, prompt {r.prompt_tps:.0f} tok/s, generation {r.gen_tps:.0f} tok/s" if r.ok and r.nll is not None and r.prompt_tps and r.gen_tps else ""
                print(f"engine probe: {r.kernels:6} {state}{'; ' + figures if figures else ''}{'; buffers ' + r.buffers if r.buffers else ''}")
        print(f"engine probe: {verdict.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
