//! Ancestor masks as bitsets: `bits[b, i, w]` holds, in bit `j % 32` of word `w = j / 32`, whether
//! query `i` of row `b` may attend to block key `j`. Words are stored as i32 bit patterns (bit 31
//! set reads as a negative number), which every backend's int type holds: i64 backends sign-extend,
//! and bit tests only ever look at bits 0..32.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};

pub const WORD_BITS: usize = 32;

/// Words per query for a block of `t` keys.
pub fn words(t: usize) -> usize {
    t.div_ceil(WORD_BITS).max(1)
}

/// Packs a row-major `[rows, t, t]` boolean mask into `[rows, t, words(t)]` i32 words.
pub fn pack_mask(mask: &[bool], rows: usize, t: usize) -> Vec<i32> {
    assert_eq!(mask.len(), rows * t * t, "mask is [rows, t, t]");
    let w = words(t);
    let mut out = vec![0u32; rows * t * w];
    for (q, keys) in mask.chunks(t.max(1)).enumerate() {
        for (j, &on) in keys.iter().enumerate() {
            if on {
                out[q * w + j / WORD_BITS] |= 1 << (j % WORD_BITS);
            }
        }
    }
    out.into_iter().map(|x| x as i32).collect()
}

/// The bitsets as a `[rows, t, words]` int tensor.
pub fn mask_tensor<B: Backend>(mask: &[bool], rows: usize, t: usize, device: &B::Device) -> Tensor<B, 3, Int> {
    Tensor::from_data(TensorData::new(pack_mask(mask, rows, t), [rows, t, words(t)]), device)
}

/// Unpacks `[rows, t, words]` bitsets into a `[rows, t, t]` boolean mask with tensor ops.
pub fn unpack<B: Backend>(bits: Tensor<B, 3, Int>, t: usize) -> Tensor<B, 3, Bool> {
    let [rows, tq, _] = bits.dims();
    let device = bits.device();
    let word_of: Vec<i64> = (0..t).map(|j| (j / WORD_BITS) as i64).collect();
    let shift: Vec<i64> = (0..t).map(|j| (j % WORD_BITS) as i64).collect();
    let word_of = Tensor::<B, 1, Int>::from_data(TensorData::new(word_of, [t]), &device);
    let shift = Tensor::<B, 1, Int>::from_data(TensorData::new(shift, [t]), &device).reshape([1, 1, t]).expand([rows, tq, t]);
    bits.select(2, word_of).bitwise_right_shift(shift).bitwise_and_scalar(1.elem()).equal_elem(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_bits_of_long_rows() {
        let t = 40;
        let mask: Vec<bool> = (0..t * t).map(|k| (k / t) >= (k % t)).collect();
        let bits = pack_mask(&mask, 1, t);
        assert_eq!(bits.len(), t * 2);
        // Query 39 sees keys 0..=39: a full first word (bit 31 set, negative as i32) and 8 bits.
        assert_eq!(bits[39 * 2], -1);
        assert_eq!(bits[39 * 2 + 1], 0xff);
        assert_eq!(bits[0], 1);
        let dev = Default::default();
        let back = unpack::<burn::backend::NdArray>(mask_tensor(&mask, 1, t, &dev), t);
        assert_eq!(back.into_data().to_vec::<bool>().unwrap(), mask);
    }
}
