#!/usr/bin/env python
"""The public action eval (../shared/eval/actions.jsonl) on a real engine.

    .venv/bin/python scripts/eval_actions.py [--llm embedded|vllm --vllm-url URL] [--seeds 1 2 3] [--json out.json]
    .venv/bin/python scripts/eval_actions.py --cases tests/data/dev_actions.jsonl --scenes-dir tests/data/scenes

``--cases`` runs another case file (the dev set) instead of the public one; a case's ``scene`` is looked
up in ``--scenes-dir`` first, then in the eval's ``scenes/`` folder.

Prints each case (what was said, the reply, the actions, pass/fail) and the pass rate per seed.
Every emitted action is also checked for validity against its scene (must be 100%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime import log  # noqa: E402
from npc_runtime.dialogue.turn import Dialogue  # noqa: E402
from npc_runtime.evals import load_cases, load_scene, run_case  # noqa: E402
from npc_runtime.persona.loader import load_persona  # noqa: E402
from npc_runtime.scene import Scene  # noqa: E402
from npc_runtime.settings import Settings  # noqa: E402
from npc_runtime.wiring import build_llm  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--characters", type=Path, default=ROOT / "characters")
    ap.add_argument("--llm", choices=["embedded", "vllm"], default="embedded")
    ap.add_argument("--vllm-url")
    ap.add_argument("--vllm-model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--cases", type=Path, help="a JSONL case file (default: <eval-dir>/actions.jsonl)")
    ap.add_argument("--scenes-dir", type=Path, help="where --cases' scenes live (falls back to <eval-dir>/scenes)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    log.configure(level="warning")
    settings = Settings(llm=args.llm, **{k: v for k, v in (("vllm_url", args.vllm_url), ("vllm_model", args.vllm_model)) if v})
    llm = build_llm(settings)
    await llm.warm()
    dialogue = Dialogue(llm=llm)
    cases = load_cases(args.eval_dir) if args.cases is None else _read_cases(args.cases)
    rates, invalid, results = [], 0, []
    try:
        for seed in args.seeds:
            passed = 0
            for case in cases:
                persona = load_persona(args.characters / f"{case['character']}.yaml")
                scene = _scene(args, case["scene"])
                r = await run_case(dialogue, persona, scene, case, seed=seed)
                results.append({"seed": seed, **asdict(r)})
                passed += r.passed
                invalid += len(r.invalid)
                if not args.quiet:
                    mark = "PASS" if r.passed else "fail"
                    print(f"{mark} {r.case_id} seed={seed} {r.say!r} -> {r.text!r} {r.actions} (must {r.must}) {r.end_ms:.0f} ms")
            rates.append(passed / len(cases))
            print(f"seed {seed}: {passed}/{len(cases)} passed")
    finally:
        await llm.aclose()
    print(f"pass rate: median {statistics.median(rates):.0%} over seeds {args.seeds}; invalid actions: {invalid}")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "invalid": invalid, "results": results}, indent=2))
    return 0 if invalid == 0 else 1


def _read_cases(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _scene(args: argparse.Namespace, name: str) -> Scene:
    if args.scenes_dir is not None and (args.scenes_dir / name).is_file():
        return Scene.model_validate_json((args.scenes_dir / name).read_text(encoding="utf-8"))
    return load_scene(args.eval_dir, name)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
