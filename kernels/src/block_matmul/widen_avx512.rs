//! The f32-activation tiles of [`widen`](super::widen) on AVX-512: **one weight row's block
//! in two 16-lane registers**. Per block and weight row, the block's 16 possible weights
//! (`d·i + m` for i = 0..15, one FMA) sit in one register and `vpermps` looks up all 16 low
//! nibbles, then all 16 high ones, in order; Q8_0 widens its 32 bytes in two conversions. Each
//! x row then meets the row in two FMAs into its 16-lane accumulator (the arithmetic of the
//! portable body, so the same bits). A 4-bit block thus costs one zero-extension, one shift,
//! one FMA and two permutes per weight row, and two FMAs per x row: with f32 activations the
//! block kernels are compute-bound, not bandwidth-bound, on the CPUs measured
//! (docs/skinny-matmul.md), so these counts are the speed.

#[cfg(target_arch = "x86_64")]
use redrafter_io::gguf::{GgmlType, QK};

#[cfg(target_arch = "x86_64")]
use super::host::{Q4_0, Q4_1, Q8_0, check_rows};
#[cfg(target_arch = "x86_64")]
use crate::skinny_matmul::host::hsum;

/// `J` weight rows against `R` x rows; see the module docs.
///
/// # Safety
/// The CPU must support AVX-512 F, DQ and VL, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn wide_tile_avx512<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [&[f32]; R]) -> [[f32; R]; J] {
    let kb = xs[0].len() / QK;
    check_rows(ty, &rows, kb);
    for r in 0..R {
        assert!(xs[r].len() >= kb * QK, "x row length");
    }
    // SAFETY: the lengths were checked above; the caller checked the target features.
    unsafe {
        match ty {
            GgmlType::Q8_0 => row_loop::<J, R, Q8_0, 34>(rows, xs, kb),
            GgmlType::Q4_0 => row_loop::<J, R, Q4_0, 18>(rows, xs, kb),
            _ => row_loop::<J, R, Q4_1, 20>(rows, xs, kb),
        }
    }
}

/// One tile's blocks in order: per block, each of the J weight rows is dequantized once, then
/// each x row meets all of them (x is read once per block and row). `F` is the format, `BS` its
/// block size in bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn row_loop<const J: usize, const R: usize, const F: u8, const BS: usize>(rows: [&[u8]; J], xs: [&[f32]; R], kb: usize) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    unsafe {
        let iota = _mm512_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0);
        let mut acc = [[_mm512_setzero_ps(); R]; J];
        let wp: [*const u8; J] = std::array::from_fn(|t| rows[t].as_ptr());
        for b in 0..kb {
            let mut w = [[_mm512_setzero_ps(); 2]; J];
            for t in 0..J {
                let blk = wp[t].add(b * BS);
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(J * BS * kb) as *const i8);
                w[t] = if F == Q8_0 {
                    let d = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u16) as i32)));
                    std::array::from_fn(|h| _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(2 + 16 * h) as *const __m128i)))))
                } else {
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const i32)));
                    let d = _mm512_broadcastss_ps(dm);
                    let m = if F == Q4_1 { _mm512_broadcastss_ps(_mm_movehdup_ps(dm)) } else { _mm512_mul_ps(_mm512_set1_ps(-8.0), d) };
                    // The block's 16 possible weights, looked up by nibble: vpermps reads the
                    // low four bits of each index lane, so the low nibbles need no mask.
                    let table = _mm512_fmadd_ps(d, iota, m);
                    let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(blk.add(BS - QK / 2) as *const __m128i));
                    [_mm512_permutexvar_ps(bytes, table), _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(bytes), table)]
                };
            }
            for r in 0..R {
                let xp = xs[r].as_ptr().add(b * QK);
                let (x0, x1) = (_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16)));
                for t in 0..J {
                    acc[t][r] = _mm512_fmadd_ps(w[t][1], x1, _mm512_fmadd_ps(w[t][0], x0, acc[t][r]));
                }
            }
        }
        let mut out = [[0f32; R]; J];
        for t in 0..J {
            for r in 0..R {
                out[t][r] = hsum(_mm256_add_ps(_mm512_castps512_ps256(acc[t][r]), _mm512_extractf32x8_ps::<1>(acc[t][r])));
            }
        }
        out
    }
}
