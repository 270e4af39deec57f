"""The LLM judge: scores the rubric's criteria, each with a line quoted from the transcript.

One request per criterion, constrained by a GBNF grammar that admits only::

    Score: <an integer of the scale>
    Evidence: "<one of the scored role's lines, verbatim>"
    Reason: <a short sentence>

so with a backend that honours grammars the answer always parses and the quote is real. The answer
is still validated (the score within the scale, the quote in the transcript) and a failing answer
is retried twice with another seed; if none validates the criterion is *unscored* — a score is
never invented. The grammar keeps to the dialect llama.cpp and xgrammar share (see
:mod:`npc_runtime.dialogue.grammar`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from npc_runtime.dialogue.grammar import gbnf_literal
from npc_runtime.errors import NpcError
from npc_runtime.llm.base import LLM, ChatMessage, GenerationRequest
from npc_runtime.sim.runner import SimResult, TurnRecord
from npc_runtime.sim.scenario import Criterion, Scenario

ATTEMPTS = 3
#: Lines of the scored role offered as evidence (the latest ones), and characters of each kept.
MAX_QUOTES = 24
REASON_CHARS = 160
_ANSWER = re.compile(r'\AScore: (-?\d+)\nEvidence: "(.*?)"(?:\nReason: ([^\n]*))?\s*\Z', re.DOTALL)


@dataclass(frozen=True, slots=True)
class CriterionScore:
    criterion: str
    score: int | None
    evidence: str | None
    reason: str


def score_grammar(lines: Sequence[str], low: int, high: int) -> str:
    """The GBNF for one criterion's answer: a score in ``low..high``, then one of ``lines`` quoted."""
    scores = " | ".join(gbnf_literal(str(n)) for n in range(low, high + 1))
    quotes = " | ".join(gbnf_literal(f'"{line}"') for line in dict.fromkeys(lines))
    return "\n".join([
        'root ::= "Score: " score "\\nEvidence: " quote "\\nReason: " reason',
        f"score ::= ({scores})",
        f"quote ::= ({quotes})",
        f"reason ::= [^\\n\\r]{{1,{REASON_CHARS}}}",
    ]) + "\n"


def transcript_text(turns: Sequence[TurnRecord]) -> str:
    out = []
    for t in turns:
        acts = "".join(f" [{a}]" for a in t.action_strings())
        out.append(f"{t.name} ({t.role}): {t.text}{acts}")
    return "\n".join(out)


class Judge:
    """Scores a :class:`SimResult` against its scenario's rubric with ``llm`` (the configured backend)."""

    def __init__(self, llm: LLM, *, seed: int = 0, temperature: float = 0.3) -> None:
        self.llm = llm
        self.seed = seed
        self.temperature = temperature

    async def score(self, scenario: Scenario, result: SimResult) -> list[CriterionScore]:
        """One :class:`CriterionScore` per rubric criterion, in rubric order."""
        role = scenario.rubric.role
        lines = [t.text for t in result.turns if t.role == role and t.text.strip()][-MAX_QUOTES:]
        if not lines:
            return [CriterionScore(c.id, None, None, f"unscored: the {role} said nothing") for c in scenario.rubric.criteria]
        scale = scenario.rubric.scale
        grammar = score_grammar(lines, scale.min, scale.max)
        try:
            await self.llm.validate_grammar(grammar)
        except NpcError as exc:
            return [CriterionScore(c.id, None, None, f"unscored: the judge grammar was rejected ({exc.code})") for c in scenario.rubric.criteria]
        return [await self._criterion(scenario, result, c, lines, grammar) for c in scenario.rubric.criteria]

    async def _criterion(self, scenario: Scenario, result: SimResult, criterion: Criterion, lines: list[str],
                         grammar: str) -> CriterionScore:
        scale = scenario.rubric.scale
        request_max = 40 + max(len(line) for line in lines) // 2 + REASON_CHARS // 3
        problem = "no answer"
        for attempt in range(ATTEMPTS):
            request = GenerationRequest(messages=self._messages(scenario, result, criterion), grammar=grammar,
                                        max_tokens=request_max, temperature=self.temperature, seed=self.seed + attempt)
            try:
                answer = await self._generate(request)
            except NpcError as exc:
                problem = f"the judge failed ({exc.code})"
                continue
            parsed = _ANSWER.match(answer.strip())
            if parsed is None:
                problem = "the answer did not parse"
                continue
            score, evidence, reason = int(parsed.group(1)), parsed.group(2), (parsed.group(3) or "").strip()
            if not scale.min <= score <= scale.max:
                problem = f"score {score} is outside {scale.min}..{scale.max}"
            elif evidence not in lines:
                problem = "the evidence is not a line of the transcript"
            else:
                return CriterionScore(criterion.id, score, evidence, reason)
        return CriterionScore(criterion.id, None, None, f"unscored: {problem} after {ATTEMPTS} attempts")

    async def goal_met(self, scenario: Scenario, turns: Sequence[TurnRecord]) -> bool:
        """Whether the scenario's ``stop.goal`` has happened in ``turns`` (a Yes/No grammar)."""
        if not scenario.stop.goal:
            return False
        prompt = (f"Transcript of a role-play ({scenario.title}):\n{transcript_text(turns)}\n\n"
                  f"Has this happened in the transcript: {scenario.stop.goal}\nAnswer Yes or No.")
        request = GenerationRequest(messages=[ChatMessage("system", "You check facts about a transcript. Answer only Yes or No."),
                                              ChatMessage("user", prompt)],
                                    grammar='root ::= ("Yes" | "No")\n', max_tokens=3, temperature=0.0, seed=self.seed)
        try:
            return (await self._generate(request)).strip() == "Yes"
        except NpcError:
            return False

    async def _generate(self, request: GenerationRequest) -> str:
        parts = []
        async for chunk in self.llm.stream(request):
            parts.append(chunk.text)
        return "".join(parts)

    @staticmethod
    def _messages(scenario: Scenario, result: SimResult, criterion: Criterion) -> list[ChatMessage]:
        role = scenario.rubric.role
        name, scale = scenario.role_name(role), scenario.rubric.scale
        system = ("You are an experienced trainer assessing a staff-training role-play. You score one person on one "
                  "criterion, strictly and fairly, using only what the transcript shows.")
        user = (f"Scenario: {scenario.title}. {scenario.setting}\n\nTranscript:\n{transcript_text(result.turns)}\n\n"
                f"Score {name} (the {role}) on: {criterion.id}: {criterion.description}\n"
                f"Scale: {scale.min} (poor) to {scale.max} (excellent).\n"
                f"Answer in exactly this form:\nScore: <a whole number from {scale.min} to {scale.max}>\n"
                f"Evidence: \"<one of {name}'s lines, quoted exactly>\"\nReason: <one short sentence>")
        return [ChatMessage("system", system), ChatMessage("user", user)]
