//! The Flex (CPU) path: one pass over the [B, H, T] rows of a (possibly strided) x, with the
//! reference's arithmetic per pair (`x1·c − x2·s`, `x2·c + x1·s`, each product rounded), so the
//! output has the reference's bits.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};

use crate::kv_relocate::flex::ints;
use crate::tree_attention::flex::View;

/// The rotated [B, H, T, D] (contiguous), or `None` when the operands are not what this path
/// handles (f32, even D, contiguous angle tables of D/2 columns, positions inside them): the
/// caller then runs the reference.
pub fn rotary(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, positions: &FlexTensor) -> Option<FlexTensor> {
    let x = View::of(x)?;
    let [b, h, t, d] = x.dims;
    let half = d / 2;
    fn table(c: &FlexTensor, half: usize) -> Option<&[f32]> {
        let s = c.layout().shape();
        if c.dtype() != DType::F32 || s.num_dims() != 2 || s[1] != half {
            return None;
        }
        // Borrowed, never copied: the tables hold every position of the context.
        c.as_slice::<f32>()
    }
    let (cos, sin) = (table(cos, half)?, table(sin, half)?);
    let rows = cos.len().checked_div(half)?;
    let pos = ints(positions)?;
    if d % 2 != 0 || sin.len() != cos.len() || pos.len() != b * t || pos.iter().any(|&p| p < 0 || p as usize >= rows) {
        return None;
    }
    let mut out = vec![0f32; b * h * t * d];
    for bi in 0..b {
        for hi in 0..h {
            for ti in 0..t {
                let p = pos[bi * t + ti] as usize;
                let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
                let xr = x.row(bi, hi, ti);
                let (x1, x2) = xr.split_at(half);
                let (o1, o2) = out[((bi * h + hi) * t + ti) * d..][..d].split_at_mut(half);
                for i in 0..half {
                    o1[i] = x1[i] * c[i] - x2[i] * s[i];
                    o2[i] = x2[i] * c[i] + x1[i] * s[i];
                }
            }
        }
    }
    Some(FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(Shape::new([b, h, t, d])), DType::F32))
}
