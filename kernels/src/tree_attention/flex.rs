//! The Flex (CPU) path: tree attention on the host, straight from the (possibly strided) q, K and
//! V buffers and the packed bitsets, with no dense mask and no per-layer bitset unpacking.
//!
//! **Same bits in a tree as alone.** A query's visible keys are its row's committed keys in slot
//! order, then the block keys its bitset allows in block order: for a tree node that is the path
//! from the root to it, which is the sequence of keys the same token sees when decoded alone
//! later (its ancestors are committed by then). Scores, the maximum, the exponentials, their sum
//! and the weighted value sums are then computed over that sequence in order, each with a fixed
//! arithmetic: the result depends only on the sequence, not on the tree around it. The reference
//! (dense matmuls through gemm, whose summation order depends on the shapes) differs by a few
//! ulps between a tree and a single token; with 8-bit activations (the block kernels) such
//! ulps can move a rounding step and flip a greedy near-tie. This path keeps greedy ReDrafter on
//! block weights token-for-token equal to autoregressive decoding.
//!
//! **Vector body.** On x86-64 with AVX2 and FMA, [`vector::attend`] computes the same quantities
//! with fused multiply-adds, four keys' dot products at a time (independent accumulators, so
//! the FMA latency is hidden), a polynomial `exp` over eight scores at once, and the value sums
//! in registers. Every quantity is still a function of the visible key sequence alone (a key's
//! dot product does not depend on which group of four it falls in; the exponentials are
//! elementwise; the sums run in key order), so the tree-versus-alone guarantee holds for it too.
//! It gives other bits than the portable body (FMA rounding, the polynomial), and a machine
//! always takes the same body. The attention of a 3-token verification on SmolLM2-135M went
//! from 3.7 to about 1 ms per step with it (docs/benchmarks.md).

use burn::backend::flex::FlexTensor;
use burn::tensor::{Bytes, DType, Shape};

use crate::bits::{WORD_BITS, words};
use crate::kv_relocate::flex::ints;
use crate::skinny_matmul::host::reduce8;

/// A 4-D f32 view whose last axis is contiguous.
pub(crate) struct View<'a> {
    data: &'a [f32],
    start: usize,
    strides: [usize; 3],
    pub(crate) dims: [usize; 4],
}

impl<'a> View<'a> {
    pub(crate) fn of(t: &'a FlexTensor) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let l = t.layout();
        let s = l.shape();
        if s.num_dims() != 4 || l.strides()[3] != 1 && s[3] > 1 || l.strides()[..3].iter().any(|&v| v < 0) {
            return None;
        }
        let st = l.strides();
        let data = t.storage::<f32>();
        let dims = [s[0], s[1], s[2], s[3]];
        let view = Self { data, start: l.start_offset(), strides: [st[0] as usize, st[1] as usize, st[2] as usize], dims };
        // The last element must lie inside the buffer.
        if dims.iter().all(|&d| d > 0) && view.offset(dims[0] - 1, dims[1] - 1, dims[2] - 1) + dims[3] > data.len() {
            return None;
        }
        Some(view)
    }

    fn offset(&self, a: usize, b: usize, c: usize) -> usize {
        self.start + a * self.strides[0] + b * self.strides[1] + c * self.strides[2]
    }

    pub(crate) fn row(&self, a: usize, b: usize, c: usize) -> &'a [f32] {
        let o = self.offset(a, b, c);
        &self.data[o..o + self.dims[3]]
    }
}

/// Dot product in a fixed order: eight lanes over the vector part, a fixed reduction, the tail.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 8 * 8;
    let mut acc = [0f32; 8];
    for (x, y) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for c in n..a.len() {
        tail += a[c] * b[c];
    }
    reduce8(acc) + tail
}

/// One query over its visible keys, in their order: the portable body.
fn attend(q: &[f32], keys: &[&[f32]], values: &[&[f32]], scale: f32, scores: &mut Vec<f32>, acc: &mut [f32], o: &mut [f32]) {
    scores.clear();
    scores.extend(keys.iter().map(|k| dot(q, k) * scale));
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0f32;
    acc.fill(0.0);
    for (s, v) in scores.iter().zip(values) {
        let e = (s - max).exp();
        sum += e;
        for (a, x) in acc.iter_mut().zip(v.iter()) {
            *a += e * x;
        }
    }
    let inv = 1.0 / sum;
    for (o, a) in o.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}

/// [B, H, T, D] attention output, or `None` when the operands are not what this path handles
/// (f32, last axis contiguous, consistent shapes): the caller then runs the reference.
pub fn tree_attention(
    q: &FlexTensor,
    committed: Option<(&FlexTensor, &FlexTensor)>,
    lens: &FlexTensor,
    kb: &FlexTensor,
    vb: &FlexTensor,
    bits: &FlexTensor,
    scale: f32,
) -> Option<FlexTensor> {
    let (q, kb, vb) = (View::of(q)?, View::of(kb)?, View::of(vb)?);
    let [b, h, t, d] = q.dims;
    let hkv = kb.dims[1];
    if hkv == 0 || h % hkv != 0 || kb.dims != [b, hkv, t, d] || vb.dims != kb.dims {
        return None;
    }
    let g = h / hkv;
    let committed = match committed {
        Some((kc, vc)) => {
            let (kc, vc) = (View::of(kc)?, View::of(vc)?);
            if kc.dims[..2] != [b, hkv] || kc.dims[3] != d || vc.dims != kc.dims {
                return None;
            }
            Some((kc, vc))
        }
        None => None,
    };
    let slots = committed.as_ref().map_or(0, |(k, _)| k.dims[2]);
    let lens = ints(lens)?;
    let w = words(t);
    let bits = ints(bits)?;
    if lens.len() != b || bits.len() != b * t * w || lens.iter().any(|&l| l < 0 || l as usize > slots) {
        return None;
    }
    let mut out = vec![0f32; b * h * t * d];
    let mut scores: Vec<f32> = Vec::new();
    let mut keys: Vec<&[f32]> = Vec::new();
    let mut values: Vec<&[f32]> = Vec::new();
    let mut acc = vec![0f32; d];
    let fast = vector::supported();
    for bi in 0..b {
        let len = lens[bi] as usize;
        for hi in 0..h {
            let kh = hi / g;
            for i in 0..t {
                let qr = q.row(bi, hi, i);
                keys.clear();
                values.clear();
                if let Some((kc, vc)) = &committed {
                    for j in 0..len {
                        keys.push(kc.row(bi, kh, j));
                        values.push(vc.row(bi, kh, j));
                    }
                }
                let mask = &bits[(bi * t + i) * w..][..w];
                for j in 0..t {
                    if (mask[j / WORD_BITS] >> (j % WORD_BITS)) & 1 == 1 {
                        keys.push(kb.row(bi, kh, j));
                        values.push(vb.row(bi, kh, j));
                    }
                }
                let o = &mut out[((bi * h + hi) * t + i) * d..][..d];
                if keys.is_empty() {
                    // Nothing visible (never happens for a well-formed block: a query sees itself).
                    continue;
                }
                if fast {
                    // SAFETY: `supported` checked the CPU features; every row has length d.
                    unsafe { vector::attend(qr, &keys, &values, scale, &mut scores, o) };
                } else {
                    attend(qr, &keys, &values, scale, &mut scores, &mut acc, o);
                }
            }
        }
    }
    Some(FlexTensor::new(Bytes::from_elems(out), burn::backend::flex::Layout::contiguous(Shape::new([b, h, t, d])), DType::F32))
}

/// The AVX2 + FMA body of one query's attention (see the module docs).
mod vector {
    pub use crate::simd::supported;

    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn attend(_: &[f32], _: &[&[f32]], _: &[&[f32]], _: f32, _: &mut Vec<f32>, _: &mut [f32]) {
        unreachable!("supported() is false off x86-64")
    }

    /// Scores, softmax and weighted value sum of `q` over `keys`/`values` (same length as `q`),
    /// written to `o`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; every key and value row must be as long as `q`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend(q: &[f32], keys: &[&[f32]], values: &[&[f32]], scale: f32, scores: &mut Vec<f32>, o: &mut [f32]) {
        use std::arch::x86_64::*;
        let d = q.len();
        let n = keys.len();
        scores.clear();
        scores.resize(n.div_ceil(8) * 8, f32::NEG_INFINITY);
        let mut j = 0;
        while j + 4 <= n {
            let s = dots::<4>(q, [keys[j], keys[j + 1], keys[j + 2], keys[j + 3]]);
            for (c, s) in s.into_iter().enumerate() {
                scores[j + c] = s * scale;
            }
            j += 4;
        }
        while j < n {
            scores[j] = dots::<1>(q, [keys[j]])[0] * scale;
            j += 1;
        }
        let max = scores[..n].iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        // Exponentials eight at a time; the padding (-inf) gives 0 and is never read.
        let mv = _mm256_set1_ps(max);
        for c in scores.chunks_exact_mut(8) {
            // SAFETY: c has 8 elements.
            unsafe {
                let x = _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv);
                _mm256_storeu_ps(c.as_mut_ptr(), crate::simd::exp8(x));
            }
        }
        let sum: f32 = scores[..n].iter().sum();
        let inv = 1.0 / sum;
        let full = d / 8 * 8;
        if d == 64 {
            // SmolLM2's head size: the eight accumulators stay in registers across the keys.
            let mut acc = [_mm256_setzero_ps(); 8];
            for (e, v) in scores[..n].iter().zip(values) {
                let e = _mm256_set1_ps(*e);
                for (l, a) in acc.iter_mut().enumerate() {
                    // SAFETY: v has d = 64 elements.
                    *a = _mm256_fmadd_ps(e, unsafe { _mm256_loadu_ps(v.as_ptr().add(8 * l)) }, *a);
                }
            }
            let iv = _mm256_set1_ps(inv);
            for (l, a) in acc.iter().enumerate() {
                // SAFETY: o has 64 elements.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * l), _mm256_mul_ps(*a, iv)) };
            }
            return;
        }
        o.fill(0.0);
        for (e, v) in scores[..n].iter().zip(values) {
            let ev = _mm256_set1_ps(*e);
            for l in (0..full).step_by(8) {
                // SAFETY: l + 8 <= d for both rows.
                unsafe {
                    let a = _mm256_fmadd_ps(ev, _mm256_loadu_ps(v.as_ptr().add(l)), _mm256_loadu_ps(o.as_ptr().add(l)));
                    _mm256_storeu_ps(o.as_mut_ptr().add(l), a);
                }
            }
            for l in full..d {
                o[l] = e.mul_add(v[l], o[l]);
            }
        }
        for x in o.iter_mut() {
            *x *= inv;
        }
    }

    /// `q · k` for N keys at once, each in the same fixed order (eight FMA lanes, [`hsum`], the
    /// tail), so a key's score does not depend on the keys beside it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn dots<const N: usize>(q: &[f32], keys: [&[f32]; N]) -> [f32; N] {
        use std::arch::x86_64::*;
        let d = q.len();
        let full = d / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); N];
        for l in (0..full).step_by(8) {
            // SAFETY: l + 8 <= d for q and every key (the caller's contract).
            unsafe {
                let x = _mm256_loadu_ps(q.as_ptr().add(l));
                for c in 0..N {
                    acc[c] = _mm256_fmadd_ps(x, _mm256_loadu_ps(keys[c].as_ptr().add(l)), acc[c]);
                }
            }
        }
        let mut out = [0f32; N];
        for c in 0..N {
            let mut tail = 0f32;
            for l in full..d {
                tail = q[l].mul_add(keys[c][l], tail);
            }
            out[c] = crate::skinny_matmul::host::hsum(acc[c]) + tail;
        }
        out
    }
}
