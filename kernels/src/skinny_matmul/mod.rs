//! Matmul with few rows: `x [m, k] · w [k, n]` for the m ≈ 1..64 token rows of a decode step, a
//! tree verification or a beam-search draft step, against a large weight (a projection, or the
//! vocabulary head where `w` is the transposed embedding table).
//!
//! The reference is the backend's own matmul. On Flex (CPU) the op streams the weight once
//! instead of packing it (see [`host`]); measured on SmolLM2-135M, this makes verifying a tree of
//! 4 to 16 tokens cost about what one token costs. On cubecl runtimes it is cubecl's unit matmul
//! in full f32 (see `cube`), because burn's default there may round to TF32.
//!
//! On Flex a row gets the same bits whatever the other rows: above [`MAX_ROWS`] rows the host
//! kernel runs on chunks of [`MAX_ROWS`] rows rather than handing the product to a packing GEMM
//! (whose summation order differs), so a decode step of many rows (a wide batch, or a batch of
//! trees: W1 L3 verifies 3 tokens a row, 66 rows from batch 22) still verifies each token with
//! the bits it gets alone. [`prefill_matmul`] is the entry point for blocks that need no such
//! guarantee (prefill, training features): there the GEMM serves above [`MAX_ROWS`] rows.

#[cfg(feature = "cube")]
pub(crate) mod cube;
pub mod host;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Rows the host kernels take in one call; a product of more rows is run in chunks of this
/// many (decode steps), or by a packing GEMM where the caller allows it ([`prefill_matmul`]).
pub const MAX_ROWS: usize = 64;

/// `x` [m, k] and `w` [k, n] (any layout) → [m, n].
pub trait SkinnyMatmulOps: Backend {
    /// Each output row's bits depend only on its own x row and w (on backends with a host or
    /// cubecl kernel; the default is the backend's matmul).
    fn skinny_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, w)
    }

    /// The same product where a row's bits may depend on the others (a prefill): the backend's
    /// fastest path for the shape.
    fn prefill_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::skinny_matmul(x, w)
    }
}

/// Tensor-level entry point of [`SkinnyMatmulOps::skinny_matmul`].
pub fn skinny_matmul<B: SkinnyMatmulOps>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if !crate::fused() {
        return x.matmul(w);
    }
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(B::skinny_matmul(x, w)))
}

/// Tensor-level entry point of [`SkinnyMatmulOps::prefill_matmul`]: for blocks whose rows need not
/// get the bits a decode step gives them (prefill, training features), and many of them.
pub fn prefill_matmul<B: SkinnyMatmulOps>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if !crate::fused() {
        return x.matmul(w);
    }
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(B::prefill_matmul(x, w)))
}

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::tensor::{Bytes, DType, Shape};

    use super::{MAX_ROWS, host};

    /// Whether `x` has more than [`MAX_ROWS`] rows: where the prefill path takes the GEMM
    /// (decode steps of that many rows run [`skinny_matmul`] in chunks instead).
    pub fn many_rows(x: &FlexTensor) -> bool {
        let s = x.layout().shape();
        s.num_dims() == 2 && s[0] > MAX_ROWS
    }

    /// The host kernel's result, in chunks of [`MAX_ROWS`] rows, or `None` when the operands are
    /// not f32 row-major / transposed row-major 2-D tensors (the caller then runs the reference).
    pub fn skinny_matmul(x: &FlexTensor, w: &FlexTensor) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            return None;
        }
        let (xs, ws) = (x.layout().shape(), w.layout().shape());
        if xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[0] {
            return None;
        }
        let (m, k, n) = (xs[0], xs[1], ws[1]);
        if m == 0 || k == 0 || n == 0 {
            return None;
        }
        let xv = x.as_slice::<f32>()?;
        let mut y = vec![0f32; m * n];
        // The kernels' bits do not depend on m, so chunking changes nothing but the cache reuse.
        let chunks = xv.chunks(MAX_ROWS * k).zip(y.chunks_mut(MAX_ROWS * n));
        let ran = if let Some(wv) = w.as_slice::<f32>() {
            chunks.into_iter().all(|(xc, yc)| host::matmul_rowmajor(xc.len() / k, k, n, xc, wv, yc))
        } else {
            // wᵀ contiguous: w is a transposed view of an [n, k] table (the tied output head).
            let l = w.layout();
            if l.strides() != [1, k as isize] {
                return None;
            }
            let start = l.start_offset();
            let e = w.storage::<f32>().get(start..start + n * k)?;
            chunks.into_iter().all(|(xc, yc)| host::matmul_transposed(xc.len() / k, k, n, xc, e, yc))
        };
        ran.then(|| FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::new([m, n])), DType::F32))
    }
}
