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
from npc_runtime.sim.judge import ATTEMPTS, Judge
from npc_runtime.sim.report import conversation_audio, write_outputs
from npc_runtime.sim.runner import SimResult, TurnRecord, run_simulation
from npc_runtime.sim.scenario import (ScenarioFileError, ScenarioNotFound, check_scenarios, find_scenario, load_scenario,
                                     read_scenario_file)

from conftest import CHARACTERS, ROOT

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
    assert "Your role in this scene: the nurse, talking with Victor (the patient)" in nurse
    assert "What only you know: twenty minutes" in nurse and "twenty minutes" not in patient
    assert "(4/5)" in patient and 'You opened the scene by saying: "I have waited four hours!"' in patient
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
    assert any("Your role in this scene: the nurse" in m.content for m in llm.requests[0].messages)
    assert any("Your role in this scene: the patient" in m.content for m in llm.requests[1].messages)
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
    connect, llm = await sim_server(lambda r: "I want a doctor.")
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


async def test_outputs_are_written(tmp_path: Path, sim_server) -> None:
    connect, _ = await sim_server(lambda r: "Let me help. [give consent_form patient_victor]" if _speaker(r) == "Amara" else "Hmph.")
    result = await run_simulation(_scenario(tmp_path), connect=connect, seed=5, turns=3)
    scores = await Judge(FakeLLM(["nonsense"])).score(result.scenario, result)
    paths = write_outputs(tmp_path / "run", result, scores, audio=True)
    assert [p.name for p in paths] == ["transcript.jsonl", "report.md"]  # text-only sessions: no audio
    lines = [json.loads(line) for line in (tmp_path / "run" / "transcript.jsonl").read_text().splitlines()]
    assert [(d["turn"], d["role"], d["character"]) for d in lines] == [(1, "patient", "patient_victor"), (2, "nurse", "nurse_amara"), (3, "patient", "patient_victor")]
    assert lines[1]["actions"] == [{"verb": "give", "object": "consent_form", "target": "patient_victor"}] and "end" in lines[1]["timings"]
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
    llm = FakeLLM(['Score: 4\nEvidence: "I hear you. Four hours with chest pain is frightening."\nReason: Names his fear.'])
    [score] = await Judge(llm).score(result.scenario, result)
    assert (score.criterion, score.score, score.reason) == ("empathy", 4, "Names his fear.")
    grammar = llm.requests[0].grammar
    assert '"\\"I hear you. Four hours with chest pain is frightening.\\""' in grammar and "Damn right" not in grammar


@pytest.mark.engine
async def test_the_judge_on_the_real_model_scores_within_the_scale_with_a_real_quote(tmp_path: Path, llama_engine) -> None:
    result = _tiny_result(tmp_path)
    scenario = _scenario(tmp_path, VALID + "    - {id: consent, description: Asks for consent to the blood test.}\n")
    scores = await Judge(llama_engine, seed=1).score(scenario, result)
    nurse_lines = {t.text for t in result.turns if t.role == "nurse"}
    assert [s.criterion for s in scores] == ["empathy", "consent"]
    for s in scores:
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
    assert runs[0] == runs[1] and len(runs[0]) == 6
    report = (tmp_path / "runA" / "report.md").read_text(encoding="utf-8")
    for row in runs[0]:
        assert row["text"] in report
    scenario = load_scenario(ROOT / "scenarios" / "belligerent_patient.yaml", None)
    for criterion in scenario.rubric.criteria:  # a score with evidence, or an explicit "unscored"
        line = next(l for l in report.splitlines() if l.startswith(f"| {criterion.id}:"))
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
