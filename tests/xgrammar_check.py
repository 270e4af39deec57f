"""Check GBNF grammars with xgrammar (vLLM's grammar backend), in whatever venv has it.

Reads a JSON list on stdin; each item is a grammar string or an object
``{"grammar": str, "accept": [str, ...], "reject": [str, ...]}``. Prints one JSON object per
line: ``{"index": i, "ok": bool, "error": str | null, "accepted": [bool...], "rejected": [bool...]}``
where ``accepted[k]`` says whether xgrammar matched ``accept[k]`` completely and
``rejected[k]`` whether it refused ``reject[k]``. Exit status 0 when every grammar compiled.

Used by tests/test_grammar.py with the vLLM venv's Python:
``$NPC_VLLM_HOME/venv/bin/python tests/xgrammar_check.py < grammars.json``.
"""

from __future__ import annotations

import json
import sys

import xgrammar

# A byte-level toy vocabulary (one token per ASCII character, plus an end token): enough to
# compile a grammar and run the matcher without loading a real tokenizer.
_VOCAB = [chr(i) for i in range(32, 127)] + ["\n", "</s>"]


def _matches(compiled: "xgrammar.CompiledGrammar", text: str) -> bool:
    """Whether ``text`` is a complete sentence of the grammar (then the end token is allowed)."""
    matcher = xgrammar.GrammarMatcher(compiled)
    return bool(matcher.accept_string(text)) and bool(matcher.accept_token(len(_VOCAB) - 1))


def check(item: object, compiler: "xgrammar.GrammarCompiler") -> dict:
    spec = {"grammar": item} if isinstance(item, str) else dict(item)  # type: ignore[arg-type]
    result: dict = {"ok": False, "error": None, "accepted": [], "rejected": []}
    try:
        xgrammar.Grammar.from_ebnf(spec["grammar"], root_rule_name="root")
        compiled = compiler.compile_grammar(spec["grammar"])
    except Exception as exc:  # noqa: BLE001 - reported per grammar
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return result
    result["ok"] = True
    result["accepted"] = [_matches(compiled, s) for s in spec.get("accept", [])]
    result["rejected"] = [not _matches(compiled, s) for s in spec.get("reject", [])]
    return result


def main() -> int:
    items = json.load(sys.stdin)
    info = xgrammar.TokenizerInfo(_VOCAB, stop_token_ids=[len(_VOCAB) - 1])
    compiler = xgrammar.GrammarCompiler(info)
    all_ok = True
    for index, item in enumerate(items):
        result = check(item, compiler)
        all_ok &= result["ok"]
        print(json.dumps({"index": index, **result}), flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
