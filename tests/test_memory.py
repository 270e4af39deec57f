"""Conversation memory (npc_runtime.memory): the stores, the extractive summarizer, `npc memory`.

The store's behaviour is tested on both backends (the ``make`` and ``store`` fixtures: real sqlite3 files under
tmp_path, and a real PostgreSQL server started for the run, a new database per test: tests/pg_fixture.py);
SQLite's own failures (a locked, deleted, replaced or garbage file) below; PostgreSQL's in test_memory_postgres.py.
No model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from pg_fixture import postgres  # noqa: F401  (fixture)

from npc_runtime.errors import NpcError
from npc_runtime.memory import ExtractiveSummarizer, Memory, MemoryEntry, MemoryStore, Recall
from npc_runtime.memory.cli import memory_main
from npc_runtime.memory.postgres import PostgresMemoryStore

#: make(**options) -> a store on this test's database (the same database at every call: a restart)
Make = Callable[..., Memory]

SELF_STATEMENT = "My name is Kai and I'm allergic to eggs."


def lines(n: int, start: int = 0, *, at: float = 0.0) -> list[MemoryEntry]:
    """Alternating player / character lines numbered from ``start``."""
    return [MemoryEntry("player" if i % 2 == 0 else "character", f"line {i}", at) for i in range(start, start + n)]


def texts(recall: Recall) -> list[str]:
    return [e.text for e in recall.recent]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Where this test's memory lives: ``{"path": ...}`` (SQLite) or ``{"url": ...}`` (a new PostgreSQL database)."""
    if request.param == "sqlite":
        return {"path": tmp_path / "memory.db"}
    return {"url": request.getfixturevalue("postgres").new_database()}


@pytest.fixture
def make(backend: dict[str, Any]) -> Make:
    def store(**options: Any) -> Memory:
        if "url" in backend:
            return PostgresMemoryStore(backend["url"], **options)
        return MemoryStore(backend["path"], **options)

    return store


@pytest.fixture
async def store(make: Make):
    s = make(keep_recent=4)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


class Recording:
    """A summarizer that records what it folds; fails while ``fail`` is set."""

    def __init__(self) -> None:
        self.folded: list[MemoryEntry] = []
        self.fail = False

    async def __call__(self, previous: str, entries: Sequence[MemoryEntry], *, character_name: str, partner_name: str) -> str:
        await asyncio.sleep(0)  # let other appends interleave
        if self.fail:
            raise RuntimeError("summarizer down")
        self.folded += entries
        return "\n".join(filter(None, [previous, *(e.text for e in entries)]))


# -- the summarizer (pure)

async def test_extractive_keeps_self_statements_requests_gifts_and_promises() -> None:
    summarize = ExtractiveSummarizer()
    entries = [
        MemoryEntry("player", "Hello there. " + SELF_STATEMENT + " Nice weather."),
        MemoryEntry("character", "[give ramen_bowl player] Here you go. I'll save you a seat tomorrow."),
        MemoryEntry("character", "[give menu nova] [move door] Sure thing."),
        MemoryEntry("player", "Could you bring 2 bowls please?"),
        MemoryEntry("event", "the door opens"),
        MemoryEntry("event", "Kai paid 20 coins"),
    ]
    summary = await summarize("", entries, character_name="Jin", partner_name="Kai")
    assert summary.splitlines() == [
        f'Kai said: "{SELF_STATEMENT}"',
        "you gave ramen_bowl",
        'you promised: "I\'ll save you a seat tomorrow."',  # a promise, not "you said": the character's words are not kept as lines
        "you gave menu to nova",
        'Kai asked: "Could you bring 2 bowls please?"',  # a request to the character, labelled as one
        "event: Kai paid 20 coins",
    ]
    assert "Hello there" not in summary and "weather" not in summary and "door" not in summary


async def test_extractive_merges_with_previous_and_keeps_the_newest_under_the_cap() -> None:
    summarize = ExtractiveSummarizer(max_chars=120)
    summary = await summarize("", [MemoryEntry("player", SELF_STATEMENT)], character_name="Jin", partner_name="Kai")
    for i in range(30):
        summary = await summarize(summary, [MemoryEntry("player", f"I have {i} cats.")], character_name="Jin", partner_name="Kai")
        assert len(summary) <= 120
    assert 'Kai said: "I have 29 cats."' in summary.splitlines()
    assert "allergic" not in summary  # the oldest went first
    again = await summarize(summary, [MemoryEntry("player", "I have 29 cats.")], character_name="Jin", partner_name="Kai")
    assert again == summary  # a repeat is not stored twice
    huge = ExtractiveSummarizer(max_chars=20).summarize("", [MemoryEntry("player", "I " + "x" * 50)], character_name="J", partner_name="K")
    assert len(huge) == 20 and huge.endswith("\u2026")


def test_remembered_is_facts_never_the_characters_own_lines() -> None:
    """What a session starts with: the summary plus the facts of the recent entries. The character's earlier
    replies never come back (a small model copies them), only what it gave or promised."""
    from npc_runtime.memory import remembered

    recent = tuple([MemoryEntry("player", SELF_STATEMENT), MemoryEntry("character", "I'm sorry, I can't carry them.")] * 6
                   + [MemoryEntry("player", "Could you hand me the chopsticks?"),
                      MemoryEntry("character", "Here. [give chopsticks player] I'll save you a seat tomorrow."),
                      MemoryEntry("event", "the rain stops")])
    old_summary = 'Kai said: "I like firm noodles."\nyou said: "I\'m sorry, I can\'t carry them."'
    facts = remembered(Recall(old_summary, recent, 20), partner_name="Kai").splitlines()
    assert facts == [
        'Kai said: "I like firm noodles."',
        f'Kai said: "{SELF_STATEMENT}"',
        'Kai asked: "Could you hand me the chopsticks?"',
        "you gave chopsticks",
        'you promised: "I\'ll save you a seat tomorrow."',
    ]
    assert not any("carry them" in line for line in facts)
    assert remembered(Recall("", (), 0), partner_name="Kai") == ""


# -- the store

async def test_append_and_recall_in_order(store: Memory) -> None:
    assert await store.recall("kai", "jin") == Recall("", (), 0)
    await store.append("kai", "jin", lines(3, at=1000.0))
    recall = await store.recall("kai", "jin")
    assert recall == Recall("", tuple(lines(3, at=1000.0)), 3)
    assert [e.kind for e in recall.recent] == ["player", "character", "player"]


async def test_entries_without_a_time_are_stamped(make: Make) -> None:
    s = make(clock=lambda: 1234.5)
    await s.open()
    await s.append("kai", "jin", [MemoryEntry("player", "hi"), MemoryEntry("event", "bell", 99.0)])
    assert [e.at for e in (await s.recall("kai", "jin")).recent] == [1234.5, 99.0]
    await s.aclose()


async def test_keep_recent_and_folding_into_the_summary(store: Memory) -> None:
    await store.append("kai", "jin", [MemoryEntry("player", SELF_STATEMENT), MemoryEntry("character", "[give ramen_bowl player] Enjoy.")])
    await store.append("kai", "jin", lines(3))
    recall = await store.recall("kai", "jin")
    assert recall.summary == f'kai said: "{SELF_STATEMENT}"'  # 5 entries, keep 4: the first is folded
    assert texts(recall) == ["[give ramen_bowl player] Enjoy.", "line 0", "line 1", "line 2"]
    await store.append("kai", "jin", lines(4, start=3))
    recall = await store.recall("kai", "jin")
    assert texts(recall) == ["line 3", "line 4", "line 5", "line 6"]
    assert recall.total == 9
    assert recall.summary.splitlines() == [  # the character's "line N" is no gift or promise
        f'kai said: "{SELF_STATEMENT}"', "you gave ramen_bowl", 'kai said: "line 0"', 'kai said: "line 2"']
    assert len(await store.history("kai", "jin")) == 9  # folded entries stay in the table


async def test_summary_length_is_capped(make: Make) -> None:
    s = make(keep_recent=2, summarizer=ExtractiveSummarizer(max_chars=200))
    await s.open()
    for i in range(40):
        await s.append("kai", "jin", [MemoryEntry("player", f"My lucky number is {i}."), MemoryEntry("character", "Nice.")])
    recall = await s.recall("kai", "jin")
    assert 0 < len(recall.summary) <= 200
    assert "My lucky number is 38." in recall.summary  # the newest folded fact
    assert recall.total == 80 and len(recall.recent) == 2
    await s.aclose()


async def test_names_for_the_summarizer(make: Make) -> None:
    seen: list[tuple[str, str]] = []

    async def summarize(previous: str, entries: Sequence[MemoryEntry], *, character_name: str, partner_name: str) -> str:
        seen.append((character_name, partner_name))
        return "s"

    s = make(keep_recent=1, summarizer=summarize)
    await s.open()
    await s.append("p1", "jin", lines(2))
    await s.append("p1", "jin", lines(1), partner_name="Kai", character_name="Jin")
    assert seen == [("jin", "p1"), ("Jin", "Kai")]
    await s.aclose()


async def test_memory_survives_a_restart(make: Make) -> None:
    first = make(keep_recent=3)
    await first.open()
    await first.append("kai", "jin", [MemoryEntry("player", SELF_STATEMENT, 1.0), *lines(5, at=2.0)])
    before = await first.recall("kai", "jin")
    await first.aclose()
    assert "allergic to eggs" in before.summary

    second = make(keep_recent=3)
    await second.open()
    assert await second.recall("kai", "jin") == before
    await second.append("kai", "jin", lines(1, start=5, at=3.0))
    assert texts(await second.recall("kai", "jin")) == ["line 3", "line 4", "line 5"]
    await second.aclose()


async def test_pairs_are_separate_and_forget(store: Memory) -> None:
    await store.append("kai", "jin", [MemoryEntry("player", "I talk to jin"), *lines(5)])
    await store.append("kai", "nova", [MemoryEntry("player", "to nova")])
    await store.append("nova", "jin", [MemoryEntry("player", "nova to jin")])  # NPC-to-NPC: jin heard nova
    assert texts(await store.recall("kai", "nova")) == ["to nova"]
    assert texts(await store.recall("nova", "jin")) == ["nova to jin"]
    assert (await store.recall("jin", "nova")).total == 0
    assert (await store.recall("kai", "jin")).summary == 'kai said: "I talk to jin"\nkai said: "line 0"'
    assert await store.partners() == [("kai", "jin", 6), ("kai", "nova", 1), ("nova", "jin", 1)]
    assert await store.partners("jin") == [("kai", "jin", 6), ("nova", "jin", 1)]
    assert await store.partners(partner="kai") == [("kai", "jin", 6), ("kai", "nova", 1)]

    assert await store.forget("kai", "jin") == 7  # 6 entries + the summary
    assert await store.recall("kai", "jin") == Recall("", (), 0)
    assert texts(await store.recall("kai", "nova")) == ["to nova"]
    await store.append("kai", "nova", [MemoryEntry("player", "again")])
    assert await store.forget("kai") == 2
    assert await store.partners() == [("nova", "jin", 1)]
    assert await store.forget("nobody") == 0


async def test_a_failing_summarizer_loses_nothing(make: Make) -> None:
    summarizer = Recording()
    s = make(keep_recent=2, summarizer=summarizer)
    await s.open()
    summarizer.fail = True
    with structlog.testing.capture_logs() as logs:
        await s.append("kai", "jin", lines(5))
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "line" not in str(logs)  # no player words in the log
    recall = await s.recall("kai", "jin")
    assert recall.summary == "" and texts(recall) == ["line 3", "line 4"] and recall.total == 5

    summarizer.fail = False
    await s.append("kai", "jin", lines(1, start=5))
    recall = await s.recall("kai", "jin")
    assert recall.summary.splitlines() == ["line 0", "line 1", "line 2", "line 3"]
    assert texts(recall) == ["line 4", "line 5"]
    await s.aclose()


async def test_a_forget_during_summarizing_is_not_undone(make: Make) -> None:
    gate = asyncio.Event()

    async def slow(previous: str, entries: Sequence[MemoryEntry], *, character_name: str, partner_name: str) -> str:
        await gate.wait()
        return "stale"

    s = make(keep_recent=1, summarizer=slow)
    await s.open()
    task = asyncio.create_task(s.append("kai", "jin", lines(3)), name="append")
    while (await s.recall("kai", "jin")).total < 3:
        await asyncio.sleep(0.001)
    assert await s.forget("kai") == 3
    gate.set()
    await task
    assert await s.recall("kai", "jin") == Recall("", (), 0)
    await s.aclose()


async def test_concurrent_appends_keep_every_entry(make: Make) -> None:
    summarizer = Recording()
    s = make(keep_recent=3, summarizer=summarizer)
    await s.open()

    async def writer(name: str) -> None:
        for i in range(25):
            await s.append("kai", "jin", [MemoryEntry("player", f"{name} {i}")])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(writer("a"), name="writer-a")
        tg.create_task(writer("b"), name="writer-b")
    recall = await s.recall("kai", "jin")
    assert recall.total == 50
    stored = [e.text for e in await s.history("kai", "jin")]
    assert sorted(stored) == sorted([f"{n} {i}" for n in "ab" for i in range(25)])
    assert [e.text for e in summarizer.folded] + texts(recall) == stored  # each folded once, in order
    await s.aclose()


async def test_missing_parent_directory_is_created(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path / "a" / "b" / "memory.db")
    await s.open()
    await s.append("kai", "jin", lines(1))
    await s.aclose()
    assert (tmp_path / "a" / "b" / "memory.db").is_file()


async def test_a_garbage_file_is_memory_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    path.write_bytes(b"this is not a database, just some text " * 100)
    s = MemoryStore(path)
    with pytest.raises(NpcError) as info:
        await s.open()
    assert info.value.code == "memory_unavailable" and str(path) in info.value.message
    await s.aclose()


async def test_a_directory_at_the_path_is_memory_unavailable(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path)
    with pytest.raises(NpcError) as info:
        await s.open()
    assert info.value.code == "memory_unavailable"
    await s.aclose()


async def test_use_before_open_and_after_close(make: Make) -> None:
    s = make()
    with pytest.raises(NpcError) as info:
        await s.recall("kai", "jin")
    assert info.value.code == "memory_unavailable"
    await s.open()
    await s.aclose()
    with pytest.raises(NpcError) as info:
        await s.append("kai", "jin", lines(1))
    assert info.value.code == "memory_unavailable"


async def test_unknown_kind_is_refused(store: Memory) -> None:
    with pytest.raises(ValueError):
        await store.append("kai", "jin", [MemoryEntry("narrator", "x")])  # type: ignore[arg-type]


# -- npc memory show|forget

async def _fill(s: Memory) -> None:
    await s.open()
    await s.append("kai", "jin", [MemoryEntry("player", SELF_STATEMENT, 1.0), MemoryEntry("character", "Noted. [give water player]", 2.0),
                                  MemoryEntry("event", "the bell rings", 3.0), MemoryEntry("player", "hello", 4.0)])
    await s.append("kai", "nova", [MemoryEntry("player", "hi nova", 5.0)])
    await s.append("nova", "jin", [MemoryEntry("player", "nova here", 6.0)])
    await s.aclose()


def test_memory_main_show(make: Make, backend: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_fill(make(keep_recent=3)))
    capsys.readouterr()  # what filling logged
    assert memory_main("show", "kai", None, **backend) == 0
    out = capsys.readouterr().out
    assert "jin remembers kai: 4 entries" in out and "nova remembers kai: 1 entry" in out
    assert 'kai said: "My name is Kai' in out  # the summary
    assert "(1 older entry not shown)" in out
    assert "jin> Noted. [give water player]" in out and "(event) the bell rings" in out and "player> hello" in out
    assert "player> hi nova" in out and "nova here" not in out
    assert out.index("jin> Noted") < out.index("(event) the bell") < out.index("player> hello")

    assert memory_main("show", "kai", "nova", **backend) == 0
    out = capsys.readouterr().out
    assert "hi nova" in out and "jin" not in out

    assert memory_main("show", "kai", "jin", **backend, all_entries=True) == 0
    assert f"player> {SELF_STATEMENT}" in capsys.readouterr().out

    assert memory_main("show", "zed", None, **backend) == 0
    assert capsys.readouterr().out.strip() == "nothing remembered for zed"


def test_memory_main_forget(make: Make, backend: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_fill(make(keep_recent=3)))
    capsys.readouterr()  # what filling logged
    assert memory_main("forget", "kai", "jin", **backend) == 0
    assert capsys.readouterr().out.strip() == "forgot 4 entries of kai by jin"
    assert memory_main("forget", "kai", None, **backend) == 0
    assert capsys.readouterr().out.strip() == "forgot 1 entry of kai"
    assert memory_main("show", "kai", None, **backend) == 0
    assert capsys.readouterr().out.strip() == "nothing remembered for kai"
    assert memory_main("show", "nova", None, **backend) == 0
    assert "player> nova here" in capsys.readouterr().out


def test_memory_main_missing_file_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none" / "memory.db"
    assert memory_main("show", "kai", None, path=path) == 0
    assert capsys.readouterr().out.strip() == "nothing remembered for kai"
    assert not path.parent.exists()


def test_memory_main_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "memory.db"
    path.write_text("garbage " * 200)
    for action in ("show", "forget"):
        assert memory_main(action, "kai", None, path=path) == 1  # type: ignore[arg-type]
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and str(path) in captured.err and "Traceback" not in captured.err


# -- failures: retried, kept pending, reported; a database deleted or replaced under the store


class Locker:
    """Another connection holding the database's write lock (what a second writer, or a backup tool, does)."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def _quick(path: Path, **kw: object) -> MemoryStore:
    """A store that gives up quickly on a locked database (for the tests)."""
    return MemoryStore(path, busy_timeout_s=0.01, retry_delay_s=0.01, **kw)  # type: ignore[arg-type]


async def test_a_write_into_a_locked_database_is_retried_until_the_lock_goes(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    s = MemoryStore(path, busy_timeout_s=0.01, retry_delay_s=0.2, write_attempts=3)
    await s.open()
    lock = Locker(path)

    async def release_after_the_first_failure() -> None:  # gone before the second attempt
        while not logs:
            await asyncio.sleep(0.005)
        lock.release()

    with structlog.testing.capture_logs() as logs:
        releasing = asyncio.create_task(release_after_the_first_failure(), name="release")
        await s.append("kai", "jin", lines(2))
        await releasing
    assert [e["event"] for e in logs] == ["memory write failed"] and logs[0]["attempt"] == 1
    assert [e.text for e in await s.history("kai", "jin")] == ["line 0", "line 1"] and s.pending == 0
    await s.aclose()


async def test_a_write_that_keeps_failing_is_raised_and_kept_for_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    s = _quick(path, keep_recent=50)
    await s.open()
    await s.append("kai", "jin", lines(1))
    lock = Locker(path)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(NpcError) as info:
            await s.append("kai", "jin", lines(2, start=1))
        with pytest.raises(NpcError):
            await s.append("kai", "nova", [MemoryEntry("player", "to nova")])
    assert info.value.code == "memory_failed" and "locked" in info.value.message
    assert [e["attempt"] for e in logs if e["event"] == "memory write failed"] == [1, 2, 3, 1, 2, 3]
    assert "line" not in str(logs)  # no player words in the log
    assert s.pending == 3
    lock.release()
    await s.append("kai", "jin", lines(1, start=3))  # the next write takes the pending entries first, in order
    assert s.pending == 0
    assert [e.text for e in await s.history("kai", "jin")] == ["line 0", "line 1", "line 2", "line 3"]
    assert [e.text for e in await s.history("kai", "nova")] == ["to nova"]
    await s.aclose()


async def test_pending_entries_are_bounded_and_written_or_reported_at_close(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    s = _quick(path, max_pending=3, write_attempts=1)
    await s.open()
    lock = Locker(path)
    for i in range(3):
        with pytest.raises(NpcError):
            await s.append("kai", "jin", lines(2, start=2 * i))
    assert s.pending == 3 and s.dropped == 3  # the oldest went, with an error log
    lock.release()
    await s.aclose()  # the pending ones are written at close
    again = MemoryStore(path)
    await again.open()
    assert [e.text for e in await again.history("kai", "jin")] == ["line 3", "line 4", "line 5"]
    await again.aclose()

    s = _quick(path, write_attempts=1)
    await s.open()
    lock = Locker(path)
    with pytest.raises(NpcError):
        await s.append("kai", "jin", lines(1, start=6))
    with structlog.testing.capture_logs() as logs:
        await s.aclose()  # still locked: they are lost, and the log says so
    lock.release()
    assert [(e["event"], e["entries"]) for e in logs if e["log_level"] == "error"] == \
        [("memory entries lost: the database failed until the store closed", 1)]


async def test_a_cancelled_append_is_written_once(make: Make) -> None:
    s = make(keep_recent=50)
    await s.open()
    task = asyncio.create_task(s.append("kai", "jin", lines(2)), name="append")
    await asyncio.sleep(0)  # the write has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await s.append("kai", "jin", lines(1, start=2))
    assert [e.text for e in await s.history("kai", "jin")] == ["line 0", "line 1", "line 2"]
    await s.aclose()


async def test_a_database_deleted_under_the_store_is_made_again_and_later_writes_survive(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    s = MemoryStore(path, keep_recent=50)
    await s.open()
    await s.append("kai", "jin", lines(2))
    path.unlink()  # rm memory.db (its -wal and -shm stay: the store has them open)
    with structlog.testing.capture_logs() as logs:
        await s.append("kai", "jin", lines(2, start=2))
        assert [e.text for e in await s.history("kai", "jin")] == ["line 2", "line 3"]  # reads see the new file too
    assert [(e["event"], e["what"]) for e in logs if e["log_level"] == "warning"] == \
        [("memory database deleted or replaced under the running server; opening the file at its path again", "deleted")]
    assert path.is_file()
    await s.aclose()
    restarted = MemoryStore(path, keep_recent=50)
    await restarted.open()
    assert [e.text for e in await restarted.history("kai", "jin")] == ["line 2", "line 3"]
    await restarted.aclose()


async def test_a_database_replaced_under_the_store_is_the_one_written(tmp_path: Path) -> None:
    path, other = tmp_path / "memory.db", tmp_path / "restored.db"
    s = MemoryStore(path, keep_recent=50)
    await s.open()
    await s.append("kai", "jin", lines(1))
    backup = MemoryStore(other, keep_recent=50)
    await backup.open()
    await backup.append("kai", "jin", [MemoryEntry("player", "from the backup")])
    await backup.aclose()
    other.replace(path)  # mv restored.db memory.db: a new file at the path
    with structlog.testing.capture_logs() as logs:
        await s.append("kai", "jin", lines(1, start=1))
    assert [e["what"] for e in logs if e["log_level"] == "warning"] == ["replaced"]
    await s.aclose()
    restarted = MemoryStore(path, keep_recent=50)
    await restarted.open()
    assert [e.text for e in await restarted.history("kai", "jin")] == ["from the backup", "line 1"]
    await restarted.aclose()


async def test_a_database_replaced_by_garbage_fails_the_write_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    s = _quick(path, keep_recent=50)
    await s.open()
    path.unlink()
    path.write_bytes(b"not a database " * 200)
    with pytest.raises(NpcError) as info:
        await s.append("kai", "jin", lines(1))
    assert info.value.code == "memory_unavailable" and s.pending == 1
    path.unlink()  # fixed: the next write makes a database again, with the kept entry first
    await s.append("kai", "jin", lines(1, start=1))
    assert [e.text for e in await s.history("kai", "jin")] == ["line 0", "line 1"]
    await s.aclose()
