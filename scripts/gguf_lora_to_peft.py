#!/usr/bin/env python
"""The inverse of scripts/lora_to_gguf.py: a llama.cpp GGUF LoRA adapter (the shipped
``npc_runtime/models/npc-smollm2-135m-lora.gguf``) as a PEFT adapter folder, so that training can go on from it
(``scripts/train_npc_adapter.py --init DIR``) when the folder it was converted from is gone.

    python scripts/gguf_lora_to_peft.py [ADAPTER.gguf] OUT_DIR [--base BASE_HF_DIR]

ADAPTER.gguf defaults to the shipped adapter; ``--base`` (default ``~/.cache/npc_runtime/train/base-hf``, the
folder train_npc_adapter.py dequantizes the base into) is written into ``adapter_config.json`` and gives the heads.
Each ``blk.N.<name>.weight.lora_a``/``lora_b`` pair becomes PEFT's ``lora_A``/``lora_B`` of
``model.layers.N.<module>``; the rows of ``lora_b`` of the query and key projections go back from llama.cpp's
rotary order to Hugging Face order (lora_to_gguf.py permuted them). The GGUF holds f16, so the folder holds the
trained weights rounded to f16 (what llama.cpp serves). Converting it back with lora_to_gguf.py gives the same
tensors (tests/test_gguf_lora_to_peft.py). Needs ``gguf``, ``numpy`` and ``safetensors`` (the ``train`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lora_to_gguf import MODULES  # noqa: E402

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE = Path.home() / ".cache" / "npc_runtime" / "train" / "base-hf"


def unpermute_rows(rows: "np.ndarray", n_head: int) -> "np.ndarray":
    """llama.cpp order → Hugging Face order of a q or k matrix's rows (the inverse of lora_to_gguf.permute_rows)."""
    shape = rows.shape
    return rows.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def convert(gguf_path: Path, out: Path, *, n_head: int, n_head_kv: int, base: str = "") -> int:
    """Write ``out/adapter_model.safetensors`` and ``out/adapter_config.json``; returns the number of tensors.
    Raises ValueError on a tensor it cannot place or pairs of different ranks."""
    import gguf
    import numpy as np
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(str(gguf_path))
    alpha = float(reader.fields["adapter.lora.alpha"].parts[-1][0])
    modules = {name: module for module, name in MODULES.items()}
    heads = {"attn_q": n_head, "attn_k": n_head_kv}
    tensors: dict[str, np.ndarray] = {}
    ranks: set[int] = set()
    targets: set[str] = set()
    for tensor in reader.tensors:
        parts = tensor.name.split(".")  # blk.N.attn_q.weight.lora_a
        if len(parts) != 5 or parts[0] != "blk" or parts[2] not in modules or parts[4] not in ("lora_a", "lora_b"):
            raise ValueError(f"cannot map GGUF tensor {tensor.name!r} to PEFT")
        layer, kind, half = parts[1], parts[2], parts[4][-1].upper()
        data = np.array(tensor.data, dtype=np.float32).reshape([int(d) for d in reversed(tensor.shape)])
        if half == "B" and kind in heads:
            data = unpermute_rows(data, heads[kind])
        ranks.add(data.shape[0] if half == "A" else data.shape[1])
        targets.add(modules[kind].split(".")[-1])
        tensors[f"base_model.model.model.layers.{layer}.{modules[kind]}.lora_{half}.weight"] = np.ascontiguousarray(data)
    if len(ranks) != 1:
        raise ValueError(f"the pairs have different ranks: {sorted(ranks)}")
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": ranks.pop(), "lora_alpha": alpha,
        "lora_dropout": 0.0, "bias": "none", "target_modules": sorted(targets), "fan_in_fan_out": False, "inference_mode": False,
        "use_dora": False, "use_rslora": False, "modules_to_save": None, "init_lora_weights": True,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return len(tensors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", metavar="[ADAPTER.gguf] OUT_DIR")
    ap.add_argument("--base", type=Path, default=DEFAULT_BASE, help="the Hugging Face base folder (its config.json gives the heads)")
    args = ap.parse_args()
    if len(args.paths) > 2:
        ap.error("at most ADAPTER.gguf and OUT_DIR")
    gguf_path = Path(args.paths[0]) if len(args.paths) == 2 else ROOT / "npc_runtime" / "models" / "npc-smollm2-135m-lora.gguf"
    model = json.loads((args.base / "config.json").read_text())
    n_head = int(model["num_attention_heads"])
    count = convert(gguf_path, Path(args.paths[-1]), n_head=n_head, n_head_kv=int(model.get("num_key_value_heads") or n_head),
                    base=str(args.base))
    print(f"wrote {args.paths[-1]}: {count} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
