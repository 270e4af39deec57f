"""scripts/gguf_lora_to_peft.py: the shipped GGUF adapter back as a PEFT folder (to train on from it, docs/model.md
stage 3) — converted back to GGUF by scripts/lora_to_gguf.py it is the same adapter, tensor for tensor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from gguf_lora_to_peft import convert, unpermute_rows  # noqa: E402
from lora_to_gguf import permute_rows  # noqa: E402

SHIPPED = ROOT / "npc_runtime" / "models" / "npc-smollm2-135m-lora.gguf"


def test_unpermute_is_the_inverse_of_permute() -> None:
    b = np.random.default_rng(0).normal(size=(24, 4))
    assert np.array_equal(unpermute_rows(permute_rows(b, 3), 3), b)
    assert np.array_equal(permute_rows(unpermute_rows(b, 2), 2), b)


def _tensors(path: Path) -> tuple[float, dict[str, np.ndarray]]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    alpha = float(reader.fields["adapter.lora.alpha"].parts[-1][0])
    return alpha, {t.name: np.array(t.data) for t in reader.tensors}


def test_the_shipped_adapter_round_trips_through_peft(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="the train extra (scripts/setup.sh installs it)")
    pytest.importorskip("safetensors")
    from lora_to_gguf import convert as to_gguf

    folder = tmp_path / "peft"
    count = convert(SHIPPED, folder, n_head=9, n_head_kv=3, base="/nowhere")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert count == 2 * 7 * 30 and config["r"] == 16 and config["lora_alpha"] == 32.0
    assert sorted(config["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    back = tmp_path / "back.gguf"
    assert to_gguf(folder, back, n_head=9, n_head_kv=3) == count
    (alpha, ours), (alpha_back, theirs) = _tensors(SHIPPED), _tensors(back)
    assert alpha == alpha_back and ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
