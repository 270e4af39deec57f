"""The shipped adapter does in llama.cpp what it was trained to do (scripts/lora_to_gguf.py, docs/model.md).

The adapter is trained on a Hugging Face copy of the PyPI GGUF and served by llama.cpp on the GGUF itself, whose
query and key rows are in another order. This reads the shipped GGUF adapter back, applies it to the Hugging Face
copy the way training did (W + alpha/r * B @ A, with B's q/k rows put back in Hugging Face order), and checks that
llama.cpp with the adapter predicts the same next token distribution, on held-out turns right after an action tag
(where the first adapters, converted without the reordering, drifted: KL 0.25-0.56 nats, and added a second tag
to most grabs). The permutation itself is checked on small arrays without any model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from lora_to_gguf import MODULES, permute_rows  # noqa: E402


def unpermute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    shape = rows.shape
    return rows.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def test_permute_rows_is_llama_cpps_rotary_order_per_head() -> None:
    rows = np.arange(16).reshape(16, 1)
    # two heads of eight rows: each head's first half and second half interleaved
    assert permute_rows(rows, 2).ravel().tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 12)), rng.normal(size=(24, 4))
    assert np.allclose(permute_rows(b, 3) @ a, permute_rows(b @ a, 3))  # permuting B permutes the update's rows
    assert np.array_equal(unpermute_rows(permute_rows(b, 3), 3), b)


@pytest.mark.engine
def test_llama_cpp_with_the_shipped_adapter_matches_the_trained_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    gguf = pytest.importorskip("gguf", reason="the train extra (scripts/setup.sh installs it)")
    import torch
    from train_npc_adapter import Library
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from npc_runtime.dialogue.prompt import render_record
    from npc_runtime.llm.llama_cpp import ADAPTER_FILE, default_model_path, render_chatml

    base = Path.home() / ".cache" / "npc_runtime" / "train" / "base-hf"
    if not (base / "model.safetensors").is_file():
        base = tmp_path_factory.mktemp("base-hf")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_gguf_to_hf.py"), str(default_model_path()), str(base)],
                       check=True, capture_output=True, timeout=600)
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    config = json.loads((base / "config.json").read_text())
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    names = {gguf_name: module for module, gguf_name in MODULES.items()}

    reader = gguf.GGUFReader(str(ADAPTER_FILE))
    alpha = float(reader.fields["adapter.lora.alpha"].parts[-1][0])
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        name, half = tensor.name.rsplit(".lora_", 1)
        pairs.setdefault(name, {})[half] = np.array(tensor.data, dtype=np.float32).reshape([int(d) for d in reversed(tensor.shape)])
    assert len(pairs) == 7 * config["num_hidden_layers"]
    with torch.no_grad():
        for name, pair in pairs.items():
            _, layer, kind, _ = name.split(".")
            b = unpermute_rows(pair["b"], heads[kind]) if kind in heads else pair["b"]
            delta = alpha / pair["a"].shape[0] * (b @ pair["a"])
            module: Any = model.model.layers[int(layer)]
            for part in names[kind].split("."):
                module = getattr(module, part)
            module.weight += torch.from_numpy(delta)

    from llama_cpp import Llama
    llm = Llama(model_path=str(default_model_path()), lora_path=str(ADAPTER_FILE), n_ctx=2048, n_threads=1,
                logits_all=True, verbose=False)
    library = Library(ROOT / "training")
    held = [json.loads(line) for line in (ROOT / "training" / "data" / "heldout.jsonl").read_text().splitlines()]
    cases = [r for r in held if r["kind"] in ("act_grab", "act_give_other")][::9][:4]
    kls = []
    for record in cases:
        messages, reply = render_record(library.record(record))
        text = render_chatml(messages, add_generation_prompt=True) + reply.split("]")[0] + "]"
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert list(ids) == list(tokenizer(text, add_special_tokens=False)["input_ids"])
        llm.reset()
        llm.eval(ids)
        ours = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0, -1].double().numpy()
        p = np.exp(theirs - theirs.max())
        p /= p.sum()
        q = np.exp(ours - ours.max())
        q /= q.sum()
        kls.append(float((p * (np.log(p + 1e-30) - np.log(q + 1e-30))).sum()))
    print(f"\nKL(trained || llama.cpp) after an action tag, {len(kls)} held-out turns: {[round(k, 4) for k in kls]}")
    assert max(kls) < 0.05
