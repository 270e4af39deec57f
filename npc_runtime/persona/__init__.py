"""Character personas: the YAML schema, loading with file:line errors, and a hot-reloading registry."""

from npc_runtime.persona.schema import ActionVerb, Example, LLMSettings, Persona, VoiceSettings

__all__ = ["ActionVerb", "Example", "LLMSettings", "Persona", "VoiceSettings"]
