//! Backends that run the reference paths: the CPU backends, and autodiff (whose gradients the
//! reference's tensor ops give for free).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
#[cfg(feature = "flex")]
use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};

use crate::{BeamMergeOps, KvRelocateOps, SkinnyMatmulOps, TreeAttentionOps, TreeBuildOps, WarpTopKOps};

impl TreeAttentionOps for burn::backend::NdArray {}
impl KvRelocateOps for burn::backend::NdArray {}
impl SkinnyMatmulOps for burn::backend::NdArray {}
impl TreeBuildOps for burn::backend::NdArray {}
impl WarpTopKOps for burn::backend::NdArray {}
impl BeamMergeOps for burn::backend::NdArray {}

#[cfg(feature = "flex")]
impl TreeAttentionOps for burn::backend::Flex {}
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
impl TreeBuildOps for burn::backend::Flex {}
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
}

impl<B: TreeAttentionOps, C: CheckpointStrategy> TreeAttentionOps for Autodiff<B, C> {}
impl<B: KvRelocateOps, C: CheckpointStrategy> KvRelocateOps for Autodiff<B, C> {}
impl<B: TreeBuildOps, C: CheckpointStrategy> TreeBuildOps for Autodiff<B, C> {}
impl<B: WarpTopKOps, C: CheckpointStrategy> WarpTopKOps for Autodiff<B, C> {}
impl<B: BeamMergeOps, C: CheckpointStrategy> BeamMergeOps for Autodiff<B, C> {}
// Autodiff keeps the reference: the tracked matmul gives the gradients.
impl<B: SkinnyMatmulOps, C: CheckpointStrategy> SkinnyMatmulOps for Autodiff<B, C> {}
