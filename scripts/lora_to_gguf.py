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
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: PEFT module path (under ``model.layers.N.``) → llama.cpp tensor name (under ``blk.N.``).
MODULES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(r"base_model\.model\.model\.layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight")


def convert(adapter_dir: Path, out: Path) -> int:
    """Write ``out``; returns the number of tensors written. Raises ValueError on a tensor it cannot place."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("modules_to_save"):
        raise ValueError("only plain LoRA adapters (no DoRA, no modules_to_save) are supported")
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
        writer.add_tensor(f"blk.{layer}.{MODULES[module]}.weight.lora_{half.lower()}", np.ascontiguousarray(tensor, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(tensors)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = convert(Path(argv[1]), Path(argv[2]))
    print(f"wrote {argv[2]}: {count} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
