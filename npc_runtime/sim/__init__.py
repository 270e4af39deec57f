"""NPC-to-NPC simulations for staff training: scenario files, a runner over the normal protocol,
an LLM judge and the reports.

A simulation is a client-side orchestrator: each role is one WebSocket session with its own
persona, whose "player" is the other role's character, so every line goes through the same
pipeline as live play (persona, brief, knowledge, memory, actions, audio).

- :mod:`npc_runtime.sim.scenario` — ``scenarios/*.yaml``: typed, validated (``file:line: field: message``).
- :mod:`npc_runtime.sim.runner` — :func:`run_simulation`: turn order, stop conditions, trainee mode.
- :mod:`npc_runtime.sim.judge` — :class:`Judge`: one grammar-constrained request per rubric criterion.
- :mod:`npc_runtime.sim.report` — ``transcript.jsonl``, ``report.md``, ``conversation.wav``.
- :mod:`npc_runtime.sim.cli` — :func:`simulate_main` (``npc simulate``), :func:`check_scenarios_main`.
"""
