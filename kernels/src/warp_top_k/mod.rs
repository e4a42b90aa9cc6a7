//! The drafter's warp and per-beam top-k (spec §1.4, §2.2 step 2, §2.4): for each row of drafter
//! logits, Apple's top-50 warp, the log-softmax over the kept logits, and the row's best `k`
//! tokens with their log-probs. Beam search takes `k = W`: the global top W of the W·V joint
//! scores is the top W of the union of each beam's own top W, which [`crate::beam_merge`] merges.
//!
//! Semantics, exactly those of the host [`reference::warp`]:
//! * order: logit descending, the lower token id first on ties (as `f32::total_cmp`);
//! * threshold: the `min(50, V)`-th largest logit counted with multiplicity; every logit
//!   `>= threshold` is kept (ties of the 50th included);
//! * `logq = l − max − ln Σ_kept exp(l − max)` for kept tokens, `LOG_ZERO − lse` for the rest
//!   (only reachable when `k > 50`).

pub mod reference;
#[cfg(feature = "cube")]
pub(crate) mod kernel;

pub use reference::{SparseLogProbs, Warped, warp};

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorPrimitive};

/// Apple's warp keeps the 50 largest drafter logits (and ties of the 50th).
pub const WARP_TOP_K: usize = 50;
/// The finite "log 0" the warp writes over every other logit.
pub const LOG_ZERO: f32 = -50000.0;

/// Logits per cube of the kernel's first launch when a row is split (the default).
pub const DEFAULT_CHUNK_LEN: usize = 4096;

static CHUNK_LEN: crate::setting::Setting = crate::setting::Setting::new();

/// How the `#[cube]` kernel splits a row: rows longer than this take one cube per chunk of this
/// many logits and then a merge (0: one cube per row, whatever its length). Decided on first use
/// from `REDRAFTER_TOP_K_CHUNK` unless [`set_chunk_len`] was called; both paths give the same
/// result, so this is a performance knob, for comparing them on a GPU.
pub fn chunk_len() -> usize {
    CHUNK_LEN.get(|| std::env::var("REDRAFTER_TOP_K_CHUNK").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_CHUNK_LEN))
}

/// Process-wide [`chunk_len`].
pub fn set_chunk_len(n: usize) {
    CHUNK_LEN.set(n);
}

/// `logits` [R, V] (f32) → (`logq` [R, min(k, V)] f32, `ids` [R, min(k, V)]), best first.
pub trait WarpTopKOps: Backend {
    fn warp_top_k(logits: FloatTensor<Self>, k: usize) -> (FloatTensor<Self>, IntTensor<Self>) {
        let (logq, ids) = reference::warp_top_k(Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(logits)), k);
        (logq.into_primitive().tensor(), ids.into_primitive())
    }
}

/// Tensor-level entry point of [`WarpTopKOps::warp_top_k`]. Logits of another float type are
/// cast to f32 first: beam scores sum log-probs near −50000, which f16 cannot hold.
pub fn warp_top_k<B: WarpTopKOps>(logits: Tensor<B, 2>, k: usize) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let [rows, v] = logits.dims();
    assert!(k > 0 && v > 0, "warp_top_k needs k ≥ 1 and a non-empty vocabulary");
    let logits = if logits.dtype() == DType::F32 { logits } else { logits.cast(FloatDType::F32) };
    if rows == 0 {
        let device = logits.device();
        return (Tensor::empty([0, k.min(v)], &device), Tensor::empty([0, k.min(v)], &device));
    }
    if !crate::fused() {
        return reference::warp_top_k(logits, k);
    }
    let (logq, ids) = B::warp_top_k(logits.into_primitive().tensor(), k);
    (Tensor::from_primitive(TensorPrimitive::Float(logq)), Tensor::from_primitive(ids))
}
