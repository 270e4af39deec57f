"""Prometheus metrics of one server (``GET /metrics``), on a registry of its own (several servers in one
process — tests — do not mix).

Per-stage turn histograms come from each turn's timeline (ms offsets of ``response.end.timings``); engine queue
depth is read from every live :class:`~npc_runtime.engine_thread.EngineThread` when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from npc_runtime.engine_thread import EngineThread

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Turn stages reported as histograms (names of the timeline's marks).
STAGES = ("transcript_final", "retrieval", "prompt_ready", "first_token", "first_text", "first_clause", "first_audio", "first_speech", "end")
_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)


class _EngineQueues(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("npc_engine_queue_depth", "Jobs queued or running on each engine thread.", labels=["engine"])
        depth: dict[str, int] = {}
        for thread in EngineThread.all():
            depth[thread.name] = depth.get(thread.name, 0) + thread.pending
        for name, value in sorted(depth.items()):
            family.add_metric([name], value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("npc_sessions_active", "Open sessions.", registry=r)
        self.sessions = Counter("npc_sessions", "Sessions opened.", registry=r)
        self.refused = Counter("npc_sessions_refused", "Connections refused because the server was full.", registry=r)
        self.turns = Counter("npc_turns", "Responses, by trigger and status.", ["trigger", "status"], registry=r)
        self.stage = Histogram("npc_turn_stage_seconds", "Time from a turn's start to each stage.", ["stage"],
                               buckets=_BUCKETS, registry=r)
        self.errors = Counter("npc_errors", "Error events sent, by code.", ["code"], registry=r)
        self.budget_misses = Counter("npc_budget_misses", "Turns whose first audio came after the budget, by cause.", ["cause"], registry=r)
        self.llm_waiting = Gauge("npc_llm_waiting", "Turns waiting for the LLM.", registry=r)
        self.memory_write_failures = Counter("npc_memory_write_failures",
                                             "Memory writes that failed after their retries (the entries are kept pending).", registry=r)
        self.memory_pending = Gauge("npc_memory_pending_entries", "Memory entries waiting to be written after a failed write.", registry=r)
        self.knowledge_lookups = Counter("npc_knowledge_lookups", "Knowledge lookups of turns, by result (response.end knowledge).",
                                         ["result"], registry=r)
        r.register(_EngineQueues())

    def turn_done(self, trigger: str, status: str, timings: Mapping[str, float]) -> None:
        self.turns.labels(trigger=trigger, status=status).inc()
        for stage in STAGES:
            if stage in timings:
                self.stage.labels(stage=stage).observe(timings[stage] / 1000.0)

    def error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
