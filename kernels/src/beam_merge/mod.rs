//! One beam-search expansion (spec §2.2 steps 3–5): each batch row keeps the W best children of
//! its beams, where a child is a beam extended by one of its candidate tokens and scores the
//! beam's score plus the token's log-prob. The candidates are each beam's own top W
//! ([`crate::warp_top_k`]), which contain the global top W of the W·V joint scores.
//!
//! Order: joint score descending (as `f32::total_cmp`), then the lower parent beam, then the
//! lower token, exactly as the host [`reference::select_children`].
//!
//! Candidate rows: `logq`/`ids` hold S rows per batch row, S = W (one per beam) or S = 1 (the
//! first expansion, where every beam is still g0 with the zero state and one drafter row serves
//! all W). Beam i of row b reads candidate row `b·S + min(i, S − 1)`.

pub mod reference;
#[cfg(feature = "cube")]
pub(crate) mod kernel;

pub use reference::select_children;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// The expansion's result, best child first in every row.
#[derive(Debug, Clone)]
pub struct Merged<B: Backend> {
    /// [B, W] joint scores.
    pub scores: Tensor<B, 2>,
    /// [B, W] candidate row each child came from (`b·S + min(parent, S − 1)`): the row of the
    /// drafter state to continue it from.
    pub rows: Tensor<B, 2, Int>,
    /// [B, W, t + 1] the parent beam's tokens and the child's token.
    pub beams: Tensor<B, 3, Int>,
}

/// `scores` [B, W] f32, `logq` [B·S, K] f32 and `ids` [B·S, K] (each candidate row best first),
/// `beams` [B, W, t]. Returns (scores, rows, beams) of [`Merged`] as primitives.
pub trait BeamMergeOps: Backend {
    fn beam_merge(
        scores: FloatTensor<Self>,
        logq: FloatTensor<Self>,
        ids: IntTensor<Self>,
        beams: IntTensor<Self>,
    ) -> (FloatTensor<Self>, IntTensor<Self>, IntTensor<Self>) {
        let f = |x: FloatTensor<Self>| Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x));
        let m = reference::beam_merge(f(scores), f(logq), Tensor::from_primitive(ids), Tensor::from_primitive(beams));
        (m.scores.into_primitive().tensor(), m.rows.into_primitive(), m.beams.into_primitive())
    }
}

/// Tensor-level entry point of [`BeamMergeOps::beam_merge`].
pub fn beam_merge<B: BeamMergeOps>(
    scores: Tensor<B, 2>,
    logq: Tensor<B, 2>,
    ids: Tensor<B, 2, Int>,
    beams: Tensor<B, 3, Int>,
) -> Merged<B> {
    let [rows, w] = scores.dims();
    let [cand_rows, k] = logq.dims();
    assert!(rows > 0 && w > 0 && k > 0, "beam_merge needs at least one row, beam and candidate");
    assert!(cand_rows == rows || cand_rows == rows * w, "beam_merge: {cand_rows} candidate rows for {rows} rows of {w} beams");
    assert_eq!(ids.dims(), [cand_rows, k], "beam_merge: ids and logq differ in shape");
    let [br, bw, _] = beams.dims();
    assert_eq!([br, bw], [rows, w], "beam_merge: beams and scores differ in shape");
    if !crate::fused() {
        return reference::beam_merge(scores, logq, ids, beams);
    }
    let (s, r, b) = B::beam_merge(
        scores.into_primitive().tensor(),
        logq.into_primitive().tensor(),
        ids.into_primitive(),
        beams.into_primitive(),
    );
    Merged { scores: Tensor::from_primitive(TensorPrimitive::Float(s)), rows: Tensor::from_primitive(r), beams: Tensor::from_primitive(b) }
}
