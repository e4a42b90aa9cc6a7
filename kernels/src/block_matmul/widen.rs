//! Q8_0, Q4_0 and Q4_1 against f32 activations ([`Activations::F32`](super::Activations)):
//! each block is **dequantized in registers** to its 32 f32 weights (`w = d·q + m`, in the
//! block's own order) and meets the unrounded x in FMAs. `d·q` is exact in f32 (an f16 scale
//! times an integer of at most 8 bits), so `w` is exactly the weight that widening at load
//! produces ([`dequantize`](redrafter_io::gguf::dequantize)): the product is an f32 dot product
//! with the file's weights, only summed in another order than the dense path's.
//!
//! **The arithmetic, the same in every body.** Each output element has one 16-lane f32
//! accumulator. Per block, lane `l` takes `w[l]·x[l]`, then `w[16 + l]·x[16 + l]`, each as an FMA;
//! at the end lanes `l` and `l + 8` are added and [`reduce8`] sums the eight. The AVX-512 body
//! holds the accumulator in one register ([`widen_avx512`](super::widen_avx512)); the AVX2 body
//! in two (lanes 0–7 and 8–15); the portable body in an array. The bits are therefore those of
//! the portable body whatever the CPU, the tile or the batch, and a token verified inside a
//! tree gets the same projections as decoded alone.
//!
//! **Why per block and not per row** (docs/skinny-matmul.md, "Dequantize in registers"): the
//! scale and minimum are applied once per block, shared by every x row of a tile, so each x row
//! pays only its FMAs, which is what the cost of verifying a tree or decoding a batch grows
//! with. The AVX-512 body makes the 4-bit unpack a table lookup (the block's 16 possible weights
//! in one register, `vpermps` by nibble), cheaper than the shifts, masks and conversions of
//! the earlier in-lane unpack, which it replaces.

use redrafter_io::gguf::{GgmlType, QK};

use super::BlockMatrix;
use super::host::{Shape, Tiles, block_params};
#[cfg(target_arch = "x86_64")]
use super::host::{Q4_0, Q4_1, Q8_0, check_rows};
#[cfg(target_arch = "x86_64")]
use crate::skinny_matmul::host::hsum;
use crate::skinny_matmul::host::reduce8;

/// The f32-activation tiles: `x` is `[m, k]` row-major (k = the weight's columns), taken as
/// given (the weights are dequantized in their own order, so x needs no permutation).
pub(super) struct WideTiles<'a> {
    pub x: &'a [f32],
    pub w: &'a BlockMatrix,
    pub simd: bool,
    /// The AVX-512 body serves (same bits as AVX2 and portable).
    pub avx512: bool,
}

impl Tiles for WideTiles<'_> {
    fn shape(&self) -> Shape {
        // AVX-512 has 32 registers: 4 weight rows × 4 x rows of accumulators fit. The AVX2 body's
        // accumulators take two of its 16 registers each, so its tiles stay at 4 or fewer.
        if self.simd && self.avx512 { Shape::Quad } else { Shape::Narrow }
    }

    #[inline(always)]
    fn tile<const J: usize, const R: usize>(&self, j: usize, i: usize) -> [[f32; R]; J] {
        let rows: [&[u8]; J] = std::array::from_fn(|t| self.w.row(j + t));
        let k = self.w.cols();
        let xs: [&[f32]; R] = std::array::from_fn(|r| &self.x[(i + r) * k..][..k]);
        #[cfg(target_arch = "x86_64")]
        if self.simd {
            if self.avx512 {
                // SAFETY: `avx512` is only true where AVX-512 F/DQ/VL and the AVX2 set were detected.
                return unsafe { super::widen_avx512::wide_tile_avx512::<J, R>(self.w.ty(), rows, xs) };
            }
            // SAFETY: `simd` is only true where AVX2, FMA and F16C were detected.
            return unsafe { wide_tile_avx2::<J, R>(self.w.ty(), rows, xs) };
        }
        wide_tile_portable::<J, R>(self.w.ty(), rows, xs)
    }
}

/// A block's 32 weights in f32, in the block's order: `d·q` for Q8_0, `d·q + m` for the 4-bit
/// formats (Q4_0's `m` is `−8d`; weights 0–15 are the low nibbles of the 16 packed bytes, 16–31
/// the high ones), exactly as the SIMD bodies compute them.
#[inline(always)]
fn dequantize_block(ty: GgmlType, blk: &[u8]) -> [f32; QK] {
    let (d, m, off) = block_params(ty, blk);
    let qs = &blk[off..];
    std::array::from_fn(|i| match ty {
        GgmlType::Q8_0 => d * qs[i] as i8 as f32,
        _ => {
            let q = if i < QK / 2 { qs[i] & 0x0f } else { qs[i - QK / 2] >> 4 };
            d.mul_add(q as f32, m)
        }
    })
}

/// The 16 accumulator lanes summed: lanes `l` and `l + 8` first, then [`reduce8`].
#[inline(always)]
fn reduce16(a: &[f32; 16]) -> f32 {
    reduce8(std::array::from_fn(|l| a[l] + a[l + 8]))
}

fn wide_tile_portable<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [&[f32]; R]) -> [[f32; R]; J] {
    let bsz = ty.block().expect("block type").1;
    let kb = xs[0].len() / QK;
    let mut out = [[0f32; R]; J];
    for t in 0..J {
        let mut acc = [[0f32; 16]; R];
        for b in 0..kb {
            let w = dequantize_block(ty, &rows[t][b * bsz..][..bsz]);
            for r in 0..R {
                let xb = &xs[r][b * QK..][..QK];
                for h in 0..2 {
                    for l in 0..16 {
                        acc[r][l] = w[16 * h + l].mul_add(xb[16 * h + l], acc[r][l]);
                    }
                }
            }
        }
        for r in 0..R {
            out[t][r] = reduce16(&acc[r]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn wide_tile_avx2<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [&[f32]; R]) -> [[f32; R]; J] {
    let kb = xs[0].len() / QK;
    check_rows(ty, &rows, kb);
    for r in 0..R {
        assert!(xs[r].len() >= kb * QK, "x row length");
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

/// One block's 32 weights in f32 as four 8-lane groups (weights 0–7, 8–15, 16–23, 24–31):
/// `d·q` for Q8_0, `d·q + m` for the 4-bit formats, as [`dequantize_block`] computes them.
/// `F` is the format, `BS` its block size in bytes.
///
/// # Safety
/// `blk` points at `BS` readable bytes; the CPU supports AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn widen_block<const F: u8, const BS: usize>(blk: *const u8) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    unsafe {
        if F == Q8_0 {
            let d = _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u16) as i32))));
            std::array::from_fn(|g| _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(blk.add(2 + 8 * g) as *const __m128i)))))
        } else {
            let low = _mm256_set1_epi32(0x0f);
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const i32)));
            let d = _mm256_broadcastss_ps(dm);
            let m = if F == Q4_1 { _mm256_broadcastss_ps(_mm_movehdup_ps(dm)) } else { _mm256_mul_ps(_mm256_set1_ps(-8.0), d) };
            let qs = blk.add(BS - QK / 2);
            let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs as *const __m128i));
            let hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.add(8) as *const __m128i));
            [
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(lo, low)), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(hi, low)), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(lo)), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(hi)), m),
            ]
        }
    }
}

/// One tile's blocks in order: per block, each of the J weight rows is dequantized once to four
/// 8-lane groups (weights 0–7, 8–15, 16–23, 24–31) and multiplied with each of the R x rows;
/// groups 0 and 2 go to the accumulator's low register, 1 and 3 to its high one. `F` is the
/// format, `BS` its block size in bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn wide_loop<const J: usize, const R: usize, const F: u8, const BS: usize>(rows: [&[u8]; J], xs: [&[f32]; R], kb: usize) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; J];
        let wp: [*const u8; J] = std::array::from_fn(|t| rows[t].as_ptr());
        for b in 0..kb {
            for t in 0..J {
                let blk = wp[t].add(b * BS);
                // Ahead of use: the next tile's rows start right after this one's.
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(J * BS * kb) as *const i8);
                let w = widen_block::<F, BS>(blk);
                for r in 0..R {
                    let xp = xs[r].as_ptr().add(b * QK);
                    let [mut a0, mut a1] = acc[t][r];
                    a0 = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xp), a0);
                    a1 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xp.add(8)), a1);
                    a0 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xp.add(16)), a0);
                    a1 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xp.add(24)), a1);
                    acc[t][r] = [a0, a1];
                }
            }
        }
        let mut out = [[0f32; R]; J];
        for t in 0..J {
            for r in 0..R {
                out[t][r] = hsum(_mm256_add_ps(acc[t][r][0], acc[t][r][1]));
            }
        }
        out
    }
}
