"""Settings → engines: which speech engine each persona gets (no model is loaded here)."""

from __future__ import annotations

from conftest import CHARACTERS

from npc_runtime.persona.loader import load_persona
from npc_runtime.settings import Settings
from npc_runtime.tts.espeak import EspeakTTS
from npc_runtime.tts.piper import PiperTTS
from npc_runtime.wiring import VoiceBank


def test_personas_with_the_same_voice_share_one_engine() -> None:
    jin, nova = (load_persona(CHARACTERS / f"{c}.yaml") for c in ("jin", "nova"))
    bank = VoiceBank(Settings())
    assert isinstance(bank(jin), PiperTTS)
    assert bank(jin) is bank(nova) if jin.voice == nova.voice else bank(jin) is not bank(nova)
    faster = nova.model_copy(update={"voice": nova.voice.model_copy(update={"speed": 1.3})})
    assert bank(faster) is not bank(jin)


def test_settings_force_or_turn_off_the_voice() -> None:
    jin = load_persona(CHARACTERS / "jin.yaml")
    assert VoiceBank(Settings(tts="none"))(jin) is None
    forced = VoiceBank(Settings(tts="espeak"))(jin)
    assert isinstance(forced, EspeakTTS)
