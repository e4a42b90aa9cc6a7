//! What one forward pass consumes: a block of new tokens per row, attending to
//! `[committed cache | the block itself]` through `redrafter_kernels::tree_attention`.
//!
//! The block may be a causal run (prefill, autoregressive step) or a packed token tree (ReDrafter
//! verification); the difference lives entirely in the block mask.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_kernels::bits;

/// What one forward pass consumes: a right-padded block of tokens per row.
#[derive(Debug, Clone)]
pub struct BlockInput<B: Backend> {
    /// [B, T]
    pub tokens: Tensor<B, 2, Int>,
    /// [B, T] absolute positions (committed length + depth for tree tokens).
    pub positions: Tensor<B, 2, Int>,
    /// [B, T, words(T)] bitsets (`redrafter_kernels::bits`): bit j of query i = it may attend to
    /// block key j. Every query must see itself.
    pub mask: Tensor<B, 3, Int>,
    /// A prefill: the projections may take a path whose bits for a token depend on the block's
    /// size (a packing GEMM above `redrafter_kernels::skinny_matmul::MAX_ROWS` rows), which is
    /// faster for hundreds of rows. Decode steps, autoregressive or tree, leave it `false`: there
    /// every token gets the bits it gets alone, which keeps greedy ReDrafter lossless. Both
    /// strategies share one prefill, so it may use the fast path.
    pub prefill: bool,
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

    /// [`causal`](Self::causal) marked as a prefill (see [`prefill`](Self::prefill)): the rows'
    /// prompts from position `start[b]`, or any long causal run whose states only the caller
    /// reads (training features).
    pub fn prefill(rows: &[Vec<u32>], start: &[usize], device: &B::Device) -> Self {
        Self { prefill: true, ..Self::causal(rows, start, device) }
    }

    /// Builds a block from host buffers laid out row-major ([B, T], [B, T], and the boolean mask
    /// [B, T, T], packed here into bitsets).
    pub fn from_host(tokens: Vec<i64>, positions: Vec<i64>, mask: Vec<bool>, b: usize, t: usize, device: &B::Device) -> Self {
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [b, t]), device),
            positions: Tensor::from_data(TensorData::new(positions, [b, t]), device),
            mask: bits::mask_tensor(&mask, b, t, device),
            prefill: false,
        }
    }

    pub fn dims(&self) -> [usize; 2] {
        self.tokens.dims()
    }
}
