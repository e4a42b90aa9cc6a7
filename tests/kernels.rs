//! The fused ops of `redrafter_kernels` on every backend, against their tensor-op reference and
//! against plain host loops: the spec's golden trees, then a grid of batch, W, L, heads, head dims
//! and ragged committed lengths. On ndarray/flex the op *is* the reference, so there the host
//! loops are the independent check; on wgpu/cuda the op is the `#[cube]` kernel.

use burn::tensor::{DType, Int, Tensor, TensorData};
use redrafter::KernelBackend;
use redrafter_io::GgmlType;
use redrafter::tree::PackedTree;
use redrafter_kernels::block_matmul::Activations;
use redrafter_kernels::warp_top_k::{LOG_ZERO, WARP_TOP_K};
use redrafter_kernels::{BlockMatrix, beam_merge, bits, block_matmul, block_matmul_prefill, kv_relocate, prefill_matmul, rotary, skinny_matmul, swiglu, tree_attention, tree_build, warp_top_k};
use redrafter_tests::{Rng, TF32_REL, assert_close, backend_tests, tf32_matmul, to_vec};

/// One tree-attention problem. `mask` is [b, t, t]; committed slots `0..lens[r]` of row r.
struct Case {
    b: usize,
    h: usize,
    hkv: usize,
    d: usize,
    t: usize,
    lens: Vec<usize>,
    mask: Vec<bool>,
}

/// softmax(q·kᵀ·scale) v over the visible keys, in f64, one query at a time.
#[allow(clippy::too_many_arguments)]
fn host_attention(c: &Case, q: &[f32], kc: &[f32], vc: &[f32], s: usize, kb: &[f32], vb: &[f32], scale: f64) -> Vec<f32> {
    let (b, h, hkv, t, d) = (c.b, c.h, c.hkv, c.t, c.d);
    let g = h / hkv;
    let mut out = vec![0f32; b * h * t * d];
    for r in 0..b {
        for hh in 0..h {
            let kv = hh / g;
            for i in 0..t {
                // q is laid out [b, t, h, d] (the model's layout before its head swap).
                let qv = &q[((r * t + i) * h + hh) * d..][..d];
                let mut keys: Vec<(&[f32], &[f32])> = vec![];
                for j in 0..c.lens[r] {
                    let at = ((r * hkv + kv) * s + j) * d;
                    keys.push((&kc[at..at + d], &vc[at..at + d]));
                }
                for j in 0..t {
                    if c.mask[(r * t + i) * t + j] {
                        let at = ((r * hkv + kv) * t + j) * d;
                        keys.push((&kb[at..at + d], &vb[at..at + d]));
                    }
                }
                let scores: Vec<f64> =
                    keys.iter().map(|(k, _)| qv.iter().zip(*k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale).collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = w.iter().sum();
                for dd in 0..d {
                    let o: f64 = keys.iter().zip(&w).map(|((_, v), wi)| wi * v[dd] as f64).sum();
                    out[((r * h + hh) * t + i) * d + dd] = (o / z) as f32;
                }
            }
        }
    }
    out
}

fn check_tree_attention<B: KernelBackend>(device: &B::Device, c: &Case, seed: u64, what: &str) {
    check_tree_attention_in::<B>(device, c, seed, what, DType::F32);
}

/// The op on tensors of `dtype`, against f64 host loops over the same (rounded) inputs and against
/// the reference. Half-precision tensors must be accumulated in f32, so the only error left is the
/// output's own rounding to `dtype`.
fn check_tree_attention_in<B: KernelBackend>(device: &B::Device, c: &Case, seed: u64, what: &str, dtype: DType) {
    let mut rng = Rng(seed);
    let (b, h, hkv, t, d) = (c.b, c.h, c.hkv, c.t, c.d);
    let s = c.lens.iter().copied().max().unwrap_or(0);
    // The cache has spare capacity beyond the longest row, as in decoding.
    let cap = s + 3;
    let q = rng.floats(b * t * h * d);
    let kc = rng.floats(b * hkv * cap * d);
    let vc = rng.floats(b * hkv * cap * d);
    let kb = rng.floats(b * hkv * t * d);
    let vb = rng.floats(b * hkv * t * d);
    let f4 = |v: &[f32], shape: [usize; 4]| Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), shape), device).cast(dtype);
    // What the host loops see: the inputs as rounded to `dtype` on the device.
    let rounded = |v: &[f32]| to_vec(f4(v, [1, 1, 1, v.len()]).cast(DType::F32));
    let (q, kc, vc, kb, vb) = (rounded(&q), rounded(&kc), rounded(&vc), rounded(&kb), rounded(&vb));
    let qt = f4(&q, [b, t, h, d]).swap_dims(1, 2);
    let committed = (s > 0).then(|| {
        let cut = |x: Tensor<B, 4>| x.slice([0..b, 0..hkv, 0..s, 0..d]);
        (cut(f4(&kc, [b, hkv, cap, d])), cut(f4(&vc, [b, hkv, cap, d])))
    });
    let lens = Tensor::<B, 1, Int>::from_data(TensorData::new(c.lens.iter().map(|&l| l as i64).collect::<Vec<_>>(), [b]), device);
    let mask = bits::mask_tensor::<B>(&c.mask, b, t, device);
    let (kbt, vbt) = (f4(&kb, [b, hkv, t, d]), f4(&vb, [b, hkv, t, d]));
    let scale = 1.0 / (d as f32).sqrt();

    let out = tree_attention(qt.clone(), committed.clone(), lens.clone(), kbt.clone(), vbt.clone(), mask.clone(), scale);
    assert_eq!(out.dtype(), dtype, "{what}: output dtype");
    let out = to_vec(out.cast(DType::F32));
    let reference = redrafter_kernels::tree_attention::reference::tree_attention(qt, committed, lens, kbt, vbt, mask, scale);
    let reference = to_vec(reference.cast(DType::F32));
    // The host copy of the committed keys must use the sliced layout [b, hkv, s, d].
    let slice = |x: &[f32]| -> Vec<f32> {
        (0..b * hkv).flat_map(|bh| x[bh * cap * d..(bh * cap + s) * d].to_vec()).collect()
    };
    let host = host_attention(c, &q, &slice(&kc), &slice(&vc), s, &kb, &vb, scale as f64);
    // Outputs are averages of values in [-1, 1]: half an ulp below 1 is 2^-12 in f16 and 2^-9 in
    // bf16. A half-precision running sum was 2 ulps off on the spec's tree.
    let (host_tol, ulp) = match dtype {
        DType::F16 => (2f32.powi(-12) + 2e-5, 2f32.powi(-10)),
        DType::BF16 => (2f32.powi(-9) + 2e-5, 2f32.powi(-7)),
        _ => (2e-5, 0.0),
    };
    assert_close(&out, &host, host_tol, &format!("{what} ({dtype:?}): op vs host"));
    // The reference's score and value matmuls run in TF32 on CUDA (the kernel does not). In half
    // precision the two may round one output to neighbouring values.
    let ref_tol = if tf32_matmul::<B>(device) { 5e-3 } else { 2e-5 };
    assert_close(&out, &reference, ref_tol + ulp, &format!("{what} ({dtype:?}): op vs reference"));
}

/// Random beams over a small alphabet (so prefixes are shared and deduplicated), one shared root.
fn random_tree(rng: &mut Rng, rows: usize, w: usize, l: usize) -> PackedTree {
    let beams: Vec<u32> = (0..rows * w * l).map(|i| if i % l == 0 { 7 } else { rng.below(3) as u32 }).collect();
    PackedTree::build(&beams, rows, w, l)
}

/// Spec §3.8: one row, W = 3, L = 4, packed into 8 nodes, after 5 committed tokens.
fn spec_3_8_case() -> Case {
    let mars = PackedTree::build(&[101, 102, 103, 104, 101, 102, 203, 204, 101, 102, 303, 104], 1, 3, 4);
    Case { b: 1, h: 4, hkv: 2, d: 16, t: mars.max_packed, lens: vec![5], mask: mars.ancestor_mask() }
}

fn tree_attention_on_golden_trees<B: KernelBackend>(device: B::Device) {
    check_tree_attention::<B>(&device, &spec_3_8_case(), 1, "spec 3.8");
    // Spec §10: two rows of 7 and 9 nodes (row 0 padded with self-only filler slots).
    let beams = [91, 92, 93, 95, 91, 92, 94, 96, 91, 92, 93, 97, 93, 94, 95, 92, 93, 95, 96, 93, 93, 94, 97, 96];
    let tree = PackedTree::build(&beams, 2, 3, 4);
    let case = Case { b: 2, h: 6, hkv: 2, d: 8, t: tree.max_packed, lens: vec![4, 9], mask: tree.ancestor_mask() };
    check_tree_attention::<B>(&device, &case, 2, "spec 10");
}

fn tree_attention_on_a_grid<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(99);
    let mut n = 0;
    for rows in [1, 3] {
        for (w, l) in [(1, 2), (2, 4), (4, 3), (8, 5)] {
            for (h, hkv, d) in [(2, 1, 8), (4, 2, 16), (3, 3, 64)] {
                let tree = random_tree(&mut rng, rows, w, l);
                // Ragged committed lengths, an empty row included when there are several.
                let lens: Vec<usize> = (0..rows).map(|r| if r == 1 { 0 } else { 1 + rng.below(40) }).collect();
                let case = Case { b: rows, h, hkv, d, t: tree.max_packed, lens, mask: tree.ancestor_mask() };
                check_tree_attention::<B>(&device, &case, n, &format!("rows {rows} W {w} L {l} H {h}/{hkv} D {d}"));
                n += 1;
            }
        }
    }
}

/// f16 and bf16 where the backend has them (CUDA both, wgpu f16 where the adapter has
/// shader-f16, Flex both through the reference; ndarray neither): the spec's tree, a grid, and a
/// long committed part, where a half-precision softmax sum would drift furthest.
fn tree_attention_in_half_precision<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(5);
    for dtype in [DType::F16, DType::BF16] {
        if !B::supports_dtype(&device, dtype) {
            eprintln!("{dtype:?} skipped: not supported by {}", B::name(&device));
            continue;
        }
        check_tree_attention_in::<B>(&device, &spec_3_8_case(), 1, "spec 3.8", dtype);
        for (rows, w, l, h, hkv, d) in [(2, 4, 3, 4, 2, 16), (3, 8, 5, 3, 3, 64)] {
            let tree = random_tree(&mut rng, rows, w, l);
            let lens: Vec<usize> = (0..rows).map(|r| if r == 1 { 0 } else { 1 + rng.below(40) }).collect();
            let case = Case { b: rows, h, hkv, d, t: tree.max_packed, lens, mask: tree.ancestor_mask() };
            check_tree_attention_in::<B>(&device, &case, 7, &format!("rows {rows} W {w} L {l} H {h}/{hkv} D {d}"), dtype);
        }
        let tree = random_tree(&mut rng, 2, 4, 4);
        let case = Case { b: 2, h: 9, hkv: 3, d: 64, t: tree.max_packed, lens: vec![600, 257], mask: tree.ancestor_mask() };
        check_tree_attention_in::<B>(&device, &case, 8, "committed 600 / 257", dtype);
    }
}

fn tree_attention_on_causal_blocks<B: KernelBackend>(device: B::Device) {
    // Prefill (nothing committed) with more than one 32-bit word per query, and ragged rows whose
    // filler slots attend only to themselves.
    let (b, t) = (2, 40);
    let real = [40, 33];
    let mask: Vec<bool> = (0..b * t * t)
        .map(|k| {
            let (r, i, j) = (k / (t * t), k / t % t, k % t);
            if i < real[r] { j <= i } else { j == i }
        })
        .collect();
    let case = Case { b, h: 4, hkv: 2, d: 8, t, lens: vec![0, 0], mask: mask.clone() };
    check_tree_attention::<B>(&device, &case, 3, "prefill");
    let case = Case { b, h: 4, hkv: 1, d: 8, t, lens: vec![17, 70], mask };
    check_tree_attention::<B>(&device, &case, 4, "causal block after a cache");
}

fn check_kv_relocate<B: KernelBackend>(device: &B::Device, keep: &[Vec<usize>], lens: &[usize], seed: u64) {
    let mut rng = Rng(seed);
    let (b, hkv, t, d) = (keep.len(), 2, 9, 8);
    let cap = lens.iter().zip(keep).map(|(l, k)| l + k.len()).max().unwrap() + 2;
    let cache = rng.floats(b * hkv * cap * d);
    let block = rng.floats(b * hkv * t * d);
    let width = keep.iter().map(Vec::len).max().unwrap().max(1);
    let mut src = vec![-1i64; b * width];
    for (r, k) in keep.iter().enumerate() {
        for (j, &i) in k.iter().enumerate() {
            src[r * width + j] = i as i64;
        }
    }
    let mut expected = cache.clone();
    for (r, k) in keep.iter().enumerate() {
        for hh in 0..hkv {
            for (j, &i) in k.iter().enumerate() {
                let to = ((r * hkv + hh) * cap + lens[r] + j) * d;
                let from = ((r * hkv + hh) * t + i) * d;
                expected[to..to + d].copy_from_slice(&block[from..from + d]);
            }
        }
    }
    let f4 = |v: &[f32], shape: [usize; 4]| Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), shape), device);
    let srct = Tensor::<B, 2, Int>::from_data(TensorData::new(src, [b, width]), device);
    let dst = Tensor::<B, 1, Int>::from_data(TensorData::new(lens.iter().map(|&l| l as i64).collect::<Vec<_>>(), [b]), device);
    let blockt = f4(&block, [b, hkv, t, d]);
    // A shared cache must be copied, not written through; a unique one is updated in place.
    let shared = f4(&cache, [b, hkv, cap, d]);
    let moved = kv_relocate(shared.clone(), blockt.clone(), srct.clone(), dst.clone());
    assert_eq!(to_vec(shared), cache, "the shared input cache was modified ({keep:?})");
    assert_eq!(to_vec(moved), expected, "shared-cache relocation ({keep:?})");
    let in_place = kv_relocate(f4(&cache, [b, hkv, cap, d]), blockt.clone(), srct.clone(), dst.clone());
    assert_eq!(to_vec(in_place), expected, "in-place relocation ({keep:?})");
    let reference = redrafter_kernels::kv_relocate::reference::kv_relocate(f4(&cache, [b, hkv, cap, d]), blockt, srct, dst);
    assert_eq!(to_vec(reference), expected, "reference relocation ({keep:?})");
}

fn kv_relocate_of_accepted_paths<B: KernelBackend>(device: B::Device) {
    // Spec §4.5's example: accepted path [0, 1, 4, 5] of the Mars tree after 20 committed tokens.
    check_kv_relocate::<B>(&device, &[vec![0, 1, 4, 5]], &[20], 1);
    // Ragged rows: different paths and lengths, nothing kept, identical rows at equal offsets.
    check_kv_relocate::<B>(&device, &[vec![0, 2, 7], vec![], vec![0, 1, 2, 3, 4], vec![0, 8]], &[3, 5, 0, 11], 2);
    check_kv_relocate::<B>(&device, &[vec![0, 3], vec![0, 3], vec![0, 3]], &[6, 6, 6], 3);
    check_kv_relocate::<B>(&device, &[vec![], vec![]], &[1, 2], 4);
}

/// `x · w` in f64 on the host, `w` given by element accessor.
fn host_matmul(m: usize, k: usize, n: usize, x: &[f32], w: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k).map(|c| x[i * k + c] as f64 * w(c, j) as f64).sum::<f64>() as f32;
        }
    }
    y
}

fn skinny_matmul_on_both_layouts<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(11);
    // Row counts of decode (1), trees (3..21), one kernel call (64) and chunks of them (65, 150);
    // k not a multiple of 4 or 8 exercises the kernels' tails; n crosses column blocks.
    // (5, 576, 1536) is large enough to be split between threads when the pool has several.
    let exact = <B as redrafter_kernels::BlockMatmulOps>::host_resident();
    for &(m, k, n) in &[(1, 576, 300), (3, 37, 513), (5, 576, 1536), (21, 64, 1000), (64, 24, 260), (65, 16, 70), (150, 40, 90)] {
        let x = rng.floats(m * k);
        let w = rng.floats(k * n);
        let e = rng.floats(n * k);
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [m, k]), &device);
        let wt = Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [k, n]), &device);
        // The tied output head's case: w is a transposed view of a contiguous [n, k] table.
        let et = Tensor::<B, 2>::from_data(TensorData::new(e.clone(), [n, k]), &device).transpose();
        let what = format!("{m}x{k}x{n}");
        // The op is f32 on every backend; its reference, the backend's matmul, is TF32 on CUDA,
        // so that comparison allows TF32 input rounding: TF32_REL of the largest Σ|x||w|.
        let ref_tol = if tf32_matmul::<B>(&device) {
            let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let sum_w = host_matmul(m, k, n, &ax, |c, j| w[c * n + j].abs());
            let sum_e = host_matmul(m, k, n, &ax, |c, j| e[j * k + c].abs());
            1e-3 + TF32_REL * sum_w.iter().chain(&sum_e).fold(0f32, |a, &v| a.max(v))
        } else {
            1e-3
        };
        let got = to_vec(skinny_matmul(xt.clone(), wt.clone()));
        assert_close(&got, &host_matmul(m, k, n, &x, |c, j| w[c * n + j]), 1e-3, &format!("row-major {what}"));
        assert_close(&got, &to_vec(xt.clone().matmul(wt.clone())), ref_tol, &format!("row-major vs reference {what}"));
        // A row's bits do not depend on the other rows (Flex: what keeps greedy ReDrafter exact
        // at any batch size); the last row alone, against the whole call.
        let last = |t: &Tensor<B, 2>| to_vec(skinny_matmul(xt.clone().slice([m - 1..m, 0..k]), t.clone()));
        if exact {
            assert_eq!(last(&wt), got[(m - 1) * n..], "row-major {what}: last row alone");
        }
        let pre = to_vec(prefill_matmul(xt.clone(), wt.clone()));
        assert_close(&pre, &host_matmul(m, k, n, &x, |c, j| w[c * n + j]), ref_tol, &format!("prefill row-major {what}"));
        let got = to_vec(skinny_matmul(xt.clone(), et.clone()));
        assert_close(&got, &host_matmul(m, k, n, &x, |c, j| e[j * k + c]), 1e-3, &format!("transposed {what}"));
        assert_close(&got, &to_vec(xt.clone().matmul(et.clone())), ref_tol, &format!("transposed vs reference {what}"));
        if exact {
            assert_eq!(last(&et), got[(m - 1) * n..], "transposed {what}: last row alone");
        }
        let pre = to_vec(prefill_matmul(xt.clone(), et.clone()));
        assert_close(&pre, &host_matmul(m, k, n, &x, |c, j| e[j * k + c]), ref_tol, &format!("prefill transposed {what}"));
        // A view that is neither layout (a column slice).
        if n > 2 {
            let sliced = wt.clone().slice([0..k, 1..n - 1]);
            let got = to_vec(skinny_matmul(xt.clone(), sliced));
            assert_close(&got, &host_matmul(m, k, n - 2, &x, |c, j| w[c * n + j + 1]), 1e-3, &format!("strided {what}"));
        }
    }
}

/// The block-format matmul (host kernels; through a read-back off Flex) against its reference
/// in tensor ops, for every format, row counts of decode, trees and batches, and a column count
/// that crosses the kernels' 4- and 8-wide tiles and the thread split.
fn block_matmul_against_its_reference<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(12);
    let formats = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16];
    for &(m, k, n) in &[(1, 64, 37), (4, 576, 1536), (17, 96, 261), (64, 32, 9), (100, 64, 40)] {
        let x = rng.floats(m * k);
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [m, k]), &device);
        for (ty, act) in formats.into_iter().flat_map(|t| [Activations::F32, Activations::Q8].map(|a| (t, a))) {
            let w = BlockMatrix::from_f32(ty, n, k, &rng.floats(n * k)).unwrap().with_activations(act);
            let what = format!("{ty:?}/{act:?} {m}x{k}x{n}");
            let got = to_vec(block_matmul(xt.clone(), &w));
            let want = to_vec(block_matmul::reference(xt.clone(), &w));
            let tol = if tf32_matmul::<B>(&device) { 2e-2 } else { 1e-4 * (k as f32).sqrt() };
            assert_close(&got, &want, tol, &format!("{what} vs reference"));
            // The first row alone: the same bits as inside the call.
            let one = to_vec(block_matmul(xt.clone().slice([0..1, 0..k]), &w));
            assert_eq!(one, got[..n], "{what}: row 0 alone");
            let pre = to_vec(block_matmul_prefill(xt.clone(), &w));
            assert_close(&pre, &want, tol, &format!("{what}: prefill vs reference"));
        }
    }
}

/// Rotary embedding at explicit positions: the op against its reference (the same bits: on Flex
/// a host pass with the reference's products and sums, elsewhere the reference itself) and
/// against a host loop, on contiguous input and on the [B, T, H, D] → [B, H, T, D] view the model
/// passes, with tree-like repeated and out-of-order positions.
fn rotary_against_its_reference<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(21);
    for &(b, h, t, d, p) in &[(1, 9, 1, 64, 300), (2, 3, 5, 16, 40), (3, 4, 7, 8, 7)] {
        let half = d / 2;
        let x = rng.floats(b * t * h * d);
        let (cos, sin) = (rng.floats(p * half), rng.floats(p * half));
        let pos: Vec<i64> = (0..b * t).map(|_| rng.below(p) as i64).collect();
        let tab = |v: &[f32]| Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [p, half]), &device);
        let pt = Tensor::<B, 2, Int>::from_data(TensorData::new(pos.clone(), [b, t]), &device);
        // x is stored [b, t, h, d]; the op reads it as [b, h, t, d].
        let stored = Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [b, t, h, d]), &device);
        let host: Vec<f32> = (0..b * h * t * d)
            .map(|o| {
                let (bi, hi, ti, i) = (o / (h * t * d), o / (t * d) % h, o / d % t, o % d);
                let row = &x[((bi * t + ti) * h + hi) * d..][..d];
                let pr = pos[bi * t + ti] as usize * half;
                let (c, s) = (cos[pr + i % half], sin[pr + i % half]);
                if i < half { row[i] * c - row[i + half] * s } else { row[i] * c + row[i - half] * s }
            })
            .collect();
        let permuted: Vec<f32> = (0..b * h * t * d)
            .map(|o| x[((o / (h * t * d) * t + o / d % t) * h + o / (t * d) % h) * d + o % d])
            .collect();
        let contiguous = Tensor::<B, 4>::from_data(TensorData::new(permuted, [b, h, t, d]), &device);
        for (layout, xt) in [("strided", stored.swap_dims(1, 2)), ("contiguous", contiguous)] {
            let what = format!("b {b} h {h} t {t} d {d} ({layout})");
            let got = to_vec(rotary(xt.clone(), tab(&cos), tab(&sin), pt.clone()));
            let want = to_vec(redrafter_kernels::rotary::reference::rotary(xt, tab(&cos), tab(&sin), pt.clone()));
            assert_eq!(got, want, "{what}: op vs reference");
            assert_close(&got, &host, 1e-6, &format!("{what}: op vs host"));
        }
    }
}

/// The MLP's gated activation: the op against its reference and an f64 host loop, over gates
/// from −90 to 90 (both ends of the vector `exp`'s clamp), row lengths with and without a tail
/// of the 8-wide body, and a row alone against the same row inside a batch (the same bits).
fn swiglu_against_its_reference<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(23);
    for &(rows, n) in &[(1, 1536), (3, 1536), (4, 13), (2, 1)] {
        let gate: Vec<f32> = rng.floats(rows * n).iter().enumerate().map(|(i, g)| if i % 7 == 0 { g * 90.0 } else { g * 6.0 }).collect();
        let up = rng.floats(rows * n);
        let t = |v: &[f32], r: usize| Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [r, n]), &device);
        let what = format!("{rows} x {n}");
        let got = to_vec(swiglu(t(&gate, rows), t(&up, rows)));
        let want = to_vec(redrafter_kernels::swiglu::reference::swiglu(t(&gate, rows), t(&up, rows)));
        let host: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| (g as f64 / (1.0 + (-g as f64).exp()) * u as f64) as f32).collect();
        assert_close(&got, &host, 1e-4, &format!("{what}: op vs host"));
        assert_close(&got, &want, 1e-4, &format!("{what}: op vs reference"));
        let one = to_vec(swiglu(t(&gate[..n], 1), t(&up[..n], 1)));
        assert_eq!(one, got[..n], "{what}: row 0 alone");
    }
}

/// The device tree build against the host build padded to the op's slot count, field by field.
/// The kernel pads to W·L, the reference to the longest row. `beams` is [rows, W, L];
/// `transposed` feeds the op a strided view instead of a contiguous tensor.
fn check_tree_build<B: KernelBackend>(device: &B::Device, beams: &[u32], rows: usize, w: usize, l: usize, lens: &[usize], transposed: bool, what: &str) {
    let longest = PackedTree::build(beams, rows, w, l).max_packed;
    let ids: Vec<i64> = beams.iter().map(|&t| t as i64).collect();
    let beams_t = if transposed {
        let mut t = vec![0i64; ids.len()];
        for r in 0..rows {
            for i in 0..w {
                for k in 0..l {
                    t[(r * l + k) * w + i] = ids[(r * w + i) * l + k];
                }
            }
        }
        Tensor::<B, 3, Int>::from_data(TensorData::new(t, [rows, l, w]), device).swap_dims(1, 2)
    } else {
        Tensor::<B, 3, Int>::from_data(TensorData::new(ids, [rows, w, l]), device)
    };
    let lens_t = Tensor::<B, 1, Int>::from_data(TensorData::new(lens.iter().map(|&x| x as i64).collect::<Vec<_>>(), [rows]), device);
    let tree = tree_build(beams_t, lens_t);
    let n = tree.tokens.dims()[1];
    assert!(n == longest || n == w * l, "{what}: {n} slots, neither the longest row ({longest}) nor W·L");
    let host = PackedTree::build_padded(beams, rows, w, l, Some(n));
    let ints = |t: Tensor<B, 2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
    assert_eq!(tree.tokens.dims(), [rows, n], "{what}: tokens shape");
    assert_eq!(tree.mask.dims(), [rows, n, bits::words(n)], "{what}: bitset shape");
    assert_eq!(ints(tree.tokens), host.tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), "{what}: tokens");
    assert_eq!(ints(tree.positions), host.positions(lens), "{what}: positions");
    let unpack: Vec<i64> = tree.unpack.into_data().iter::<i64>().collect();
    assert_eq!(unpack, host.unpack.iter().map(|&u| u as i64).collect::<Vec<_>>(), "{what}: unpack");
    let packed: Vec<i64> = tree.packed_len.into_data().iter::<i64>().collect();
    assert_eq!(packed, host.packed_len.iter().map(|&p| p as i64).collect::<Vec<_>>(), "{what}: packed_len");
    // Words are i32 bit patterns; an i64 backend may hold them sign-extended.
    let words: Vec<i64> = tree.mask.into_data().iter::<i64>().map(|x| x & 0xffff_ffff).collect();
    let want: Vec<i64> = bits::pack_mask(&host.ancestor_mask(), rows, n).iter().map(|&x| x as i64 & 0xffff_ffff).collect();
    assert_eq!(words, want, "{what}: ancestor bitsets");
}

fn tree_build_against_the_host_build<B: KernelBackend>(device: B::Device) {
    let mars = [101, 102, 103, 104, 101, 102, 203, 204, 101, 102, 303, 104];
    check_tree_build::<B>(&device, &mars, 1, 3, 4, &[5], false, "spec 3.8");
    let two = [91, 92, 93, 95, 91, 92, 94, 96, 91, 92, 93, 97, 93, 94, 95, 92, 93, 95, 96, 93, 93, 94, 97, 96];
    check_tree_build::<B>(&device, &two, 2, 3, 4, &[4, 9], true, "spec 10");
    // Identical beams (everything deduplicated) and a single token.
    check_tree_build::<B>(&device, &[7, 8, 9, 7, 8, 9], 1, 2, 3, &[0], false, "duplicates");
    check_tree_build::<B>(&device, &[5], 1, 1, 1, &[3], false, "one token");
    let mut rng = Rng(2024);
    let mut cases = 0;
    // W·L past 32 and 64 slots: bitsets of two and three words.
    for rows in [1, 3] {
        for (w, l) in [(1, 4), (2, 2), (4, 3), (4, 5), (8, 5), (16, 3), (5, 8), (13, 5)] {
            for alphabet in [2, 3, 50] {
                let shared_root = alphabet != 50;
                let beams: Vec<u32> =
                    (0..rows * w * l).map(|i| if shared_root && i % l == 0 { 7 } else { rng.below(alphabet) as u32 }).collect();
                let lens: Vec<usize> = (0..rows).map(|_| rng.below(40)).collect();
                let what = format!("rows {rows}, W {w}, L {l}, alphabet {alphabet}");
                check_tree_build::<B>(&device, &beams, rows, w, l, &lens, cases % 2 == 1, &what);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 48);
}

/// Spec §2.2 step 2 for one row, by brute force: a full sort by (logit descending, id ascending),
/// the `min(50, V)`-th as threshold (ties kept), and an f64 log-sum-exp over the kept logits.
fn host_warp_top_k(row: &[f32], k: usize) -> Vec<(u32, f64)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let (max, thr) = (row[idx[0]] as f64, row[idx[WARP_TOP_K.min(row.len()) - 1]]);
    let lse = row.iter().filter(|&&l| l >= thr).map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    idx.iter()
        .take(k.min(row.len()))
        .map(|&t| (t as u32, if row[t] >= thr { row[t] as f64 - max - lse } else { LOG_ZERO as f64 - lse }))
        .collect()
}

fn check_warp_top_k<B: KernelBackend>(device: &B::Device, logits: &[f32], rows: usize, k: usize, transposed: bool, what: &str) {
    let v = logits.len() / rows;
    let t = if transposed {
        let mut tr = vec![0f32; logits.len()];
        for r in 0..rows {
            for j in 0..v {
                tr[j * rows + r] = logits[r * v + j];
            }
        }
        Tensor::<B, 2>::from_data(TensorData::new(tr, [v, rows]), device).transpose()
    } else {
        Tensor::<B, 2>::from_data(TensorData::new(logits.to_vec(), [rows, v]), device)
    };
    let (logq, ids) = warp_top_k(t, k);
    let kk = k.min(v);
    assert_eq!(ids.dims(), [rows, kk], "{what}: shape");
    let (logq, ids) = (to_vec(logq), ids.into_data().iter::<i64>().collect::<Vec<_>>());
    for r in 0..rows {
        let want = host_warp_top_k(&logits[r * v..(r + 1) * v], k);
        let got_ids: Vec<u32> = ids[r * kk..(r + 1) * kk].iter().map(|&i| i as u32).collect();
        assert_eq!(got_ids, want.iter().map(|w| w.0).collect::<Vec<_>>(), "{what}: row {r} ids");
        for (c, &(_, lq)) in want.iter().enumerate() {
            let got = logq[r * kk + c] as f64;
            // f32 arithmetic: one ulp of the value, and of the log-sum-exp folded into it.
            assert!((got - lq).abs() <= 2e-6 * lq.abs().max(1.0) + 1e-5, "{what}: row {r} column {c}: {got} vs {lq}");
        }
    }
}

/// The warp and per-beam top-k against the brute force: vocabularies below, at and above the
/// warp's 50 and the kernel's 128 units, a SmolLM2-sized row, k below and above 50, heavy ties at
/// the threshold and at the k-th (three values, or one), ±0, and strided rows.
fn warp_top_k_against_a_full_sort<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(77);
    let mut cases = 0;
    // Rows longer than the kernel's chunk (4096) take its chunk + merge launches: 4126 leaves a
    // last chunk shorter than the 50 kept, 9000 a short one longer than that.
    for v in [1, 7, 50, 51, 129, 1000, 4126, 9000, 49152] {
        for k in [1, 4, 16, 64] {
            let rows = if v > 1000 { 2 } else { 3 };
            let smooth: Vec<f32> = rng.floats(rows * v).iter().map(|x| x * 8.0).collect();
            check_warp_top_k::<B>(&device, &smooth, rows, k, cases % 2 == 1, &format!("V {v} k {k} smooth"));
            let tied: Vec<f32> = (0..rows * v).map(|_| [0.5, -0.0, 0.0, -1.0][rng.below(4)]).collect();
            check_warp_top_k::<B>(&device, &tied, rows, k, cases % 2 == 0, &format!("V {v} k {k} tied"));
            cases += 2;
        }
    }
    check_warp_top_k::<B>(&device, &vec![1.0; 2 * 300], 2, 60, false, "flat rows");
    let wide: Vec<f32> = rng.floats(3 * 500).iter().map(|x| x * 3e4).collect();
    check_warp_top_k::<B>(&device, &wide, 3, 55, false, "large logits, k > 50");
    // The 50th largest is +0 and the row's −0s count as kept (`l >= threshold`), wherever the
    // chunks put them: 20 values above zero, then ±0 in every chunk.
    for v in [1000, 9000, 49152] {
        let mut zeros: Vec<f32> = (0..2 * v).map(|_| [-0.0, 0.0, -1.0, -1.0][rng.below(4)]).collect();
        for r in 0..2 {
            for _ in 0..20 {
                zeros[r * v + rng.below(v)] = 0.5;
            }
        }
        check_warp_top_k::<B>(&device, &zeros, 2, 4, false, &format!("V {v}, ±0 at the threshold"));
        check_warp_top_k::<B>(&device, &zeros, 2, 64, true, &format!("V {v}, ±0 at the threshold, k 64"));
    }
    assert_eq!(cases, 72);
}

/// One expansion by brute force: every (parent, token) child with score + log q, sorted by score
/// (`total_cmp`), then parent, then token; the W best.
#[allow(clippy::type_complexity)]
fn host_merge(scores: &[f32], logq: &[f32], ids: &[i64], beams: &[i64], rows: usize, w: usize, s: usize, k: usize, t: usize)
-> (Vec<f32>, Vec<i64>, Vec<i64>) {
    let (mut out_s, mut out_r, mut out_b) = (vec![], vec![], vec![]);
    for b in 0..rows {
        let mut all = vec![];
        for i in 0..w {
            let row = b * s + i.min(s - 1);
            for c in 0..k {
                all.push((scores[b * w + i] + logq[row * k + c], i, ids[row * k + c], row));
            }
        }
        all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        for &(score, i, tok, row) in &all[..w] {
            out_s.push(score);
            out_r.push(row as i64);
            out_b.extend_from_slice(&beams[(b * w + i) * t..(b * w + i + 1) * t]);
            out_b.push(tok);
        }
    }
    (out_s, out_r, out_b)
}

/// The beam merge against the brute force, exactly: both candidate layouts (one row per beam, and
/// the first step's one row per batch row), and scores drawn from a few values so that equal
/// joint scores are common and the parent/token tie-breaks decide.
fn beam_merge_against_a_full_sort<B: KernelBackend>(device: B::Device) {
    let mut rng = Rng(99);
    for rows in [1, 3] {
        for w in [1, 2, 4, 8, 16] {
            for first in [true, false] {
                for t in [1, 3] {
                    let (s, k, vocab) = (if first { 1 } else { w }, w.min(12), 12);
                    let scores: Vec<f32> = (0..rows * w).map(|x| if first && x % w != 0 { LOG_ZERO } else { -(rng.below(3) as f32) }).collect();
                    let logq: Vec<f32> = (0..rows * s * k).map(|_| -(rng.below(4) as f32) * 0.5).collect();
                    // Distinct tokens within each candidate row.
                    let mut ids = vec![];
                    for _ in 0..rows * s {
                        let mut pool: Vec<i64> = (0..vocab).collect();
                        for _ in 0..k {
                            ids.push(pool.swap_remove(rng.below(pool.len())));
                        }
                    }
                    let beams: Vec<i64> = (0..rows * w * t).map(|_| rng.below(vocab as usize) as i64).collect();
                    let f = |v: Vec<f32>, d: [usize; 2]| Tensor::<B, 2>::from_data(TensorData::new(v, d), &device);
                    let merged = beam_merge(
                        f(scores.clone(), [rows, w]),
                        f(logq.clone(), [rows * s, k]),
                        Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [rows * s, k]), &device),
                        Tensor::<B, 3, Int>::from_data(TensorData::new(beams.clone(), [rows, w, t]), &device),
                    );
                    let (ws, wr, wb) = host_merge(&scores, &logq, &ids, &beams, rows, w, s, k, t);
                    let what = format!("rows {rows} W {w} first {first} t {t}");
                    assert_eq!(to_vec(merged.scores), ws, "{what}: scores");
                    assert_eq!(merged.rows.into_data().iter::<i64>().collect::<Vec<_>>(), wr, "{what}: source rows");
                    assert_eq!(merged.beams.dims(), [rows, w, t + 1], "{what}: beams shape");
                    assert_eq!(merged.beams.into_data().iter::<i64>().collect::<Vec<_>>(), wb, "{what}: beams");
                }
            }
        }
    }
}

backend_tests!(
    tree_attention_on_golden_trees,
    tree_attention_on_a_grid,
    tree_attention_on_causal_blocks,
    tree_attention_in_half_precision,
    kv_relocate_of_accepted_paths,
    rotary_against_its_reference,
    swiglu_against_its_reference,
    skinny_matmul_on_both_layouts,
    block_matmul_against_its_reference,
    tree_build_against_the_host_build,
    warp_top_k_against_a_full_sort,
    beam_merge_against_a_full_sort,
);
