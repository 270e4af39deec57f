"""The browser demo (``clients/web/``, served by ``npc serve`` at ``/demo``) against a live server.

* The static route: content types, ``/demo`` → ``/demo/``, 404 for unknown files, path traversal refused.
* Headless Debian Chromium driven by Python Playwright, its microphone fed a real speech WAV
  (Piper's voice saying "Could you hand me the chopsticks?", made at test time): the test picks Jin,
  holds to talk, and checks what the page parsed and did through its ``window.npcDemo`` hook — the
  transcript, the reply's audio, visemes applied to the face on the audio clock, the ``give`` action
  shown in the scene, the latency panel — then a typed turn (an action at the very end of the speech),
  then a barge-in (talking over the reply stops its playback and sends the last playback mark). A
  screenshot taken mid-word goes to ``test-output/web-demo.png`` and to pytest's ``tmp_path``. Then a typed turn
  answered with the scene's own verbs (the demo's ramen shop declares ``sit`` and ``emote``, issue 16): the page shows
  them as text ("Jin makes a gesture (gesture: bow)") on the audio clock. This runs
  against the scripted server (tests/data/scripted_llm.json): its replies are fixed, so the test knows which
  actions the page must show and that the story it talks over is long.
* A server with auth on: the page opened as ``/demo/?access_token=<player token>`` passes the token on to its
  WebSocket URL and holds a typed turn (the scripted reply and action); a WebSocket without it is refused.
* One typed turn on the real model, checked only for what any answer satisfies (a model's words and actions
  depend on the model, the CPU and its kernels): audio, visemes on the clock, every action valid and shown.

Needs ``chromium`` (Debian) and the ``playwright`` Python package (its driver only: browsers are never
downloaded). Without them the browser test skips, or fails when ``NPC_REQUIRE_CLIENTS=1`` (CI).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_server import (
    SEAT_PROMPT,
    AuthServer,
    LiveServer,
    action_as_data,
    missing_toolchain,
    scripted_actions,
    scripted_auth_server,  # noqa: F401  (fixture: started once per run, see live_server.py)
    scripted_verbs,
)

from npc_runtime.scene import Scene
from npc_runtime.server import DEMO_DIR, demo_file

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "clients" / "web"
SCREENSHOT = ROOT / "test-output" / "web-demo.png"
VISEMES = {"sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"}
REQUEST = "Could you hand me the chopsticks?"
TYPED = "What ramen do you recommend tonight?"
DEMO_QUERY = "?player=web_demo_test&character=jin"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


def _need(what: str) -> None:
    missing_toolchain(f"browser demo test needs {what} (scripts/setup_clients.sh; pip install -e '.[test]')")


def _get(url: str) -> tuple[int, str, bytes, str | None]:
    """GET without following redirects: (status, content type, body, Location)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("GET", "/" + rest)  # the path goes out as written: no client-side ".." normalisation
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read(), resp.getheader("Location")
    finally:
        conn.close()


# ---- the static route ----------------------------------------------------------------------------------------


def test_demo_file_stays_inside_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<html></html>")
    (root / "sub" / "x.js").write_text("//")
    (root / "notes.txt").write_text("not a demo file type")
    (root / ".secret.js").write_text("//")
    (tmp_path / "outside.js").write_text("//")
    (root / "link.js").symlink_to(tmp_path / "outside.js")

    assert demo_file("/demo/", root) == (root / "index.html").resolve()
    assert demo_file("/demo/sub/x.js", root) == (root / "sub" / "x.js").resolve()
    for bad in ("/demo/../outside.js", "/demo/sub/../../outside.js", "/demo/%2e%2e/outside.js", "/demo/..%2foutside.js",
                "/demo/link.js", "/demo/.secret.js", "/demo/notes.txt", "/demo/sub", "/demo/missing.js",
                "/demo//etc/passwd", "/demo/sub%5c..%5c..%5coutside.js", "/demo/x%00.js", "/democracy.js", "/healthz"):
        assert demo_file(bad, root) is None, bad


def test_demo_files_are_what_the_page_needs() -> None:
    assert DEMO_DIR == WEB
    listing = json.loads((WEB / "characters.json").read_text())["characters"]
    assert {c["id"] for c in listing} == {"jin", "nova"}
    for entry in listing:
        assert (ROOT / "characters" / f"{entry['id']}.yaml").is_file(), entry
        scene = Scene.model_validate_json((WEB / entry["scene"]).read_text())  # the server accepts it as is
        assert scene.objects and scene.locations and any(c.id == "player" for c in scene.characters)
    # Jin's shop declares the game's own verbs the browser test's seat turn uses (tests/live_server.py SCENE_VERBS)
    jin = json.loads((WEB / "scenes" / "ramen_shop.json").read_text())
    assert [v["name"] for v in jin["verbs"]] == ["sit", "emote"] and "stool" in {o["id"] for o in jin["objects"]}
    for source in WEB.glob("*.js"):
        assert "SPDX-License-Identifier: MIT" in source.read_text().splitlines()[0], source


def test_demo_route(scripted_server: LiveServer) -> None:
    base = scripted_server.http_url
    status, _, _, location = _get(f"{base}/demo?seed=1")
    assert (status, location) == (302, "/demo/?seed=1")
    status, ctype, body, _ = _get(f"{base}/demo/")
    assert (status, ctype) == (200, "text/html; charset=utf-8") and b'src="app.js"' in body
    for name, want in (("app.js", "text/javascript; charset=utf-8"), ("mic-worklet.js", "text/javascript; charset=utf-8"),
                       ("style.css", "text/css; charset=utf-8"), ("scenes/ramen_shop.json", "application/json")):
        status, ctype, body, _ = _get(f"{base}/demo/{name}")
        assert (status, ctype) == (200, want), name
        assert body == (WEB / name).read_bytes()
    for bad in ("/demo/../pyproject.toml", "/demo/%2e%2e/pyproject.toml", "/demo/..%2fpyproject.toml",
                "/demo/scenes/..%2f..%2f..%2fpyproject.toml", "/demo/nope.js", "/demo/scenes", "/nothing"):
        status, _, body, _ = _get(base + bad)
        assert status == 404, bad
        assert b"[project]" not in body
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:  # the other routes are untouched
        assert resp.status == 200


# ---- the page in headless Chromium -----------------------------------------------------------------------


def _speech_wav(path: Path) -> float:
    """REQUEST spoken by Piper (the server's own voice package), 48 kHz mono PCM16 with 0.4 s of silence
    before and 1.2 s after (Chromium's fake capture reads PCM WAV and converts it to the device format).
    Returns the duration in ms."""
    from piper import PiperVoice

    from npc_runtime.tts.piper import resolve_voice

    model, config = resolve_voice(None)
    voice = PiperVoice.load(str(model), config_path=str(config))
    raw = path.with_suffix(".voice.wav")
    with wave.open(str(raw), "wb") as out:
        voice.synthesize_wav(REQUEST, out)
    with wave.open(str(raw), "rb") as src:
        rate = src.getframerate()
        x = np.frombuffer(src.readframes(src.getnframes()), np.int16).astype(np.float64)
    t = np.arange(int(len(x) * 48000 / rate)) * rate / 48000
    y = np.concatenate([np.zeros(19200), np.interp(t, np.arange(len(x)), x), np.zeros(57600)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(y.astype(np.int16).tobytes())
    return len(y) / 48.0


def _demo(page: Any) -> dict[str, Any]:
    return page.evaluate("window.npcDemo")  # type: ignore[no-any-return]


def _wait(page: Any, expression: str, timeout_s: float, server: LiveServer) -> None:
    """Waits for a JS expression to be true; on timeout, fails with what the page saw and the server's log."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(expression, timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        demo = _demo(page)
        seen = {k: demo.get(k) for k in ("state", "counters", "log", "errors", "interruptions", "lastEnd", "audioMs")}
        raise AssertionError(f"timed out after {timeout_s} s waiting for: {expression}\npage: {json.dumps(seen)[:4000]}"
                             f"\nserver log:\n{server.log_tail(30)}") from None


def _hold_to_talk(page: Any, ms: float, server: LiveServer) -> None:
    """Press the talk button until the page has sent `ms` of microphone audio, then release it."""
    sent = _demo(page)["counters"]["micMs"]
    page.hover("#talk")
    page.mouse.down()
    _wait(page, f"window.npcDemo.counters.micMs >= {sent + ms}", 30, server)
    page.mouse.up()


def _wait_turn_done(page: Any, ended: int, server: LiveServer) -> dict[str, Any]:
    _wait(page, f"window.npcDemo.counters.responsesEnded >= {ended} && !window.npcDemo.state.playing", 120, server)
    return _demo(page)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, with Python Playwright to drive it (checked before the live server starts)."""
    path = shutil.which("chromium")
    if path is None:
        _need("Debian's chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need("the playwright Python package")
    return str(path)


@contextmanager
def _page(chromium: str, tmp_path: Path, wav: Path | None = None) -> Iterator[Any]:
    """A page in headless Chromium (its fake microphone plays `wav`, if given); no page error may happen on it."""
    from playwright.sync_api import sync_playwright

    audio = [f"--use-file-for-fake-audio-capture={wav}%noloop"] if wav else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
            args=[*CHROMIUM_FLAGS, *audio], viewport={"width": 1280, "height": 800},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            yield page
            assert page_errors == []
        finally:
            browser.close()


@pytest.mark.timeout(600)
def test_browser_demo_talks_hears_sees(chromium: str, scripted_server: LiveServer, tmp_path: Path) -> None:
    wav = tmp_path / "request.wav"
    wav_ms = _speech_wav(wav)
    with _page(chromium, tmp_path, wav) as page:
        _run_demo(page, scripted_server, tmp_path, wav_ms)


@pytest.mark.timeout(600)
def test_browser_demo_on_the_real_model(chromium: str, live_server: LiveServer, tmp_path: Path) -> None:
    """A typed turn answered by the real embedded model: only what any answer satisfies (_check_reply)."""
    with _page(chromium, tmp_path) as page:
        page.goto(f"{live_server.http_url}/demo/?player=web_demo_model&character=jin")
        page.wait_for_function("document.querySelector('#character').options.length === 2")
        page.click("#connect")
        _wait(page, "window.npcDemo.state.connected", 20, live_server)
        page.fill("#text", REQUEST)
        page.press("#text", "Enter")
        demo = _wait_turn_done(page, 1, live_server)
        end = demo["lastEnd"]
        print(f"\nreal model: {end['text']!r} {end['actions']}")
        _check_reply(page, demo, end, shown_before=0)


# A bare WebSocket from the page: "open", or how it closed (a refused handshake: 1006, the status is hidden from pages).
RAW_SOCKET = """(url) => new Promise((done) => {
  const ws = new WebSocket(url);
  ws.onopen = () => { ws.close(); done("open"); };
  ws.onclose = (e) => done(`closed ${e.code}`);
})"""


@pytest.mark.timeout(300)
def test_browser_demo_with_auth(chromium: str, scripted_auth_server: AuthServer, tmp_path: Path) -> None:
    """Auth on: the page's ?access_token= goes on to its WebSocket URL; a typed turn gets the scripted reply."""
    server = scripted_auth_server
    token = server.token("web_auth_demo")
    with _page(chromium, tmp_path) as page:
        page.goto(f"{server.http_url}/demo/?character=jin&access_token={token}")
        page.wait_for_function("document.querySelector('#character').options.length === 2")
        assert page.evaluate(RAW_SOCKET, server.ws_url) == "closed 1006"  # no token: refused
        page.click("#connect")
        _wait(page, "window.npcDemo.state.connected", 20, server)
        page.fill("#text", REQUEST)
        page.press("#text", "Enter")
        demo = _wait_turn_done(page, 1, server)
        end = demo["lastEnd"]
        _check_reply(page, demo, end, shown_before=0)
        assert [{k: a[k] for k in ("verb", "object", "target")} for a in end["actions"]] == scripted_actions(REQUEST)
    assert "connection refused: not authenticated" in "\n".join(server.log)


def _valid_in_demo_scene(action: dict[str, Any]) -> bool:
    """An action (verb and args) the demo's ramen shop allows: a built-in or a verb it declares, every argument of its
    definition by name, each an id of the right kind or one of its values."""
    scene = json.loads((WEB / "scenes" / "ramen_shop.json").read_text())
    ids = {kind: {e["id"] for e in scene[f"{kind}s"]} for kind in ("object", "location", "character")}
    ids["any"] = set().union(*ids.values())
    definitions = {"move": [{"name": "target", "type": "any"}], "grab": [{"name": "object", "type": "object"}],
                   "give": [{"name": "object", "type": "object"}, {"name": "target", "type": "character"}],
                   **{v["name"]: v["args"] for v in scene.get("verbs", [])}}
    args = definitions.get(action["verb"])
    return args is not None and set(action["args"]) == {a["name"] for a in args} and all(
        action["args"][a["name"]] in (a["values"] if "values" in a else ids[a["type"]]) for a in args)


def _check_reply(page: Any, demo: dict[str, Any], end: dict[str, Any], *, shown_before: int) -> None:
    """What the page must do with any completed reply: its words on screen as streamed; its audio (whenever it has
    words) received in full and played to the end, with marks sent; the face's visemes on the audio clock; every action
    (valid for the scene) shown once, in order, not before playback reached it; the latency panel."""
    assert demo["errors"] == [] and demo["counters"]["protocolErrors"] == 0, demo["errors"]
    assert end["status"] == "completed" and (end["text"].strip() or end["actions"]), end
    rid = end["response_id"]
    assert page.inner_text(f"[data-line='r:{rid}'] .stable").strip() == end["text"].strip()  # the deltas add up
    if re.search(r"\w", end["text"]):  # words are spoken (a reply of actions only may have no audio)
        assert end["audio_ms"] > 0
    if end["audio_ms"]:
        assert demo["audioMs"][rid] == pytest.approx(end["audio_ms"], rel=0.02, abs=5)
        assert demo["lastMark"]["response_id"] == rid and demo["lastMark"]["played_ms"] >= 0.9 * end["audio_ms"]
        cues = [v for v in demo["visemes"] if v["response_id"] == rid]
        assert cues and {v["viseme"] for v in cues} <= VISEMES
        clocks = [v["clock_ms"] for v in cues]
        assert clocks == sorted(clocks) and clocks[-1] <= end["audio_ms"] + 50
    for action in end["actions"]:  # as the page parsed them: every argument by name; object/target those of that name
        assert _valid_in_demo_scene(action), action
        assert (action["object"], action["target"]) == (action["args"].get("object"), action["args"].get("target")), action
    shown = demo["actions"][shown_before:]
    assert [action_as_data(a) for a in shown] == [action_as_data(a) for a in end["actions"]]
    for action in shown:
        # at_ms comes rounded to 0.1 ms on the wire, the page's clock is sample-exact: 4063.49 shown for 4063.5 is on time
        assert action["at_ms"] is None or action["shown_at_ms"] >= action["at_ms"] - 0.5
        assert action["text"] in page.inner_text("#actions")
    timings = demo["lastTimings"]
    assert timings["end"] >= timings["first_token"] >= timings["prompt_ready"] > 0
    stages = page.eval_on_selector_all("#timings tr", "rows => rows.map(r => r.dataset.stage)")
    assert {"prompt_ready", "first_token", "end"} <= set(stages)
    assert f"{int(timings['end'] + 0.5)} ms" in page.inner_text("#timings")  # JS Math.round, not Python's round


# The page's parser against events as protocol v1 defines them and as a changed protocol might send them.
PARSER_CHECK = """async () => {
  const { parseServerEvent, AudioPairer } = await import("./npc-client.js");
  const verdict = (frame) => { try { parseServerEvent(frame); return "ok"; } catch (e) { return e.name; } };
  const audio = {type: "response.audio", response_id: "r1", seq: 0, start_ms: 0, samples: 2,
                 visemes: [{viseme: "aa", start_ms: 0, end_ms: 0.1}]};
  const pairer = new AudioPairer();
  pairer.text(audio);
  let short = "ok";
  try { pairer.binary(new ArrayBuffer(2)); } catch (e) { short = e.name; }
  return {
    audio: verdict(JSON.stringify(audio)),
    action: verdict('{"type":"response.action","response_id":"r1","index":0,"verb":"give","object":"menu","target":"player","text_offset":0,"at_ms":12.5}'),
    custom_verb: verdict('{"type":"response.action","response_id":"r1","index":0,"verb":"emote","args":{"gesture":"bow"},"object":null,"target":null,"text_offset":0,"at_ms":null}'),
    parsed: [
      parseServerEvent('{"type":"response.action","response_id":"r1","index":0,"verb":"sit","args":{"seat":"stool"},"text_offset":0,"at_ms":3}'),
      parseServerEvent('{"type":"response.action","response_id":"r1","index":1,"verb":"give","args":{"object":"cup","target":"player"},"object":"cup","target":"player","text_offset":0,"at_ms":3}'),
      parseServerEvent('{"type":"response.action","response_id":"r1","index":2,"verb":"give","object":"cup","target":"player","text_offset":0,"at_ms":3}'),
      ...parseServerEvent('{"type":"response.end","response_id":"r1","status":"completed","text":"","timings":{},"actions":[{"verb":"emote","args":{"gesture":"wave"}},{"verb":"move","target":"door"}]}').actions,
    ].map(({verb, args, object, target}) => ({verb, args, object, target})),
    bad_verb: verdict('{"type":"response.action","response_id":"r1","index":0,"verb":"Jump!","text_offset":0,"at_ms":null}'),
    bad_args: verdict('{"type":"response.action","response_id":"r1","index":0,"verb":"sit","args":{"seat":1},"text_offset":0,"at_ms":null}'),
    give_no_target: verdict('{"type":"response.action","response_id":"r1","index":0,"verb":"give","args":{"object":"cup"},"text_offset":0,"at_ms":null}'),
    end_bad_verb: verdict('{"type":"response.end","response_id":"r1","status":"completed","text":"","timings":{},"actions":[{"verb":"sit down"}]}'),
    unknown_type: verdict('{"type":"response.audio_chunk","response_id":"r1"}'),
    unknown_viseme: verdict(JSON.stringify({...audio, visemes: [{viseme: "AA", start_ms: 0, end_ms: 1}]})),
    no_visemes: verdict(JSON.stringify({...audio, visemes: undefined})),
    string_ms: verdict(JSON.stringify({...audio, start_ms: "0"})),
    no_response_id: verdict('{"type":"pong","ref":"x"}'),
    other_protocol: verdict('{"type":"session.ready","response_id":null,"session_id":"s","protocol":"2","character":{"id":"jin"},"actions":[],"audio":null,"audio_in":null,"listen":null,"mood":"neutral"}'),
    not_json: verdict("{"),
    short_frame: short,
  };
}"""


def _run_demo(page: Any, server: LiveServer, tmp_path: Path, wav_ms: float) -> None:
    page.goto(f"{server.http_url}/demo{DEMO_QUERY}")
    page.wait_for_function("document.querySelector('#character').options.length === 2")
    verdicts = page.evaluate(PARSER_CHECK)
    # any verb decodes with its args by name; the built-ins keep object/target (args made from them for an older server)
    assert verdicts.pop("parsed") == [
        {"verb": "sit", "args": {"seat": "stool"}, "object": None, "target": None},
        {"verb": "give", "args": {"object": "cup", "target": "player"}, "object": "cup", "target": "player"},
        {"verb": "give", "args": {"object": "cup", "target": "player"}, "object": "cup", "target": "player"},
        {"verb": "emote", "args": {"gesture": "wave"}, "object": None, "target": None},
        {"verb": "move", "args": {"target": "door"}, "object": None, "target": "door"},
    ]
    ok = ("audio", "action", "custom_verb")
    assert verdicts == {**{k: "ok" for k in ok}, **{k: "ProtocolError" for k in verdicts if k not in ok}}
    page.select_option("#character", "jin")
    page.click("#connect")  # a user gesture: the page may start its AudioContext
    _wait(page, "window.npcDemo.state.connected", 20, server)
    ready = _demo(page)["ready"]
    assert ready["character"] == {"id": "jin", "name": "Jin"}
    assert ready["audio"]["sample_rate"] > 0 and ready["audio_in"]["sample_rate"] == 16000
    assert set(ready["actions"]) == {"move", "grab", "give", "sit", "emote"}  # the built-ins and the shop's own verbs

    # ---- 1. voice turn: hold to talk while the fake microphone plays the request --------------------------
    _hold_to_talk(page, wav_ms - 300, server)
    _wait(page, "[...document.querySelectorAll('#transcript .line.player[data-final]')]"
                ".some(e => /chopsticks/i.test(e.textContent))", 60, server)
    # Mid-word: audio playing, the mouth on an open viseme, the character's words on screen.
    _wait(page,
        "(() => { const d = window.npcDemo; const words = document.querySelector('#transcript .line.character .stable');"
        " return d.state.playing && d.counters.visemesApplied >= 5 && !['sil', 'PP'].includes(d.currentViseme)"
        " && d.mouth.open > 0.3 && words && words.textContent.trim().length > 0; })()", 120, server)
    shot = tmp_path / "web-demo.png"
    page.screenshot(path=str(shot))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"\nbrowser demo screenshot: {SCREENSHOT} (and {shot})")

    demo = _wait_turn_done(page, 1, server)
    final = [t for t in demo["transcripts"] if t["kind"] == "final"]
    assert len(final) == 1 and "chopsticks" in final[0]["text"].lower(), final
    end = demo["lastEnd"]
    rid = end["response_id"]
    _check_reply(page, demo, end, shown_before=0)
    # The scripted reply: its words, and its action after the first sentence.
    assert [action_as_data(a) for a in end["actions"]] == scripted_verbs(REQUEST) == [
        {"verb": "give", "args": {"object": "chopsticks", "target": "player"}}]
    assert [{k: a[k] for k in ("verb", "object", "target")} for a in end["actions"]] == scripted_actions(REQUEST)
    assert end["audio_ms"] > 1500 and demo["counters"]["marksSent"] >= 2
    # Visemes applied to the face on the audio clock: many changes, time moving forward to the end.
    cues = [v for v in demo["visemes"] if v["response_id"] == rid]
    assert len(cues) >= 10 and len({v["viseme"] for v in cues} - {"sil"}) >= 4
    assert cues[-1]["clock_ms"] >= 0.5 * end["audio_ms"]
    assert demo["counters"]["mouthShapeChanges"] >= 10
    # The action, shown in the scene when playback reached its at_ms (mid-reply).
    [shown] = demo["actions"]
    assert 0 < shown["at_ms"] < end["audio_ms"] and shown["shown_at_ms"] >= shown["at_ms"]
    assert "gives chopsticks to Kai" in page.inner_text("#scene")
    assert "gives chopsticks to Kai" in page.inner_text("#actions")
    # The latency panel shows the voice turn's stages from response.end.timings.
    assert "transcript_final" in demo["lastTimings"]
    stages = page.eval_on_selector_all("#timings tr", "rows => rows.map(r => r.dataset.stage)")
    assert {"transcript_final", "first_audio"} <= set(stages)

    # ---- 2. typed turn: the scripted reply acts at the very end of its speech ------------------------------
    audio_before = demo["counters"]["audioBytes"]
    page.fill("#text", TYPED)
    page.press("#text", "Enter")
    demo = _wait_turn_done(page, 2, server)
    end2 = demo["lastEnd"]
    assert end2["response_id"] != rid and end2["text"].strip()
    _check_reply(page, demo, end2, shown_before=1)
    assert demo["counters"]["audioBytes"] > audio_before
    assert TYPED in page.inner_text("#transcript")
    assert [action_as_data(a) for a in end2["actions"]] == scripted_verbs(TYPED) and len(end2["actions"]) == 1
    assert demo["actions"][1]["at_ms"] == pytest.approx(end2["audio_ms"], abs=100)  # shown although the audio ends there

    # ---- 2b. the scene's own verbs: an emote before the words, a sit after them, shown as text on the clock -------
    page.fill("#text", SEAT_PROMPT)
    page.press("#text", "Enter")
    _wait_turn_done(page, 3, server)
    _wait(page, "window.npcDemo.actions.length >= 4", 10, server)
    demo = _demo(page)
    end3 = demo["lastEnd"]
    _check_reply(page, demo, end3, shown_before=2)
    assert [action_as_data(a) for a in end3["actions"]] == scripted_verbs(SEAT_PROMPT) == [
        {"verb": "emote", "args": {"gesture": "bow"}}, {"verb": "sit", "args": {"seat": "stool"}}]
    emote, sit = demo["actions"][2:]
    assert emote["at_ms"] == 0 and sit["at_ms"] == pytest.approx(end3["audio_ms"], abs=100)
    assert (emote["text"], sit["text"]) == ("Jin makes a gesture (gesture: bow)", "Jin sits down on a seat (seat: stool)")
    _wait(page, "document.querySelector('#scene').textContent.includes('Jin sits down on a seat (seat: stool)')", 10, server)
    assert "Jin makes a gesture (gesture: bow)" in page.inner_text("#actions")

    # ---- 3. barge-in: talk over the reply; the page stops playback and marks what was heard ----------------
    # Pressed once the reply's words play (after any filler): the server interrupts a running response, or one
    # whose audio still plays, when the voice has lasted barge_in_ms. The scripted story is long (about 15 s of
    # speech), so its audio is still playing then.
    page.fill("#text", "Tell me the whole story of your ramen shop, from the very beginning.")
    page.press("#text", "Enter")
    _wait(page, "(() => { const d = window.npcDemo; const r = d.state.responseId;"
                " const words = document.querySelector(`[data-line='r:${r}'] .stable`);"
                " return d.counters.responsesEnded === 3 && d.state.playing && words && words.textContent.trim() !== '';"
                " })()", 120, server)
    talking_over = _demo(page)["state"]["responseId"]
    page.hover("#talk")
    page.mouse.down()
    _wait(page, "window.npcDemo.interruptions.length > 0", 30, server)
    demo = _demo(page)
    page.mouse.up()
    cut = demo["interruptions"][0]
    assert cut["response_id"] == talking_over, cut
    assert cut["was_playing"], cut  # its audio was cut: stopped before its end, and the server told how much was heard
    assert 0 < cut["played_ms"] <= demo["audioMs"][talking_over] + 1
    assert demo["lastMark"] == {"response_id": talking_over, "played_ms": cut["played_ms"]}
    assert "(interrupted)" in page.inner_text(f"[data-line='r:{talking_over}']")
    demo = _wait_turn_done(page, 5, server)  # the interrupted reply ended, and the player's words got an answer
    ends = [e for e in demo["log"] if e == "response.end"]
    assert len(ends) >= 5 and demo["state"]["responseId"] != talking_over

    # ---- 4. the other character: a new session with Nova in her lab ----------------------------------------
    page.select_option("#character", "nova")
    page.click("#connect")
    _wait(page, "window.npcDemo.state.connected && window.npcDemo.ready.character.id === 'nova'", 20, server)
    assert "Nova's security lab" in page.inner_text("#scene") and "Nova" in page.inner_text("#face")
    assert _demo(page)["errors"] == []
