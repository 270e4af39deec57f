"""Scenario files (``scenarios/<id>.yaml``): typed with pydantic, validated like personas.

Every problem becomes a :class:`ScenarioFileError` whose ``str()`` is ``file:line: field: message``,
located with the persona loader's YAML helpers (each node knows its line). Pure apart from reading
the file; nothing here raises for a bad file except :func:`load_scenario` and :func:`find_scenario`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yaml.nodes import MappingNode, Node

from npc_runtime.actions import action_problem, vocabulary
from npc_runtime.errors import NpcError, PersonaFileError
from npc_runtime.persona import loader as _yaml
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Entity, EntityId, Scene

SCENARIO_SUFFIXES = (".yaml", ".yml")
#: The longest brief the protocol accepts (``session.start.options.brief``).
MAX_BRIEF_CHARS = 2000

DIFFICULTY = {
    1: "easy-going: cooperate readily",
    2: "mostly cooperative: raise a concern or two, then go along",
    3: "guarded: push back, and give in only to good reasons",
    4: "difficult: push back hard, interrupt, and give in only when you truly feel heard",
    5: "very difficult: hostile and stubborn; concede only to excellent handling",
}


class ScenarioFileError(PersonaFileError):
    """A scenario file that does not validate. ``str()`` is ``file:line: field: message``."""

    code = "scenario_invalid"


class ScenarioNotFound(NpcError):
    code = "unknown_scenario"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Brief(_Strict):
    goals: list[str] = Field(default_factory=list, max_length=10, description="What this role wants from the scene.")
    hidden: str = Field(default="", max_length=800, description="What only this role knows (the others never see it).")
    difficulty: int = Field(default=3, ge=1, le=5, description="How hard this role makes it for the others: 1 easy … 5 very hard.")


class Role(_Strict):
    persona: EntityId = Field(description="Persona id (characters/<id>.yaml).")
    name: str | None = Field(default=None, max_length=80, description="What the others call this role; default: the persona's name.")
    brief: Brief = Field(default_factory=Brief)
    trainee: bool = Field(default=False, description="The role a trainee usually plays (npc simulate --human).")


class Opening(_Strict):
    role: str = Field(description="The role that speaks first.")
    line: str = Field(min_length=1, max_length=2000, description="Its first line, scripted (not generated).")


class Stop(_Strict):
    phrases: list[str] = Field(default_factory=list, description="Stop when a line contains one of these (case-insensitive).")
    actions: list[str] = Field(default_factory=list, description="Stop on an action: 'give consent_form nurse_amara', or a verb alone.")
    goal: str | None = Field(default=None, max_length=500, description="Stop when the judge finds this sentence true (one judge request per turn).")


class Scale(_Strict):
    min: int = 1
    max: int = 5

    @model_validator(mode="after")
    def _ordered(self) -> "Scale":
        if not self.min < self.max <= self.min + 20:
            raise ValueError("the scale needs min < max, at most 20 apart")
        return self


class Criterion(_Strict):
    id: EntityId
    description: str = Field(min_length=1, max_length=500)


class Rubric(_Strict):
    role: str = Field(description="The role whose performance is scored (the trainee).")
    scale: Scale = Field(default_factory=Scale)
    criteria: list[Criterion] = Field(default_factory=list, max_length=20)

    @field_validator("criteria", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value  # "criteria:" with nothing under it: an empty rubric


class Scenario(_Strict):
    """One simulation, as written in ``scenarios/<id>.yaml``."""

    id: EntityId = Field(description="Stable id; the file name without .yaml must match it.")
    title: str = Field(min_length=1, max_length=120)
    setting: str = Field(min_length=1, max_length=1200, description="Shared by every role (goes into each brief).")
    scene: Scene = Field(default_factory=Scene, description="Objects, locations, characters: what actions may name.")
    roles: dict[EntityId, Role] = Field(description="Two or more roles, keyed by role name.")
    opening: Opening
    turns: int = Field(default=8, description="Turn limit (the opening line counts as turn 1), 1 to 100.")
    stop: Stop = Field(default_factory=Stop)
    rubric: Rubric

    def role_name(self, role: str) -> str:
        r = self.roles[role]
        return r.name or r.persona

    def full_scene(self) -> Scene:
        """The scene with every role's character in it (so actions can name them)."""
        known = set(self.scene.all_ids())
        extra = [Entity(id=r.persona, name=r.name, description=f"the {role}") for role, r in self.roles.items() if r.persona not in known]
        return self.scene.model_copy(update={"characters": [*self.scene.characters, *extra]})

    def brief_for(self, role: str) -> str:
        """The role brief sent as ``session.start.options.brief``: who this role is, who the others are (their
        lines reach it as the player's words, to answer, never to say), its goals, secret and difficulty."""
        r = self.roles[role]
        me = self.role_name(role)
        others = [o for o in self.roles if o != role]
        with_whom = ", ".join(f"{self.role_name(o)} (the {o})" for o in others)
        their = " or ".join(self.role_name(o) for o in others)
        # The setting paragraph stays out: with it, SmolLM2-135M fell into a refusal loop ("I'm sorry, I can't
        # help you") every turn; without it the replies stay on topic. The report still shows the setting.
        # No "(4/5)" after the difficulty: the 135M model copied it into its lines.
        lines = [f"Scene: {self.title}.",
                 f"You are {me}, the {role}, talking with {with_whom}. What {their} says comes to you as the player's words.",
                 f"Speak only as {me}, the {role}, in your own words: never say {their}'s lines, never repeat a line."]
        if r.brief.goals:
            lines.append("Your goals: " + "; ".join(r.brief.goals) + ".")
        if r.brief.hidden:
            lines.append(f"What only you know: {r.brief.hidden}")
        lines.append(f"Difficulty: be {DIFFICULTY[r.brief.difficulty]}.")
        if role == self.opening.role:
            lines.append(f'You opened the scene by saying: "{self.opening.line}"')
        return "\n".join(lines)


def stop_action_key(text: str, scenario: Scenario) -> str:
    """A stop action in canonical form: role names replaced by their persona ids, single spaces."""
    words = text.split()
    return " ".join(scenario.roles[w].persona if w in scenario.roles and i > 0 else w for i, w in enumerate(words))


# --- reading -------------------------------------------------------------------------------------------------


def scenario_files(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        raise ScenarioNotFound(f"{root}: not a directory")
    return sorted(p for p in root.iterdir() if p.suffix in SCENARIO_SUFFIXES and not p.name.startswith(".") and p.is_file())


def read_scenario_file(path: str | Path, personas: Mapping[str, Persona] | None = None) -> tuple[Scenario | None, list[ScenarioFileError]]:
    """Read and validate one file: the scenario (role names filled from ``personas``), or its errors."""
    where = str(path)
    try:
        root, data = _yaml._parse(_yaml._read_text(Path(path)))
        _yaml._check_document(root)
    except _yaml._FileProblem as p:
        return None, [ScenarioFileError(where, p.line, p.field, p.message)]
    assert isinstance(root, MappingNode)
    errors = [ScenarioFileError(e.path, e.line, e.field, e.detail) for e in _yaml._duplicate_keys(where, root, ())]
    if errors:
        return None, errors
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        return None, sorted((_from_pydantic(where, root, e) for e in exc.errors(include_url=False)), key=lambda e: e.line or 0)
    errors = _semantic_errors(where, root, scenario, Path(path).stem, personas)
    if errors:
        return None, sorted(errors, key=lambda e: e.line or 0)
    return (scenario if personas is None else with_names(scenario, personas)), []


def with_names(scenario: Scenario, personas: Mapping[str, Persona]) -> Scenario:
    """``scenario`` with each role's ``name`` defaulting to its persona's name (when ``personas`` has it)."""
    roles = {k: r.model_copy(update={"name": r.name or (personas[r.persona].name if r.persona in personas else None)})
             for k, r in scenario.roles.items()}
    return scenario.model_copy(update={"roles": roles})


def load_scenario(path: str | Path, personas: Mapping[str, Persona] | None = None) -> Scenario:
    """Load one scenario file; raises its first :class:`ScenarioFileError`. With ``personas``, persona
    ids are checked and each role's ``name`` defaults to its persona's name."""
    scenario, errors = read_scenario_file(path, personas)
    if scenario is None:
        raise errors[0]
    return scenario


def check_scenarios(directory: str | Path, personas: Mapping[str, Persona] | None = None) -> list[ScenarioFileError]:
    """Every error in the scenario files of ``directory`` (empty when all load)."""
    errors: list[ScenarioFileError] = []
    for path in scenario_files(directory):
        errors.extend(read_scenario_file(path, personas)[1])
    return errors


def find_scenario(name_or_path: str | Path, directory: str | Path = "scenarios") -> Path:
    """A scenario file: an existing path, or ``<directory>/<name>.yaml``. Raises :class:`ScenarioNotFound`."""
    given = Path(name_or_path)
    if given.suffix in SCENARIO_SUFFIXES and given.is_file():
        return given
    for suffix in SCENARIO_SUFFIXES:
        candidate = Path(directory) / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    try:
        known = ", ".join(p.stem for p in scenario_files(directory)) or "none"
    except ScenarioNotFound:
        known = f"none ({directory} is not a directory)"
    raise ScenarioNotFound(f"unknown scenario {str(name_or_path)!r} (known: {known})")


# --- mapping problems to lines -------------------------------------------------------------------------------


def _err(where: str, root: Node, loc: tuple[str | int, ...], message: str) -> ScenarioFileError:
    return ScenarioFileError(where, _yaml._locate(root, loc), ".".join(map(str, loc)) or "<document>", message)


def _from_pydantic(where: str, root: Node, error: dict) -> ScenarioFileError:
    loc = tuple(p for p in error["loc"] if p != "[key]")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field is missing"
    return _err(where, root, loc, message)


def _semantic_errors(where: str, root: Node, s: Scenario, stem: str, personas: Mapping[str, Persona] | None) -> list[ScenarioFileError]:
    errors: list[ScenarioFileError] = []

    def add(loc: tuple[str | int, ...], message: str) -> None:
        errors.append(_err(where, root, loc, message))

    if s.id != stem:
        add(("id",), f"id {s.id!r} does not match the file name (expected {stem!r})")
    if not 1 <= s.turns <= 100:
        add(("turns",), f"the turn limit must be 1 to 100, got {s.turns}")
    if len(s.roles) < 2:
        add(("roles",), f"a simulation needs at least two roles, got {len(s.roles)}")
    seen: dict[str, str] = {}
    for name, role in s.roles.items():
        if role.persona in seen:
            add(("roles", name, "persona"), f"persona {role.persona!r} already plays the {seen[role.persona]}: each role needs its own")
        seen.setdefault(role.persona, name)
        if personas is not None and role.persona not in personas:
            add(("roles", name, "persona"), f"unknown persona {role.persona!r} (known: {', '.join(sorted(personas)) or 'none'})")
    roles = ", ".join(s.roles)
    if s.opening.role not in s.roles:
        add(("opening", "role"), f"{s.opening.role!r} is not a role of this scenario (roles: {roles})")
    if s.rubric.role not in s.roles:
        add(("rubric", "role"), f"{s.rubric.role!r} is not a role of this scenario (roles: {roles})")
    if not s.rubric.criteria:
        add(("rubric", "criteria"), "the rubric is empty: give at least one criterion to score")
    ids = [c.id for c in s.rubric.criteria]
    for i, cid in enumerate(ids):
        if cid in ids[:i]:
            add(("rubric", "criteria", i, "id"), f"duplicate criterion id {cid!r}")
    if errors:
        return errors
    scene = s.full_scene()
    for i, action in enumerate(s.stop.actions):
        key = stop_action_key(action, s)
        known = vocabulary(scene)
        if len(key.split()) == 1:
            problem = None if key in known else f"unknown verb {key!r} (verbs: {', '.join(known)})"
        else:
            problem = action_problem(key, scene, list(known))
        if problem:
            add(("stop", "actions", i), problem)
    for i, phrase in enumerate(s.stop.phrases):
        if not phrase.strip():
            add(("stop", "phrases", i), "empty phrase")
    for name in s.roles:
        if len(s.brief_for(name)) > MAX_BRIEF_CHARS:
            add(("roles", name, "brief"), f"the role brief (with the setting) is longer than {MAX_BRIEF_CHARS} characters")
    return errors
