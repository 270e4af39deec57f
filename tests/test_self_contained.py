"""A plain clone is enough: the README's commands, the examples and ``npc bench --mode audio`` use the
scenes in scenes/ and the speech sample in examples/audio/, never ../shared (the eval data beside the
checkout, which users do not have). ``--scene`` takes a path or a shipped scene's bare name."""

from __future__ import annotations

import asyncio
import json
import re
import runpy
import sys
import wave
from pathlib import Path

import pytest
from conftest import EVAL_DIR, ROOT
from server_fixture import personas, serving  # noqa: F401  (personas: a fixture)

from npc_runtime import cli
from npc_runtime.bench.lines import SAMPLE_AUDIO, default_scene
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.scene import Scene
from npc_runtime.scene_files import SCENES_DIR, load_scene, scene_path, shipped_scenes
from npc_runtime.session import Services

README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))
NPC = [sys.executable, "-m", "npc_runtime.cli"]


def test_the_shipped_scenes_are_valid_and_match_the_public_eval() -> None:
    assert SCENES_DIR == ROOT / "scenes" and shipped_scenes() == ["lab", "ramen_shop", "ramen_shop_verbs"]
    for name in shipped_scenes():
        Scene.model_validate(load_scene(name))
        public = EVAL_DIR / "scenes" / f"{name}.json"
        if public.is_file():  # beside the checkout only: the eval must score the scenes users run
            assert json.loads(public.read_text(encoding="utf-8")) == load_scene(name)
    assert default_scene() == load_scene("ramen_shop")


def test_scene_takes_a_path_or_a_bare_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert scene_path("ramen_shop") == SCENES_DIR / "ramen_shop.json"
    assert load_scene("ramen_shop") == load_scene(SCENES_DIR / "ramen_shop.json") == cli._scene(Path("ramen_shop"))
    own = tmp_path / "cellar.json"
    own.write_text(json.dumps({"name": "cellar", "objects": [{"id": "barrel"}]}))
    assert cli._scene(own) == {"name": "cellar", "objects": [{"id": "barrel"}]}
    monkeypatch.chdir(tmp_path)  # a file of that name in the working directory wins over a shipped scene
    (tmp_path / "lab").write_text(json.dumps({"name": "my lab"}))
    assert cli._scene(Path("lab")) == {"name": "my lab"}
    with pytest.raises(SystemExit, match=r"no shipped scene 'nowhere' \(shipped: lab, ramen_shop, ramen_shop_verbs\)"):
        cli._scene(Path("nowhere"))
    with pytest.raises(SystemExit, match="cannot read scene nowhere.json"):
        cli._scene(Path("nowhere.json"))  # a path is never looked up among the shipped scenes


def test_readme_and_examples_need_nothing_beside_the_checkout() -> None:
    for path in (ROOT / "README.md", *sorted((ROOT / "examples").rglob("*.py")), *sorted((ROOT / "examples").rglob("*.md"))):
        assert "../shared" not in path.read_text(encoding="utf-8"), path
        assert "parents[2]" not in path.read_text(encoding="utf-8"), path  # the folder above the checkout
    scenes = re.findall(r"--scene (\S+)", COMMANDS)
    audio = re.findall(r"--audio-in (\S+)", COMMANDS)
    assert scenes and audio
    for spec in scenes:
        path = scene_path(spec)
        Scene.model_validate(load_scene(path if path.is_absolute() else ROOT / path))
    for spec in audio:
        assert (ROOT / spec).is_file(), spec
    for example in sorted((ROOT / "examples").glob("0*.py")):  # module level only: the scene each one sends
        scene = runpy.run_path(str(example), run_name="example")["SCENE"]
        Scene.model_validate(scene)


def test_the_speech_sample_is_small_16k_mono_pcm16() -> None:
    assert SAMPLE_AUDIO == ROOT / "examples" / "audio" / "chopsticks.wav"
    assert SAMPLE_AUDIO.stat().st_size < 150_000
    with wave.open(str(SAMPLE_AUDIO), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert 1.0 < wav.getnframes() / 16000 < 5.0
    assert (ROOT / "scripts" / "make_sample_audio.py").is_file()
    assert "CC0" in (SAMPLE_AUDIO.parent / "README.md").read_text(encoding="utf-8")


async def _npc(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*NPC, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_npc_say_with_a_bare_scene_name(personas: PersonaRegistry) -> None:  # noqa: F811
    llm = FakeLLM(["Here you go. [give chopsticks player]"])
    async with serving(Services(personas=personas, dialogue=Dialogue(llm=llm))) as server:
        code, out, err = await _npc("say", "jin", "Could you hand me the chopsticks?", "--scene", "ramen_shop",
                                    "--json", "--server", server.url)
    assert code == 0, err[-2000:]
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    # the action is valid only in a scene with chopsticks: the shipped scene reached the server
    assert {"verb": "give", "object": "chopsticks", "target": "player"}.items() <= next(
        e for e in events if e["type"] == "response.action").items()
    assert "lacquered chopsticks" in " ".join(m.content for m in llm.requests[0].messages)


@pytest.mark.engine
async def test_npc_say_speaks_the_shipped_sample(personas: PersonaRegistry) -> None:  # noqa: F811
    """The README's voice command as written (a scripted model; real Silero VAD and tiny.en)."""
    from npc_runtime.asr.vad import SileroVAD
    from npc_runtime.asr.whisper import WhisperASR

    asr, vad = WhisperASR("tiny.en"), SileroVAD()
    for engine in (vad, asr):
        await engine.warm()
    try:
        services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM(["Here you go."])), asr=asr, vad=vad)
        async with serving(services) as server:
            code, out, err = await _npc("say", "jin", "--audio-in", "examples/audio/chopsticks.wav", "--fast",
                                        "--scene", "ramen_shop", "--json", "--server", server.url)
    finally:
        await asr.aclose()
        await vad.aclose()
    assert code == 0, err[-2000:]
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    final = next(e for e in events if e["type"] == "transcript.final")
    assert "chopsticks" in final["text"].lower() and events[-1]["type"] == "response.end"
