//! The Flex (CPU) path: `g / (1 + exp(−g)) · u` in one pass over contiguous f32 buffers, eight
//! at a time with [`crate::simd::exp8`] where the CPU has AVX2 and FMA.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType};

/// `silu(gate) · up` (same shape, contiguous f32), or `None` (the caller runs the reference).
pub fn swiglu(gate: &FlexTensor, up: &FlexTensor) -> Option<FlexTensor> {
    if gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.layout().shape() != up.layout().shape() {
        return None;
    }
    let (g, u) = (gate.as_slice::<f32>()?, up.as_slice::<f32>()?);
    // Row by row (the last axis), so that which elements take the vector body depends on the
    // row's length only: a token gets the same bits in a tree as alone.
    let n = gate.layout().shape().as_slice().last().copied().unwrap_or(1).max(1);
    let mut out = vec![0f32; g.len()];
    let fast = crate::simd::supported();
    for ((g, u), out) in g.chunks(n).zip(u.chunks(n)).zip(out.chunks_mut(n)) {
        let mut done = 0;
        if fast {
            // SAFETY: supported() checked AVX2 and FMA; the three rows have equal lengths.
            done = unsafe { vector(g, u, out) };
        }
        for i in done..g.len() {
            out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
        }
    }
    Some(FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(gate.layout().shape().clone()), DType::F32))
}

/// The first multiple of 8 elements; returns how many it wrote.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn vector(g: &[f32], u: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = g.len() / 8 * 8;
    let one = _mm256_set1_ps(1.0);
    let zero = _mm256_setzero_ps();
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 <= n <= len of all three slices.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = crate::simd::exp8(_mm256_sub_ps(zero, x));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i))));
        }
    }
    n
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn vector(_: &[f32], _: &[f32], _: &mut [f32]) -> usize {
    0
}
