"""Load persona YAML files; every problem becomes a ``PersonaFileError`` that reads ``file:line: field: message``.

The YAML is composed into a node tree (each node knows its line) and constructed from that same tree, so a
pydantic error's ``loc`` (``("examples", 2, "reply")``) can be walked back to a line: the key's line for a
field, the item's line for a list item, the parent mapping's line for a missing field. Problems that belong to
no field use a pseudo-field: ``<file>`` (unreadable, too large, not UTF-8), ``<yaml>`` (syntax) and
``<document>`` (empty, or not a mapping). Nothing here raises for a bad file except ``load_persona``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from npc_runtime.errors import PersonaError, PersonaFileError
from npc_runtime.persona.schema import Persona, example_problems

PERSONA_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class PersonaFile:
    """The outcome of reading one file: a persona, or the errors that kept it from loading."""

    path: str
    persona: Persona | None
    errors: tuple[PersonaFileError, ...]
    id_line: int | None = None


class _FileProblem(Exception):
    def __init__(self, line: int | None, field: str, message: str) -> None:
        super().__init__(message)
        self.line, self.field, self.message = line, field, message


def persona_files(directory: str | Path) -> list[Path]:
    """The persona files (``*.yaml``, ``*.yml``, not hidden) directly in ``directory``, sorted by name.

    Raises ``PersonaError`` when ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise PersonaError(f"{root}: not a directory")
    return sorted(
        p for p in root.iterdir() if p.suffix in PERSONA_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def read_persona_file(path: str | Path) -> PersonaFile:
    """Read and validate one persona file; never raises for a bad file (its problems are in ``errors``)."""
    where = str(path)
    try:
        root, data = _parse(_read_text(Path(path)))
        _check_document(root)
    except _FileProblem as p:
        return PersonaFile(where, None, (PersonaFileError(where, p.line, p.field, p.message),))
    assert isinstance(root, MappingNode)
    errors = _duplicate_keys(where, root, ())
    if not errors:
        try:
            persona = Persona.model_validate(data)
        except ValidationError as exc:
            errors = [_from_pydantic(where, root, e) for e in exc.errors(include_url=False)]
        else:
            errors = _semantic_errors(where, root, persona, Path(path).stem)
    id_line = _locate(root, ("id",))
    if errors:
        return PersonaFile(where, None, tuple(sorted(errors, key=lambda e: e.line or 0)), id_line)
    return PersonaFile(where, persona, (), id_line)


def load_persona(path: str | Path) -> Persona:
    """Load one persona file. Raises the file's first ``PersonaFileError`` when it does not load."""
    loaded = read_persona_file(path)
    if loaded.persona is None:
        raise loaded.errors[0]
    return loaded.persona


def duplicate_error(loaded: PersonaFile, first_path: str) -> PersonaFileError:
    """The error for ``loaded`` claiming an id that ``first_path`` already holds."""
    assert loaded.persona is not None
    message = f"duplicate id {loaded.persona.id!r}: {first_path} already defines it"
    return PersonaFileError(loaded.path, loaded.id_line, "id", message)


def load_dir(directory: str | Path) -> tuple[dict[str, Persona], list[PersonaFileError]]:
    """Load every persona file in ``directory``: the good personas by id, and the errors of the others.

    When two files define the same id, the first by file name wins and the second is an error.
    Raises ``PersonaError`` when ``directory`` is not a directory.
    """
    personas: dict[str, Persona] = {}
    owners: dict[str, str] = {}
    errors: list[PersonaFileError] = []
    for path in persona_files(directory):
        loaded = read_persona_file(path)
        errors.extend(loaded.errors)
        if loaded.persona is None:
            continue
        if loaded.persona.id in owners:
            errors.append(duplicate_error(loaded, owners[loaded.persona.id]))
            continue
        owners[loaded.persona.id] = loaded.path
        personas[loaded.persona.id] = loaded.persona
    return personas, errors


def check_dir(directory: str | Path) -> list[PersonaFileError]:
    """Every error in the persona files of ``directory`` (empty when all load). See ``load_dir``."""
    return load_dir(directory)[1]


def format_errors(errors: Iterable[PersonaFileError]) -> str:
    """One ``file:line: field: message`` line per error."""
    return "\n".join(str(e) for e in errors)


def check_main(directory: str | Path) -> int:
    """``npc check DIR``: print ``OK: N personas`` or the error lines to stdout; return the exit code."""
    try:
        personas, errors = load_dir(directory)
    except PersonaError as exc:
        print(exc.message)
        return 1
    if errors:
        print(format_errors(errors))
        return 1
    if not personas:
        print(f"{directory}: no persona files (*.yaml, *.yml)")
        return 1
    print(f"OK: {len(personas)} personas")
    return 0


# --- reading and parsing -------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _FileProblem(None, "<file>", f"file is larger than {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise _FileProblem(None, "<file>", f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise _FileProblem(line, "<file>", message) from None


def _parse(text: str) -> tuple[Node | None, object]:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        root = loader.get_single_node()
        return root, (None if root is None else loader.construct_document(root))
    except yaml.MarkedYAMLError as exc:
        raise _FileProblem(*_yaml_problem(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise _FileProblem(line, "<yaml>", f"character U+{exc.character:04X} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise _FileProblem(1, "<yaml>", str(exc)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int, str, str]:
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or "invalid YAML"
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return (mark.line + 1 if mark else 1), "<yaml>", message


def _check_document(root: Node | None) -> None:
    if root is None:
        raise _FileProblem(1, "<document>", "file is empty: expected a mapping of persona fields")
    if not isinstance(root, MappingNode):
        kind = "list" if isinstance(root, SequenceNode) else "single value"
        message = f"the top level must be a mapping of fields (key: value), not a {kind}"
        raise _FileProblem(_line(root), "<document>", message)


# --- mapping problems to lines ------------------------------------------------------------------------------


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _child(node: Node, part: str | int) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(part):
                return _line(key), value
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return _line(node.value[part]), node.value[part]
    return None


def _locate(root: Node, loc: Sequence[str | int]) -> int:
    """The line of ``loc``, or of the deepest part of it that exists (a missing field: its parent mapping)."""
    node, line = root, _line(root)
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        line, node = found
    return line


def _duplicate_keys(where: str, node: Node, path: tuple[str | int, ...]) -> list[PersonaFileError]:
    errors: list[PersonaFileError] = []
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else "?"
            field = ".".join(map(str, (*path, name)))
            if name in seen:
                errors.append(PersonaFileError(where, _line(key), field, f"duplicate key (first on line {seen[name]})"))
            seen.setdefault(name, _line(key))
            errors.extend(_duplicate_keys(where, value, (*path, name)))
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            errors.extend(_duplicate_keys(where, item, (*path, index)))
    return errors


def _from_pydantic(where: str, root: Node, error: dict) -> PersonaFileError:
    loc = tuple(error["loc"])
    field = ".".join(map(str, loc)) or "<document>"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = _unknown_field_message(loc)
    elif error["type"] == "missing":
        message = "required field is missing"
    return PersonaFileError(where, _locate(root, loc), field, message)


def _unknown_field_message(loc: tuple[str | int, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown field"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field{hint} (allowed: {', '.join(allowed)})"


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Persona
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _inner_model(field.annotation) if field else None
    return model


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (model := _inner_model(arg)) is not None:
                return model
    return None


def _semantic_errors(where: str, root: Node, persona: Persona, stem: str) -> list[PersonaFileError]:
    errors: list[PersonaFileError] = []
    if persona.id != stem:
        message = f"id {persona.id!r} does not match the file name (expected {stem!r})"
        errors.append(PersonaFileError(where, _locate(root, ("id",)), "id", message))
    for index, problem in example_problems(persona):
        loc = ("examples", index, "reply")
        errors.append(PersonaFileError(where, _locate(root, loc), ".".join(map(str, loc)), problem))
    return errors
