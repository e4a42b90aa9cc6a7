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

use burn::backend::flex::FlexTensor;
use burn::tensor::{Bytes, DType, Shape};

use crate::bits::{WORD_BITS, words};
use crate::kv_relocate::flex::ints;
use crate::skinny_matmul::host::reduce8;

/// A 4-D f32 view whose last axis is contiguous.
struct View<'a> {
    data: &'a [f32],
    start: usize,
    strides: [usize; 3],
    dims: [usize; 4],
}

impl<'a> View<'a> {
    fn of(t: &'a FlexTensor) -> Option<Self> {
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

    fn row(&self, a: usize, b: usize, c: usize) -> &'a [f32] {
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
    let mut values: Vec<&[f32]> = Vec::new();
    let mut acc = vec![0f32; d];
    for bi in 0..b {
        let len = lens[bi] as usize;
        for hi in 0..h {
            let kh = hi / g;
            for i in 0..t {
                let qr = q.row(bi, hi, i);
                scores.clear();
                values.clear();
                if let Some((kc, vc)) = &committed {
                    for j in 0..len {
                        scores.push(dot(qr, kc.row(bi, kh, j)) * scale);
                        values.push(vc.row(bi, kh, j));
                    }
                }
                let mask = &bits[(bi * t + i) * w..][..w];
                for j in 0..t {
                    if (mask[j / WORD_BITS] >> (j % WORD_BITS)) & 1 == 1 {
                        scores.push(dot(qr, kb.row(bi, kh, j)) * scale);
                        values.push(vb.row(bi, kh, j));
                    }
                }
                let o = &mut out[((bi * h + hi) * t + i) * d..][..d];
                if scores.is_empty() {
                    // Nothing visible (never happens for a well-formed block: a query sees itself).
                    continue;
                }
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut sum = 0f32;
                acc.fill(0.0);
                for (s, v) in scores.iter().zip(&values) {
                    let e = (s - max).exp();
                    sum += e;
                    for (a, x) in acc.iter_mut().zip(v.iter()) {
                        *a += e * x;
                    }
                }
                let inv = 1.0 / sum;
                for (o, a) in o.iter_mut().zip(&acc) {
                    *o = a * inv;
                }
            }
        }
    }
    Some(FlexTensor::new(Bytes::from_elems(out), burn::backend::flex::Layout::contiguous(Shape::new([b, h, t, d])), DType::F32))
}
