"""npc_runtime: a self-hosted runtime that makes game characters talk and act."""

__version__ = "0.1.0"
PROTOCOL_VERSION = "1"
