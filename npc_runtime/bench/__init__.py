"""``npc bench``: a load generator for npc_runtime, against a running server or in-process.

N clients, each its own session, each doing M measured turns (after uncounted warm-up turns),
typed (``text``) or spoken in real time (``audio``). Writes ``bench.json`` (per-stage
p50/p95/p99 at the client and on the server, throughput, errors, ``busy`` refusals, budget
misses, the machine, every turn) and ``bench.png``, and prints a summary table.

Modules: :mod:`.lines` (what the players say), :mod:`.driver` (clients and turn measurement),
:mod:`.report` (figures), :mod:`.plot` (the PNG), :mod:`.runner` (:func:`bench_main`).
"""

from npc_runtime.bench.runner import bench_main, run_load

__all__ = ["bench_main", "run_load"]
