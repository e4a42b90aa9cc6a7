//! KV relocation of accepted paths (spec §4.5): after verification, each row copies the block
//! entries it keeps (the accepted tree path, in order) into its cache right after its committed
//! tokens. Rows are independent, so no realignment of the batch is ever needed.

pub mod reference;
#[cfg(feature = "flex")]
pub(crate) mod flex;
#[cfg(feature = "cube")]
pub(crate) mod kernel;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// `cache` [B, Hkv, C, D]; `block` [B, Hkv, T, D]; `src` [B, L]: block indices to keep per row,
/// a prefix of non-negative entries padded with -1; `dst` [B]: the first cache slot written per
/// row. Writes `cache[b, :, dst[b] + j] = block[b, :, src[b, j]]` and returns the cache (updated in
/// place when it is not shared). The caller checks that the slots fit the capacity.
pub trait KvRelocateOps: Backend {
    fn kv_relocate(
        cache: FloatTensor<Self>,
        block: FloatTensor<Self>,
        src: IntTensor<Self>,
        dst: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        reference_on_primitives::<Self>(cache, block, src, dst)
    }
}

/// The reference on the ops' primitive tensors: the trait's default, and the fallback of backends
/// whose own path declines some operands.
pub(crate) fn reference_on_primitives<B: Backend>(
    cache: FloatTensor<B>,
    block: FloatTensor<B>,
    src: IntTensor<B>,
    dst: IntTensor<B>,
) -> FloatTensor<B> {
    let f = |x: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    reference::kv_relocate(f(cache), f(block), Tensor::from_primitive(src), Tensor::from_primitive(dst))
        .into_primitive()
        .tensor()
}

/// Tensor-level entry point of [`KvRelocateOps::kv_relocate`].
pub fn kv_relocate<B: KvRelocateOps>(
    cache: Tensor<B, 4>,
    block: Tensor<B, 4>,
    src: Tensor<B, 2, Int>,
    dst: Tensor<B, 1, Int>,
) -> Tensor<B, 4> {
    if !crate::fused() {
        return reference::kv_relocate(cache, block, src, dst);
    }
    let cache = cache.into_primitive().tensor();
    let block = block.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::kv_relocate(cache, block, src.into_primitive(), dst.into_primitive())))
}
