"""The outputs of a simulation: ``transcript.jsonl``, ``report.md`` and (with audio) ``conversation.wav``.

Pure functions of a :class:`SimResult` and its scores, apart from writing the files. The WAV puts
each character's audio in turn (each in its own voice), resampled to one rate when the voices'
rates differ, with 300 ms of silence between turns.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from npc_runtime.sim.judge import CriterionScore
from npc_runtime.sim.runner import SimResult, TurnRecord

GAP_MS = 300


def transcript_lines(result: SimResult) -> list[str]:
    """One JSON object per turn: turn, role, character, name, source, text, actions, emotion, rejected, timings."""
    return [json.dumps({"turn": t.turn, "role": t.role, "character": t.character, "name": t.name, "source": t.source,
                        "text": t.text, "actions": t.actions, "emotion": t.emotion, "rejected": t.rejected,
                        "timings": t.timings},
                       ensure_ascii=False, sort_keys=False) for t in result.turns]


def report_markdown(result: SimResult, scores: Sequence[CriterionScore] | None) -> str:
    s = result.scenario
    out = [f"# {s.title}", "", f"Scenario `{s.id}` · seed {result.seed} · {len(result.turns)} turns · stopped by: {result.stopped_by}", "",
           "## Setting", "", s.setting.strip(), "", "## Roles", ""]
    for role, r in s.roles.items():
        out.append(f"- **{role}**: {s.role_name(role)} (`{r.persona}`){' — scored' if role == s.rubric.role else ''}")
    out += ["", "## Conversation", ""]
    for t in result.turns:
        note = {"scripted": " *(scripted opening)*", "human": " *(trainee)*"}.get(t.source, "")
        out.append(f"{t.turn}. **{t.name}** ({t.role}){note}: {t.text or '*(no words)*'}")
        for action in t.action_strings():
            out.append(f"   - action: `{action}`")
        if t.emotion:
            out.append(f"   - emotion: {t.emotion}")
        for r in t.rejected:
            out.append(f"   - asked again ({r['why']}), rejected: {r['text'] or '*(no words)*'}")
    out += ["", "## Actions", ""]
    acts = [(t.turn, t.name, a) for t in result.turns for a in t.action_strings()]
    out += [f"- turn {n}, {name}: `{a}`" for n, name, a in acts] or ["None."]
    out += ["", f"## Scores ({s.role_name(s.rubric.role)}, the {s.rubric.role}; scale {s.rubric.scale.min}–{s.rubric.scale.max})", ""]
    if scores is None:
        out.append("Not scored (scoring was skipped).")
    else:
        descriptions = {c.id: c.description for c in s.rubric.criteria}
        out += ["| criterion | score | evidence | reason |", "|---|---|---|---|"]
        for c in scores:
            score = "unscored" if c.score is None else str(c.score)
            evidence = f"“{_cell(c.evidence)}”" if c.evidence else "—"
            out.append(f"| {c.criterion}: {_cell(descriptions.get(c.criterion, ''))} | {score} | {evidence} | {_cell(c.reason)} |")
        retried = [c for c in scores if c.score is not None and c.rejected]
        if retried:
            out += ["", "Judge answers rejected before the one scored:", ""]
            out += [f"- {c.criterion} (attempt {c.attempts}): " + "; ".join(c.rejected) for c in retried]
    out += ["", f"Stopped by: {result.stopped_by}. Seed: {result.seed}.", ""]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def conversation_audio(turns: Sequence[TurnRecord], *, gap_ms: int = GAP_MS) -> tuple[bytes, int] | None:
    """All turns' audio as one PCM16 mono track at the most common rate, or None without audio."""
    voiced = [t for t in turns if t.audio and t.sample_rate]
    if not voiced:
        return None
    rates = [t.sample_rate for t in voiced]
    rate = max(set(rates), key=rates.count)
    gap = np.zeros(rate * gap_ms // 1000, dtype=np.int16)
    parts: list[np.ndarray] = []
    for t in voiced:
        samples = np.frombuffer(t.audio[: len(t.audio) // 2 * 2], dtype="<i2")
        if t.sample_rate != rate:
            samples = resample(samples, t.sample_rate or rate, rate)
        if parts:
            parts.append(gap)
        parts.append(samples)
    return np.concatenate(parts).astype("<i2").tobytes(), rate


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear-interpolation resampling of PCM16 samples (good enough for speech review)."""
    if src == dst or samples.size == 0:
        return samples.astype(np.int16)
    n = max(1, round(samples.size * dst / src))
    x = np.linspace(0, samples.size - 1, n)
    return np.interp(x, np.arange(samples.size), samples.astype(np.float64)).round().astype(np.int16)


def write_outputs(out_dir: str | Path, result: SimResult, scores: Sequence[CriterionScore] | None, *,
                  audio: bool = False) -> list[Path]:
    """Write the outputs into ``out_dir`` (created); return the paths written."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    written = [root / "transcript.jsonl", root / "report.md"]
    written[0].write_text("".join(line + "\n" for line in transcript_lines(result)), encoding="utf-8")
    written[1].write_text(report_markdown(result, scores), encoding="utf-8")
    track = conversation_audio(result.turns) if audio else None
    if track is not None:
        path = root / "conversation.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(track[1])
            wav.writeframes(track[0])
        written.append(path)
    return written
