//! Backends that run the reference paths: the CPU backends, and autodiff (whose gradients the
//! reference's tensor ops give for free).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;

use crate::{KvRelocateOps, TreeAttentionOps};

impl TreeAttentionOps for burn::backend::NdArray {}
impl KvRelocateOps for burn::backend::NdArray {}

#[cfg(feature = "flex")]
impl TreeAttentionOps for burn::backend::Flex {}
#[cfg(feature = "flex")]
impl KvRelocateOps for burn::backend::Flex {}

impl<B: TreeAttentionOps, C: CheckpointStrategy> TreeAttentionOps for Autodiff<B, C> {}
impl<B: KvRelocateOps, C: CheckpointStrategy> KvRelocateOps for Autodiff<B, C> {}
