//! Backends that run the reference paths: the CPU backends, and autodiff (whose gradients the
//! reference's tensor ops give for free).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
#[cfg(feature = "flex")]
use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};

use crate::{BeamMergeOps, BlockMatmulOps, KvRelocateOps, RotaryOps, SkinnyMatmulOps, SwigluOps, TreeAttentionOps, TreeBuildOps, WarpTopKOps};

impl TreeAttentionOps for burn::backend::NdArray {}
impl KvRelocateOps for burn::backend::NdArray {}
impl RotaryOps for burn::backend::NdArray {}
impl SwigluOps for burn::backend::NdArray {}
impl SkinnyMatmulOps for burn::backend::NdArray {}
// NdArray runs the block op through the read-back (a copy of x), but the loader keeps it on
// dense weights: its tree attention is the gemm reference, whose few-ulp differences between a
// tree and a lone token the 8-bit activations can turn into a greedy divergence (Flex has the
// order-fixed host attention for that).
impl BlockMatmulOps for burn::backend::NdArray {}
impl TreeBuildOps for burn::backend::NdArray {}
impl WarpTopKOps for burn::backend::NdArray {}
impl BeamMergeOps for burn::backend::NdArray {}

#[cfg(feature = "flex")]
impl TreeAttentionOps for burn::backend::Flex {
    fn tree_attention(
        q: FloatTensor<Self>,
        committed: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        lens: IntTensor<Self>,
        kb: FloatTensor<Self>,
        vb: FloatTensor<Self>,
        bits: IntTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let c = committed.as_ref().map(|(k, v)| (k, v));
        match crate::tree_attention::flex::tree_attention(&q, c, &lens, &kb, &vb, &bits, scale) {
            Some(out) => out,
            None => crate::tree_attention::reference_on_primitives::<Self>(q, committed, lens, kb, vb, bits, scale),
        }
    }
}
#[cfg(feature = "flex")]
impl KvRelocateOps for burn::backend::Flex {
    fn kv_relocate(cache: FloatTensor<Self>, block: FloatTensor<Self>, src: IntTensor<Self>, dst: IntTensor<Self>) -> FloatTensor<Self> {
        match crate::kv_relocate::flex::kv_relocate(cache, &block, &src, &dst) {
            Ok(cache) => cache,
            Err(cache) => crate::kv_relocate::reference_on_primitives::<Self>(cache, block, src, dst),
        }
    }
}
#[cfg(feature = "flex")]
impl RotaryOps for burn::backend::Flex {
    fn rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, positions: IntTensor<Self>) -> FloatTensor<Self> {
        match crate::rotary::flex::rotary(&x, &cos, &sin, &positions) {
            Some(out) => out,
            None => crate::rotary::reference_on_primitives::<Self>(x, cos, sin, positions),
        }
    }
}
#[cfg(feature = "flex")]
impl SwigluOps for burn::backend::Flex {
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        match crate::swiglu::flex::swiglu(&gate, &up) {
            Some(out) => out,
            None => crate::swiglu::reference_on_primitives::<Self>(gate, up),
        }
    }
}
#[cfg(feature = "flex")]
impl TreeBuildOps for burn::backend::Flex {}
#[cfg(feature = "flex")]
impl BlockMatmulOps for burn::backend::Flex {
    fn block_matmul(x: &FloatTensor<Self>, w: &crate::BlockMatrix) -> Option<FloatTensor<Self>> {
        crate::block_matmul::flex::block_matmul(x, w)
    }
    fn host_resident() -> bool {
        true
    }
}
#[cfg(feature = "flex")]
impl WarpTopKOps for burn::backend::Flex {}
#[cfg(feature = "flex")]
impl BeamMergeOps for burn::backend::Flex {}
#[cfg(feature = "flex")]
impl SkinnyMatmulOps for burn::backend::Flex {
    fn skinny_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        match crate::skinny_matmul::flex::skinny_matmul(&x, &w) {
            Some(y) => y,
            None => Self::float_matmul(x, w),
        }
    }
    fn prefill_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        // Hundreds of rows: burn-flex's packing GEMM is several times faster a row than the
        // host kernel there (docs/skinny-matmul.md, "Prefill").
        if crate::skinny_matmul::flex::many_rows(&x) { Self::float_matmul(x, w) } else { Self::skinny_matmul(x, w) }
    }
}

impl<B: TreeAttentionOps, C: CheckpointStrategy> TreeAttentionOps for Autodiff<B, C> {}
impl<B: KvRelocateOps, C: CheckpointStrategy> KvRelocateOps for Autodiff<B, C> {}
impl<B: RotaryOps, C: CheckpointStrategy> RotaryOps for Autodiff<B, C> {}
impl<B: SwigluOps, C: CheckpointStrategy> SwigluOps for Autodiff<B, C> {}
impl<B: TreeBuildOps, C: CheckpointStrategy> TreeBuildOps for Autodiff<B, C> {}
impl<B: WarpTopKOps, C: CheckpointStrategy> WarpTopKOps for Autodiff<B, C> {}
impl<B: BeamMergeOps, C: CheckpointStrategy> BeamMergeOps for Autodiff<B, C> {}
// Autodiff keeps the reference: the tracked matmul gives the gradients.
impl<B: SkinnyMatmulOps, C: CheckpointStrategy> SkinnyMatmulOps for Autodiff<B, C> {}
// The frozen LLM's block products need no gradient: the read-back path gives an untracked
// tensor, as a constant weight would.
impl<B: BlockMatmulOps, C: CheckpointStrategy> BlockMatmulOps for Autodiff<B, C> {
    fn host_resident() -> bool {
        B::host_resident()
    }
}
