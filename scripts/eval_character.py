#!/usr/bin/env python
"""The conversation-quality eval (tests/data/character_eval.jsonl) on a real engine, scored by rule checks.

    .venv/bin/python scripts/eval_character.py [--llm embedded|vllm --vllm-url URL] [--seeds 1 2 3] [--json out.json]
    .venv/bin/python scripts/eval_character.py --limit 6 --tts none     # a small slice, text only
    .venv/bin/python scripts/eval_character.py --prompt-profile full --llm-adapter none   # a profile, the base model
    .venv/bin/python scripts/eval_character.py --cases training/data/heldout.jsonl --characters training/personas \
        --scenes-dir training/scenes                                    # the training data's held-out split

Each case is one turn of a shipped character (characters/) in a scene (``--scenes-dir`` first, then the
shipped scenes/), with the memory summary, retrieved passages, history and game event the case gives;
the reply is voiced with the character's own voice (``--tts none``: no voice, no first-audio figure).
The checks are in npc_runtime/evals_character.py. Prints each case (reply, failed checks, latency),
then the pass rate of each check, overall, and the median latencies; ``--json`` keeps every reply.
Exit status 1 when an invalid action was emitted (must never happen: the grammar), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime import log  # noqa: E402
from npc_runtime.dialogue.turn import Dialogue  # noqa: E402
from npc_runtime.evals_character import CHECKS, CharacterResult, load_character_cases, median_ms, pass_rates, run_character_case  # noqa: E402
from npc_runtime.persona.loader import load_persona  # noqa: E402
from npc_runtime.scene import Scene  # noqa: E402
from npc_runtime.scene_files import scene_path  # noqa: E402
from npc_runtime.settings import Settings  # noqa: E402
from npc_runtime.wiring import VoiceBank, build_llm  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=ROOT / "tests" / "data" / "character_eval.jsonl")
    ap.add_argument("--characters", type=Path, default=ROOT / "characters")
    ap.add_argument("--scenes-dir", type=Path, default=ROOT / "tests" / "data" / "scenes",
                    help="scenes looked up before the shipped scenes/ (default: tests/data/scenes)")
    ap.add_argument("--llm", choices=["embedded", "vllm"], default="embedded")
    ap.add_argument("--vllm-url")
    ap.add_argument("--vllm-model")
    ap.add_argument("--llm-adapter", metavar="auto|none|PATH", help="the embedded model's LoRA adapter (default: the server's, auto)")
    ap.add_argument("--prompt-profile", choices=["auto", "compact", "full", "tuned"], default="auto",
                    help="the prompt profile for every character (auto: the persona's, else the engine's)")
    ap.add_argument("--tts", choices=["auto", "piper", "espeak", "none"], default="auto",
                    help="voice the replies (auto: each character's own voice) to measure first audio; none: text only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--limit", type=int, help="run only the first N cases")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run only these case ids")
    ap.add_argument("--json", type=Path, help="write every reply, its checks and timings here")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    log.configure(level="warning")
    cases = load_character_cases(args.cases)
    if args.only:
        cases = [c for c in cases if c.id in set(args.only)]
    cases = cases[: args.limit] if args.limit else cases
    given = (("vllm_url", args.vllm_url), ("vllm_model", args.vllm_model), ("llm_adapter", args.llm_adapter))
    settings = Settings(llm=args.llm, tts=args.tts, prompt_profile=args.prompt_profile, **{k: v for k, v in given if v})
    personas = {cid: load_persona(args.characters / f"{cid}.yaml") for cid in sorted({c.character for c in cases})}
    llm, voices = build_llm(settings), VoiceBank(settings)
    results: list[CharacterResult] = []
    try:
        await llm.warm()
        await voices.warm(list(personas.values()))
        dialogue = Dialogue(llm=llm, prompt_profile=settings.prompt_profile)
        for seed in args.seeds:
            for case in cases:
                persona, scene = personas[case.character], _scene(args.scenes_dir, case.scene)
                # as a session does at its start: the prompt prefix is cached before the player speaks
                await dialogue.prepare(persona, scene.without(persona.id), player_name=case.player_name)
                r = await run_character_case(dialogue, persona, scene, case, seed=seed, tts=voices(persona))
                results.append(r)
                if not args.quiet:
                    _print_case(r)
    finally:
        await voices.aclose()
        await llm.aclose()
    report = _report(results)
    print(report["table"])
    print(f"llm {llm.name}{f' + adapter {a}' if (a := getattr(llm, 'adapter', None)) else ''}; prompt profile {args.prompt_profile}; tts {args.tts}; seeds {args.seeds}; {len(cases)} cases; "
          f"machine: {_machine()}")
    if args.json:
        args.json.write_text(json.dumps({
            "llm": llm.name, "prompt_profile": args.prompt_profile, "llm_adapter": settings.llm_adapter,
            "adapter": str(adapter) if (adapter := getattr(llm, "adapter", None)) else None, "tts": args.tts,
            "machine": _machine(), "seeds": args.seeds, "cases_file": str(args.cases),
            "rates": report["rates"], "latency_ms": report["latency"], "invalid": report["invalid"],
            "results": [asdict(r) for r in results],
        }, indent=2))
    return 0 if report["invalid"] == 0 else 1


#: Kinds of case whose point is the action decision: a request to act (``act``, ``act_give``...), for something
#: absent, with a verb the persona may not use, or "the usual" from memory (issue 14's "action cases").
ACTION_KINDS = ("absent", "not_allowed", "memory_act")


def is_action_case(kind: str) -> bool:
    return kind == "act" or kind.startswith("act_") or kind in ACTION_KINDS


def _machine() -> str:
    """The CPU model and core count (where the latencies were measured)."""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return f"{cpu or platform.machine()}, {os.cpu_count()} cores"


def _scene(scenes_dir: Path, name: str) -> Scene:
    local = scenes_dir / f"{name}.json"
    path = local if local.is_file() else scene_path(name)
    return Scene.model_validate_json(path.read_text(encoding="utf-8"))


def _print_case(r: CharacterResult) -> None:
    failed = [k for k, v in r.checks.items() if v is False]
    mark = "PASS" if r.passed else "fail"
    said = f"say={r.say!r}" if r.say else ""
    event = f"event={r.event!r}" if r.event else ""
    audio = f"{r.first_audio_ms:.0f}" if r.first_audio_ms is not None else "-"
    token = f"{r.first_token_ms:.0f}" if r.first_token_ms is not None else "-"
    print(f"{mark} {r.case_id} [{r.kind}] seed={r.seed} {said}{' ' if said and event else ''}{event}\n"
          f"     -> {r.reply.text!r} actions={r.reply.actions} emotions={r.reply.emotions}"
          f"{' TRUNCATED' if r.reply.truncated else ''}\n"
          f"     failed={failed or '-'} first_token={token} ms first_audio={audio} ms end={r.end_ms:.0f} ms")


def _report(results: list[CharacterResult]) -> dict:
    rates = pass_rates(r.checks for r in results)
    lines = ["", f"{'check':<16}{'passed':>6}{'asked':>7}{'rate':>8}"]
    acting = [r for r in results if r.must]
    quiet = [r for r in results if r.must == []]
    rows = [(name, *rates[name]) for name in CHECKS]
    rows.insert(2, ("  must act", sum(bool(r.checks["action"]) for r in acting), len(acting)))
    rows.insert(3, ("  none required", sum(bool(r.checks["action"]) for r in quiet), len(quiet)))
    requests = [r for r in results if is_action_case(r.kind)]
    rows.insert(4, ("  action cases", sum(bool(r.checks["action"]) for r in requests), len(requests)))
    rows.append(("overall", *rates["overall"]))
    for kind in sorted({r.kind for r in results}):
        of_kind = [r for r in results if r.kind == kind]
        rows.append((f"  {kind}", sum(r.passed for r in of_kind), len(of_kind)))
    for name, p, n in rows:
        lines.append(f"{name:<16}{p:>6}{n:>7}{(f'{p / n:.0%}' if n else '-'):>8}")
    latency = {
        "first_token": median_ms(r.first_token_ms for r in results),
        "first_text": median_ms(r.first_text_ms for r in results),
        "first_audio": median_ms(r.first_audio_ms for r in results),
        "end": median_ms(r.end_ms for r in results),
    }
    lines.append("median latency (ms): " + ", ".join(f"{k} {v if v is not None else '-'}" for k, v in latency.items()))
    invalid = sum(len(r.reply.invalid) + r.reply.dropped_tags for r in results)
    truncated = sum(r.reply.truncated for r in results)
    lines.append(f"invalid actions (or dropped tags): {invalid}; truncated at max_tokens: {truncated}/{len(results)}")
    rates["action_cases"] = (sum(bool(r.checks["action"]) for r in requests), len(requests))
    return {"table": "\n".join(lines), "rates": {k: {"passed": p, "asked": n} for k, (p, n) in rates.items()},
            "latency": latency, "invalid": invalid}


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
