#!/usr/bin/env python3
"""Reference data for the SmolLM2-135M-Instruct forward, from Hugging Face transformers (PyTorch, CPU, f32).

Dev tool, not a test dependency. It loads the *same* GGUF the Rust loader reads (transformers
dequantizes it to f32 through the `gguf` package) and writes tests/fixtures/smollm2_reference.json:
for each prompt, its token ids (from transformers' tokenizer, built from the GGUF), the logits of a
fixed set of vocabulary ids and of the top 8 ids at every prompt position, and the greedy 64-token
continuation.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install torch transformers gguf numpy accelerate
    /tmp/pyref/bin/python scripts/make_reference.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    {"chat": True, "text": "What is the capital of France?"},
    {"chat": True, "text": "Write a haiku about the sea."},
    {"chat": False, "text": "The quick brown fox jumps over the lazy dog. Then"},
    {"chat": False, "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
]
SAMPLED_IDS = list(range(0, 49152, 997)) + [2, 198, 28, 30]
GREEDY_TOKENS = 64
TOP = 8


def main(gguf_path: str) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    d, f = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    out = {
        "model": f,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "sampled_ids": SAMPLED_IDS,
        "prompts": [],
    }
    for p in PROMPTS:
        text = p["text"]
        if p["chat"]:
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            top = torch.topk(logits, TOP, dim=-1)
            gen = model.generate(
                torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False,
                eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            )[0, len(ids):].tolist()
        out["prompts"].append({
            "chat": p["chat"],
            "user_text": p["text"],
            "rendered": text,
            "ids": ids,
            "sampled_logits": logits[:, SAMPLED_IDS].tolist(),
            "top_ids": top.indices.tolist(),
            "top_logits": top.values.tolist(),
            "greedy": gen,
            "greedy_text": tok.decode(gen),
        })
        print(f"{len(ids):4d} prompt tokens -> {tok.decode(gen)[:60]!r}", file=sys.stderr)
    os.makedirs("tests/fixtures", exist_ok=True)
    with open("tests/fixtures/smollm2_reference.json", "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1])
