"""Who may connect, and as whom: player tokens, API keys, the Origin allow-list. Pure (no I/O but reading the
secret files at start-up), so the server and the tests share it.

* **Player tokens** (``--auth-secret-file`` or ``NPC_AUTH_SECRET``): the game's backend signs a short-lived
  HMAC-SHA256 JWT for each player. Claims: ``sub`` (the player id: memory is kept under it; required), ``exp``
  (required; a token valid for longer than :attr:`Access.max_token_lifetime_s` from its ``iat`` is refused),
  ``iat`` (optional), ``name`` (optional: how characters call the player), ``characters`` (optional: the persona ids
  this token may talk to), ``aud`` (checked when the server has an audience). With auth on, the player id comes
  from the token, never from the client's ``session.start``.
* **API keys** (``--api-key-file``, one per line, or ``NPC_API_KEYS``, comma-separated): static secrets for
  server-to-server tools (``npc bench``, ``npc sim``, a game backend). A key's holder is trusted with any player id
  it names (it is the backend) and any character.
* **Credentials travel** in ``Authorization: Bearer <token or key>`` or, for browsers (a WebSocket from a page
  cannot set headers), in the ``access_token`` query parameter of the URL.
* **Origin allow-list** (``--allow-origin``, repeatable; ``*`` allows any): a browser's cross-site page may not
  connect. Without a list, only requests with no ``Origin`` (game engines, tools), from the server's own pages
  (same host and port) and from loopback pages are let in.

Without auth (``Access.enabled`` false: the default, for a server on loopback) every connection is let in and the
client's ``player.id`` is taken at its word; a client that sends none is an anonymous player whose memory is not
kept. The server refuses to listen beyond loopback without auth unless told ``--insecure`` (:func:`check_bind`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jwt

from npc_runtime.errors import NpcError

#: A player id from a token must look like the protocol's entity ids.
_MAX_ID = 64
_MIN_SECRET_BYTES = 32


class AccessDenied(NpcError):
    """A request without a valid credential (HTTP 401), or with one that does not allow it (403)."""

    code = "unauthorized"
    retryable = False

    def __init__(self, message: str, *, status: int = 401, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class AccessConfigError(NpcError):
    """The auth settings cannot work (a missing or short secret file, an empty key file, ...)."""

    code = "config_invalid"
    retryable = False


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is. ``kind``: ``token`` (a player token: ``player_id`` is the token's), ``key`` (an API
    key: trusted with any player id), ``open`` (auth off: the client's word). ``characters``: the persona ids this
    connection may talk to (None: any)."""

    kind: Literal["token", "key", "open"]
    player_id: str | None = None
    name: str | None = None
    characters: frozenset[str] | None = None

    @property
    def trusted(self) -> bool:
        """Whether the client's own ``player.id`` may be used (auth off, or a backend's API key)."""
        return self.kind != "token"

    def allows(self, character: str) -> bool:
        return self.characters is None or character in self.characters


OPEN = Identity(kind="open")


@dataclass(frozen=True, slots=True)
class Access:
    """The server's access policy (see the module docstring)."""

    secret: bytes | None = None
    api_keys: frozenset[str] = frozenset()
    allow_origins: tuple[str, ...] = ()
    audience: str | None = None
    max_token_lifetime_s: float = 24 * 3600.0
    leeway_s: float = 30.0
    algorithms: tuple[str, ...] = field(default=("HS256",))

    @property
    def enabled(self) -> bool:
        return self.secret is not None or bool(self.api_keys)

    # -- credentials

    def authenticate(self, headers: Mapping[str, str], query: str = "") -> Identity:
        """The identity of a request's credential; :class:`OPEN` when auth is off. Raises :class:`AccessDenied`."""
        if not self.enabled:
            return OPEN
        credential = bearer(headers.get("Authorization"))
        if credential is None:
            values = urllib.parse.parse_qs(query).get("access_token", [])
            credential = values[0] if values else None
        if not credential:
            raise AccessDenied("a player token or an API key is required (Authorization: Bearer ..., or ?access_token=...)")
        if any(hmac.compare_digest(credential.encode(), key.encode()) for key in self.api_keys):
            return Identity(kind="key")
        if self.secret is None:
            raise AccessDenied("unknown API key")
        return self.verify(credential)

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        """A player token's identity (signature, expiry, lifetime, audience, claims checked)."""
        assert self.secret is not None
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=list(self.algorithms), audience=self.audience,
                leeway=self.leeway_s, options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AccessDenied("the player token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AccessDenied(f"invalid player token: {type(exc).__name__}") from None
        sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat", None)
        if not isinstance(sub, str) or not sub or len(sub) > _MAX_ID or not sub.isprintable():
            raise AccessDenied("invalid player token: sub must be a player id (1-64 printable characters)")
        start = iat if isinstance(iat, int | float) else (time.time() if now is None else now)
        if isinstance(exp, int | float) and exp - start > self.max_token_lifetime_s:
            raise AccessDenied(f"the player token lives too long (at most {self.max_token_lifetime_s:.0f} s)")
        characters = claims.get("characters")
        if characters is not None and (not isinstance(characters, list) or not all(isinstance(c, str) for c in characters)):
            raise AccessDenied("invalid player token: characters must be a list of persona ids")
        name = claims.get("name")
        return Identity(kind="token", player_id=sub, name=name if isinstance(name, str) and name else None,
                        characters=frozenset(characters) if characters is not None else None)

    def issue(self, player_id: str, *, ttl_s: float = 900.0, characters: Iterable[str] | None = None,
              name: str | None = None, now: float | None = None) -> str:
        """A player token signed with this server's secret (tests and ``npc token``; a game backend does the same
        with any JWT library: see docs/security.md)."""
        if self.secret is None:
            raise AccessConfigError("no auth secret: set --auth-secret-file or NPC_AUTH_SECRET")
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {"sub": player_id, "iat": issued, "exp": issued + int(ttl_s)}
        if characters is not None:
            claims["characters"] = sorted(characters)
        if name:
            claims["name"] = name
        if self.audience is not None:
            claims["aud"] = self.audience
        return jwt.encode(claims, self.secret, algorithm=self.algorithms[0])

    # -- browsers

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` header (None: not from a browser page) may connect. ``host``: the
        request's ``Host`` header (a page served by this server has the same host and port)."""
        if origin is None:
            return True
        if "*" in self.allow_origins or origin in self.allow_origins:
            return True
        parsed = urllib.parse.urlsplit(origin)
        if host is not None and parsed.netloc.lower() == host.lower():
            return True  # the server's own pages (the demo)
        return not self.allow_origins and is_loopback_host(parsed.hostname)


def bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, access: Access, *, insecure: bool) -> None:
    """Refuse to listen beyond loopback with no auth, unless ``insecure`` (docs/security.md)."""
    if access.enabled or insecure or is_loopback_host(host):
        return
    raise AccessConfigError(
        f"refusing to listen on {host} without authentication: anyone who can reach it could talk as any player. "
        "Set --auth-secret-file (player tokens) and/or --api-key-file, or pass --insecure to run open on purpose.")


def load_access(*, secret_file: Path | None, api_key_file: Path | None, allow_origins: Iterable[str] = (),
                audience: str | None = None, environ: Mapping[str, str] | None = None) -> Access:
    """The policy from the settings: files first, then ``NPC_AUTH_SECRET`` / ``NPC_API_KEYS``."""
    env = os.environ if environ is None else environ
    secret: bytes | None = None
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().strip()
        except OSError as exc:
            raise AccessConfigError(f"{secret_file}: cannot read the auth secret ({exc.strerror})") from None
        where = str(secret_file)
    elif env.get("NPC_AUTH_SECRET"):
        secret, where = env["NPC_AUTH_SECRET"].strip().encode(), "NPC_AUTH_SECRET"
    if secret is not None and len(secret) < _MIN_SECRET_BYTES:
        raise AccessConfigError(f"{where}: the auth secret is {len(secret)} bytes; use at least {_MIN_SECRET_BYTES} "
                                "random bytes (e.g. `openssl rand -hex 32`)")
    keys: list[str] = []
    if api_key_file is not None:
        try:
            lines = api_key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AccessConfigError(f"{api_key_file}: cannot read the API keys ({exc.strerror})") from None
        keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise AccessConfigError(f"{api_key_file}: no API key in the file (one per line)")
    elif env.get("NPC_API_KEYS"):
        keys = [k.strip() for k in env["NPC_API_KEYS"].split(",") if k.strip()]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise AccessConfigError(f"API keys must be at least 16 characters ({len(short)} shorter)")
    return Access(secret=secret, api_keys=frozenset(keys), allow_origins=tuple(o.rstrip("/") for o in allow_origins),
                  audience=audience)
