"""The kinds of exchange: one function per kind makes a :class:`Turn` for a persona in a scene (or None when
the persona or the scene cannot have it), from the persona's style lines, its temper's pools and the scene's ids.

Used by training/generate.py; pure apart from the random generator it is handed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import templates as tp
import verbs as vp
from world import AI_TOPIC, Cast, Invalid, Stage, World

from npc_runtime.scene import Entity

MAX_REPLY_CHARS = 220
#: A persona's line that only fits its own place ("That belongs to the ward") ends with this.
HOME = "@home"
_SINGULAR_SAY = re.compile(r"\bit\b|\bIs the \{o\}|\b[Tt]hat \{o\}|\bis (?:about|for)\b|\bisn't\b|\bit's\b")
_SINGULAR_THING = re.compile(r"\{thing\} (?:is|isn't)\b|[Tt]hat \{thing\}")


# -- words -------------------------------------------------------------------------------------------------

class _Slots(dict):
    def __missing__(self, key: str) -> str:
        raise Invalid(f"no value for slot {{{key}}}")


def words(entity: Entity) -> str:
    return entity.name or entity.id.replace("_", " ")


def described(entity: Entity) -> str:
    """``a heavy smithing hammer`` → ``the heavy smithing hammer`` (how a player points at it)."""
    text = entity.description or words(entity)
    for article in ("a ", "an "):
        if text.startswith(article):
            return "the " + text[len(article):]
    return text


def plural(entity: Entity) -> bool:
    """A rough guess from the words: "nails", "darts" (not "glass", "compass")."""
    last = words(entity).split()[-1].lower()
    return last.endswith("s") and not last.endswith(("ss", "us"))


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def fill(template: str, **slots: str | None) -> str:
    """Fill a line's slots; ``{addr}`` with no value drops out with its comma; sentences start with a capital."""
    if slots.get("addr") is None:
        template = re.sub(r",? ?\{addr\}", "", template)
    text = template.format_map(_Slots({k: v for k, v in slots.items() if v is not None}))
    text = re.sub(r"([.!?…]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text[0].upper() + text[1:]


_ABBREVIATIONS = ("Dr.", "Mr.", "Mrs.", "Ms.", "St.")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (a title such as "Dr." does not end one)."""
    out: list[str] = []
    for piece in re.split(r"(?<=[.!?…])\s+", text.strip()):
        if out and out[-1].endswith(_ABBREVIATIONS):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out


def fits(text: str) -> bool:
    """Spoken and short: at most two sentences of three words or more (an "Oi!" or "Hm." does not count)."""
    parts = sentences(text)
    return len(parts) <= 4 and sum(len(p.split()) >= 3 for p in parts) <= 2 and len(text) <= MAX_REPLY_CHARS


def join(main: str, extra: str, *, before: bool = False) -> str:
    """``main`` with ``extra`` after it (or before it) when the two still fit; else ``main`` alone."""
    both = f"{extra} {main}" if before else f"{main} {extra}"
    return both if fits(both) else main


@dataclass
class Turn:
    """One generated exchange before it becomes a record."""

    say: str | None = None
    event: str | None = None
    actions: list[list[str]] = field(default_factory=list)
    emotion: str | None = None
    speech: str = ""
    expect: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @property
    def reply(self) -> str:
        tags = ["[" + " ".join(a) + "]" for a in self.actions]
        if self.emotion:
            tags.append(f"[emotion {self.emotion}]")
        return " ".join([*tags, self.speech])


class Maker:
    """Makes one exchange of a kind for a persona in a scene (see KINDS)."""

    def __init__(self, world: World, cast: Cast, stage: Stage, rng: random.Random) -> None:
        self.world, self.cast, self.stage, self.rng = world, cast, stage, rng
        self.persona, self.style, self.temper = cast.persona, cast.style, cast.temper
        self.player_name = words(stage.player)
        address = self.style.get("address") or []
        roll = rng.random()
        self.addr = rng.choice(address) if address and roll < 0.6 else (self.player_name if roll < 0.8 else None)

    # helpers
    def pick(self, seq: Sequence[Any]) -> Any:
        return self.rng.choice(list(seq))

    def line(self, category: str, *, own: Sequence[str] = (), without: str | None = None, plural: bool = False,
             **slots: str | None) -> str:
        """A reply line: the persona's own (``own``, 60%; one marked ``@home`` only in its own place) or its
        temper's, slots filled. ``without``: skip lines with this text; ``plural``: the thing is plural."""
        def usable(t: str) -> bool:
            return not (without and without in t) and not (plural and _SINGULAR_THING.search(t))

        mine = [t.removesuffix(HOME).rstrip() for t in own if usable(t) and (self.stage.home or not t.endswith(HOME))]
        generic = [t for t in tp.POOLS[category][self.temper] if usable(t)]
        choices = mine if mine and (self.rng.random() < 0.6 or not generic) else generic
        return fill(self.pick(choices), addr=self.addr, name=self.persona.name, **slots)

    def player_line(self, templates: Sequence[str], entity: Entity | None = None, **slots: str | None) -> str:
        """What the player says, picked from ``templates``; about a plural ``entity`` ("nails"), never "it" or "is"."""
        if entity is not None and plural(entity):
            templates = [t for t in templates if not _SINGULAR_SAY.search(t)] or templates
        if entity is not None:
            slots = {"o": words(entity), "od": described(entity), **slots}
        return self.said(self.pick(templates), **slots)

    def said(self, template: str, **slots: str | None) -> str:
        return fill(template, name=self.persona.name, player=self.player_name, **slots)

    def emotion(self, *choices: str) -> str | None:
        return self.pick(choices) if self.persona.emotions and choices else None

    def objects(self) -> list[Entity]:
        return list(self.stage.view.objects)

    def absent_thing(self) -> tuple[str, str, str]:
        vocabulary = " ".join(f"{e.id} {e.name or ''} {e.description or ''}" for kind in ("objects", "locations", "characters")
                              for e in getattr(self.stage.scene, kind)).lower().replace("_", " ")
        free = [t for t in tp.ABSENT_THINGS if t[1].split()[-1] not in vocabulary]
        return self.pick(free)


# -- the kinds --------------------------------------------------------------------------------------------

def act_give(m: Maker) -> Turn | None:
    if not m.cast.can("give") or not m.objects():
        return None
    o = m.pick(m.objects())
    templates = tp.GIVE_DIRECT if m.rng.random() < 0.65 else tp.GIVE_INDIRECT
    say = m.player_line(templates, o)
    actions = [["give", o.id, "player"]]  # never [grab][give]: after a grab tag, a give or move must mean act_two
    joy = m.emotion("joy") if m.temper in ("warm", "cheerful") and m.rng.random() < 0.2 else None
    speech = m.line("give", own=m.style.get("give", []), plural=plural(o), thing=words(o), who=m.player_name)
    return Turn(say=say, actions=actions, emotion=joy, speech=speech,
                expect={"must": [["give", o.id, "player"]], "allow": [["grab", o.id]]})


def act_give_other(m: Maker) -> Turn | None:
    if not m.cast.can("give") or not m.objects() or not m.stage.others:
        return None
    o, p = m.pick(m.objects()), m.pick(m.stage.others)
    say = m.player_line(tp.GIVE_OTHER, o, p=words(p))
    actions = [["give", o.id, p.id]]
    speech = m.line("give", own=m.style.get("give", []), plural=plural(o), thing=words(o), who=words(p))
    return Turn(say=say, actions=actions, speech=speech, expect={"must": [["give", o.id, p.id]], "allow": [["grab", o.id]]})


def act_grab(m: Maker) -> Turn | None:
    if not m.cast.can("grab") or not m.objects():
        return None
    o = m.pick(m.objects())
    say = m.player_line(tp.GRAB, o)
    speech = m.line("grab", own=m.style.get("grab", []), thing=words(o), plural=plural(o))
    return Turn(say=say, actions=[["grab", o.id]], speech=speech, expect={"must": [["grab", o.id]], "allow": []})


def act_move(m: Maker) -> Turn | None:
    if not m.cast.can("move"):
        return None
    roll = m.rng.random()
    view = m.stage.view
    if roll < 0.65 and view.locations:
        target = m.pick(view.locations)
        say = m.said(m.pick(tp.MOVE_PLACE), l=words(target))
    elif roll < 0.8 and m.stage.others:
        target = m.pick(m.stage.others)
        say = m.said(m.pick(tp.MOVE_PERSON), p=words(target))
    elif roll < 0.92:
        target = m.stage.player
        say = m.said(m.pick(tp.MOVE_PLAYER))
    elif view.objects:
        target = m.pick(view.objects)
        say = m.player_line(tp.MOVE_OBJECT, target)
    else:
        return None
    speech = m.line("move", own=m.style.get("move", []), place=words(target))
    return Turn(say=say, actions=[["move", target.id]], speech=speech, expect={"must": [["move", target.id]], "allow": []})


def act_two(m: Maker) -> Turn | None:
    if not m.cast.can("grab") or not m.objects():
        return None
    o = m.pick(m.objects())
    if m.cast.can("move") and m.stage.view.locations and (m.rng.random() < 0.5 or not m.cast.can("give")):
        place = m.pick(m.stage.view.locations)
        say = m.player_line(tp.TWO_GRAB_MOVE, o, l=words(place))
        actions = [["grab", o.id], ["move", place.id]]
        speech = m.line("move", own=m.style.get("move", []), place=words(place))
    elif m.cast.can("give") and m.stage.others:
        p = m.pick(m.stage.others)
        say = m.player_line(tp.TWO_GRAB_GIVE, o, p=words(p))
        actions = [["grab", o.id], ["give", o.id, p.id]]
        speech = m.line("give", own=m.style.get("give", []), plural=plural(o), thing=words(o), who=words(p))
    else:
        return None
    return Turn(say=say, actions=actions, speech=speech, expect={"must": actions, "allow": []})


def absent(m: Maker) -> Turn | None:
    roll = m.rng.random()
    if roll < 0.6 or not m.objects():
        with_article, noun, nouns = m.absent_thing()
        say = m.said(m.pick(tp.ABSENT_THING), x=with_article, xn=noun)
        speech = m.line("absent", own=m.style.get("absent", []), thing=noun, athing=with_article, things=nouns)
        if m.objects() and m.rng.random() < 0.25:
            speech = join(speech, fill("I've got the {o}, though.", o=words(m.pick(m.objects()))))
    elif roll < 0.8:
        place = m.pick([p for p in tp.ABSENT_PLACES if p not in " ".join(m.stage.scene.all_ids()).replace("_", " ")])
        say = m.said(m.pick(tp.ABSENT_PLACE), x=place)
        speech = m.line("absent_place", thing=place, athing=article(place))
    else:
        names = " ".join(words(c) for c in m.stage.scene.characters)
        person = m.pick([n for n in tp.ABSENT_PEOPLE if n not in names])
        say = m.player_line(tp.ABSENT_PERSON, m.pick(m.objects()), x=person)
        speech = m.line("absent_person", thing=person)
    return Turn(say=say, speech=speech, expect={"must": [], "allow": []})


def not_allowed(m: Maker) -> Turn | None:
    missing = [v for v in ("give", "grab", "move") if not m.cast.can(v)]
    if not missing:
        return None
    verb = m.pick(missing)
    if verb in ("give", "grab") and not m.objects():
        return None
    if verb == "give":
        o = m.pick(m.objects())
        say = m.player_line(tp.GIVE_DIRECT + tp.GIVE_OTHER, o, p=words(m.pick(m.stage.others)))
    elif verb == "grab":
        say = m.player_line(tp.GRAB, m.pick(m.objects()))
    else:
        say = m.said(m.pick(tp.MOVE_PLACE), l=words(m.pick(m.stage.view.locations)))
    speech = m.line("cannot", own=m.style.get("cannot", []))
    return Turn(say=say, speech=speech, expect={"must": [], "allow": []})


def chat(m: Maker) -> Turn:
    if m.rng.random() < 0.6:
        entry = m.pick(m.style["chat"])
        say, speech = m.pick(entry["q"]), fill(m.pick(entry["a"]), addr=m.addr)
    else:
        say, speech = m.pick(tp.SMALL_TALK), m.line("mood")
    return Turn(say=say, speech=speech, expect={"must": [], "allow": []})


def player_intro(m: Maker) -> Turn:
    job = m.pick(tp.JOBS)
    say = m.said(m.pick(tp.INTRO_LINES), job=job)
    speech = m.line("intro", job=job)
    not_say = [f"I'm a {job}", f"I am a {job}", f"I'm also a {job}", f"I work as a {job}"]
    return Turn(say=say, speech=speech, expect={"must": [], "allow": [], "keywords": [job], "not_say": not_say})


def _first_person(goal: str) -> str:
    return re.sub(r"\b(his|her)\b", "my", re.sub(r"\b(himself|herself)\b", "myself", goal))


def backstory(m: Maker) -> Turn:
    p = m.persona
    roll = m.rng.random()
    keywords: list[str] = []
    if roll < 0.25:
        say, speech = m.pick(tp.IDENTITY_QUESTIONS), f"I'm {p.name}, {p.role}."
        keywords = [p.name.split()[-1]]
    elif roll < 0.45 and p.goals:
        goal = _first_person(m.pick(p.goals))
        say, speech = m.pick(tp.GOAL_QUESTIONS), m.line("goal", goal=goal)
        keywords = [max(goal.split(), key=len)]
    elif roll < 0.55 and len(p.personality) >= 2:
        first, second = (_first_person(t) for t in m.rng.sample(p.personality, 2))
        say, speech = m.pick(tp.TRAIT_QUESTIONS), fill(f"{first}, people say. And {second}, I suppose.")
        keywords = [first.split()[0]]
    else:
        entry = m.pick(m.style["backstory"])
        say, speech = m.pick(entry["q"]), fill(m.pick(entry["a"]), addr=m.addr)
    return Turn(say=say, speech=speech, expect={"must": [], "allow": [], "keywords": keywords})


def injection(m: Maker) -> Turn:
    template = m.pick([t for t in tp.INJECTIONS if m.objects() or "{o}" not in t])
    say = m.player_line([template], m.pick(m.objects())) if "{o}" in template else m.said(template)
    expect: dict[str, Any] = {"must": [], "allow": []}
    if "Bob" in template:
        speech = fill(m.pick(("My name's {name}. Same as always.", "It's {name}, and it stays {name}.")), name=m.persona.name)
        expect.update(keywords=[m.persona.name.split()[-1]], not_say=["I'm Bob", "I am Bob", "My name is Bob", "It's Bob"])
    else:
        speech = m.line("deflect", own=m.style.get("deflect", []))
        if "pirate" in template:
            expect["not_say"] = ["matey", "ahoy", "arr!", "I'm a pirate", "I am a pirate"]
        elif "dragon" in template:
            expect["not_say"] = ["roar"]
    angry = m.emotion("anger") if m.temper in ("grumpy", "belligerent") and m.rng.random() < 0.3 else None
    return Turn(say=say, speech=speech, emotion=angry, expect=expect)


def ai_question(m: Maker) -> Turn:
    say = m.pick(tp.AI_QUESTIONS)
    if any(AI_TOPIC.search(t) for t in m.persona.forbidden_topics) and m.rng.random() < 0.35:
        speech = m.persona.refusal
    else:
        speech = m.line("human", own=m.style.get("human", []))
    return Turn(say=say, speech=speech, expect={"must": [], "allow": []})


def _forbidden(m: Maker, *, with_fact: bool) -> Turn:
    entry = m.pick(m.style["forbidden"])
    facts = [entry["fact"]] if with_fact else []
    if m.rng.random() < (0.5 if with_fact else 0.3):
        facts.append(m.pick(m.style["knowledge"])["fact"])
    m.rng.shuffle(facts)
    return Turn(say=m.pick(entry["q"]), speech=m.persona.refusal, facts=facts,
                expect={"must": [], "allow": [], "forbidden": True, "leak": list(entry["leak"])})


def forbidden(m: Maker) -> Turn:
    return _forbidden(m, with_fact=False)


def forbidden_fact(m: Maker) -> Turn:
    return _forbidden(m, with_fact=True)


def _event(m: Maker, kind: str, events: Sequence[str], says: Sequence[str], slots: dict[str, str]) -> tuple[str | None, str | None, str]:
    """(event, say, the template used): a game event 65% of the time, else the player says it."""
    use_event = m.rng.random() < 0.65
    template = m.pick(events if use_event else says)
    text = fill(template, P=m.player_name, name=m.persona.name, trade=m.style["trade"], **slots)
    return (text, None, template) if use_event else (None, text, template)


def _event_turn(m: Maker, kind: str, speech: str, actions: list[list[str]], event: str | None, say: str | None) -> Turn:
    allow = [["move", "player"], ["move", m.stage.exit]] if m.cast.can("move") else []
    allow += [a for a in actions if a not in allow]
    expect = {"must": [], "allow": allow, "emotion": list(tp.EVENT_ACCEPTS[kind]) if m.persona.emotions else None}
    return Turn(say=say, event=event, actions=actions, emotion=m.emotion(*tp.EVENT_EMOTIONS[kind][m.temper]), speech=speech,
                expect=expect)


def event_theft(m: Maker) -> Turn | None:
    if not m.objects():
        return None
    o = m.pick(m.objects())
    event, say, template = _event(m, "theft", tp.THEFT_EVENTS, tp.THEFT_SAYS, {"o": words(o), "exit": words(_exit(m))})
    speech = m.line("theft", own=m.style["events"]["theft"], without=None if "{o}" in template else "{thing}",
                    thing=words(o), plural=plural(o))
    actions = [["move", "player"]] if m.cast.can("move") and m.rng.random() < 0.6 else []
    return _event_turn(m, "theft", speech, actions, event, say)


def event_insult(m: Maker) -> Turn:
    event, say, _ = _event(m, "insult", tp.INSULT_EVENTS, tp.INSULT_SAYS, {})
    speech = m.line("insult", own=m.style["events"]["insult"])
    actions: list[list[str]] = []
    if m.cast.can("move") and m.temper == "belligerent" and m.rng.random() < 0.3:
        actions = [["move", "player"]]
    elif m.cast.can("move") and m.temper in ("shy", "anxious") and m.rng.random() < 0.25:
        actions = [["move", m.stage.exit]]
    return _event_turn(m, "insult", speech, actions, event, say)


def event_gift(m: Maker) -> Turn:
    gift = m.pick(tp.GIFTS)
    places = m.stage.view.locations
    event, say, _ = _event(m, "gift", tp.GIFT_EVENTS if places else tp.GIFT_EVENTS[:1] + tp.GIFT_EVENTS[2:], tp.GIFT_SAYS,
                           {"gift": gift, "l": words(m.pick(places)) if places else ""})
    actions: list[list[str]] = []
    if m.cast.can("give") and m.objects() and m.temper in ("warm", "cheerful", "formal") and m.rng.random() < 0.25:
        o = m.pick(m.objects())
        actions, speech = [["give", o.id, "player"]], m.line("gift_back", thing=words(o), plural=plural(o))
    else:
        speech = m.line("gift", own=m.style["events"]["gift"], gift=gift)
    return _event_turn(m, "gift", speech, actions, event, say)


def _exit(m: Maker) -> Entity:
    return next(e for e in m.stage.view.locations if e.id == m.stage.exit)


def event_danger(m: Maker) -> Turn:
    places = [e for e in m.stage.view.locations if e.id != m.stage.exit] or m.stage.view.locations
    event, say, _ = _event(m, "danger", tp.DANGER_EVENTS, tp.DANGER_SAYS, {"l": words(m.pick(places)), "exit": words(_exit(m))})
    speech = m.line("danger", own=m.style["events"]["danger"])
    actions: list[list[str]] = []
    if m.cast.can("move"):
        roll = m.rng.random()
        if m.temper in tp.BOLD and roll < 0.5:
            actions = [["move", "player"]]
        elif roll < 0.8:
            actions = [["move", m.stage.exit]]
    return _event_turn(m, "danger", speech, actions, event, say)


def _memories(m: Maker, k: int) -> list[str]:
    return [fill(line, P=m.player_name) for line, *_ in m.rng.sample(tp.MEMORIES, k)]


def memory(m: Maker) -> Turn:
    if m.objects() and m.rng.random() < 0.15:
        o = m.pick(m.objects())
        line = f"you gave {o.id}"
        say = m.pick(("What did you give me last time?", "Did you give me anything when I was here before?"))
        answer, keywords = f"I gave you the {words(o)} last time.", [words(o)]
    else:
        raw, questions, answer, keys = m.pick(tp.MEMORIES)
        line, say, keywords = fill(raw, P=m.player_name), m.pick(questions), list(keys)
    lines = [line] + [x for x in _memories(m, 2)[: m.rng.randrange(3)] if x != line]
    m.rng.shuffle(lines)
    speech = join(answer, m.line("remember"), before=True) if m.rng.random() < 0.6 else answer
    return Turn(say=say, speech=speech, memory=lines, expect={"must": [], "allow": [], "keywords": keywords})


def memory_act(m: Maker) -> Turn | None:
    if not m.cast.can("give") or not m.objects():
        return None
    o = m.pick(m.objects())
    lines = [f"you gave {o.id}"] + _memories(m, 1)[: m.rng.randrange(2)]
    m.rng.shuffle(lines)
    say = m.pick(("I'll have my usual, please.", "Same as last time, please.", "The usual, if you don't mind.",
                  "You know what I like. Same again?"))
    speech = m.pick((f"Your usual {words(o)}, coming up.", f"The {words(o)}, same as last time.", f"Here's your {words(o)}, as always."))
    return Turn(say=say, speech=speech, actions=[["give", o.id, "player"]], memory=lines,
                expect={"must": [["give", o.id, "player"]], "allow": [["grab", o.id]], "keywords": [words(o)]})


def facts(m: Maker) -> Turn:
    entry = m.pick(m.style["knowledge"])
    others = [e["fact"] for e in m.style["knowledge"] if e is not entry]
    passages = [entry["fact"]] + m.rng.sample(others, min(len(others), m.rng.randrange(3)))
    m.rng.shuffle(passages)
    answer = fill(m.pick(entry["a"]), addr=m.addr)
    speech = join(answer, m.line("know"), before=True) if m.rng.random() < 0.3 else answer
    return Turn(say=m.pick(entry["q"]), speech=speech, facts=passages,
                expect={"must": [], "allow": [], "keywords": list(entry["keywords"])})


def ask(m: Maker) -> Turn | None:
    """An ordinary question about the character's place, its things or its work, answered from the scene and
    the persona (the contrast to forbidden: a model that learned only refusals says them to these too)."""
    roll, objects = m.rng.random(), m.objects()
    if roll < 0.4 and objects:
        o = m.pick(objects)
        say = m.player_line(tp.OBJECT_QUESTIONS, o)
        speech = fill(m.pick(tp.OBJECT_ANSWERS), addr=m.addr, desc=o.description or article(words(o)))
    elif roll < 0.6 and len(objects) >= 2:
        a, b = m.rng.sample(objects, 2)
        say = m.pick(tp.STOCK_QUESTIONS)
        speech = fill(m.pick(tp.STOCK_ANSWERS), addr=m.addr, a=article(words(a)), b=article(words(b)))
    elif roll < 0.8:
        say = m.pick(tp.WORK_QUESTIONS)
        speech = fill(m.pick(tp.WORK_ANSWERS), addr=m.addr, role=article(m.persona.role))
    else:
        say, speech = m.pick(tp.BUSINESS_QUESTIONS), m.line("mood")
    return Turn(say=say, speech=speech, expect={"must": [], "allow": [], "answers": True})


# -- declared verbs (the scene's own: a verb scene declares 1-3 of training/verbs.py's pool) --------------

def _declared(m: Maker) -> list[vp.Verb]:
    return [vp.VERBS[v.name] for v in m.stage.scene.verbs]


def _fitting(m: Maker, verb: vp.Verb, i: int) -> list[Entity]:
    """The scene entities argument ``i`` of ``verb`` may name and a player would ask for (a verb with props: its
    props that are here; a character argument: never the character itself)."""
    kind = verb.args[i][1]
    view = m.stage.view
    if kind == "character":
        return [c for c in view.characters if not (verb.others_only and c.id == "player")]
    pool = {"object": view.objects, "location": view.locations, "any": [*view.objects, *view.locations]}[str(kind)]
    if i == 0 and verb.props:
        props = {p.id for p in verb.props}
        pool = [e for e in pool if e.id in props]
    return list(pool)


def _said_as(entity: Entity) -> str:
    """How the player names an argument: ``me`` for the player, else its words."""
    return "me" if entity.id == "player" else words(entity)


def _request(m: Maker, verb: vp.Verb, slots: dict[str, str], *, me: bool, unique: bool, indirect: float) -> str:
    """A player's line asking for ``verb``: an imperative core in a politeness frame, or (``indirect`` of the time)
    a line that says what is needed without the verb (a line without ``{a}`` only when the thing is ``unique``)."""
    lines = verb.indirect_me if me else verb.indirect
    lines = tuple(t for t in lines if unique or "{a}" in t or not verb.args)
    if lines and m.rng.random() < indirect:
        return m.said(m.pick(lines), **slots)
    frame = m.pick(vp.FRAMES)
    return m.said(frame.replace("{core}", m.pick(verb.direct)), **slots)


def _done(m: Maker, verb: vp.Verb) -> str:
    done = fill(m.pick(verb.done), addr=m.addr)
    if m.rng.random() < 0.5:
        return join(done, fill(m.pick(vp.ACKS[m.temper]), addr=m.addr), before=True)
    return done


def verb_act(m: Maker) -> Turn | None:
    """A declared verb asked for, directly or not: its tag with valid arguments."""
    declared = _declared(m)
    if not declared:
        return None
    verb = m.pick(declared)
    values: list[str] = []
    slots: dict[str, str] = {}
    me, unique, entities = False, True, []
    for i, (_, kind) in enumerate(verb.args):
        if isinstance(kind, tuple):
            value = m.pick(kind)
            values.append(value)
            slots["ab"[i]] = value
            continue
        fitting = _fitting(m, verb, i)
        if not fitting:
            return None
        e = m.pick(fitting)
        unique = unique and len(fitting) == 1
        me = me or e.id == "player"
        values.append(e.id)
        entities.append(e)
        slots["ab"[i]] = _said_as(e)
    say = _request(m, verb, slots, me=me, unique=unique, indirect=0.35)
    action = [verb.name, *values]
    allow = [["move", e.id] for e in entities[:1]] if m.cast.can("move") else []
    return Turn(say=say, actions=[action], speech=_done(m, verb), expect={"must": [action], "allow": allow})


def verb_builtin(m: Maker) -> Turn | None:
    """A built-in asked for in a scene that declares verbs: still the built-in."""
    makers = [f for v, f in (("give", act_give), ("grab", act_grab), ("move", act_move)) if m.cast.can(v)]
    if not _declared(m) or not makers:
        return None
    return m.pick(makers)(m)


def verb_absent(m: Maker) -> Turn | None:
    """A declared verb asked for on something (someone, a value) that is not there: words, no action."""
    declared = [v for v in _declared(m) if v.args]
    if not declared:
        return None
    verb = m.pick(declared)
    kind = verb.args[0][1]
    vocabulary = " ".join(f"{e.id} {e.name or ''} {e.description or ''}" for k in ("objects", "locations", "characters")
                          for e in getattr(m.stage.scene, k)).lower().replace("_", " ")
    slots: dict[str, str] = {}
    if len(verb.args) > 1:  # the second argument is there (a person): only the first is missing
        fitting = _fitting(m, verb, 1)
        if not fitting or isinstance(verb.args[1][1], tuple):
            return None
        slots["b"] = _said_as(m.pick(fitting))
    if kind == "character":
        names = " ".join(words(c) for c in m.stage.scene.characters)
        missing = m.pick([n for n in tp.ABSENT_PEOPLE if n not in names])
        speech = fill(m.pick(vp.MISSING_PERSON[m.temper]), thing=missing)
    else:
        free = [x for x in verb.missing if x.split()[-1] not in vocabulary]
        if not free:
            return None
        missing = m.pick(free)
        lines = verb.refuse or vp.MISSING[m.temper]
        speech = fill(m.pick(lines), addr=m.addr, thing=missing, athing=article(missing))
        fitting = _fitting(m, verb, 0) if not isinstance(kind, tuple) else []
        if fitting and m.rng.random() < 0.3:
            speech = join(speech, fill("There's the {o}, though.", o=words(m.pick(fitting))))
    slots["a"] = missing
    frame = m.pick(vp.FRAMES)
    say = m.said(frame.replace("{core}", m.pick(verb.direct)), **slots)
    return Turn(say=say, speech=speech, expect={"must": [], "allow": []})


def verb_near(m: Maker) -> Turn | None:
    """A line with a declared verb's word that asks for nothing: answered, no action."""
    declared = [v for v in _declared(m) if v.near]
    if not declared:
        return None
    say, answer = m.pick(m.pick(declared).near)
    return Turn(say=say, speech=fill(answer, addr=m.addr), expect={"must": [], "allow": []})


MAKERS: dict[str, Callable[[Maker], Turn | None]] = {
    "act_give": act_give, "act_give_other": act_give_other, "act_grab": act_grab, "act_move": act_move, "act_two": act_two,
    "absent": absent, "not_allowed": not_allowed, "chat": chat, "player_intro": player_intro, "backstory": backstory,
    "injection": injection, "ai_question": ai_question, "forbidden": forbidden, "forbidden_fact": forbidden_fact,
    "event_theft": event_theft, "event_insult": event_insult, "event_gift": event_gift, "event_danger": event_danger,
    "memory": memory, "memory_act": memory_act, "facts": facts, "ask": ask,
    "verb_act": verb_act, "verb_builtin": verb_builtin, "verb_absent": verb_absent, "verb_near": verb_near,
}
#: Kinds made in a verb scene (a training scene with 1-3 declared verbs, ``<scene>__verbs<n>``).
VERB_KINDS = frozenset({"verb_act", "verb_builtin", "verb_absent", "verb_near"})
#: Kinds that are ordinary questions: the reply must never be the persona's refusal (expect.answers).
ANSWERS = frozenset({"chat", "backstory", "facts", "memory", "ask", "verb_near"})
#: Kinds whose context is the point: no unrelated memory, facts or history is added to them.
FOCUSED = frozenset({"memory", "memory_act", "facts", "forbidden_fact"})


def add_context(m: Maker, kind: str, turn: Turn) -> None:
    """What a real turn carries besides its point: earlier exchanges, remembered lines, retrieved passages."""
    if kind in FOCUSED:
        return
    if m.rng.random() < 0.3:
        for _ in range(m.rng.randrange(1, 3)):
            turn.history += prior_exchange(m, turn.say)
    if m.rng.random() < 0.15:
        turn.memory = _memories(m, m.rng.randrange(1, 3))
    if not turn.facts and m.rng.random() < 0.2:
        turn.facts = [e["fact"] for e in m.rng.sample(m.style["knowledge"], 1)]


def prior_exchange(m: Maker, now: str | None) -> list[dict[str, str]]:
    """An earlier exchange, as the session's history keeps it (a character line: its words, then its tags)."""
    roll = m.rng.random()
    if roll < 0.4:
        entry = m.pick(m.style["chat"])
        player, character = m.pick(entry["q"]), fill(m.pick(entry["a"]), addr=m.addr)
    elif roll < 0.7:
        with_article, noun, nouns = m.absent_thing()
        player = m.said(m.pick(tp.ABSENT_THING), x=with_article, xn=noun)
        character = m.line("absent", own=m.style.get("absent", []), thing=noun, athing=with_article, things=nouns)
    else:
        earlier = act_give(m) if m.cast.can("give") else act_grab(m) if m.cast.can("grab") else None
        if earlier is None or earlier.say == now:
            return []
        player = earlier.say or ""
        character = " ".join([earlier.speech, *("[" + " ".join(a) + "]" for a in earlier.actions)])
    if player == now:
        return []
    return [{"kind": "player", "text": player}, {"kind": "character", "text": character}]
