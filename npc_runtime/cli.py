"""The ``npc`` command: serve, say, chat, check, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from npc_runtime import log as npc_log
from npc_runtime import protocol as p
from npc_runtime.scene_files import DEFAULT_SCENE, load_scene, shipped_scenes
from npc_runtime.settings import Settings

DEFAULT_SCHEMA_PATH = Path("clients/protocol.schema.json")
SCENE_HELP = f"scene JSON file (objects, locations, characters), or a shipped scene's name: {', '.join(shipped_scenes())}"


def _add_runtime_flags(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("runtime (in-process or serve)")
    g.add_argument("--characters", type=Path, help="folder of persona YAML files (default: characters)")
    g.add_argument("--llm", choices=["embedded", "vllm"], help="LLM backend (default: embedded)")
    g.add_argument("--model-path", type=Path, help="GGUF file for the embedded backend")
    g.add_argument("--llm-adapter", metavar="auto|none|PATH",
                   help="LoRA adapter (GGUF) for the embedded backend (default auto: the shipped NPC-tuned one, if any)")
    g.add_argument("--llm-batch", type=int, metavar="N", help="embedded backend: decode up to N turns together (batched generation; default 0: one at a time)")
    g.add_argument("--vllm-url", help="vLLM server base URL, e.g. http://127.0.0.1:8000")
    g.add_argument("--vllm-model", help="model name served by vLLM")
    g.add_argument("--prompt-profile", choices=["auto", "compact", "full", "tuned"],
                   help="the prompt characters get (default auto: the persona's, else full on vLLM unless it serves a tiny model, compact embedded)")
    g.add_argument("--tts", choices=["auto", "piper", "espeak", "none"], help="speech engine (default auto: each persona's voice; none: text only)")
    g.add_argument("--tts-voice", help="Piper voice package or .onnx file, or espeak voice")
    g.add_argument("--asr", help="speech recognition: tiny.en (default), base, a CTranslate2 Whisper folder, or none")
    _add_store_flags(g)
    g.add_argument("--no-rag", action="store_true", help="do not retrieve knowledge passages")
    g.add_argument("--no-memory", action="store_true", help="do not remember conversations")
    g.add_argument("--memory-url", metavar="URL", help="memory in PostgreSQL (postgresql://user@host:port/db; or NPC_MEMORY_URL), "
                                                        "shared by every server given it (default: SQLite in --data-dir)")


def _add_store_flags(g: Any) -> None:
    g.add_argument("--knowledge", type=Path, metavar="DIR", help="knowledge folder: DIR/<character>/, DIR/world/ (default: knowledge)")
    g.add_argument("--data-dir", type=Path, metavar="DIR", help="where the knowledge store and memory live (default: .npc-data)")
    g.add_argument("--chroma-url", metavar="URL", help="a Chroma server (chroma run) instead of the local store")
    g.add_argument("--log-format", choices=["console", "json"])
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    flags = {
        "characters_dir": args.characters, "llm": args.llm, "model_path": args.model_path, "llm_adapter": args.llm_adapter,
        "llm_batch": getattr(args, "llm_batch", None),
        "vllm_url": args.vllm_url, "vllm_model": args.vllm_model, "prompt_profile": args.prompt_profile, "tts": args.tts, "tts_voice": args.tts_voice,
        "asr": args.asr, "knowledge_dir": args.knowledge, "data_dir": args.data_dir, "chroma_url": args.chroma_url,
        "rag": False if getattr(args, "no_rag", False) else None, "memory": False if getattr(args, "no_memory", False) else None,
        "log_format": args.log_format, "log_level": args.log_level, "memory_url": getattr(args, "memory_url", None),
        "host": getattr(args, "host", None), "port": getattr(args, "port", None),
    }
    for name in ("auth_secret_file", "api_key_file", "auth_audience", "allow_origin", "insecure", "start_timeout_s", "max_per_address",
                 "drain_timeout_s"):
        flags[name] = getattr(args, name, None)
    flags.update(overrides)
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="npc", description="npc_runtime: game characters that talk and act.")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the WebSocket server")
    s.add_argument("--host", help="interface (default 127.0.0.1; any other needs auth or --insecure)")
    s.add_argument("--port", type=int, help="port (default 8765; 0 = any free port)")
    a = s.add_argument_group("access (docs/security.md)")
    a.add_argument("--auth-secret-file", type=Path, metavar="FILE", help="HMAC-SHA256 secret for player tokens (JWT; or NPC_AUTH_SECRET): turns auth on")
    a.add_argument("--api-key-file", type=Path, metavar="FILE", help="static API keys for tools and backends, one per line (or NPC_API_KEYS): turns auth on")
    a.add_argument("--auth-audience", metavar="AUD", help="player tokens must carry this aud claim")
    a.add_argument("--allow-origin", action="append", metavar="ORIGIN", help="a browser origin allowed to connect (repeatable; '*': any)")
    a.add_argument("--insecure", action="store_true", default=None, help="listen beyond loopback without auth (anyone could talk as any player)")
    a.add_argument("--start-timeout", dest="start_timeout_s", type=float, metavar="S", help="close connections that send no session.start within S seconds (default 10)")
    a.add_argument("--drain-timeout", dest="drain_timeout_s", type=float, metavar="S",
                   help="on SIGTERM: refuse new connections, let running responses finish for up to S seconds (default 30), "
                        "then close every connection with 1001")
    a.add_argument("--max-per-address", type=int, metavar="N", help="WebSocket connections per client address (default 16; 0: no limit; loopback not counted)")
    _add_runtime_flags(s)

    for name, text in (("say", "one turn: say TEXT to CHARACTER"), ("chat", "talk to CHARACTER in the terminal")):
        c = sub.add_parser(name, help=text)
        c.add_argument("character")
        if name == "say":
            c.add_argument("text", nargs="?", help="what to say (or --audio-in)")
            c.add_argument("--audio-in", type=Path, metavar="FILE", help="say it with a recording instead (WAV; FLAC/MP3/... via PyAV), streamed like a microphone")
            c.add_argument("--fast", action="store_true", help="with --audio-in: send the recording as fast as possible, not in real time")
            c.add_argument("--end-silence-ms", type=int, help="with --audio-in: silence that ends the turn (default: the persona's)")
            c.add_argument("--json", action="store_true", help="print every server event as one JSON object per line")
            c.add_argument("--audio", type=Path, metavar="OUT.wav", help="write the reply's audio to a WAV file")
        c.add_argument("--text-only", action="store_true", help="ask for text and actions only (no audio)")
        c.add_argument("--scene", type=Path, help=SCENE_HELP)
        c.add_argument("--server", help="ws://HOST:PORT of a running server (default: run the runtime in-process)")
        c.add_argument("--player-name", help="what the character calls you")
        c.add_argument("--player-id", help="who you are, for the character's memory (default: player)")
        c.add_argument("--seed", type=int, help="sampling seed")
        _add_runtime_flags(c)

    ing = sub.add_parser("ingest", help="(re)build the knowledge store from the knowledge folder (incremental)")
    ing.add_argument("--character", help="only this character's knowledge (and the shared world/)")
    ing.add_argument("--characters", type=Path, help="folder of persona YAML files (default: characters)")
    _add_store_flags(ing)

    mem = sub.add_parser("memory", help="show or forget what characters remember of a player")
    mem.add_argument("action", choices=["show", "forget"])
    mem.add_argument("player", help="player id (or a character id, for what another character heard)")
    mem.add_argument("character", nargs="?", help="only with this character")
    mem.add_argument("--data-dir", type=Path, metavar="DIR", help="where the memory lives (default: .npc-data)")
    mem.add_argument("--memory-url", metavar="URL", help="the PostgreSQL database the servers keep memory in (or NPC_MEMORY_URL)")
    mem.add_argument("--all", action="store_true", help="show: every entry, also those folded into the summary")

    sim = sub.add_parser("simulate", help="run an NPC-to-NPC training scenario (scenarios/*.yaml), scored by an LLM judge")
    sim.add_argument("scenario", help="scenario id (a file in --scenarios) or a path to a scenario YAML")
    sim.add_argument("--seed", type=int, default=0, help="same seed and models: same transcript (default 0)")
    sim.add_argument("--turns", type=int, help="turn limit (default: the scenario's)")
    sim.add_argument("--out", type=Path, help="output folder (default sim-runs/<id>-seed<N>)")
    sim.add_argument("--audio", action="store_true", help="also write conversation.wav, each character in its own voice")
    sim.add_argument("--server", help="ws://HOST:PORT of a running server (default: in-process)")
    sim.add_argument("--human", metavar="ROLE", help="trainee mode: you type this role's lines")
    sim.add_argument("--scenarios", dest="scenarios_dir", type=Path, default=Path("scenarios"), help="scenario folder (default scenarios)")
    sim.add_argument("--no-judge", action="store_true", help="skip scoring")
    _add_runtime_flags(sim)

    be = sub.add_parser("bench", help="load test: N clients x M turns (text, or real speech in real time), p50/p95/p99 per stage, a plot")
    be.add_argument("--clients", type=int, default=4)
    be.add_argument("--turns", type=int, default=5)
    be.add_argument("--mode", choices=["text", "audio"], default="text")
    be.add_argument("--out", type=Path, default=Path("bench-out"), help="folder for bench.json and bench.png (default bench-out)")
    be.add_argument("--server", help="ws://HOST:PORT of a running server (default: in-process)")
    be.add_argument("--character", default="jin")
    be.add_argument("--scene", type=Path, help=f"{SCENE_HELP} (default: {DEFAULT_SCENE})")
    be.add_argument("--recording", type=Path, metavar="FILE", help="audio mode: the recording streamed first (default: examples/audio/chopsticks.wav)")
    be.add_argument("--warmup", type=int, default=1, help="uncounted turns per client first (0: measure the cold turn too)")
    be.add_argument("--protocol", choices=["native", "realtime", "both"], default="native",
                    help="native (/), realtime (the OpenAI-Realtime-compatible /v1/realtime), or both on the same run, "
                         "alternating, medians compared (default native)")
    be.add_argument("--rounds", type=int, default=2, help="--protocol both: native/realtime alternations (default 2)")
    _add_runtime_flags(be)

    k = sub.add_parser("check", help="validate persona files (and scenarios/ when it exists)")
    k.add_argument("dir", nargs="?", type=Path, default=Path("characters"))
    k.add_argument("--scenarios", type=Path, help="also validate this scenario folder (default: scenarios/, when checking characters/)")

    sc = sub.add_parser("schema", help="write the protocol's JSON Schema")
    sc.add_argument("--out", type=Path, default=DEFAULT_SCHEMA_PATH, help=f"output file (default {DEFAULT_SCHEMA_PATH}; '-' for stdout)")

    t = sub.add_parser("token", help="sign a player token for a server with --auth-secret-file (testing; a game backend signs its own)")
    t.add_argument("player", help="player id (the token's sub: memory is kept under it)")
    t.add_argument("--auth-secret-file", type=Path, metavar="FILE", help="the server's secret (default: NPC_AUTH_SECRET)")
    t.add_argument("--ttl", type=float, default=900.0, metavar="S", help="seconds the token is valid (default 900)")
    t.add_argument("--characters", help="comma-separated persona ids the token may talk to (default: any)")
    t.add_argument("--name", help="how characters call the player")
    return ap


def _token(args: argparse.Namespace) -> int:
    from npc_runtime.access import load_access
    from npc_runtime.errors import NpcError

    try:
        access = load_access(secret_file=args.auth_secret_file, api_key_file=None)
        characters = [c.strip() for c in args.characters.split(",") if c.strip()] if args.characters else None
        print(access.issue(args.player, ttl_s=args.ttl, characters=characters, name=args.name))
    except NpcError as exc:
        print(f"npc token: {exc.message}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings) -> int:
    from npc_runtime.server import NpcServer
    from npc_runtime.wiring import build_runtime

    stop, drain = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: stop now (connections closed with 1001)
    loop.add_signal_handler(signal.SIGTERM, lambda: (drain.set(), stop.set()))  # a deployment's stop: drain first
    from npc_runtime.access import check_bind, load_access
    from npc_runtime.errors import NpcError
    from npc_runtime.server import ConnectionLimits

    try:
        access = load_access(secret_file=settings.auth_secret_file, api_key_file=settings.api_key_file,
                             allow_origins=settings.allow_origin, audience=settings.auth_audience)
        check_bind(settings.host, access, insecure=settings.insecure)
    except NpcError as exc:
        print(f"npc serve: {exc.message}", file=sys.stderr)
        return 2
    limits = ConnectionLimits(start_timeout_s=settings.start_timeout_s, max_per_address=settings.max_per_address)
    runtime = await build_runtime(settings)
    server = NpcServer(runtime.services, host=settings.host, port=settings.port, access=access, limits=limits)
    try:
        await server.start()
        print(f"npc_runtime listening on {server.url} (health: http://{settings.host}:{server.port}/healthz)", file=sys.stderr, flush=True)
        warm = asyncio.create_task(runtime.warm(), name="warm")
        warm.add_done_callback(lambda t: stop.set() if not t.cancelled() and t.exception() else None)
        await stop.wait()
        if drain.is_set():
            await server.drain(settings.drain_timeout_s)
        warm.cancel()
        failed = (await asyncio.gather(warm, return_exceptions=True))[0]
    finally:
        await server.aclose()
        await runtime.aclose()
    if isinstance(failed, Exception):
        print(f"npc: the models failed to load: {failed}", file=sys.stderr)
        return 1
    print("npc_runtime stopped", file=sys.stderr, flush=True)
    return 0


@asynccontextmanager
async def _connection(args: argparse.Namespace) -> AsyncIterator[Any]:
    """A client connected to ``--server``, or to a runtime started in-process on loopback."""
    from npc_runtime.client import NpcClient

    if args.server:
        async with NpcClient.connect(args.server) as client:
            yield client
        return
    from npc_runtime.server import NpcServer
    from npc_runtime.wiring import build_runtime

    runtime = await build_runtime(_settings(args, port=0))
    server = NpcServer(runtime.services, host="127.0.0.1", port=0)
    try:
        await server.start()
        await runtime.warm()
        async with NpcClient.connect(server.url) as client:
            yield client
    finally:
        await server.aclose()
        await runtime.aclose()


def _scene(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return load_scene(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"npc: cannot read scene {path}: {exc}") from None


def _print_human(event: Any) -> None:
    if isinstance(event, p.TranscriptPartial):
        if sys.stderr.isatty():  # a live line, rewritten as the guess improves
            print(f"\r\033[K  (hearing) {event.text}", end="", file=sys.stderr, flush=True)
    elif isinstance(event, p.TranscriptFinal):
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        note = " (backchannel)" if event.backchannel else ""
        print(f"you> {event.text or '(nothing intelligible)'}{note}  [{event.timings.get('final_ms', 0):.0f} ms after you stopped]", flush=True)
    elif isinstance(event, p.ResponseStart) and event.trigger == "voice":
        print("npc> ", end="", flush=True)
    elif isinstance(event, p.TextDelta):
        print(event.text, end="", flush=True)
    elif isinstance(event, p.ActionEvent):
        args = " ".join(a for a in (event.object, event.target) if a)
        print(f"[{event.verb} {args}] ", end="", flush=True)
    elif isinstance(event, p.ResponseEnd):
        t = event.timings
        print(f"\n  ({event.status}; first text {t.get('first_text', float('nan')):.0f} ms, end {t.get('end', 0):.0f} ms)")
    elif isinstance(event, p.ErrorEvent):
        print(f"\nerror {event.code}: {event.message}", file=sys.stderr)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"text_only": bool(args.text_only)}
    if args.seed is not None:
        options["seed"] = args.seed
    return options


def _write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)


def _read_audio(path: Path) -> tuple[bytes, int]:
    """PCM16 mono bytes and their rate: a PCM16 WAV as it is (stereo mixed down), anything else
    decoded by PyAV to 16 kHz."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() == 2:
                data = wav.readframes(wav.getnframes())
                if wav.getnchannels() > 1:
                    samples = np.frombuffer(data, dtype="<i2").reshape(-1, wav.getnchannels()).mean(axis=1)
                    data = samples.astype("<i2").tobytes()
                return data, wav.getframerate()
    except (wave.Error, EOFError):
        pass
    except OSError as exc:
        raise SystemExit(f"npc: cannot read {path}: {exc}") from None
    from npc_runtime.asr.resample import decode_file

    try:
        audio = decode_file(str(path))
    except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds
        raise SystemExit(f"npc: cannot decode {path}: {type(exc).__name__}: {exc}") from None
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes(), 16000


async def _say_audio(args: argparse.Namespace, client: Any, pcm: bytes, rate: int) -> AsyncIterator[Any]:
    """Stream the recording (then silence, as a live microphone would) and yield the events up to
    the end of the response it starts."""
    from npc_runtime.client import AudioFrame

    async def send() -> None:
        await client.stream_audio(pcm, sample_rate=rate, realtime=not args.fast)
        while True:  # a microphone keeps sending: silence until the reply is over
            await client.stream_audio(bytes(rate // 5 * 2), sample_rate=rate, realtime=True)

    sender = asyncio.create_task(send(), name="mic")
    utterances: set[str] = set()
    try:
        async for event in client.events():
            yield event
            if isinstance(event, AudioFrame):
                continue
            if isinstance(event, p.TranscriptFinal):
                if event.text.strip() and not event.backchannel:
                    utterances.add(event.utterance_id)
                elif not utterances:
                    return
            if isinstance(event, p.ResponseEnd) and utterances:
                return
            if isinstance(event, p.ErrorEvent) and event.response_id is None and not utterances:
                return
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def _say(args: argparse.Namespace) -> int:
    from npc_runtime.client import AudioFrame, ServerError

    if (args.text is None) == (args.audio_in is None):
        print("npc say: give TEXT or --audio-in FILE (one of them)", file=sys.stderr)
        return 2
    options = _options(args)
    pcm, rate = b"", 16000
    if args.audio_in is not None:
        pcm, rate = _read_audio(args.audio_in)
        options["audio_in"] = {"sample_rate": rate}
        if args.end_silence_ms is not None:
            options["listen"] = {"end_silence_ms": args.end_silence_ms}
    async with _connection(args) as client:
        try:
            ready = await client.start_session(args.character, scene=_scene(args.scene), player_name=args.player_name,
                                               player_id=args.player_id or "player", options=options)
        except ServerError as exc:
            print(exc.event.model_dump_json() if args.json else f"error {exc}", file=sys.stdout if args.json else sys.stderr)
            return 1
        if args.json:
            print(ready.model_dump_json(), flush=True)
        if args.audio_in is not None and ready.audio_in is None:
            print("npc: the server runs no speech recognition (started with --asr none?)", file=sys.stderr)
            return 1
        status, audio = 1, bytearray()
        events = client.say(args.text) if args.audio_in is None else _say_audio(args, client, pcm, rate)
        async for event in events:
            if isinstance(event, AudioFrame):
                audio += event.pcm
                continue
            if args.json:
                print(event.model_dump_json(), flush=True)
            else:
                _print_human(event)
            if isinstance(event, p.ResponseEnd):
                status = 0 if event.status != "failed" else 1
        if args.audio is not None:
            if ready.audio is None:
                print("npc: the session has no audio (text-only, or the server runs no TTS)", file=sys.stderr)
                return 1
            _write_wav(args.audio, bytes(audio), ready.audio.sample_rate)
            print(f"wrote {args.audio} ({len(audio) // 2 / ready.audio.sample_rate:.2f} s)", file=sys.stderr)
        return status


async def _chat(args: argparse.Namespace) -> int:
    from npc_runtime.client import ServerError

    options = {**_options(args), "text_only": True}  # a terminal has nowhere to play the audio
    async with _connection(args) as client:
        try:
            ready = await client.start_session(args.character, scene=_scene(args.scene), player_name=args.player_name,
                                               player_id=args.player_id or "player", options=options)
        except ServerError as exc:
            print(f"error {exc}", file=sys.stderr)
            return 1
        print(f"Talking to {ready.character.name}. Empty line or Ctrl-D to quit.")
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                line = ""
            if not line.strip():
                return 0
            print(f"{ready.character.name}> ", end="", flush=True)
            async for event in client.say(line):
                _print_human(event)


def _schema(out: Path) -> int:
    text = json.dumps(p.json_schema(), indent=2, sort_keys=True) + "\n"
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from npc_runtime.persona.loader import check_main

        status = check_main(args.dir)
        scenarios = args.scenarios or (Path("scenarios") if args.dir == Path("characters") and Path("scenarios").is_dir() else None)
        if scenarios is not None:
            from npc_runtime.sim.cli import check_scenarios_main

            status = max(status, check_scenarios_main(scenarios, args.dir))
        return status
    if args.command == "schema":
        return _schema(args.out)
    if args.command == "token":
        return _token(args)
    if args.command == "ingest":
        from npc_runtime.knowledge.cli import ingest_main

        st = Settings(**{k: v for k, v in {"knowledge_dir": args.knowledge, "data_dir": args.data_dir, "chroma_url": args.chroma_url,
                                           "characters_dir": args.characters}.items() if v is not None})
        npc_log.configure(level="warning", fmt=st.log_format)
        return ingest_main(root=st.knowledge_dir, character=args.character, characters_dir=st.characters_dir,
                           data_dir=st.data_dir, chroma_url=st.chroma_url)
    if args.command == "memory":
        from npc_runtime.memory.cli import memory_main

        try:
            st = Settings(**{k: v for k, v in {"data_dir": args.data_dir, "memory_url": args.memory_url}.items() if v is not None})
        except ValueError as exc:  # pydantic's ValidationError: a --memory-url that is no postgresql:// URL
            print(f"npc memory: {exc}", file=sys.stderr)
            return 2
        npc_log.configure(level="warning", fmt=st.log_format)
        if st.memory_url:
            return memory_main(args.action, args.player, args.character, url=st.memory_url, all_entries=args.all)
        return memory_main(args.action, args.player, args.character, path=st.data_dir / "memory.sqlite3", all_entries=args.all)
    quiet = args.command in ("say", "chat", "simulate", "bench")
    settings = _settings(args, **({"log_level": args.log_level or "warning"} if quiet else {}))
    npc_log.configure(level=settings.log_level, fmt=settings.log_format)
    if args.command == "bench":
        from npc_runtime.bench import bench_main

        runner = lambda: bench_main(clients=args.clients, turns=args.turns, mode=args.mode, out=args.out,  # noqa: E731
                                    server=args.server, settings=settings, character=args.character, scene=args.scene,
                                    warmup=args.warmup, recording=args.recording, protocol=args.protocol, rounds=args.rounds)
    elif args.command == "simulate":
        from npc_runtime.sim.cli import simulate_main

        args.settings = settings
        runner = lambda: simulate_main(args)  # noqa: E731
    else:
        runner = {"serve": lambda: _serve(settings), "say": lambda: _say(args), "chat": lambda: _chat(args)}[args.command]
    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"npc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
