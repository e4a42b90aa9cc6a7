#!/usr/bin/env python3
"""Simulates REST-style drafting from a datastore of the LLM's own answers (docs/prompt-lookup.md,
"A datastore of the LLM's own answers").

The datastore is every distilled answer (`distill-data` JSONL, its `answer_ids`); the test set is
the LLM's own greedy answers to MT-Bench (`distill-data --data mt-bench --no-holdout`). At each
verification step of a W1 L3 chain the longest n-gram (n = 5..1, at least `min_n`) that ends the
answer so far and occurs in the datastore proposes the continuation that followed it most often
(2 tokens); the step accepts the matching prefix. No LLM runs: the answers are the greedy
decode, so acceptance is exact for greedy verification. The prompt is not in the context (what
`copy first` adds on top is measured in benchmarks.md).

    python3 scripts/datastore_lookup_sim.py STORE.jsonl [STORE2.jsonl ...] --test MTBENCH.jsonl
"""
import argparse
import collections
import json


def answers(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line)["answer_ids"])
            except (json.JSONDecodeError, KeyError):
                continue  # a file cut off mid-line while distill-data runs
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store", nargs="+")
    ap.add_argument("--test", required=True)
    args = ap.parse_args()
    store = [a for p in args.store for a in answers(p)]
    test = answers(args.test)
    print(f"datastore: {len(store)} answers, {sum(map(len, store))} tokens; test: {len(test)} answers")
    ns = (5, 4, 3, 2, 1)
    table = {n: collections.defaultdict(collections.Counter) for n in ns}
    for a in store:
        for n in ns:
            for i in range(n, len(a) - 1):
                table[n][tuple(a[i - n:i])][(a[i], a[i + 1])] += 1

    def propose(ctx, min_n):
        for n in ns:
            if n >= min_n and len(ctx) >= n and (c := table[n].get(tuple(ctx[-n:]))):
                return c.most_common(1)[0][0]
        return None

    for min_n in (1, 2, 3):
        steps = tokens = first = both = proposed = 0
        for a in test:
            j = 1
            while j < len(a):
                p = propose(a[:j], min_n)
                k = 0
                if p:
                    proposed += 1
                    if p[0] == a[j]:
                        k = 1 + (j + 1 < len(a) and p[1] == a[j + 1])
                steps += 1
                first += k >= 1
                both += k >= 2
                j += k + 1
                tokens += k + 1
        print(f"n >= {min_n}: tau {tokens / steps:.3f}, acceptance at 1, 2: {first / steps:.3f}, {both / steps:.3f}; "
              f"a proposal at {proposed / steps:.0%} of steps, first token right in {first / max(proposed, 1):.0%} of them")


if __name__ == "__main__":
    main()
