//! Attention of a block of new queries over `[committed cache | the block itself]`.
//!
//! This is the portable reference path written with plain tensor ops. The block may be a causal
//! run (prefill, autoregressive step) or a packed token tree (ReDrafter verification); the
//! difference lives entirely in the block mask.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Added to the scores of keys a query must not see. Finite, so a fully masked cache part cannot
/// produce NaN (every query at least sees itself in the block).
pub const MASKED: f32 = -1.0e9;

/// What one forward pass consumes: a right-padded block of tokens per row.
#[derive(Debug, Clone)]
pub struct BlockInput<B: Backend> {
    /// [B, T]
    pub tokens: Tensor<B, 2, Int>,
    /// [B, T] absolute positions (committed length + depth for tree tokens).
    pub positions: Tensor<B, 2, Int>,
    /// [B, T, T]: `mask[b, i, j]` = query i may attend to block key j. Every query must see itself.
    pub mask: Tensor<B, 3, Bool>,
}

impl<B: Backend> BlockInput<B> {
    /// Causal blocks: row `b` holds `rows[b]` at positions `start[b]..`. Shorter rows are padded
    /// with filler slots that attend only to themselves (their outputs are meaningless, and
    /// the caller never commits them).
    pub fn causal(rows: &[Vec<u32>], start: &[usize], device: &B::Device) -> Self {
        let b = rows.len();
        let t = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut tokens = vec![0i64; b * t];
        let mut positions = vec![0i64; b * t];
        let mut mask = vec![false; b * t * t];
        for (r, row) in rows.iter().enumerate() {
            for i in 0..t {
                let real = i < row.len();
                tokens[r * t + i] = if real { row[i] as i64 } else { 0 };
                positions[r * t + i] = (start[r] + if real { i } else { 0 }) as i64;
                for j in 0..t {
                    mask[(r * t + i) * t + j] = if real { j <= i } else { j == i };
                }
            }
        }
        Self::from_host(tokens, positions, mask, b, t, device)
    }

    /// Builds a block from host buffers laid out row-major ([B, T], [B, T], [B, T, T]).
    pub fn from_host(tokens: Vec<i64>, positions: Vec<i64>, mask: Vec<bool>, b: usize, t: usize, device: &B::Device) -> Self {
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [b, t]), device),
            positions: Tensor::from_data(TensorData::new(positions, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t, t]), device),
        }
    }

    pub fn dims(&self) -> [usize; 2] {
        self.tokens.dims()
    }
}

/// Additive biases for one forward: which committed slots each row may see, and the block mask.
#[derive(Debug, Clone)]
pub struct AttentionBias<B: Backend> {
    /// [B, 1, 1, S]; `None` when no row has committed tokens.
    pub cache: Option<Tensor<B, 4>>,
    /// [B, 1, T, T]
    pub block: Tensor<B, 4>,
}

impl<B: Backend> AttentionBias<B> {
    pub fn new(cache_lens: &[usize], block_mask: &Tensor<B, 3, Bool>, device: &B::Device) -> Self {
        let b = cache_lens.len();
        let s = cache_lens.iter().copied().max().unwrap_or(0);
        let cache = (s > 0).then(|| {
            let bias: Vec<f32> = cache_lens
                .iter()
                .flat_map(|&len| (0..s).map(move |j| if j < len { 0.0 } else { MASKED }))
                .collect();
            Tensor::from_data(TensorData::new(bias, [b, 1, 1, s]), device)
        });
        let [_, t, _] = block_mask.dims();
        let block = Tensor::<B, 3>::zeros([b, t, t], device).mask_fill(block_mask.clone().bool_not(), MASKED);
        Self { cache, block: block.reshape([b, 1, t, t]) }
    }
}

/// `q`: [B, H, T, D]; committed `kc`, `vc`: [B, Hkv, S, D]; block `kb`, `vb`: [B, Hkv, T, D].
/// Returns [B, H, T, D]. Query head `h` reads key/value head `h / (H / Hkv)`.
pub fn block_attention<B: Backend>(
    q: Tensor<B, 4>,
    committed: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    kb: Tensor<B, 4>,
    vb: Tensor<B, 4>,
    bias: &AttentionBias<B>,
) -> Tensor<B, 4> {
    let [b, h, t, d] = q.dims();
    let hkv = kb.dims()[1];
    let g = h / hkv;
    let scale = 1.0 / (d as f64).sqrt();
    // Grouping the query heads of one KV head along the row axis avoids materialising repeated K/V.
    let q = q.reshape([b, hkv, g * t, d]).mul_scalar(scale);

    let block_scores = q.clone().matmul(kb.swap_dims(2, 3)).reshape([b, hkv, g, t, t]);
    let block_scores = (block_scores + bias.block.clone().unsqueeze_dim::<5>(1)).reshape([b, hkv, g * t, t]);

    let out = match (committed, &bias.cache) {
        (Some((kc, vc)), Some(cache_bias)) if kc.dims()[2] > 0 => {
            let s = kc.dims()[2];
            let cache_scores = q.matmul(kc.swap_dims(2, 3)) + cache_bias.clone();
            let probs = softmax(Tensor::cat(vec![cache_scores, block_scores], 3), 3);
            let pc = probs.clone().slice([0..b, 0..hkv, 0..g * t, 0..s]);
            let pb = probs.slice([0..b, 0..hkv, 0..g * t, s..s + t]);
            pc.matmul(vc) + pb.matmul(vb)
        }
        _ => softmax(block_scores, 3).matmul(vb),
    };
    out.reshape([b, h, t, d])
}
