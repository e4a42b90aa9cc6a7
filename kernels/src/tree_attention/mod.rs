//! Tree attention (spec §4.3): every query of a row's packed block attends to that row's
//! committed keys (slots below the row's length) and to the block keys its ancestor bitset
//! allows. Grouped-query attention: query head `h` reads key/value head `h / (H / Hkv)`.
//!
//! The same op serves prefill (a causal block), autoregressive steps (a block of one) and
//! ReDrafter verification (a packed tree); only the bitsets differ.

pub mod reference;
#[cfg(feature = "flex")]
pub(crate) mod flex;
#[cfg(feature = "cube")]
pub(crate) mod kernel;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// Added to the scores of keys a query must not see in the reference path. Finite, so a fully
/// masked cache part cannot produce NaN (every query sees at least itself in the block).
pub const MASKED: f32 = -1.0e9;

/// What the op reads besides the queries. Shapes:
/// `q` [B, H, T, D]; committed `kc`, `vc` [B, Hkv, S, D] (only slots `< lens[b]` are read);
/// `lens` [B]; block `kb`, `vb` [B, Hkv, T, D]; `bits` [B, T, words(T)] (see [`crate::bits`]).
pub trait TreeAttentionOps: Backend {
    /// Returns [B, H, T, D], scaled dot-product attention with scale `scale`.
    #[allow(clippy::too_many_arguments)]
    fn tree_attention(
        q: FloatTensor<Self>,
        committed: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        lens: IntTensor<Self>,
        kb: FloatTensor<Self>,
        vb: FloatTensor<Self>,
        bits: IntTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        reference_on_primitives::<Self>(q, committed, lens, kb, vb, bits, scale)
    }
}

/// [`reference::tree_attention`] on backend primitives: the trait's default, and the fallback of
/// backends whose own path declines an input.
pub fn reference_on_primitives<B: Backend>(
    q: FloatTensor<B>,
    committed: Option<(FloatTensor<B>, FloatTensor<B>)>,
    lens: IntTensor<B>,
    kb: FloatTensor<B>,
    vb: FloatTensor<B>,
    bits: IntTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let f = |x: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    reference::tree_attention(f(q), committed.map(|(k, v)| (f(k), f(v))), Tensor::from_primitive(lens), f(kb), f(vb), Tensor::from_primitive(bits), scale)
        .into_primitive()
        .tensor()
}

/// Tensor-level entry point of [`TreeAttentionOps::tree_attention`].
pub fn tree_attention<B: TreeAttentionOps>(
    q: Tensor<B, 4>,
    committed: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    lens: Tensor<B, 1, Int>,
    kb: Tensor<B, 4>,
    vb: Tensor<B, 4>,
    bits: Tensor<B, 3, Int>,
    scale: f32,
) -> Tensor<B, 4> {
    if !crate::fused() {
        return reference::tree_attention(q, committed, lens, kb, vb, bits, scale);
    }
    let p = |x: Tensor<B, 4>| x.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::tree_attention(
        p(q),
        committed.map(|(k, v)| (p(k), p(v))),
        lens.into_primitive(),
        p(kb),
        p(vb),
        bits.into_primitive(),
        scale,
    )))
}
