"""scripts/train_npc_adapter.py trains each step as one shared system prefix plus many records' tails on its
key/value cache, with the output head only where a reply token is predicted. That must be the same loss, and the
same gradients, as each record run as its own sequence (what the model sees at serving time). A tiny random
Llama (SmolLM2's architecture) stands in for the real weights: the check is of the arithmetic, not the model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from train_npc_adapter import step_loss  # noqa: E402


def _tiny_llama() -> object:
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def test_the_shared_prefix_step_equals_separate_sequences() -> None:
    model = _tiny_llama()
    gen = torch.Generator().manual_seed(1)
    prefix = torch.randint(3, 96, (40,), generator=gen).tolist()
    tails = []
    for n, (start, end) in ((9, (4, 9)), (15, (6, 12)), (6, (2, 6))):  # reply spans inside each tail
        tails.append((torch.randint(3, 96, (n,), generator=gen).tolist(), [(start, end)]))

    loss, replies, processed = step_loss(model, (prefix, tails), pad_id=0)
    loss.backward()
    shared = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    total, count = torch.zeros(()), 0
    for ids, [(start, end)] in tails:
        sequence = torch.tensor([prefix + ids])
        labels = torch.full_like(sequence, -100)
        labels[0, len(prefix) + start : len(prefix) + end] = sequence[0, len(prefix) + start : len(prefix) + end]
        logits = model(input_ids=sequence).logits
        total = total + torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
        count += end - start
    separate = total / count
    separate.backward()

    assert replies == count == 5 + 6 + 4
    assert processed == len(prefix) + sum(len(t) for t, _ in tails)
    assert abs(float(loss.detach()) - float(separate.detach())) < 1e-5
    for name, p in model.named_parameters():
        assert torch.allclose(shared[name], p.grad, atol=1e-5), name
