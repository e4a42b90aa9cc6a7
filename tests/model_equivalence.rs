//! The model computes the same function however it is fed: from GGUF or safetensors, in one
//! block or token by token, as a linear sequence or as a branch of a packed token tree, alone or
//! in a ragged batch.

use redrafter::KernelBackend;
use redrafter_io::GgmlType;
use redrafter_llama::{BlockInput, Llama};
use redrafter_llama::WeightFormat;
use redrafter_tests::{assert_close, backend_tests, tiny_gguf_model, tiny_gguf_model_as, tiny_hf_model, to_vec};

const TOL: f32 = 2e-4;

/// Logits of every position of `tokens` run as one causal block from an empty cache.
fn full_logits<B: KernelBackend>(model: &Llama<B>, tokens: &[u32], device: &B::Device) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(1, 64, device);
    let out = model.forward(&BlockInput::causal(&[tokens.to_vec()], &[0], device), &mut cache);
    let v = model.config().vocab_size;
    to_vec(out.logits).chunks(v).map(<[f32]>::to_vec).collect()
}

fn gguf_and_safetensors_load_the_same_model<B: KernelBackend>(device: B::Device) {
    let a = tiny_gguf_model::<B>(3, GgmlType::F32, &device);
    let b = tiny_hf_model::<B>(3, &device);
    // GGUF stores eps as f32 (9.9999997e-6 for 1e-5); everything else must match exactly.
    let (ca, cb) = (a.model.config(), b.model.config());
    assert!((ca.rms_norm_eps - cb.rms_norm_eps).abs() < 1e-12);
    assert_eq!(&redrafter_llama::LlamaConfig { rms_norm_eps: cb.rms_norm_eps, ..ca.clone() }, cb);
    let toks = [5, 80, 17, 200, 9, 1, 33];
    let (la, lb) = (full_logits(&a.model, &toks, &device), full_logits(&b.model, &toks, &device));
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        assert_close(x, y, TOL, &format!("position {i}"));
    }
    let text = "the weather is hot";
    assert_eq!(a.tokenizer.encode(text).unwrap(), b.tokenizer.encode(text).unwrap());
}

fn quantized_weights_stay_close_to_f32<B: KernelBackend>(device: B::Device) {
    let toks = [5, 80, 17, 200];
    let reference = full_logits(&tiny_gguf_model::<B>(4, GgmlType::F32, &device).model, &toks, &device);
    // Tolerances relative to the largest logit: loose for 4-bit, but a wrong block layout or
    // scale gives errors of the order of the logits themselves.
    let scale = reference[3].iter().fold(0f32, |m, v| m.max(v.abs()));
    for (ty, rel) in [(GgmlType::F16, 0.005), (GgmlType::Q8_0, 0.05), (GgmlType::Q4_1, 0.3), (GgmlType::Q4_0, 0.3)] {
        let q = full_logits(&tiny_gguf_model::<B>(4, ty, &device).model, &toks, &device);
        assert_close(&q[3], &reference[3], rel * scale, &format!("{ty:?} vs f32 (max |logit| {scale})"));
    }
}

/// The same file run on its own blocks against its blocks widened to f32: with f32 activations
/// (`native`) every format differs only by summation order; `native-q8` also rounds the
/// activations to 8 bits per block, as llama.cpp does, which is what its tolerance allows.
fn block_weights_match_their_widened_f32<B: KernelBackend>(device: B::Device) {
    let toks = [5, 80, 17, 200];
    for (ty, weights, rel) in [
        (GgmlType::F16, WeightFormat::Native, 1e-5),
        (GgmlType::BF16, WeightFormat::Native, 1e-5),
        (GgmlType::Q8_0, WeightFormat::Native, 1e-5),
        (GgmlType::Q4_1, WeightFormat::Native, 1e-5),
        (GgmlType::Q4_0, WeightFormat::Native, 1e-5),
        (GgmlType::Q8_0, WeightFormat::NativeQ8, 0.02),
        (GgmlType::Q4_1, WeightFormat::NativeQ8, 0.02),
        (GgmlType::Q4_0, WeightFormat::NativeQ8, 0.02),
        (GgmlType::F32, WeightFormat::F16, 0.005),
    ] {
        let dense = full_logits(&tiny_gguf_model::<B>(4, ty, &device).model, &toks, &device);
        let blocks = full_logits(&tiny_gguf_model_as::<B>(4, ty, weights, &device).model, &toks, &device);
        let scale = dense[3].iter().fold(0f32, |m, v| m.max(v.abs()));
        for p in 0..toks.len() {
            assert_close(&blocks[p], &dense[p], rel * scale, &format!("{ty:?} as {weights:?}, position {p} (max |logit| {scale})"));
        }
    }
}

fn incremental_decoding_matches_one_block<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(5, GgmlType::F32, &device).model;
    let toks: Vec<u32> = vec![7, 3, 99, 150, 42, 8, 8, 260, 1, 64];
    let full = full_logits(&m, &toks, &device);
    let mut cache = m.new_cache(1, 32, &device);
    let out = m.forward(&BlockInput::causal(&[toks[..4].to_vec()], &[0], &device), &mut cache);
    cache.commit(&[vec![0, 1, 2, 3]]).unwrap();
    let v = m.config().vocab_size;
    assert_close(&to_vec(out.logits)[3 * v..], &full[3], TOL, "prefill");
    for p in 4..toks.len() {
        let out = m.forward(&BlockInput::causal(&[vec![toks[p]]], &[p], &device), &mut cache);
        cache.commit(&[vec![0]]).unwrap();
        assert_close(&to_vec(out.logits), &full[p], TOL, &format!("step {p}"));
    }
    assert_eq!(cache.lens(), &[toks.len()]);
}

/// A packed tree over committed [a b c]: node 0 = x (depth 0), 1 = y and 2 = z (children of x),
/// 3 = w (child of z). Each node must see exactly its own path.
fn tree_block_matches_linear_paths<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(6, GgmlType::F32, &device).model;
    let v = m.config().vocab_size;
    let prefix = [11u32, 22, 33];
    let (x, y, z, w, q) = (44u32, 55, 66, 77, 88);
    let mut cache = m.new_cache(1, 32, &device);
    m.forward(&BlockInput::causal(&[prefix.to_vec()], &[0], &device), &mut cache);
    cache.commit(&[vec![0, 1, 2]]).unwrap();

    #[rustfmt::skip]
    let mask = vec![
        true,  false, false, false,
        true,  true,  false, false,
        true,  false, true,  false,
        true,  false, true,  true,
    ];
    let input = BlockInput::<B>::from_host(
        [x, y, z, w].iter().map(|&t| t as i64).collect(),
        vec![3, 4, 4, 5],
        mask,
        1,
        4,
        &device,
    );
    let tree = to_vec(m.forward(&input, &mut cache).logits);
    let path = |toks: &[u32]| full_logits(&m, toks, &device).pop().unwrap();
    assert_close(&tree[..v], &path(&[11, 22, 33, x]), TOL, "x");
    assert_close(&tree[v..2 * v], &path(&[11, 22, 33, x, y]), TOL, "y");
    assert_close(&tree[2 * v..3 * v], &path(&[11, 22, 33, x, z]), TOL, "z");
    assert_close(&tree[3 * v..], &path(&[11, 22, 33, x, z, w]), TOL, "w");

    // Accept the path x -> z -> w (packed 0, 2, 3): the cache must now hold exactly that sequence.
    cache.commit(&[vec![0, 2, 3]]).unwrap();
    let next = to_vec(m.forward(&BlockInput::causal(&[vec![q]], &[6], &device), &mut cache).logits);
    assert_close(&next, &path(&[11, 22, 33, x, z, w, q]), TOL, "after relocation");
}

fn ragged_batch_matches_single_rows<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(7, GgmlType::F32, &device).model;
    let v = m.config().vocab_size;
    let rows: Vec<Vec<u32>> = vec![vec![3, 4, 5], vec![9, 8, 7, 6, 5, 4, 3], vec![100, 101, 102, 103, 104]];
    let mut cache = m.new_cache(3, 32, &device);
    let out = to_vec(m.forward(&BlockInput::causal(&rows, &[0, 0, 0], &device), &mut cache).logits);
    cache.commit(&rows.iter().map(|r| (0..r.len()).collect()).collect::<Vec<_>>()).unwrap();
    assert_eq!(cache.lens(), &[3, 7, 5]);
    let t = 7;
    for (r, row) in rows.iter().enumerate() {
        let last = (r * t + row.len() - 1) * v;
        assert_close(&out[last..last + v], full_logits(&m, row, &device).last().unwrap(), TOL, &format!("row {r}"));
    }
    // One more token per row at its own position, then drop the middle row.
    let next: Vec<Vec<u32>> = vec![vec![1], vec![2], vec![3]];
    let input = BlockInput::<B>::from_host(vec![1, 2, 3], vec![3, 7, 5], vec![true; 3], 3, 1, &device);
    let step = to_vec(m.forward(&input, &mut cache).logits);
    cache.commit(&[vec![0], vec![0], vec![0]]).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let seq: Vec<u32> = row.iter().chain(&next[r]).copied().collect();
        assert_close(&step[r * v..(r + 1) * v], full_logits(&m, &seq, &device).last().unwrap(), TOL, &format!("step row {r}"));
    }
    cache.retain_rows(&[0, 2]);
    assert_eq!(cache.lens(), &[4, 6]);
    let input = BlockInput::causal(&[vec![50], vec![60]], &[4, 6], &device);
    let after = to_vec(m.forward(&input, &mut cache).logits);
    let seq2: Vec<u32> = rows[2].iter().chain(&[3, 60]).copied().collect();
    assert_close(&after[v..], full_logits(&m, &seq2, &device).last().unwrap(), TOL, "after retain_rows");
}

fn truncate_rolls_back<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(8, GgmlType::F32, &device).model;
    let mut cache = m.new_cache(1, 32, &device);
    m.forward(&BlockInput::causal(&[vec![1, 2, 3, 4, 5]], &[0], &device), &mut cache);
    cache.commit(&[vec![0, 1, 2, 3, 4]]).unwrap();
    cache.truncate(0, 2);
    let out = to_vec(m.forward(&BlockInput::causal(&[vec![9]], &[2], &device), &mut cache).logits);
    assert_close(&out, full_logits(&m, &[1, 2, 9], &device).last().unwrap(), TOL, "after truncate");
    assert!(cache.commit(&[vec![1]]).is_err(), "index outside the block is rejected");
}

/// A decode step of more rows than the host kernels take in one call (70 here; a batch of 22
/// W1 L3 trees is 66) gives each row the logits it gets alone: on Flex bit for bit (what keeps
/// greedy ReDrafter lossless at any batch size), elsewhere within rounding. A prefill block
/// (`BlockInput::prefill`, which may take a packing GEMM there) stays within rounding of the
/// decode path, for dense and block weights.
fn wide_steps_give_each_row_its_own_logits<B: KernelBackend>(device: B::Device) {
    let exact = <B as redrafter_kernels::BlockMatmulOps>::host_resident();
    for (ty, weights) in [(GgmlType::F32, WeightFormat::F32), (GgmlType::Q4_1, WeightFormat::Native)] {
        let m = tiny_gguf_model_as::<B>(9, ty, weights, &device).model;
        let v = m.config().vocab_size;
        let rows: Vec<Vec<u32>> = (0..70u32).map(|r| vec![3 + r, 90 + 2 * r, 7 + (r * 5) % 60]).collect();
        let step = |rows: &[Vec<u32>], prefill: bool| {
            let b = rows.len();
            let mut cache = m.new_cache(b, 8, &device);
            let input = if prefill { BlockInput::prefill(rows, &vec![0; b], &device) } else { BlockInput::causal(rows, &vec![0; b], &device) };
            let first = to_vec(m.forward(&input, &mut cache).logits);
            cache.commit(&vec![vec![0, 1, 2]; b]).unwrap();
            let next: Vec<i64> = rows.iter().map(|r| (r[0] + 8) as i64).collect();
            let input = BlockInput::<B>::from_host(next, vec![3; b], vec![true; b], b, 1, &device);
            (first, to_vec(m.forward(&input, &mut cache).logits))
        };
        let (first, wide) = step(&rows, false);
        for r in [0usize, 40, 69] {
            let (one_first, alone) = step(&rows[r..r + 1], false);
            let what = format!("{ty:?} as {weights:?}, row {r} of 70");
            if exact {
                assert_eq!(&first[r * 3 * v..(r + 1) * 3 * v], &one_first[..], "{what}: prompt logits");
                assert_eq!(&wide[r * v..(r + 1) * v], &alone[..], "{what}: step logits");
            } else {
                assert_close(&wide[r * v..(r + 1) * v], &alone, TOL, &what);
            }
        }
        let (pre_first, pre_wide) = step(&rows, true);
        let tol = TOL.max(1e-5 * first.iter().fold(0f32, |a, x| a.max(x.abs())));
        assert_close(&pre_first, &first, tol, &format!("{ty:?} as {weights:?}: prefill block"));
        assert_close(&pre_wide, &wide, tol, &format!("{ty:?} as {weights:?}: step after a prefill block"));
    }
}

backend_tests!(
    gguf_and_safetensors_load_the_same_model,
    quantized_weights_stay_close_to_f32,
    block_weights_match_their_widened_f32,
    incremental_decoding_matches_one_block,
    tree_block_matches_linear_paths,
    ragged_batch_matches_single_rows,
    truncate_rolls_back,
    wide_steps_give_each_row_its_own_logits,
);
