"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries (scripts/setup_services.sh installs them),
``initdb`` in a temporary folder, listening on a free loopback port (its unix socket in the same folder), trust
authentication for the ``npc`` superuser. One server per test run (the session fixture :func:`postgres`); each test
that needs an empty database asks :meth:`PgServer.new_database` for one.

initdb and the server refuse to run as root: as root, they run as the ``postgres`` user (made by Debian's package),
else ``nobody``. Without the binaries the tests that need them skip, or fail when ``NPC_REQUIRE_SERVICES=1``
(scripts/test.sh sets it after installing them).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "npc"


def _bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them in /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and there is neither a postgres nor a nobody user to run PostgreSQL as")


class PgServer:
    """One PostgreSQL server in a temporary folder. :meth:`start` / :meth:`stop` (also mid-test: a database that goes
    away and comes back), :meth:`new_database` for a fresh database's URL, :meth:`close` removes everything."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="npc-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"
        self._names = itertools.count(1)
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        os.chmod(self.root, 0o700)
        self._as_user([str(bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                       "--no-locale", "--no-sync"], timeout=120)

    def _as_user(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-1000:]}\n{log}")
        return done

    @property
    def url(self) -> str:
        """The default database (``postgres``)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        # fsync off: nothing is forced to disk (a test run is thrown away); what a stopped or crashed server had committed
        # is still in the OS's cache. synchronous_commit stays on: a commit that returned survives an immediate stop.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200 -c shared_buffers=16MB")
        self._as_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                       "-t", "60", "start"], timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected, a clean shutdown) or ``immediate`` (as if it crashed)."""
        self._as_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], timeout=90)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def new_database(self, prefix: str = "t") -> str:
        """A new, empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
                       check=True, capture_output=True, timeout=60)
        return self.database_url(name)

    def psql(self, url: str, sql: str) -> str:
        """Run ``sql`` with psql against ``url``; its output (unaligned, tuples only)."""
        done = subprocess.run([str(self.bindir / "psql"), url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              check=True, capture_output=True, text=True, timeout=60)
        return done.stdout

    def close(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def require_postgres() -> Path:
    """The binaries' folder, or skip (fail with NPC_REQUIRE_SERVICES=1)."""
    bindir = _bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (scripts/setup_services.sh installs it)"
        if os.environ.get("NPC_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole test run, started once, removed at the end."""
    server = PgServer(require_postgres())
    try:
        server.start()
        yield server
    finally:
        server.close()
