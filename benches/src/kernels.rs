//! Tree attention, tree build, KV relocation, one beam-search expansion (warp + top-k + merge) and
//! the draws of sampled exact acceptance (`accept::device::node_draws` against the host path):
//! the backend's op (the `#[cube]` kernel on wgpu/cuda, the
//! tensor-op reference on CPU backends) against the tensor-op reference, and the deduplicated
//! tree against dense attention over the whole W × L beam grid (no prefix dedup), for a sweep of
//! beam shapes at SmolLM2-135M's attention shape (9 query heads, 3 KV heads, head dim 64).
//!
//! `kernel_bench --backends ndarray,flex,wgpu --out bench-out` prints a table and writes
//! `kernels.json` and `kernels.svg`. Timings are medians of `--runs`, each synchronised by reading
//! the result back.

use redrafter_bench::harness::report::median;
use std::time::Instant;

use burn::tensor::{BasicOps, Int, Tensor, TensorData};
use clap::Parser;
use redrafter::KernelBackend;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::SamplingConfig;
use redrafter::accept::device::{Children, node_draws};
use redrafter::beam::Beams;
use redrafter::tree::{PackedTree, TreeIndex};
use redrafter_kernels::{beam_merge, bits, kv_relocate, tree_attention, tree_build, warp_top_k};
use redrafter_train::plot::{Series, line_chart};

#[derive(Parser, Clone)]
struct Args {
    /// Comma-separated backends (default: every compiled one).
    #[arg(long)]
    backends: Option<String>,
    /// Beam grids W x L.
    #[arg(long, default_value = "1x4,2x4,4x4,8x5,16x5")]
    grids: String,
    /// Committed tokens per row.
    #[arg(long, default_value_t = 256)]
    cache_len: usize,
    #[arg(long, default_value_t = 9)]
    heads: usize,
    #[arg(long, default_value_t = 3)]
    kv_heads: usize,
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    /// Drafter vocabulary for the beam-search expansion (SmolLM2's by default).
    #[arg(long, default_value_t = 49152)]
    vocab: usize,
    /// Sampled acceptance: temperature and top-p of the node draws.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 7)]
    runs: usize,
    #[arg(long, default_value = "bench-out")]
    out: std::path::PathBuf,
}

#[derive(Clone, serde::Serialize)]
struct Row {
    backend: String,
    width: usize,
    length: usize,
    grid_tokens: usize,
    packed_tokens: usize,
    compression: f64,
    op_tree_ms: f64,
    reference_tree_ms: f64,
    op_dense_ms: f64,
    relocate_op_ms: f64,
    relocate_reference_ms: f64,
    /// Prefix dedup of one row's beams: the op (two launches on cubecl backends) and the host
    /// build with its read-back and upload.
    build_op_ms: f64,
    build_reference_ms: f64,
    /// One beam-search expansion of W beams over the vocabulary: warp + per-beam top W + merge.
    /// The op is two launches on cubecl backends; the reference reads the W·V logits back.
    expand_op_ms: f64,
    expand_reference_ms: f64,
    /// Sampled exact acceptance for the packed tree: the device's node draws with their read-back
    /// of W + 1 numbers per node, against the host path's read-back of every node's logits and
    /// the host distribution of each (the host walk computes those it visits: at most all).
    sample_device_ms: f64,
    sample_host_ms: f64,
    /// Nodes the device path finished on the host (a nucleus past its candidates).
    sample_nodes_on_host: usize,
}

/// Logits shaped like a language model's: p ∝ rank^-1.5 at temperature 1 (the top token 38%,
/// 90% of the mass in the first ~55 tokens), the ranks a permutation of the ids per node.
fn zipf_logits(nodes: usize, v: usize) -> Vec<f32> {
    (0..nodes * v)
        .map(|x| {
            let (g, id) = (x / v, x % v);
            // An odd multiplier not divisible by 3 permutes ids mod 49152 = 2^14 · 3.
            let rank = (id as u64 * 2654435761 + g as u64 * 7919) % v as u64;
            -1.5 * ((rank + 1) as f32).ln()
        })
        .collect()
}

/// Median ms of `runs` calls after one warm-up call (kernel compilation, allocation).
fn time_host(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median((0..runs).map(|_| {
        let t0 = Instant::now();
        f();
        t0.elapsed().as_secs_f64() * 1e3
    }).collect())
}

/// Beams that share their first tokens the way drafter beams do: a common root, then the
/// branching of a small alphabet.
fn beams(w: usize, l: usize, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..w * l)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if i % l == 0 { 1 } else { 2 + ((x >> 60) % (1 + (i % l) as u64)) as u32 }
        })
        .collect()
}

/// [`time_host`] of an op, synchronised by reading its result back.
fn time<B: KernelBackend, const D: usize, K: BasicOps<B>>(runs: usize, mut f: impl FnMut() -> Tensor<B, D, K>) -> f64 {
    time_host(runs, || {
        f().into_data();
    })
}

struct Bench(Args, String);

impl BackendTask for Bench {
    type Output = Vec<Row>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Vec<Row> {
        let Bench(a, name) = self;
        let (h, hkv, d, s) = (a.heads, a.kv_heads, a.head_dim, a.cache_len);
        let rand = |n: usize, seed: u64| -> Vec<f32> {
            let mut x = seed;
            (0..n).map(|_| { x = x.wrapping_mul(6364136223846793005).wrapping_add(1); ((x >> 40) % 2000) as f32 / 1000.0 - 1.0 }).collect()
        };
        let f4 = |v: Vec<f32>, shape: [usize; 4]| Tensor::<B, 4>::from_data(TensorData::new(v, shape), &device);
        let kc = f4(rand(hkv * s * d, 1), [1, hkv, s, d]);
        let vc = f4(rand(hkv * s * d, 2), [1, hkv, s, d]);
        let lens = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![s as i64], [1]), &device);
        let scale = 1.0 / (d as f32).sqrt();
        let mut rows = vec![];
        for grid in a.grids.split(',') {
            let (w, l) = grid.split_once('x').map(|(w, l)| (w.parse().expect("W"), l.parse().expect("L"))).expect("grids are WxL");
            let tree = PackedTree::build(&beams(w, l, 7), 1, w, l);
            let p = tree.max_packed;
            // Dense: every beam its own causal chain, W·L tokens, no sharing.
            let g = w * l;
            let dense_mask: Vec<bool> = (0..g * g).map(|k| (k / g) / l == (k % g) / l && k % g <= k / g).collect();
            let attend = |t: usize, mask: &[bool], op: bool| {
                let q = f4(rand(h * t * d, 3), [1, h, t, d]);
                let kb = f4(rand(hkv * t * d, 4), [1, hkv, t, d]);
                let vb = f4(rand(hkv * t * d, 5), [1, hkv, t, d]);
                let m = bits::mask_tensor::<B>(mask, 1, t, &device);
                let (kc, vc, lens) = (kc.clone(), vc.clone(), lens.clone());
                time(a.runs, move || {
                    let c = Some((kc.clone(), vc.clone()));
                    if op {
                        tree_attention(q.clone(), c, lens.clone(), kb.clone(), vb.clone(), m.clone(), scale)
                    } else {
                        redrafter_kernels::tree_attention::reference::tree_attention(q.clone(), c, lens.clone(), kb.clone(), vb.clone(), m.clone(), scale)
                    }
                })
            };
            let tree_mask = tree.ancestor_mask();
            let op_tree_ms = attend(p, &tree_mask, true);
            let reference_tree_ms = attend(p, &tree_mask, false);
            let op_dense_ms = attend(g, &dense_mask, true);

            // Relocation of one accepted path of length L (one layer's keys).
            let cap = s + 64;
            let cache = f4(rand(hkv * cap * d, 6), [1, hkv, cap, d]);
            let block = f4(rand(hkv * p * d, 8), [1, hkv, p, d]);
            let path: Vec<i64> = (0..l).map(|k| tree.node(0, 0, k) as i64).collect();
            let src = Tensor::<B, 2, Int>::from_data(TensorData::new(path, [1, l]), &device);
            let dst = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![s as i64], [1]), &device);
            let mut c = Some(cache);
            let relocate_op_ms = time(a.runs, || {
                let out = kv_relocate(c.take().expect("cache"), block.clone(), src.clone(), dst.clone());
                c = Some(out.clone());
                out.slice([0..1, 0..1, 0..1, 0..1])
            });
            let mut c2 = c.take();
            let relocate_reference_ms = time(a.runs, || {
                let out = redrafter_kernels::kv_relocate::reference::kv_relocate(c2.take().expect("cache"), block.clone(), src.clone(), dst.clone());
                c2 = Some(out.clone());
                out.slice([0..1, 0..1, 0..1, 0..1])
            });
            let ids: Vec<i64> = beams(w, l, 7).iter().map(|&t| t as i64).collect();
            let beams_t = Tensor::<B, 3, Int>::from_data(TensorData::new(ids, [1, w, l]), &device);
            let build_op_ms = time(a.runs, || tree_build(beams_t.clone(), lens.clone()).mask);
            let build_reference_ms =
                time(a.runs, || redrafter_kernels::tree_build::reference::tree_build(beams_t.clone(), lens.clone()).mask);
            // One expansion of W beams (drafter logits [W, V], scaled like real logits).
            let v = a.vocab;
            let logits = Tensor::<B, 2>::from_data(TensorData::new(rand(w * v, 9).iter().map(|x| x * 12.0).collect::<Vec<_>>(), [w, v]), &device);
            let scores = Tensor::<B, 2>::from_data(TensorData::new((0..w).map(|i| -(i as f32) * 0.3).collect::<Vec<_>>(), [1, w]), &device);
            let grown = Tensor::<B, 3, Int>::from_data(TensorData::new(vec![1i64; w * (l - 1).max(1)], [1, w, (l - 1).max(1)]), &device);
            let expand_op_ms = time(a.runs, || {
                let (logq, ids) = warp_top_k(logits.clone(), w);
                beam_merge(scores.clone(), logq, ids, grown.clone()).beams
            });
            let expand_reference_ms = time(a.runs, || {
                let (logq, ids) = redrafter_kernels::warp_top_k::reference::warp_top_k(logits.clone(), w);
                redrafter_kernels::beam_merge::reference::beam_merge(scores.clone(), logq, ids, grown.clone()).beams
            });
            let config = SamplingConfig { temperature: a.temperature, top_p: a.top_p, ..Default::default() };
            let index = TreeIndex::from(&tree);
            let drafts = Beams { rows: 1, width: w, len: l, tokens: beams(w, l, 7), hist: None };
            let children = Children::of(&index, &drafts);
            let slots = index.slots;
            let node_logits = Tensor::<B, 2>::from_data(TensorData::new(zipf_logits(slots, v), [slots, v]), &device);
            let uniforms: Vec<f32> = (0..slots).map(|g| (g as f32 + 0.5) / slots as f32).collect();
            let mut sample_nodes_on_host = 0;
            let sample_device_ms = time_host(a.runs, || {
                sample_nodes_on_host = node_draws(node_logits.clone(), &children, &config, &uniforms).expect("node draws").host_nodes;
            });
            let sample_host_ms = time_host(a.runs, || {
                let host = node_logits.clone().into_data().convert::<f32>().into_vec::<f32>().expect("logits");
                for q in 0..index.packed_len[0] {
                    std::hint::black_box(config.distribution(&host[q * v..(q + 1) * v]));
                }
            });
            let row = Row {
                backend: name.clone(),
                width: w,
                length: l,
                grid_tokens: g,
                packed_tokens: p,
                compression: tree.compression(),
                op_tree_ms,
                reference_tree_ms,
                op_dense_ms,
                relocate_op_ms,
                relocate_reference_ms,
                build_op_ms,
                build_reference_ms,
                expand_op_ms,
                expand_reference_ms,
                sample_device_ms,
                sample_host_ms,
                sample_nodes_on_host,
            };
            eprintln!(
                "{name:8} W{w:<2} L{l}  packed {p:3}/{g:3} ({:.2}x)  op tree {op_tree_ms:8.3} ms  reference tree {reference_tree_ms:8.3} ms  op dense {op_dense_ms:8.3} ms  relocate op {relocate_op_ms:7.3} ms / reference {relocate_reference_ms:7.3} ms  build op {build_op_ms:7.3} ms / reference {build_reference_ms:7.3} ms  expand op {expand_op_ms:7.3} ms / reference {expand_reference_ms:7.3} ms  sample device {sample_device_ms:7.3} ms ({sample_nodes_on_host} on host) / host {sample_host_ms:7.3} ms",
                row.compression
            );
            rows.push(row);
        }
        rows
    }
}

fn main() {
    let args = Args::parse();
    let kinds: Vec<BackendKind> = match &args.backends {
        Some(list) => list.split(',').map(|b| b.parse().expect("backend name")).collect(),
        None => redrafter::backends::ALL.into_iter().filter(|k| k.is_compiled() && !k.is_cuda()).collect(),
    };
    let mut all = vec![];
    for kind in kinds {
        match run_on(kind, Bench(args.clone(), kind.to_string())) {
            Ok(rows) => all.extend(rows),
            Err(e) => eprintln!("skipped {kind}: {e}"),
        }
    }
    std::fs::create_dir_all(&args.out).expect("create --out");
    std::fs::write(args.out.join("kernels.json"), serde_json::to_string_pretty(&all).expect("json")).expect("write json");
    let mut series = vec![];
    let backends: Vec<String> = all.iter().map(|r| r.backend.clone()).fold(vec![], |mut v, b| { if !v.contains(&b) { v.push(b) } v });
    for b in &backends {
        let pick = |f: fn(&Row) -> f64| all.iter().filter(|r| &r.backend == b).map(|r| (r.grid_tokens as f64, f(r))).collect::<Vec<_>>();
        series.push(Series { name: format!("{b} op, tree"), points: pick(|r| r.op_tree_ms) });
        series.push(Series { name: format!("{b} reference, tree"), points: pick(|r| r.reference_tree_ms) });
        series.push(Series { name: format!("{b} op, dense grid"), points: pick(|r| r.op_dense_ms) });
    }
    let svg = line_chart("Tree attention, one layer (SmolLM2-135M shape)", "beam grid tokens W·L", "ms (median)", &series);
    std::fs::write(args.out.join("kernels.svg"), svg).expect("write svg");
    println!("| backend | W×L | packed / grid | op tree ms | reference tree ms | op dense ms | relocate op / ref ms | build op / ref ms | expand op / ref ms | sampled draws device / host ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &all {
        println!(
            "| {} | {}×{} | {}/{} ({:.2}x) | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} |",
            r.backend, r.width, r.length, r.packed_tokens, r.grid_tokens, r.compression, r.op_tree_ms, r.reference_tree_ms, r.op_dense_ms, r.relocate_op_ms, r.relocate_reference_ms,
            r.build_op_ms, r.build_reference_ms, r.expand_op_ms, r.expand_reference_ms, r.sample_device_ms, r.sample_host_ms
        );
    }
}
