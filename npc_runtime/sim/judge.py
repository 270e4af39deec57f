"""The LLM judge: scores the rubric's criteria, each with a line quoted from the transcript and a reason.

One request per criterion, constrained by a GBNF grammar that admits only::

    Score: <an integer of the scale>
    Evidence: "<one of the scored role's lines, verbatim>"
    Reason: Because <the scored person: name, "the <role>", she, he or they> <3 to 37 words of letters>.

so with a backend that honours grammars the answer always parses, the quote is real and the reason
is words about the scored person, not a number. The answer is still validated by pure functions
(:func:`check_answer`, :func:`reason_problem`): the score within the scale, the quote one of the
scored role's lines, and the reason an explanation — at least :data:`MIN_REASON_WORDS` words, not a
number, not a copy of the quote (or of another line, or of the criterion), not repeating itself,
saying why (``because``) and about whom (the scored person). A failing answer is
retried with another seed, told what was wrong, up to :data:`ATTEMPTS` requests in all; if none
validates the criterion is *unscored*, with every problem found — a score is never invented. The
grammar keeps to the dialect llama.cpp and xgrammar share (see :mod:`npc_runtime.dialogue.grammar`):
no ``.`` wildcard, character classes and ``{m,n}`` repetition only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from npc_runtime.dialogue.grammar import gbnf_literal
from npc_runtime.errors import NpcError
from npc_runtime.llm.base import LLM, ChatMessage, GenerationRequest
from npc_runtime.sim.repetition import copied_words, words
from npc_runtime.sim.runner import SimResult, TurnRecord
from npc_runtime.sim.scenario import Criterion, Scale, Scenario

ATTEMPTS = 3
#: Lines of the scored role offered as evidence (the latest ones), and characters of each kept.
MAX_QUOTES = 24
#: A reason has this many words at least (``Because`` counts) and at most.
MIN_REASON_WORDS = 5
MAX_REASON_WORDS = 40
#: What the grammar makes every reason start with: a reason says why.
REASON_OPENING = "Because "
#: A reason whose words lie this much (or more) in runs copied from one line (the quote, another line of
#: the transcript, the criterion) is a copy, not a reason.
COPY_OVERLAP = 0.5
#: Words that say why (one must be in the reason; the grammar's opening is one).
WHY_WORDS = frozenset({"because", "since", "as", "so", "therefore", "thus", "hence", "shows", "showed", "given"})
_ANSWER = re.compile(r'\AScore: (-?\d+)\nEvidence: "(.*?)"(?:\nReason: ([^\n]*))?\s*\Z', re.DOTALL)
_LETTERS = re.compile(r"[^\W\d_]")
#: Pronouns that name the scored person in a reason (besides the name and the role).
PRONOUNS = ("she", "he", "they")
#: Each word of a reason: letters (an apostrophe or hyphen inside), then at most one comma, semicolon or colon.
_WORD_RULE = "[A-Za-z] [A-Za-z'-]{0,19} [,;:]?"


@dataclass(frozen=True, slots=True)
class CriterionScore:
    """One criterion's verdict. Unscored: ``score`` and ``evidence`` are None and ``reason`` starts
    with ``unscored:`` and says why. ``attempts``: requests made; ``rejected``: why earlier answers failed."""

    criterion: str
    score: int | None
    evidence: str | None
    reason: str
    attempts: int = 1
    rejected: tuple[str, ...] = ()


def reason_instruction(name: str) -> str:
    """What the prompt asks for after ``Reason: Because <name>``; a reason that copies four words running
    from it ("in your own words") is rejected."""
    return (f"what {name} did or did not do, in your own words, {MIN_REASON_WORDS} to {MAX_REASON_WORDS} words, "
            f"not a copy of the quote")


def subjects(name: str, role: str) -> list[str]:
    """How a reason may name the scored person: ``Priya``, ``the rep``, ``she``, ``he``, ``they``."""
    return list(dict.fromkeys([name, f"the {role}", *PRONOUNS]))


def score_grammar(lines: Sequence[str], low: int, high: int, who: Sequence[str] = PRONOUNS) -> str:
    """The GBNF for one criterion's answer: a score in ``low..high``, one of ``lines`` quoted, and a reason
    that opens with ``Because`` and one of ``who`` (the scored person, see :func:`subjects`)."""
    scores = " | ".join(gbnf_literal(str(n)) for n in range(low, high + 1))
    quotes = " | ".join(gbnf_literal(f'"{line}"') for line in dict.fromkeys(lines))
    subject = " | ".join(gbnf_literal(w) for w in dict.fromkeys(who))
    more = f"{{{MIN_REASON_WORDS - 2},{MAX_REASON_WORDS - 3}}}"  # after "Because" and the subject (one or two words)
    return "\n".join([
        'root ::= "Score: " score "\\nEvidence: " quote "\\nReason: " reason',
        f"score ::= ({scores})",
        f"quote ::= ({quotes})",
        f'reason ::= {gbnf_literal(REASON_OPENING)} subject (" " word){more} "."',
        f"subject ::= ({subject})",
        f"word ::= {_WORD_RULE}",
    ]) + "\n"


def reason_problem(reason: str, *, evidence: str, transcript: Sequence[str] = (), criterion: str = "",
                   who: Sequence[str] = (), instruction: str = "") -> str | None:
    """Why ``reason`` does not explain a score, or None when it does. Pure.

    Rejected: no reason; a number (``"5"``, ``"1000000"``); fewer than :data:`MIN_REASON_WORDS` words;
    a copy of the quoted ``evidence``, of another line of the ``transcript`` or of the ``criterion``'s
    description (half or more of its words in runs of three copied from it), or four words running of
    the prompt's ``instruction`` (:func:`reason_instruction`); a reason that repeats itself (a word three
    times running, a three-word run three times, a four-word run twice); no word that says why; with ``who`` (see
    :func:`subjects`), none of them: a reason is about what the scored person did."""
    text = reason.strip()
    if not text:
        return "no reason"
    if not _LETTERS.search(text):
        return f"the reason is a number ({text[:40]!r})" if any(c.isdigit() for c in text) else f"the reason has no words ({text[:40]!r})"
    said = words(text)
    lettered = [w for w in said if _LETTERS.search(w)]
    if len(lettered) < MIN_REASON_WORDS:
        return f"the reason is too short ({len(lettered)} words, at least {MIN_REASON_WORDS}): {text[:60]!r}"
    body = said[1:] if said[0] in WHY_WORDS else said  # "Because ..." copies nothing
    for source, what in ((evidence, "the quoted line"), *((line, "a line of the transcript") for line in transcript),
                         (criterion, "the criterion")):
        theirs = words(source)
        if theirs and copied_words(body, theirs) >= COPY_OVERLAP * len(body):
            return f"the reason copies {what}"
    if instruction and copied_words(body, words(instruction), min_run=4):
        return "the reason copies the instructions"
    if _repetitive(said):
        return "the reason repeats itself"
    if not WHY_WORDS.intersection(said):
        return "the reason does not say why (no 'because')"
    if who and not any(_contains(said, words(w)) for w in who):
        return f"the reason does not say what {who[0]} did (it names none of: {', '.join(who)})"
    return None


def _contains(said: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(said[i:i + n]) == list(phrase) for i in range(len(said) - n + 1))


def _repetitive(said: Sequence[str]) -> bool:
    """A word three times running, a three-word run three times or a four-word run twice (``and, and, and``;
    ``in terms of`` x3; "she didn't have to do it, she didn't have to do it")."""
    if any(said[i] == said[i + 1] == said[i + 2] for i in range(len(said) - 2)):
        return True
    threes = [tuple(said[i:i + 3]) for i in range(len(said) - 2)]
    fours = [tuple(said[i:i + 4]) for i in range(len(said) - 3)]
    return any(threes.count(r) >= 3 for r in set(threes)) or len(set(fours)) < len(fours)


def check_answer(answer: str, *, scale: Scale, lines: Sequence[str], transcript: Sequence[str] = (),
                 criterion: Criterion | None = None, who: Sequence[str] = (),
                 instruction: str = "") -> tuple[tuple[int, str, str] | None, str | None]:
    """Parse and validate one judge answer: ``((score, evidence, reason), None)``, or ``(None, problem)``.
    ``lines``: the scored role's lines (the only valid quotes); ``transcript``: every line; ``who``: how the
    reason may name the scored person (:func:`subjects`); ``instruction``: what the prompt asked the reason to be. Pure."""
    parsed = _ANSWER.match(answer.strip())
    if parsed is None:
        return None, "the answer did not parse"
    score, evidence, reason = int(parsed.group(1)), parsed.group(2), (parsed.group(3) or "").strip()
    if not scale.min <= score <= scale.max:
        return None, f"score {score} is outside {scale.min}..{scale.max}"
    if evidence not in lines:
        return None, "the evidence is not a line of the transcript"
    problem = reason_problem(reason, evidence=evidence, transcript=transcript,
                             criterion=criterion.description if criterion is not None else "", who=who,
                             instruction=instruction)
    if problem is not None:
        return None, problem
    return (score, evidence, reason), None


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
            return [CriterionScore(c.id, None, None, f"unscored: the {role} said nothing", attempts=0) for c in scenario.rubric.criteria]
        scale = scenario.rubric.scale
        grammar = score_grammar(lines, scale.min, scale.max, subjects(scenario.role_name(role), role))
        try:
            await self.llm.validate_grammar(grammar)
        except NpcError as exc:
            return [CriterionScore(c.id, None, None, f"unscored: the judge grammar was rejected ({exc.code})", attempts=0)
                    for c in scenario.rubric.criteria]
        return [await self._criterion(scenario, result, c, lines, grammar) for c in scenario.rubric.criteria]

    async def _criterion(self, scenario: Scenario, result: SimResult, criterion: Criterion, lines: list[str],
                         grammar: str) -> CriterionScore:
        request_max = 24 + max(len(line) for line in lines) // 2 + MAX_REASON_WORDS * 2
        transcript = [t.text for t in result.turns]
        role = scenario.rubric.role
        name = scenario.role_name(role)
        problems: list[str] = []
        for attempt in range(ATTEMPTS):
            request = GenerationRequest(messages=self._messages(scenario, result, criterion, problems[-1:]), grammar=grammar,
                                        max_tokens=request_max, temperature=self.temperature, seed=self.seed + attempt)
            try:
                answer = await self._generate(request)
            except NpcError as exc:
                problems.append(f"the judge failed ({exc.code})")
                continue
            verdict, problem = check_answer(answer, scale=scenario.rubric.scale, lines=lines, transcript=transcript,
                                            criterion=criterion, who=subjects(name, role), instruction=reason_instruction(name))
            if verdict is not None:
                score, evidence, reason = verdict
                return CriterionScore(criterion.id, score, evidence, reason, attempts=attempt + 1, rejected=tuple(problems))
            assert problem is not None
            problems.append(problem)
        why = "; ".join(dict.fromkeys(problems))
        return CriterionScore(criterion.id, None, None, f"unscored: {why} ({ATTEMPTS} attempts)", attempts=ATTEMPTS,
                              rejected=tuple(problems))

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
    def _messages(scenario: Scenario, result: SimResult, criterion: Criterion, rejected: Sequence[str] = ()) -> list[ChatMessage]:
        role = scenario.rubric.role
        name, scale = scenario.role_name(role), scenario.rubric.scale
        system = ("You are an experienced trainer assessing a staff-training role-play. You score one person on one "
                  "criterion, strictly and fairly, using only what the transcript shows, and you say why in your own words.")
        user = (f"Scenario: {scenario.title}. {scenario.setting}\n\nTranscript:\n{transcript_text(result.turns)}\n\n"
                f"Score {name} (the {role}) on: {criterion.id}: {criterion.description}\n"
                f"Scale: {scale.min} (poor) to {scale.max} (excellent).\n"
                f"Answer in exactly this form:\nScore: <a whole number from {scale.min} to {scale.max}>\n"
                f"Evidence: \"<one of {name}'s lines, quoted exactly>\"\n"
                f"Reason: Because {name} <{reason_instruction(name)}>.")
        if rejected:
            user += f"\n\nAn earlier answer was rejected: {rejected[-1]}. Give the reason in your own words."
        return [ChatMessage("system", system), ChatMessage("user", user)]
