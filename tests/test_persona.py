"""Persona schema, loader (file:line: field errors) and the hot-reloading registry. Pure unit tests, no network."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from npc_runtime.errors import PersonaError, PersonaFileError
from npc_runtime.persona.loader import check_dir, check_main, format_errors, load_dir, load_persona, read_persona_file
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.persona.schema import example_problems

CHARACTERS = Path(__file__).resolve().parent.parent / "characters"

# Line numbers below refer to this text.
VALID = """\
id: tess
name: Tess
role: a test character
actions: [move, grab, give]
scene:
  objects: [{id: cup}]
  locations: [{id: door}]
  characters: [{id: player}, {id: ada}]
examples:
  - player: Hand me the cup.
    reply: Here. [give cup player]
  - player: Hello there.
    reply: Hi.
llm:
  temperature: 0.5
"""


def _errors(tmp_path: Path, text: str | bytes, name: str = "tess.yaml") -> tuple[Path, list[PersonaFileError]]:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    loaded = read_persona_file(path)
    assert (loaded.persona is None) == bool(loaded.errors)
    return path, list(loaded.errors)


def _one_error(tmp_path: Path, text: str | bytes) -> PersonaFileError:
    path, errors = _errors(tmp_path, text)
    assert len(errors) == 1, format_errors(errors)
    assert errors[0].path == str(path)
    return errors[0]


# --- shipped characters -------------------------------------------------------------------------------------


def test_shipped_characters_load() -> None:
    personas, errors = load_dir(CHARACTERS)
    assert errors == [], format_errors(errors)
    assert set(personas) >= {"jin", "nova", "nurse_amara", "patient_victor", "rep_priya", "customer_doug"}
    for persona in personas.values():
        assert persona.actions == ["move", "grab", "give"]
        assert persona.voice.engine in ("piper", "espeak") and example_problems(persona) == []
    for persona in (personas["jin"], personas["nova"]):  # the game characters, written with examples and a scene
        assert persona.voice.engine == "piper"
        assert 5 <= len(persona.examples) <= 7
        assert persona.scene is not None


@pytest.mark.parametrize("character_id", ["jin", "nova"])
def test_shipped_examples_cover_the_teaching_cases(character_id: str) -> None:
    persona = load_persona(CHARACTERS / f"{character_id}.yaml")
    replies = [e.reply for e in persona.examples]
    others = [c for c in persona.scene.ids("characters") if c != "player"]
    assert any("[give" in r and r.rstrip().endswith("player]") for r in replies)
    assert any(f" {other}]" in r and "[give" in r for r in replies for other in others)
    assert any("[grab" in r for r in replies)
    assert any("[move" in r for r in replies)
    assert sum("[" not in r for r in replies) >= 2  # something absent, and chit-chat
    for reply in replies:  # speech first, tags at the end
        speech = reply.split("[", 1)[0]
        assert speech.strip() and reply.rstrip().endswith(("]", ".", "?", "!"))
        assert "[" not in reply or reply.rstrip().endswith("]")


def test_check_main_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(CHARACTERS) == 0
    assert capsys.readouterr().out.strip() == f"OK: {len(load_dir(CHARACTERS)[0])} personas"


def test_valid_text_loads(tmp_path: Path) -> None:
    path, errors = _errors(tmp_path, VALID)
    assert errors == []
    persona = load_persona(path)
    assert persona.id == "tess" and persona.llm.temperature == 0.5


# --- one error per kind: exact file, line and field ---------------------------------------------------------

CASES: list[tuple[str, str | bytes, int, str, str]] = [
    ("yaml syntax", VALID.replace("role: a test character", "role: a: b"), 3, "<yaml>", "mapping values are not allowed"),
    ("tab", VALID.replace("  temperature: 0.5", "\ttemperature: 0.5"), 15, "<yaml>", "'\\t'"),
    ("two documents", VALID + "---\nid: x\n", 16, "<yaml>", "single document"),
    ("top-level list", "- id: tess\n- name: Tess\n", 1, "<document>", "not a list"),
    ("top-level scalar", "\n\njust some words\n", 3, "<document>", "not a single value"),
    ("empty file", "", 1, "<document>", "empty"),
    ("only comments", "# nothing yet\n", 1, "<document>", "empty"),
    ("non-utf8", VALID.encode().replace(b"name: Tess", b"name: T\xe9ss"), 2, "<file>", "not UTF-8"),
    ("wrong type", VALID.replace("name: Tess", "name: [1, 2]"), 2, "name", "valid string"),
    ("nested wrong type", VALID.replace("temperature: 0.5", "temperature: hot"), 15, "llm.temperature", "valid number"),
    ("out of range", VALID.replace("temperature: 0.5", "temperature: 5"), 15, "llm.temperature", "less than or equal to 2"),
    ("unknown verb", VALID.replace("[move, grab, give]", "[move, fly]"), 4, "actions", "item 1: 'fly' is not a verb"),
    ("malformed verb", VALID.replace("[move, grab, give]", "[move, Fly]"), 4, "actions.1", "should match pattern"),
    ("repeated verb", VALID.replace("[move, grab, give]", "[move, move]"), 4, "actions", "only once"),
    ("unknown key", VALID.replace("role: a test character", "role: a test character\ntemper: grumpy"), 4, "temper", "unknown field"),
    ("unknown nested key", VALID.replace("temperature: 0.5", "temprature: 0.5"), 15, "llm.temprature", "did you mean 'temperature'"),
    ("unknown key in list item", VALID.replace("    reply: Hi.", "    reply: Hi.\n    mood: happy"), 14, "examples.1.mood", "allowed: player, reply"),
    ("missing top field", VALID.replace("role: a test character\n", ""), 1, "role", "required field is missing"),
    ("missing item field", VALID.replace("    reply: Hi.\n", ""), 12, "examples.1.reply", "required field is missing"),
    ("bad id", VALID.replace("id: tess", "id: Tess"), 1, "id", "pattern"),
    ("id not file name", VALID.replace("id: tess", "id: bess"), 1, "id", "expected 'tess'"),
    ("duplicate key", VALID + "name: Bess\n", 16, "name", "duplicate key (first on line 2)"),
    ("scene duplicate id", VALID.replace("[{id: door}]", "[{id: cup}]"), 5, "scene", "duplicate id 'cup'"),
    ("unprintable", VALID.replace("name: Tess", "name: T\x07ss"), 2, "<yaml>", "U+0007"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_points_at_file_line_field(tmp_path: Path, text: str | bytes, line: int, field: str, fragment: str) -> None:
    error = _one_error(tmp_path, text)
    assert (error.line, error.field) == (line, field), str(error)
    assert fragment in error.detail
    assert str(error) == f"{tmp_path / 'tess.yaml'}:{line}: {field}: {error.detail}"


TAG_CASES: list[tuple[str, str, str]] = [
    ("unknown verb", "Sure. [fly cup]", "unknown verb 'fly'"),
    ("malformed", "Sure. [give Cup player]", "malformed"),
    ("double space", "Sure. [give cup  player]", "malformed"),
    ("unbalanced", "Sure. [give cup player", "unbalanced"),
    ("arity", "Sure. [give cup]", "takes 2 argument(s), got 1"),
    ("not in scene", "Sure. [give sword player]", "'sword' is not an object"),
    ("wrong kind", "Sure. [grab door]", "'door' is not an object"),
    ("give to an object", "Sure. [give cup door]", "'door' is not a character"),
    ("itself", "Sure. [move tess]", "cannot name itself"),
]


@pytest.mark.parametrize(("reply", "fragment"), [c[1:] for c in TAG_CASES], ids=[c[0] for c in TAG_CASES])
def test_bad_example_tag_points_at_the_reply(tmp_path: Path, reply: str, fragment: str) -> None:
    error = _one_error(tmp_path, VALID.replace("Here. [give cup player]", reply))
    assert (error.line, error.field) == (11, "examples.0.reply")
    assert fragment in error.detail


def test_verb_not_allowed_by_persona(tmp_path: Path) -> None:
    error = _one_error(tmp_path, VALID.replace("[move, grab, give]", "[move]"))
    assert (error.line, error.field) == (11, "examples.0.reply")
    assert "verb 'give' is not allowed here (allowed: move)" in error.detail


def test_several_errors_in_one_file_are_all_reported(tmp_path: Path) -> None:
    text = VALID.replace("name: Tess", "name: 3").replace("temperature: 0.5", "temperature: -1")
    _, errors = _errors(tmp_path, text)
    assert [(e.line, e.field) for e in errors] == [(2, "name"), (15, "llm.temperature")]


def test_load_persona_raises_the_first_error(tmp_path: Path) -> None:
    path = tmp_path / "tess.yaml"
    path.write_text(VALID.replace("name: Tess", "name: [x]"))
    with pytest.raises(PersonaFileError) as info:
        load_persona(path)
    assert str(info.value).startswith(f"{path}:2: name: ")
    assert info.value.code == "persona_invalid"


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "tess.yaml").write_text(VALID)
    (tmp_path / "tess.yml").write_text(VALID)
    personas, errors = load_dir(tmp_path)
    assert list(personas) == ["tess"]
    assert [(e.path, e.line, e.field) for e in errors] == [(str(tmp_path / "tess.yml"), 1, "id")]
    assert "duplicate id 'tess'" in errors[0].detail and str(tmp_path / "tess.yaml") in errors[0].detail


def test_check_dir_keeps_good_files_and_lists_bad_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tess.yaml").write_text(VALID)
    (tmp_path / "ada.yaml").write_text(VALID.replace("id: tess", "id: ada").replace("name: Tess", "name: {}"))
    (tmp_path / "notes.txt").write_text("not a persona")
    errors = check_dir(tmp_path)
    assert [str(e) for e in errors] == [f"{tmp_path / 'ada.yaml'}:2: name: Input should be a valid string"]
    assert check_main(tmp_path) == 1
    assert capsys.readouterr().out == format_errors(errors) + "\n"


def test_check_main_missing_or_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(tmp_path / "nope") == 1
    assert "not a directory" in capsys.readouterr().out
    assert check_main(tmp_path) == 1
    assert "no persona files" in capsys.readouterr().out


# --- registry -----------------------------------------------------------------------------------------------

_clock = [0]


def _write(path: Path, text: str) -> None:
    """Write and push the mtime forward, so that a change is seen even on a coarse-mtime filesystem."""
    path.write_text(text)
    _clock[0] += 1
    stamp = 2_000_000_000_000_000_000 + _clock[0] * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


async def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def _tasks_for(directory: Path) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"persona-registry:{directory}" and not t.done()]


@pytest.fixture
def persona_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "tess.yaml", VALID)
    _write(tmp_path / "ada.yml", VALID.replace("id: tess", "id: ada").replace("{id: ada}", "{id: tess}"))
    return tmp_path


async def test_registry_loads_and_serves(persona_dir: Path) -> None:
    registry = PersonaRegistry(persona_dir)
    assert registry.ids() == ["ada", "tess"]
    assert registry.get("tess").name == "Tess"
    assert registry.version("tess") == 1 and registry.errors() == []
    with pytest.raises(PersonaError) as info:
        registry.get("ghost")
    assert info.value.code == "unknown_character"
    with pytest.raises(PersonaError):
        registry.version("ghost")


async def test_registry_skips_a_broken_file_at_start(persona_dir: Path) -> None:
    _write(persona_dir / "bad.yaml", "id: bad\nname: [\n")
    with capture_logs() as logs:
        registry = PersonaRegistry(persona_dir)
    assert registry.ids() == ["ada", "tess"]
    assert [e.path for e in registry.errors()] == [str(persona_dir / "bad.yaml")]
    assert any(e["event"] == "persona_invalid" and e["log_level"] == "error" for e in logs)


async def test_registry_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PersonaError):
        PersonaRegistry(tmp_path / "nope")


async def test_hot_reload_change_break_fix_add_delete(persona_dir: Path) -> None:
    path = persona_dir / "tess.yaml"
    async with PersonaRegistry(persona_dir, poll_interval=0.05) as registry:
        first = registry.get("tess")
        _write(path, VALID.replace("name: Tess", "name: Tessa"))
        await _eventually(lambda: registry.get("tess").name == "Tessa")
        assert registry.version("tess") == 2 and registry.get("tess") is not first

        with capture_logs() as logs:
            _write(path, VALID.replace("name: Tess", "name: Tessa").replace("role: a test character", "role: [x"))
            await _eventually(lambda: bool(registry.errors()))
        [error] = registry.errors()
        assert (error.path, error.field) == (str(path), "<yaml>") and error.line is not None
        assert registry.get("tess").name == "Tessa" and registry.version("tess") == 2  # the last good one serves
        reported = [e for e in logs if e["event"] == "persona_invalid"]
        assert [(e["error"], e["log_level"]) for e in reported] == [(str(error), "error")]

        _write(path, VALID.replace("name: Tess", "name: Tessie"))
        await _eventually(lambda: registry.get("tess").name == "Tessie")
        assert registry.errors() == [] and registry.version("tess") == 3

        _write(persona_dir / "cleo.yaml", VALID.replace("id: tess", "id: cleo"))
        await _eventually(lambda: "cleo" in registry.ids())

        path.unlink()
        await _eventually(lambda: "tess" not in registry.ids())
        with pytest.raises(PersonaError) as info:
            registry.get("tess")
        assert info.value.code == "unknown_character"
        assert registry.ids() == ["ada", "cleo"]
    assert _tasks_for(persona_dir) == []


async def test_deleting_a_broken_file_clears_its_error(persona_dir: Path) -> None:
    registry = PersonaRegistry(persona_dir)
    _write(persona_dir / "tess.yaml", "id: tess\n")
    assert await registry.refresh() is True
    assert [e.field for e in registry.errors()] == ["name", "role"]
    assert registry.get("tess").name == "Tess"
    (persona_dir / "tess.yaml").unlink()
    assert await registry.refresh() is True
    assert registry.errors() == [] and registry.ids() == ["ada"]
    assert await registry.refresh() is False


async def test_duplicate_id_takes_over_when_the_first_file_goes(persona_dir: Path) -> None:
    _write(persona_dir / "tess.yml", VALID.replace("name: Tess", "name: Twin"))
    registry = PersonaRegistry(persona_dir)
    assert registry.get("tess").name == "Tess"
    assert [(e.path, e.field) for e in registry.errors()] == [(str(persona_dir / "tess.yml"), "id")]
    (persona_dir / "tess.yaml").unlink()
    await registry.refresh()
    assert registry.get("tess").name == "Twin" and registry.errors() == []


async def test_aclose_leaves_no_task(persona_dir: Path) -> None:
    registry = PersonaRegistry(persona_dir, poll_interval=0.05)
    await registry.start()
    await registry.start()  # idempotent
    assert len(_tasks_for(persona_dir)) == 1
    await asyncio.sleep(0.12)
    await registry.aclose()
    await registry.aclose()  # twice is fine
    assert _tasks_for(persona_dir) == []


async def test_polling_survives_a_vanished_directory(tmp_path: Path) -> None:
    directory = tmp_path / "characters"
    directory.mkdir()
    _write(directory / "tess.yaml", VALID)
    with capture_logs() as logs:
        async with PersonaRegistry(directory, poll_interval=0.02) as registry:
            directory.rename(tmp_path / "moved")
            await _eventually(lambda: any(e["event"] == "persona_poll_failed" for e in logs))
            await asyncio.sleep(0.1)  # several more polls: reported once, and tess keeps serving
            assert registry.get("tess").name == "Tess"
    assert [e["event"] for e in logs].count("persona_poll_failed") == 1
