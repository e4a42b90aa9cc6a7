//! Matmul with few rows: `x [m, k] · w [k, n]` for the m ≈ 1..64 token rows of a decode step, a
//! tree verification or a beam-search draft step, against a large weight (a projection, or the
//! vocabulary head where `w` is the transposed embedding table).
//!
//! The reference is the backend's own matmul. On Flex (CPU) the op streams the weight once
//! instead of packing it (see [`host`]); measured on SmolLM2-135M, this makes verifying a tree of
//! 4 to 16 tokens cost about what one token costs. On cubecl runtimes it is cubecl's unit matmul
//! in full f32 (see `cube`), because burn's default there may round to TF32.

#[cfg(feature = "cube")]
pub(crate) mod cube;
pub mod host;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Rows up to which the host kernels are used; above it (prefill) a packing GEMM wins.
pub const MAX_ROWS: usize = 64;

/// `x` [m, k] and `w` [k, n] (any layout) → [m, n].
pub trait SkinnyMatmulOps: Backend {
    fn skinny_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, w)
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

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::tensor::{Bytes, DType, Shape};

    use super::{MAX_ROWS, host};

    /// The host kernel's result, or `None` when the operands are not f32 row-major / transposed
    /// row-major 2-D tensors with few rows (the caller then runs the reference).
    pub fn skinny_matmul(x: &FlexTensor, w: &FlexTensor) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            return None;
        }
        let (xs, ws) = (x.layout().shape(), w.layout().shape());
        if xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[0] {
            return None;
        }
        let (m, k, n) = (xs[0], xs[1], ws[1]);
        if m == 0 || m > MAX_ROWS || k == 0 || n == 0 {
            return None;
        }
        let xv = x.as_slice::<f32>()?;
        let mut y = vec![0f32; m * n];
        let ran = if let Some(wv) = w.as_slice::<f32>() {
            host::matmul_rowmajor(m, k, n, xv, wv, &mut y)
        } else {
            // wᵀ contiguous: w is a transposed view of an [n, k] table (the tied output head).
            let l = w.layout();
            if l.strides() != [1, k as isize] {
                return None;
            }
            let start = l.start_offset();
            let e = w.storage::<f32>().get(start..start + n * k)?;
            host::matmul_transposed(m, k, n, xv, e, &mut y)
        };
        ran.then(|| FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::new([m, n])), DType::F32))
    }
}
