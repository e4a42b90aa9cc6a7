//! Q8_0, Q4_0 and Q4_1 against f32 activations ([`Activations::F32`](super::Activations)):
//! the packed values are widened to f32 in registers and meet the unrounded x in FMAs. Per block
//! and x row, `t = Σ q·x` over the block's 32 values (four 8-lane groups), then
//! `acc += d · t`, and the minimum (Q4_1's `m`, Q4_0's `−8d`) enters as `m · Σx` in a scalar
//! accumulator. That is the dequantized weight times x with the rounding moved, so it changes no
//! answer that widening at load would not, while it reads the blocks as stored.
//!
//! **The 4-bit unpack stays in 128-bit lanes.** The 16 packed bytes are broadcast to both halves
//! of a register; a variable shift puts the high nibbles in the upper half, and group `g` is
//! `(v >> 8g) & 0xf` per 32-bit lane. So lane `l` of group `g` holds weight
//! `4(l mod 4) + g + 16⌊l/4⌋` ([`nibble_at`]), and x is permuted once per call to match
//! ([`WideRows`]). Widening with `pmovzx` instead cost a cross-lane shuffle per group and was
//! slower (docs/skinny-matmul.md). Q8_0's bytes widen in order (`pmovsx` from memory).
//!
//! Same bits whatever the batch, as the integer path: every output element has one 8-lane
//! accumulator and one scalar, filled block by block in a fixed order, then reduced by the
//! fixed tree of [`reduce8`]. The portable body does the same arithmetic lane for lane
//! (`mul_add` where the AVX2 body has an FMA).

use std::borrow::Cow;

use redrafter_io::gguf::{GgmlType, QK};

use super::BlockMatrix;
use super::host::{Tiles, block_params};
#[cfg(target_arch = "x86_64")]
use super::host::{Q4_0, Q4_1, Q8_0, check_rows};
#[cfg(target_arch = "x86_64")]
use crate::skinny_matmul::host::hsum;
use crate::skinny_matmul::host::reduce8;

/// x rows prepared for the f32 tiles: for the 4-bit formats each 32-value block permuted to the
/// order the unpack produces ([`nibble_at`]), and per block `Σx` (what the minimum multiplies).
/// Q8_0 widens in order, so its rows are borrowed as given.
pub(super) struct WideRows<'a> {
    k: usize,
    x: Cow<'a, [f32]>,
    sx: Vec<f32>,
}

impl<'a> WideRows<'a> {
    pub fn new(ty: GgmlType, m: usize, k: usize, x: &'a [f32]) -> Self {
        assert!(k % QK == 0 && x.len() == m * k, "f32 block rows: k must be whole blocks");
        let sx = x.chunks_exact(QK).map(|b| b.iter().fold(0f32, |a, v| a + v)).collect();
        let x = match ty {
            GgmlType::Q8_0 => Cow::Borrowed(x),
            _ => Cow::Owned(x.chunks_exact(QK).flat_map(|b| (0..QK).map(move |i| b[nibble_at(i / 8, i % 8)])).collect()),
        };
        Self { k, x, sx }
    }

    fn row(&self, i: usize) -> (&[f32], &[f32]) {
        let kb = self.k / QK;
        (&self.x[i * self.k..][..self.k], &self.sx[i * kb..][..kb])
    }
}

/// Which of a 4-bit block's 32 weights lane `l` of group `g` holds after the in-lane unpack.
#[inline(always)]
fn nibble_at(g: usize, l: usize) -> usize {
    4 * (l % 4) + g + 16 * (l / 4)
}

/// The f32-activation tiles.
pub(super) struct WideTiles<'a> {
    pub rows: &'a WideRows<'a>,
    pub w: &'a BlockMatrix,
    pub simd: bool,
    /// Tiles of an even number of weight rows take the AVX-512 body (same bits as AVX2).
    pub avx512: bool,
}

impl Tiles for WideTiles<'_> {
    fn quad(&self) -> bool {
        self.simd && self.avx512
    }

    #[inline(always)]
    fn tile<const J: usize, const R: usize>(&self, j: usize, i: usize) -> [[f32; R]; J] {
        let rows: [&[u8]; J] = std::array::from_fn(|t| self.w.row(j + t));
        let xs: [(&[f32], &[f32]); R] = std::array::from_fn(|r| self.rows.row(i + r));
        #[cfg(target_arch = "x86_64")]
        if self.simd {
            if self.avx512 && J % 2 == 0 {
                // SAFETY: `avx512` is only true where AVX-512 F/DQ/VL and the AVX2 set were detected.
                return unsafe { super::widen_avx512::wide_tile_avx512::<J, R>(self.w.ty(), rows, xs) };
            }
            // SAFETY: `simd` is only true where AVX2, FMA and F16C were detected.
            return unsafe { wide_tile_avx2::<J, R>(self.w.ty(), rows, xs) };
        }
        wide_tile_portable::<J, R>(self.w.ty(), rows, xs)
    }
}

/// Lane `l` of group `g` of a block's packed values `qs`, as the unpack orders them.
#[inline(always)]
fn q_at(ty: GgmlType, qs: &[u8], g: usize, l: usize) -> f32 {
    match ty {
        GgmlType::Q8_0 => qs[8 * g + l] as i8 as f32,
        _ => {
            let i = nibble_at(g, l);
            if i < QK / 2 { (qs[i] & 0x0f) as f32 } else { (qs[i - QK / 2] >> 4) as f32 }
        }
    }
}

fn wide_tile_portable<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [(&[f32], &[f32]); R]) -> [[f32; R]; J] {
    let bsz = ty.block().expect("block type").1;
    let kb = xs[0].1.len();
    let mut out = [[0f32; R]; J];
    for t in 0..J {
        let mut acc = [[0f32; 8]; R];
        let mut min = [0f32; R];
        for b in 0..kb {
            let blk = &rows[t][b * bsz..][..bsz];
            let (d, mw, off) = block_params(ty, blk);
            let qs = &blk[off..];
            let q: [[f32; 8]; 4] = std::array::from_fn(|g| std::array::from_fn(|l| q_at(ty, qs, g, l)));
            for r in 0..R {
                let xb = &xs[r].0[b * QK..][..QK];
                let mut s = [0f32; 8];
                for l in 0..8 {
                    s[l] = q[0][l] * xb[l];
                }
                for g in 1..4 {
                    for l in 0..8 {
                        s[l] = q[g][l].mul_add(xb[8 * g + l], s[l]);
                    }
                }
                for l in 0..8 {
                    acc[r][l] = d.mul_add(s[l], acc[r][l]);
                }
                if ty != GgmlType::Q8_0 {
                    min[r] = mw.mul_add(xs[r].1[b], min[r]);
                }
            }
        }
        for r in 0..R {
            out[t][r] = reduce8(acc[r]) + min[r];
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn wide_tile_avx2<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [(&[f32], &[f32]); R]) -> [[f32; R]; J] {
    let kb = xs[0].1.len();
    check_rows(ty, &rows, kb);
    for r in 0..R {
        assert!(xs[r].0.len() >= kb * QK && xs[r].1.len() >= kb, "x row length");
    }
    // SAFETY: the lengths were checked above; the caller checked the target features.
    unsafe {
        match ty {
            GgmlType::Q8_0 => wide_loop::<J, R, Q8_0, 34>(rows, xs, kb),
            GgmlType::Q4_0 => wide_loop::<J, R, Q4_0, 18>(rows, xs, kb),
            _ => wide_loop::<J, R, Q4_1, 20>(rows, xs, kb),
        }
    }
}

/// One tile's blocks in order: per block, each of the J weight rows is widened once to four
/// 8-lane f32 groups and multiplied with each of the R x rows; `F` is the format, `BS` its
/// block size in bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn wide_loop<const J: usize, const R: usize, const F: u8, const BS: usize>(rows: [&[u8]; J], xs: [(&[f32], &[f32]); R], kb: usize) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    unsafe {
        let low = _mm256_set1_epi32(0x0f);
        let high_half = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
        let mut acc = [[_mm256_setzero_ps(); R]; J];
        let mut min = [[0f32; R]; J];
        let wp: [*const u8; J] = std::array::from_fn(|t| rows[t].as_ptr());
        for b in 0..kb {
            for t in 0..J {
                let blk = wp[t].add(b * BS);
                // Ahead of use: the next tile's rows start right after this one's.
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(J * BS * kb) as *const i8);
                let (d, mw, q): (f32, f32, [__m256; 4]) = if F == Q8_0 {
                    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u16) as i32)));
                    let q = std::array::from_fn(|g| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(blk.add(2 + 8 * g) as *const __m128i))));
                    (d, 0.0, q)
                } else {
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u32) as i32));
                    let d = _mm_cvtss_f32(dm);
                    let mw = if F == Q4_1 { _mm_cvtss_f32(_mm_shuffle_ps::<1>(dm, dm)) } else { -8.0 * d };
                    let v = _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(BS - QK / 2) as *const __m128i)), high_half);
                    let q = [
                        _mm256_cvtepi32_ps(_mm256_and_si256(v, low)),
                        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<8>(v), low)),
                        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<16>(v), low)),
                        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<24>(v), low)),
                    ];
                    (d, mw, q)
                };
                let dv = _mm256_set1_ps(d);
                for r in 0..R {
                    let xp = xs[r].0.as_ptr().add(b * QK);
                    let mut s = _mm256_mul_ps(q[0], _mm256_loadu_ps(xp));
                    s = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xp.add(8)), s);
                    s = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xp.add(16)), s);
                    s = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xp.add(24)), s);
                    acc[t][r] = _mm256_fmadd_ps(dv, s, acc[t][r]);
                    if F != Q8_0 {
                        min[t][r] = mw.mul_add(*xs[r].1.get_unchecked(b), min[t][r]);
                    }
                }
            }
        }
        let mut out = [[0f32; R]; J];
        for t in 0..J {
            for r in 0..R {
                out[t][r] = hsum(acc[t][r]) + min[t][r];
            }
        }
        out
    }
}
