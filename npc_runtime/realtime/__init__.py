"""An OpenAI-Realtime-compatible endpoint (``/v1/realtime``) over the native session: a translation layer
(docs/realtime.md). :mod:`.events` reads the client events, :mod:`.adapter` maps them onto a native
:class:`~npc_runtime.session.Session` and its events back, :mod:`.audio` handles 24 kHz PCM16, :mod:`.endpoint`
serves a connection."""
