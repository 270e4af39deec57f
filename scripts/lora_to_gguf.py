#!/usr/bin/env python
"""Write a PEFT LoRA adapter of a Llama-architecture model (SmolLM2) as a GGUF adapter that llama.cpp loads
beside its base model (``Llama(lora_path=...)``).

    python scripts/lora_to_gguf.py ADAPTER_DIR OUT.gguf

ADAPTER_DIR holds PEFT's ``adapter_config.json`` and ``adapter_model.safetensors``. Needs ``gguf`` and
``safetensors`` (the ``train`` extra). The layout is llama.cpp's (``src/llama-adapter.cpp``): for each adapted
weight ``blk.N.<name>.weight`` a pair ``….lora_a`` (numpy shape ``(r, n_in)``, PEFT's ``lora_A``) and ``….lora_b``
(``(n_out, r)``, PEFT's ``lora_B``), f16, with ``general.type = adapter``, ``adapter.type = lora`` and
``adapter.lora.alpha``; llama.cpp scales by ``alpha / r``. llama.cpp's own ``convert_lora_to_gguf.py`` needs its
whole source tree; the mapping below is all a Llama model needs.

**Query and key rows are permuted.** A Llama GGUF stores ``attn_q`` and ``attn_k`` with the rows of each head
reordered for llama.cpp's rotary embedding (``convert_hf_to_gguf.py``'s ``permute``); the Hugging Face base the
adapter was trained on (``convert_gguf_to_hf.py``) has them back in Hugging Face order. So ``lora_b`` of q and k
(its rows are the output rows) gets the same permutation, with the heads (``n_head``) and key/value heads
(``n_head_kv``) of the base; ``lora_a`` works on the input and stays. Without it the q/k updates land on the wrong
rows: measured on the first adapters, llama.cpp's next-token distribution drifted from the trained model's by a
KL of 0.25-0.56 nats after a tag (0.003 for the base alone), and it added a second tag to a grab 3-10x as often.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: PEFT module path (under ``model.layers.N.``) → llama.cpp tensor name (under ``blk.N.``).
MODULES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(r"base_model\.model\.model\.layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight")


def permute_rows(rows: "np.ndarray", n_head: int) -> "np.ndarray":
    """Hugging Face order → llama.cpp order of a q (``n_head`` heads) or k (``n_head_kv`` heads) matrix's rows:
    within each head, the two rotary halves interleaved (as llama.cpp's ``convert_hf_to_gguf.py`` does)."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def base_heads(adapter_dir: Path) -> tuple[int, int]:
    """``(n_head, n_head_kv)`` of the base model the adapter names (its ``config.json``)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = Path(config.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise ValueError(f"the adapter's base {str(base)!r} has no config.json: pass n_head and n_head_kv")
    model = json.loads((base / "config.json").read_text())
    return int(model["num_attention_heads"]), int(model.get("num_key_value_heads") or model["num_attention_heads"])


def convert(adapter_dir: Path, out: Path, *, n_head: int | None = None, n_head_kv: int | None = None) -> int:
    """Write ``out``; returns the number of tensors written. Raises ValueError on a tensor it cannot place.
    ``n_head``/``n_head_kv``: the base's attention heads (default: read from the base's config.json)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("modules_to_save"):
        raise ValueError("only plain LoRA adapters (no DoRA, no modules_to_save) are supported")
    if n_head is None or n_head_kv is None:
        n_head, n_head_kv = base_heads(adapter_dir)
    heads = {"self_attn.q_proj": n_head, "self_attn.k_proj": n_head_kv}
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for name, tensor in sorted(tensors.items()):
        match = _NAME.fullmatch(name)
        if match is None or match.group(2) not in MODULES:
            raise ValueError(f"cannot map adapter tensor {name!r} to llama.cpp")
        layer, module, half = match.groups()
        if half == "B" and module in heads:
            tensor = permute_rows(tensor, heads[module])
        writer.add_tensor(f"blk.{layer}.{MODULES[module]}.weight.lora_{half.lower()}", np.ascontiguousarray(tensor, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(tensors)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 5):
        print(__doc__ + "\n    python scripts/lora_to_gguf.py ADAPTER_DIR OUT.gguf [N_HEAD N_HEAD_KV]", file=sys.stderr)
        return 2
    heads = (int(argv[3]), int(argv[4])) if len(argv) == 5 else (None, None)
    count = convert(Path(argv[1]), Path(argv[2]), n_head=heads[0], n_head_kv=heads[1])
    print(f"wrote {argv[2]}: {count} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
