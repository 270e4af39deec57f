"""NPC-to-NPC simulations: scenario files, the runner (scripted LLM behind a real server), the judge,
the outputs, the command's errors; and a short run plus the judge on the real embedded model."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from conftest import CHARACTERS, ROOT, xgrammar_command

from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.base import GenerationRequest
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.loader import load_dir
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.settings import Settings
from npc_runtime.sim.cli import check_scenarios_main, simulate_main
from npc_runtime.sim.judge import (
    ATTEMPTS,
    MIN_REASON_WORDS,
    Judge,
    check_answer,
    reason_instruction,
    reason_problem,
    score_grammar,
    subjects,
)
from npc_runtime.sim.repetition import normalise, overlap, repeats
from npc_runtime.sim.report import conversation_audio, report_markdown, transcript_lines, write_outputs
from npc_runtime.sim.runner import LOOP_RETRIES, SimResult, TurnRecord, repeated_line, run_simulation, speaks_event
from npc_runtime.sim.scenario import (
    Criterion,
    Scale,
    ScenarioFileError,
    ScenarioNotFound,
    check_scenarios,
    find_scenario,
    load_scenario,
    read_scenario_file,
)

SCENARIOS = ROOT / "scenarios"
PERSONAS = load_dir(CHARACTERS)[0]

# Line numbers below refer to this text.
VALID = """\
id: tiny
title: A tiny scene
setting: A triage desk at night.
scene:
  objects: [{id: consent_form}]
roles:
  nurse: {persona: nurse_amara, brief: {goals: [calm him], hidden: "twenty minutes", difficulty: 2}, trainee: true}
  patient: {persona: patient_victor, brief: {goals: [see a doctor], difficulty: 4}}
opening: {role: patient, line: I have waited four hours!}
turns: 4
stop: {phrases: [go ahead with the test], actions: [give consent_form nurse]}
rubric:
  role: nurse
  scale: {min: 1, max: 5}
  criteria:
    - {id: empathy, description: Names his feelings.}
"""


def _write(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _one_error(tmp_path: Path, text: str) -> ScenarioFileError:
    scenario, errors = read_scenario_file(_write(tmp_path, text), PERSONAS)
    assert scenario is None and len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --- scenario files -------------------------------------------------------------------------------------------


def test_shipped_scenarios_load_against_shipped_personas() -> None:
    assert check_scenarios(SCENARIOS, PERSONAS) == []
    for name in ("belligerent_patient", "objecting_customer"):
        scenario = load_scenario(find_scenario(name, SCENARIOS), PERSONAS)
        assert scenario.rubric.criteria and scenario.opening.role in scenario.roles
        assert all(r.name for r in scenario.roles.values())  # filled from the personas


def test_a_valid_scenario_and_its_briefs(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, VALID), PERSONAS)
    nurse, patient = s.brief_for("nurse"), s.brief_for("patient")
    # who it is and who the other is, whose words it hears, and that it never speaks the other's lines
    assert "You are Amara, the nurse, talking with Victor (the patient). What Victor says comes to you as the player's words." in nurse
    assert "Speak only as Amara, the nurse, in your own words: never say Victor's lines, never repeat a line." in nurse
    assert "You are Victor, the patient, talking with Amara (the nurse)." in patient and "never say Amara's lines" in patient
    assert "What only you know: twenty minutes" in nurse and "twenty minutes" not in patient
    # the difficulty in words only: the 135M model copied "(4/5)" into its lines
    assert "Difficulty: be difficult: push back hard" in patient and "4/5" not in patient
    assert 'You opened the scene by saying: "I have waited four hours!"' in patient
    assert {"nurse_amara", "patient_victor", "consent_form"} <= set(s.full_scene().all_ids())


@pytest.mark.parametrize(("old", "new", "where"), [
    ("persona: nurse_amara", "persona: nurse_nobody", "tiny.yaml:7: roles.nurse.persona: unknown persona 'nurse_nobody'"),
    ("    - {id: empathy, description: Names his feelings.}\n", "", "tiny.yaml:15: rubric.criteria: the rubric is empty"),
    ("turns: 4", "turns: 0", "tiny.yaml:10: turns: the turn limit must be 1 to 100, got 0"),
    ("opening: {role: patient", "opening: {role: doctor", "tiny.yaml:9: opening.role: 'doctor' is not a role"),
    ("  role: nurse\n", "  role: janitor\n", "tiny.yaml:13: rubric.role: 'janitor' is not a role"),
    ("objects: [{id: consent_form}]", "objects: [{id: Consent-Form}]", "tiny.yaml:5: scene.objects.0.id: String should match"),
    ("[give consent_form nurse]", "[give scalpel nurse]", "tiny.yaml:11: stop.actions.0: 'scalpel' is not an object"),
    ("turns: 4", "turns: 4\nturnz: 5", "tiny.yaml:11: turnz: unknown field"),
])
def test_scenario_errors_read_file_line_field_message(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in VALID
    error = _one_error(tmp_path, VALID.replace(old, new))
    assert str(error).startswith(f"{tmp_path}/{where}"), str(error)
    assert error.code == "scenario_invalid"


def test_find_scenario_and_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert find_scenario("belligerent_patient", SCENARIOS).name == "belligerent_patient.yaml"
    with pytest.raises(ScenarioNotFound, match="unknown scenario 'nope' \\(known: belligerent_patient, objecting_customer\\)"):
        find_scenario("nope", SCENARIOS)
    assert check_scenarios_main(SCENARIOS, CHARACTERS) == 0
    _write(tmp_path, VALID.replace("turns: 4", "turns: 0"))
    assert check_scenarios_main(tmp_path, CHARACTERS) == 1
    assert "tiny.yaml:10: turns:" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "message"), [
    ({"scenario": "nope"}, "unknown scenario 'nope'"),
    ({"human": "doctor"}, "--human 'doctor' is not a role of belligerent_patient"),
    ({"turns": 0}, "--turns must be 1 to 100, got 0"),
    ({"scenario": "BAD"}, "tiny.yaml:7: roles.nurse.persona: unknown persona 'nobody'"),
])
async def test_simulate_command_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 change: dict, message: str) -> None:
    bad = _write(tmp_path, VALID.replace("persona: nurse_amara", "persona: nobody"))
    args = argparse.Namespace(scenario="belligerent_patient", seed=1, turns=None, out=tmp_path / "out", audio=False, server=None,
                              human=None, scenarios_dir=SCENARIOS, settings=Settings(characters_dir=CHARACTERS))
    for key, value in change.items():
        setattr(args, key, str(bad) if value == "BAD" else value)
    assert await simulate_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- the runner, with a scripted LLM behind a real server ----------------------------------------------------


@pytest_asyncio.fixture
async def sim_server() -> AsyncIterator[Callable[[Callable[[GenerationRequest], str]], tuple[Callable, FakeLLM]]]:
    """A factory: scripted replies (request -> text) -> (connect, the fake LLM), on a real server."""
    personas = PersonaRegistry(CHARACTERS, poll_interval=60)
    await personas.start()
    servers: list[NpcServer] = []

    async def make(reply: Callable[[GenerationRequest], str]) -> tuple[Callable, FakeLLM]:
        llm = FakeLLM(reply)
        srv = NpcServer(Services(personas=personas, dialogue=Dialogue(llm=llm)), host="127.0.0.1", port=0)
        await srv.start()
        srv.services.ready.set()
        servers.append(srv)
        return (lambda: NpcClient.connect(srv.url)), llm

    try:
        yield make
    finally:
        for srv in servers:
            await srv.aclose()
        await personas.aclose()


def _speaker(request: GenerationRequest) -> str:
    return request.messages[0].content.split(",")[0].removeprefix("You are ")


def _scenario(tmp_path: Path, text: str = VALID):
    return load_scenario(_write(tmp_path, text), PERSONAS)


async def test_turn_order_briefs_and_the_partner_as_player(tmp_path: Path, sim_server) -> None:
    counter = iter(range(100))
    connect, llm = await sim_server(lambda r: f"{_speaker(r)} line {next(counter)}.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=3)
    assert [(t.turn, t.role, t.source) for t in result.turns] == [
        (1, "patient", "scripted"), (2, "nurse", "npc"), (3, "patient", "npc"), (4, "nurse", "npc")]
    assert [t.text for t in result.turns[1:]] == ["Amara line 0.", "Victor line 1.", "Amara line 2."]
    assert result.stopped_by == "turn limit (4)"
    # each session got the previous line as its player's input, its own brief, and its own seed
    assert [r.messages[-1].content for r in llm.requests] == [t.text for t in result.turns[:3]]
    assert any("You are Amara, the nurse, talking with Victor" in m.content for m in llm.requests[0].messages)
    assert any("You are Victor, the patient, talking with Amara" in m.content for m in llm.requests[1].messages)
    assert llm.requests[0].seed != llm.requests[1].seed and llm.requests[0].seed == llm.requests[2].seed
    assert "Victor" in llm.requests[0].messages[0].content  # the nurse's player is the patient


@pytest.mark.parametrize(("reply", "stopped_by", "turns"), [
    ("Fine. Go ahead with the TEST then.", "phrase: 'go ahead with the test'", 3),
    ("Here, signed. [give consent_form nurse_amara]", "action: give consent_form nurse", 3),
])
async def test_stop_conditions(tmp_path: Path, sim_server, reply: str, stopped_by: str, turns: int) -> None:
    connect, _ = await sim_server(lambda r: reply if _speaker(r) == "Victor" else "Let me explain the test.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=1, turns=8)
    assert result.stopped_by == stopped_by and len(result.turns) == turns


async def test_goal_check_stops(tmp_path: Path, sim_server) -> None:
    connect, _ = await sim_server(lambda r: "Okay.")
    seen: list[int] = []

    async def goal(turns: list[TurnRecord]) -> bool:
        seen.append(len(turns))
        return len(turns) == 3

    s = _scenario(tmp_path, VALID.replace("stop: {", "stop: {goal: He agreed., "))
    result = await run_simulation(s, connect=connect, seed=1, goal_check=goal)
    assert result.stopped_by == "goal: He agreed." and seen == [2, 3]


async def test_trainee_mode_with_scripted_input(tmp_path: Path, sim_server) -> None:
    # distinct lines: one line said twice would now be asked again (see the loop tests below)
    answers = iter(["I want a doctor.", "Fine, but I hate needles."])
    connect, llm = await sim_server(lambda r: next(answers))
    typed = iter(["I hear you, that is a long wait.", "The blood test gets you seen sooner.", ""])
    prompts: list[tuple[str, str]] = []

    async def ask(role: str, prompt: str) -> str:
        prompts.append((role, prompt))
        return next(typed)

    printed: list[TurnRecord] = []
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=1, turns=10, human_role="nurse",
                                  ask_human=ask, on_turn=printed.append)
    assert [(t.role, t.source) for t in result.turns] == [("patient", "scripted"), ("nurse", "human"), ("patient", "npc"),
                                                          ("nurse", "human"), ("patient", "npc")]
    assert result.stopped_by == "the trainee ended the simulation" and printed == result.turns
    assert prompts[0] == ("nurse", "nurse (Amara)> ")
    assert [r.messages[-1].content for r in llm.requests] == ["I hear you, that is a long wait.", "The blood test gets you seen sooner."]
    assert all(_speaker(r) == "Victor" for r in llm.requests)  # no session for the trainee's role


async def test_three_roles_the_listener_hears_game_events(tmp_path: Path, sim_server) -> None:
    three = VALID.replace("opening:", "  friend: {persona: jin}\nopening:")
    connect, llm = await sim_server(lambda r: f"{_speaker(r)} talks." + (" [give consent_form patient_victor]" if _speaker(r) == "Amara" else ""))
    result = await run_simulation(_scenario(tmp_path, three), connect=connect, seed=1, turns=4)
    assert [t.role for t in result.turns] == ["patient", "friend", "nurse", "patient"]  # roles' order, from the opener
    amara = next(r for r in llm.requests if _speaker(r) == "Amara")
    assert amara.messages[-1].content == "(Event: Victor said: I have waited four hours!)\nJin talks."
    victor = next(r for r in llm.requests if _speaker(r) == "Victor")
    assert victor.messages[-1].content == "(Event: Jin said: Jin talks.)\n(Event: Amara gave consent_form to Victor.)\nAmara talks."


# --- roles keep their briefs; repetition is caught ------------------------------------------------------------

# Lines of the real runs before the fix (SmolLM2-135M, seed 7): the rep and the customer recite one line,
# the nurse says her line again.
REP_4 = ("I'm sorry, I can't help you. But in our system we only allow for one month of free trial without any additional "
         "charges or fees included (4/5). If that means no paid 2 at all and it's not possible to")
CUSTOMER_3 = ("(sigh) I'm sorry, but you're right. In our system only allows for one month of free trial without any additional "
              "charges or fees included in the contract (4/5). If that means we can't offer a paid 2")
CUSTOMER_5 = ("(sigh) I'm sorry, but you're right. In our system we only allow for one month of free trial without any additional "
              "charges or fees included (4/5). If that means no paid 2 at all and it's not")
NURSE_2 = "I'm sorry, I can't help you. Can we talk about something else?"


@pytest.mark.parametrize(("a", "b", "same"), [
    (REP_4, CUSTOMER_3, True),  # the rep recites the customer's line
    (CUSTOMER_5, REP_4, True),
    (NURSE_2, "i'm SORRY, I can't help you -- can we talk about something else", True),  # normalised equality
    ("Amara: Okay. [give consent_form patient_victor]", "okay", True),  # speaker prefix and tags dropped
    ("Okay.", "Okay!", True),
    ("Yes.", "No.", False),
    ("Amara line 0.", "Amara line 2.", False),  # short lines repeat only when equal
    ("The blood test comes first, then the doctor sees you.", "Why do I need a needle before I see anyone?", False),
    ("Why do I need the blood test?", "The blood test comes first, okay?", False),  # one shared phrase is no copy
    ("Twenty-nine a month, no contract, cancel any time.", "What does it cost with the card fees on top?", False),
    (NURSE_2, "I'm sorry, I don't have a lot of time. You're going to talk about something else?", True),
])
def test_repeats(a: str, b: str, same: bool) -> None:
    assert repeats(a, b) is same and repeats(b, a) is same
    assert normalise("Doug: It's  “fine”, [move counter] OK?") == "it's fine ok"
    assert overlap(NURSE_2, NURSE_2) == 1.0 and overlap("", NURSE_2) == 0.0


def test_repeated_line_names_the_earlier_turn() -> None:
    turns = [TurnRecord(3, "customer", "customer_doug", "Doug", CUSTOMER_3), TurnRecord(4, "rep", "rep_priya", "Priya", "What fails on Saturdays?")]
    assert repeated_line(TurnRecord(5, "customer", "customer_doug", "Doug", CUSTOMER_5), turns) is turns[0]
    assert repeated_line(TurnRecord(5, "customer", "customer_doug", "Doug", "The card reader, every time."), turns) is None


def _last_user(request: GenerationRequest) -> str:
    return next(m.content for m in reversed(request.messages) if m.role == "user")


async def test_an_echo_is_asked_again_and_never_reaches_the_other_role(tmp_path: Path, sim_server) -> None:
    """The nurse echoes the patient's line; the runner rejects it, asks again with an event, and only the new
    line goes to the patient. The rejected line stays in the transcript."""
    def reply(r: GenerationRequest) -> str:
        if _speaker(r) == "Victor":
            return "Then get me a doctor, now!"
        last = _last_user(r)
        return "I hear you. The blood test comes first." if last.startswith("(Event:") else last  # echo, then its own words

    connect, llm = await sim_server(reply)
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=3, turns=3)
    assert [(t.role, t.text) for t in result.turns] == [
        ("patient", "I have waited four hours!"), ("nurse", "I hear you. The blood test comes first."), ("patient", "Then get me a doctor, now!")]
    assert result.turns[1].rejected == [{"text": "I have waited four hours!", "why": "the nurse repeated the patient's line of turn 1"}]
    assert result.stopped_by == "turn limit (3)"
    retry = llm.requests[1]
    assert _speaker(retry) == "Amara"
    assert _last_user(retry) == "(Event: Those were Victor's words, not yours. Answer Victor as Amara, the nurse, in new words.)"
    victor = llm.requests[2]
    assert _speaker(victor) == "Victor" and _last_user(victor) == "I hear you. The blood test comes first."
    assert "I have waited four hours!" not in [m.content for m in victor.messages]  # the rejected echo never reaches him
    report = report_markdown(result, None)
    assert "asked again (the nurse repeated the patient's line of turn 1), rejected: I have waited four hours!" in report


async def test_a_role_that_keeps_repeating_itself_ends_the_run_with_loop(tmp_path: Path, sim_server) -> None:
    counter = iter(range(100))
    connect, llm = await sim_server(lambda r: "I'm sorry, I can't help you." if _speaker(r) == "Amara" else f"Victor line {next(counter)}.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=3, turns=8)
    assert [t.role for t in result.turns] == ["patient", "nurse", "patient", "nurse"]
    assert result.stopped_by == "loop: the nurse repeated its own line of turn 2"
    assert [r["why"] for r in result.turns[3].rejected] == ["the nurse repeated its own line of turn 2"] * LOOP_RETRIES
    assert len(llm.requests) == 3 + LOOP_RETRIES
    again = [_last_user(r) for r in llm.requests if _last_user(r).startswith("(Event:")]
    assert again == ["(Event: You said that already. Answer Victor as Amara, the nurse, in new words.)"] * LOOP_RETRIES
    rows = [json.loads(line) for line in transcript_lines(result)]
    assert rows[3]["rejected"] == result.turns[3].rejected and rows[1]["rejected"] == []
    assert "loop: the nurse repeated its own line of turn 2" in report_markdown(result, None)


async def test_a_retry_that_speaks_the_event_ends_the_run_with_loop(tmp_path: Path, sim_server) -> None:
    """SmolLM2 answered the event that asked it again with the event itself: that is no new line either."""
    def reply(r: GenerationRequest) -> str:
        last = _last_user(r)
        return "(Event: Those were your words, not mine.)" if last.startswith("(Event:") else last

    connect, _ = await sim_server(reply)
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=3, turns=8)
    assert [t.text for t in result.turns] == ["I have waited four hours!", "(Event: Those were your words, not mine.)"]
    assert result.turns[1].rejected == [{"text": "I have waited four hours!", "why": "the nurse repeated the patient's line of turn 1"}]
    assert result.stopped_by == "loop: the nurse said the event that asked it again"
    assert speaks_event("Those were Victor's words, not yours. Answer Victor as Amara.",
                        "Those were Victor's words, not yours. Answer Victor as Amara, the nurse, in new words.")
    assert not speaks_event("I hear you. The blood test comes first.", "You said that already. Answer Victor as Amara, the nurse, in new words.")


async def test_each_role_hears_the_other_as_the_player_and_speaks_only_its_own_lines(tmp_path: Path, sim_server) -> None:
    """Role separation in what each role's model is given: its own brief (who it is, who the other is); the
    other's lines as user turns only; its own earlier lines as its only assistant turns."""
    counter = iter(range(100))
    connect, llm = await sim_server(lambda r: f"{_speaker(r)} says thing number {next(counter)} here.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=4, turns=6)
    lines = {role: [t.text for t in result.turns if t.role == role] for role in ("nurse", "patient")}
    generated = {role: [t.text for t in result.turns if t.role == role and t.source == "npc"] for role in lines}
    assert len(result.turns) == 6 and not any(t.rejected for t in result.turns)
    for request in llm.requests:
        me, other = ("nurse", "patient") if _speaker(request) == "Amara" else ("patient", "nurse")
        name, other_name = result.scenario.role_name(me), result.scenario.role_name(other)
        conversation = list(request.messages[request.prefix_messages:])
        briefs = [m.content for m in conversation if m.role == "system" and m.content.startswith("Scene:")]
        assert len(briefs) == 1 and f"You are {name}, the {me}, talking with {other_name} (the {other})" in briefs[0]
        assert f"never say {other_name}'s lines" in briefs[0]
        said = [m.content for m in conversation if m.role == "assistant"]
        heard = [m.content for m in conversation if m.role == "user"]
        assert said == generated[me][: len(said)]  # its own lines, in order, as its own turns (the opening is in its brief)
        assert heard and all(h in lines[other] for h in heard)  # the other's lines, as the player's words
        assert not set(said) & set(lines[other]) and not set(heard) & set(lines[me])


async def test_a_run_with_retries_is_repeatable(tmp_path: Path, sim_server) -> None:
    def reply(r: GenerationRequest) -> str:  # a function of the prompt and seed only
        last = _last_user(r)
        return f"New words from {_speaker(r)}, seed {r.seed % 97}." if last.startswith("(Event:") else last

    runs = []
    for _ in range(2):
        connect, _ = await sim_server(reply)
        runs.append(await run_simulation(_scenario(tmp_path), connect=connect, seed=11, turns=4))
    a, b = ([(t.role, t.text, t.rejected) for t in r.turns] for r in runs)
    assert a == b and all(t.rejected for t in runs[0].turns[1:])
    assert runs[0].stopped_by == runs[1].stopped_by


async def test_outputs_are_written(tmp_path: Path, sim_server) -> None:
    connect, _ = await sim_server(lambda r: "Let me help. [give consent_form patient_victor]" if _speaker(r) == "Amara" else "Hmph.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=5, turns=3)
    scores = await Judge(FakeLLM(["nonsense"])).score(result.scenario, result)
    paths = write_outputs(tmp_path / "run", result, scores, audio=True)
    assert [p.name for p in paths] == ["transcript.jsonl", "report.md"]  # text-only sessions: no audio
    lines = [json.loads(line) for line in (tmp_path / "run" / "transcript.jsonl").read_text().splitlines()]
    assert [(d["turn"], d["role"], d["character"]) for d in lines] == [(1, "patient", "patient_victor"), (2, "nurse", "nurse_amara"), (3, "patient", "patient_victor")]
    assert lines[1]["actions"] == [{"verb": "give", "args": {"object": "consent_form", "target": "patient_victor"},
                                    "object": "consent_form", "target": "patient_victor"}] and "end" in lines[1]["timings"]
    report = (tmp_path / "run" / "report.md").read_text()
    for needle in ("# A tiny scene", "A triage desk at night.", "I have waited four hours!", "`give consent_form patient_victor`",
                   "| empathy: Names his feelings. | unscored |", "Stopped by: turn limit (3). Seed: 5."):
        assert needle in report


def test_conversation_audio_resamples_and_spaces_turns(tmp_path: Path) -> None:
    s = _scenario(tmp_path)
    turns = [TurnRecord(1, "patient", "patient_victor", "Victor", "a", audio=b"\x01\x00" * 2205, sample_rate=22050),
             TurnRecord(2, "nurse", "nurse_amara", "Amara", "b", audio=b"\x02\x00" * 1600, sample_rate=16000),
             TurnRecord(3, "patient", "patient_victor", "Victor", "c", audio=b"\x03\x00" * 2205, sample_rate=22050)]
    pcm, rate = conversation_audio(turns)
    assert rate == 22050
    assert len(pcm) // 2 == 2205 + 6615 + 2205 + 6615 + 2205  # 100 ms each, 300 ms gaps
    write_outputs(tmp_path / "a", SimResult(s, 1, turns, "turn limit (3)"), None, audio=True)
    with wave.open(str(tmp_path / "a" / "conversation.wav")) as wav:
        assert (wav.getframerate(), wav.getnframes()) == (22050, len(pcm) // 2)


# --- the judge ------------------------------------------------------------------------------------------------


def _tiny_result(tmp_path: Path) -> SimResult:
    s = _scenario(tmp_path)
    turns = [TurnRecord(1, "patient", "patient_victor", "Victor", "I have waited four hours!", source="scripted"),
             TurnRecord(2, "nurse", "nurse_amara", "Amara", "I hear you. Four hours with chest pain is frightening."),
             TurnRecord(3, "patient", "patient_victor", "Victor", "Damn right it is."),
             TurnRecord(4, "nurse", "nurse_amara", "Amara", 'The blood test gets you seen sooner. May I take it?')]
    return SimResult(s, 1, turns, "turn limit (4)")


async def test_a_judge_that_never_validates_leaves_it_unscored(tmp_path: Path) -> None:
    result = _tiny_result(tmp_path)
    for junk in ("Score: 5\nEvidence: \"I invented this.\"\nReason: x", "Score: 9\nEvidence: \"I hear you. Four hours with chest pain is frightening.\"\nReason: x", "great job"):
        llm = FakeLLM([junk])
        [score] = await Judge(llm).score(result.scenario, result)
        assert score.score is None and score.evidence is None and score.reason.startswith("unscored: ")
        assert len(llm.requests) == ATTEMPTS and len({r.seed for r in llm.requests}) == ATTEMPTS


async def test_the_judge_accepts_a_valid_answer_and_its_grammar_lists_only_the_scored_lines(tmp_path: Path) -> None:
    result = _tiny_result(tmp_path)
    llm = FakeLLM(['Score: 4\nEvidence: "I hear you. Four hours with chest pain is frightening."\nReason: Because she names his fear first.'])
    [score] = await Judge(llm).score(result.scenario, result)
    assert (score.criterion, score.score, score.reason) == ("empathy", 4, "Because she names his fear first.")
    assert (score.attempts, score.rejected) == (1, ())
    grammar = llm.requests[0].grammar
    assert '"\\"I hear you. Four hours with chest pain is frightening.\\""' in grammar and "Damn right" not in grammar


QUOTE = "I hear you. Four hours with chest pain is frightening."
CRITERION = "Names the patient's feelings (fear, frustration) and shows she heard him before explaining."


@pytest.mark.parametrize(("reason", "problem"), [
    ("1", "the reason is a number ('1')"),  # what the 135M judge gave before
    ("5", "the reason is a number ('5')"),
    ("1000000", "the reason is a number ('1000000')"),
    ("", "no reason"),
    ("...", "the reason has no words ('...')"),
    ("1 (poor) to 5 (excellent)", "the reason is too short (3 words, at least 5)"),
    ("Because she names it.", "the reason is too short (4 words, at least 5)"),
    (f'"{QUOTE}"', "the reason copies the quoted line"),
    (f"Because {QUOTE}", "the reason copies the quoted line"),
    ("Because damn right it is, damn right it is.", "the reason copies a line of the transcript"),
    ("Because she names the patient's feelings (fear, frustration) and shows she heard him.", "the reason copies the criterion"),
    ("She names his fear before she explains anything.", "the reason does not say why (no 'because')"),
    ("Because she names his fear before explaining the test.", None),
    ("Because Amara did something in your own words, X to X.", "the reason copies the instructions"),  # the real judge, once
    ("Because Amara did not do what he asked: name his fear.", None),
    ("She names his fear, so he feels heard before the test.", None),
    ("Because the nurse never names his fear.", None),
    ("Because Amara never names his fear.", None),
    ("Because of the icing on the cake.", "the reason does not say what Amara did (it names none of: Amara, the nurse, she, he, they)"),
    ("Because ia ia ia ia ia ia ia.", "the reason repeats itself"),  # what the real judge gave once the grammar asked for words
    ("Because she does it in terms of this, in terms of that, in terms of him.", "the reason repeats itself"),
    ("Because Amara didn't have to do it, she didn't have to do it.", "the reason repeats itself"),  # the real judge
    ("Because she names his fear, and then she names his fear again.", "the reason repeats itself"),
    ("Because she names his fear and then names the wait.", None),
    (f"Because she says {QUOTE[:11]} and names his fear before anything else.", None),  # quoting a little is fine
    ("Because after damn right it is, she said nothing about his fear.", None),
])
def test_reason_problem(reason: str, problem: str | None) -> None:
    found = reason_problem(reason, evidence=QUOTE, transcript=["I have waited four hours!", QUOTE, "Damn right it is."],
                           criterion=CRITERION, who=subjects("Amara", "nurse"), instruction=reason_instruction("Amara"))
    assert found == problem or (problem is not None and found is not None and found.startswith(problem)), found


@pytest.mark.parametrize(("answer", "problem"), [
    (f'Score: 4\nEvidence: "{QUOTE}"\nReason: Because she names his fear first.', None),
    (f'Score: 9\nEvidence: "{QUOTE}"\nReason: Because she names his fear first.', "score 9 is outside 1..5"),
    ('Score: 4\nEvidence: "I invented this."\nReason: Because she names his fear first.', "the evidence is not a line of the transcript"),
    (f'Score: 4\nEvidence: "{QUOTE}"', "no reason"),
    (f'Score: 4\nEvidence: "{QUOTE}"\nReason: 1000000', "the reason is a number ('1000000')"),
    ("great job", "the answer did not parse"),
])
def test_check_answer(answer: str, problem: str | None) -> None:
    verdict, found = check_answer(answer, scale=Scale(min=1, max=5), lines=[QUOTE], transcript=[QUOTE],
                                  criterion=Criterion(id="empathy", description=CRITERION))
    assert found == problem
    assert (verdict == (4, QUOTE, "Because she names his fear first.")) is (problem is None)


def _answer(reason: str, score: int = 4) -> str:
    return f'Score: {score}\nEvidence: "{QUOTE}"\nReason: {reason}'


async def test_a_bad_reason_is_retried_with_another_seed_and_told_why(tmp_path: Path) -> None:
    result = _tiny_result(tmp_path)
    llm = FakeLLM([_answer("1"), _answer("Because she names his fear before anything else.")])
    [score] = await Judge(llm, seed=5).score(result.scenario, result)
    assert (score.score, score.evidence, score.reason) == (4, QUOTE, "Because she names his fear before anything else.")
    assert (score.attempts, score.rejected) == (2, ("the reason is a number ('1')",))
    assert [r.seed for r in llm.requests] == [5, 6]
    assert "rejected" not in llm.requests[0].messages[-1].content
    assert f"Reason: Because Amara <{reason_instruction('Amara')}>." in llm.requests[0].messages[-1].content
    assert llm.requests[1].messages[-1].content.endswith(
        "An earlier answer was rejected: the reason is a number ('1'). Give the reason in your own words.")
    report = report_markdown(result, [score])
    assert "| 4 | “I hear you." in report and "- empathy (attempt 2): the reason is a number ('1')" in report


async def test_reasons_that_never_validate_leave_the_criterion_unscored_with_why(tmp_path: Path) -> None:
    result = _tiny_result(tmp_path)
    llm = FakeLLM([_answer("5"), _answer(f"Because {QUOTE}"), _answer("1000000")])
    [score] = await Judge(llm).score(result.scenario, result)
    assert (score.score, score.evidence, score.attempts) == (None, None, ATTEMPTS)
    assert score.reason == ("unscored: the reason is a number ('5'); the reason copies the quoted line; "
                            "the reason is a number ('1000000') (3 attempts)")
    assert f"| empathy: Names his feelings. | unscored | — | {score.reason} |" in report_markdown(result, [score])


def _rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())


def test_judge_grammar_dialect_and_reason_rules() -> None:
    """The common dialect of llama.cpp and xgrammar (as the action grammar: tests/test_grammar.py), and a
    reason that must be words after "Because", ending in a full stop."""
    grammar = score_grammar([QUOTE, 'He said "no".'], 1, 5, subjects("Amara", "nurse"))
    rules = _rules(grammar)
    assert set(rules) == {"root", "score", "quote", "reason", "subject", "word"}
    for name, body in rules.items():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name)
        bare = re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', "", body)
        assert "." not in bare and "<" not in bare and "_" not in bare, body
        assert "|" not in bare or bare.count("(") >= 1, body
    assert rules["reason"] == f'"Because " subject (" " word){{{MIN_REASON_WORDS - 2},37}} "."'
    assert rules["subject"] == '("Amara" | "the nurse" | "she" | "he" | "they")'
    assert rules["word"] == "[A-Za-z] [A-Za-z'-]{0,19} [,;:]?"  # no digits, no full stop inside a reason


def test_xgrammar_holds_the_judge_to_a_real_quote_and_a_reason_in_words() -> None:
    command = xgrammar_command()
    if command is None:
        pytest.skip("xgrammar is not importable and the vLLM venv is missing (scripts/setup_vllm.sh makes it)")
    grammar = score_grammar([QUOTE, 'He said "no".'], 1, 5, subjects("Amara", "nurse"))
    good = "Because she names his fear before explaining the test."
    item = {"grammar": grammar,
            "accept": [_answer(good), f'Score: 1\nEvidence: "He said "no"."\nReason: {good}',
                       _answer("Because the nurse is kind, clear and well-meaning."),
                       _answer("Because Amara isn't clear; she skips: the test, the wait.")],
            "reject": [_answer("1"), _answer("1000000"), _answer("Because she asks 2 questions only."), _answer(good, score=6),
                       _answer("Because she names it."), _answer("She names his fear before explaining the test."),
                       _answer("Because of the icing on the cake."), _answer("Because Victor names his fear first."), _answer(good[:-1]),
                       _answer("Because she names it,, twice over now."), _answer("Because she (kindly) names his fear."),
                       f'Score: 4\nEvidence: "I invented this."\nReason: {good}', _answer("Because she " + "word " * 40 + "end.")]}
    proc = subprocess.run([*command, str(ROOT / "tests" / "xgrammar_check.py")], input=json.dumps([item]), capture_output=True,
                          text=True, timeout=300)
    [result] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert result["ok"], result["error"]
    assert all(result["accepted"]) and all(result["rejected"]), result


@pytest.mark.engine
async def test_the_judge_on_the_real_model_scores_within_the_scale_with_a_real_quote(tmp_path: Path, llama_engine) -> None:
    result = _tiny_result(tmp_path)
    scenario = _scenario(tmp_path, VALID + "    - {id: consent, description: Asks for consent to the blood test.}\n")
    scores = await Judge(llama_engine, seed=1).score(scenario, result)
    nurse_lines = {t.text for t in result.turns if t.role == "nurse"}
    assert [s.criterion for s in scores] == ["empathy", "consent"]
    assert not any("grammar was rejected" in s.reason for s in scores)  # llama.cpp reads the judge's grammar
    for s in scores:
        assert s.score is None or reason_problem(s.reason, evidence=s.evidence or "") is None
        assert (s.score is not None and 1 <= s.score <= 5 and s.evidence in nurse_lines) or (s.score is None and s.reason.startswith("unscored"))


@pytest.mark.engine
async def test_a_short_real_run_is_repeatable_with_a_seed(llama_engine) -> None:
    personas = PersonaRegistry(CHARACTERS, poll_interval=60)
    await personas.start()
    srv = NpcServer(Services(personas=personas, dialogue=Dialogue(llm=llama_engine)), host="127.0.0.1", port=0)
    await srv.start()
    srv.services.ready.set()
    scenario = load_scenario(find_scenario("belligerent_patient", SCENARIOS), PERSONAS)
    try:
        runs = [await run_simulation(scenario, connect=lambda: NpcClient.connect(srv.url), seed=7, turns=3, max_tokens=40)
                for _ in range(2)]
    finally:
        await srv.aclose()
        await personas.aclose()
    a, b = ([(t.role, t.text, t.actions) for t in r.turns] for r in runs)
    assert a == b and 2 <= len(a) <= 3
    assert all(t.text or t.actions for t in runs[0].turns)


def _npc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "npc_runtime.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=600)


def _lines(folder: Path) -> list[dict]:
    """transcript.jsonl without the timings (the only thing that differs between two runs)."""
    rows = [json.loads(line) for line in (folder / "transcript.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in row.items() if k != "timings"} for row in rows]


@pytest.mark.engine
def test_npc_simulate_twice_with_one_seed_gives_one_transcript(tmp_path: Path) -> None:
    """The issue's check, as a user runs it: the real embedded model, the judge, the report."""
    runs = []
    for name in ("runA", "runB"):
        proc = _npc("simulate", "belligerent_patient", "--turns", "6", "--seed", "7", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "patient (Victor)>" in proc.stdout and "nurse (Amara)>" in proc.stdout
        runs.append(_lines(tmp_path / name))
    report = (tmp_path / "runA" / "report.md").read_text(encoding="utf-8")
    # six turns, or fewer when a role kept repeating itself (the runner stops with "loop", asked again first)
    assert runs[0] == runs[1] and (len(runs[0]) == 6 or "stopped by: loop: " in report)
    for row in runs[0]:
        assert row["text"] in report
    scenario = load_scenario(ROOT / "scenarios" / "belligerent_patient.yaml", None)
    for criterion in scenario.rubric.criteria:  # a score with evidence, or an explicit "unscored"
        line = next(row for row in report.splitlines() if row.startswith(f"| {criterion.id}:"))
        assert re.search(r"\| [1-5] \| “.+” \|", line) or "unscored" in line, line


@pytest.mark.engine
def test_npc_simulate_trainee_mode_from_stdin(tmp_path: Path) -> None:
    script = "I can see you're scared, Victor. The blood test is the fastest way to the doctor.\nMay I draw it now?\n"
    proc = _npc("simulate", "belligerent_patient", "--human", "nurse", "--turns", "5", "--seed", "3", "--no-judge", "--audio",
                "--out", str(tmp_path / "trainee"), stdin=script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _lines(tmp_path / "trainee")
    nurse = [r["text"] for r in rows if r["role"] == "nurse"]
    assert nurse == script.strip().splitlines()  # the person's lines, verbatim
    assert [r["role"] for r in rows] == ["patient", "nurse", "patient", "nurse", "patient"]
    with wave.open(str(tmp_path / "trainee" / "conversation.wav"), "rb") as w:  # the patient's voice (espeak-ng)
        assert w.getnchannels() == 1 and w.getnframes() / w.getframerate() > 2.0
