//! The f32-activation tiles of [`widen`](super::widen) on AVX-512: **two weight rows per
//! 512-bit register**. Lanes 0–7 carry weight row t and lanes 8–15 row t + 1, each exactly the
//! 8-lane group the AVX2 body holds for that row, and x is the same 8 values broadcast to both
//! halves. Every lane then runs the AVX2 body's operations in the same order (`s = q0·x0`, three
//! FMAs, `acc = d·s + acc`, the scalar minimum, [`hsum`] of each half), so the outputs are
//! bit-identical to the AVX2 and portable bodies, whatever the tile; only twice as many of them
//! are computed per instruction, and the widening of two rows shares its shifts, masks and
//! conversions. Why it matters: with f32 activations the block kernels are compute-bound, not
//! bandwidth-bound, on this CPU (docs/skinny-matmul.md).

#[cfg(target_arch = "x86_64")]
use redrafter_io::gguf::{GgmlType, QK};

#[cfg(target_arch = "x86_64")]
use super::host::{Q4_0, Q4_1, Q8_0, check_rows};
#[cfg(target_arch = "x86_64")]
use crate::skinny_matmul::host::hsum;

/// `J` (even) weight rows against `R` x rows; see the module docs.
///
/// # Safety
/// The CPU must support AVX-512 F, DQ and VL, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn wide_tile_avx512<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [(&[f32], &[f32]); R]) -> [[f32; R]; J] {
    assert!(J % 2 == 0, "pairs of weight rows");
    let kb = xs[0].1.len();
    check_rows(ty, &rows, kb);
    for r in 0..R {
        assert!(xs[r].0.len() >= kb * QK && xs[r].1.len() >= kb, "x row length");
    }
    // SAFETY: the lengths were checked above; the caller checked the target features.
    unsafe {
        match ty {
            GgmlType::Q8_0 => pair_loop::<J, R, Q8_0, 34>(rows, xs, kb),
            GgmlType::Q4_0 => pair_loop::<J, R, Q4_0, 18>(rows, xs, kb),
            _ => pair_loop::<J, R, Q4_1, 20>(rows, xs, kb),
        }
    }
}

/// A block's scale (and Q4_1's minimum) as f32, exactly as the AVX2 body reads them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scales<const F: u8>(blk: *const u8) -> (f32, f32) {
    use std::arch::x86_64::*;
    unsafe {
        if F == Q8_0 {
            (_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u16) as i32))), 0.0)
        } else {
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u32) as i32));
            let d = _mm_cvtss_f32(dm);
            (d, if F == Q4_1 { _mm_cvtss_f32(_mm_shuffle_ps::<1>(dm, dm)) } else { -8.0 * d })
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn pair_loop<const J: usize, const R: usize, const F: u8, const BS: usize>(rows: [&[u8]; J], xs: [(&[f32], &[f32]); R], kb: usize) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    unsafe {
        let low = _mm512_set1_epi32(0x0f);
        let high_half = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
        // acc[p][r]: pair p (rows 2p, 2p + 1) against x row r. Only the first J / 2 are used.
        let mut acc = [[_mm512_setzero_ps(); R]; J];
        let mut min = [[0f32; R]; J];
        let wp: [*const u8; J] = std::array::from_fn(|t| rows[t].as_ptr());
        for b in 0..kb {
            // Widen every pair of the tile first, then let each x row meet all of them, so x is
            // read once per block and row (32 registers hold 4 rows × 4 x rows of accumulators).
            let mut q = [[_mm512_setzero_ps(); 4]; J];
            let mut dv = [_mm512_setzero_ps(); J];
            let mut mins = [(0f32, 0f32); J];
            for p in 0..J / 2 {
                let (b0, b1) = (wp[2 * p].add(b * BS), wp[2 * p + 1].add(b * BS));
                _mm_prefetch::<_MM_HINT_T0>(b0.wrapping_add(J * BS * kb) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(b1.wrapping_add(J * BS * kb) as *const i8);
                let ((d0, m0), (d1, m1)) = (scales::<F>(b0), scales::<F>(b1));
                q[p] = if F == Q8_0 {
                    std::array::from_fn(|g| {
                        let lo = _mm_loadl_epi64(b0.add(2 + 8 * g) as *const __m128i);
                        let hi = _mm_loadl_epi64(b1.add(2 + 8 * g) as *const __m128i);
                        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_unpacklo_epi64(lo, hi)))
                    })
                } else {
                    let v0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b0.add(BS - QK / 2) as *const __m128i));
                    let v1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b1.add(BS - QK / 2) as *const __m128i));
                    let v = _mm512_srlv_epi32(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(v0), v1), high_half);
                    [
                        _mm512_cvtepi32_ps(_mm512_and_si512(v, low)),
                        _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32::<8>(v), low)),
                        _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32::<16>(v), low)),
                        _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32::<24>(v), low)),
                    ]
                };
                dv[p] = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
                mins[p] = (m0, m1);
            }
            for r in 0..R {
                let xp = xs[r].0.as_ptr().add(b * QK);
                let x: [__m512; 4] = std::array::from_fn(|g| _mm512_broadcast_f32x8(_mm256_loadu_ps(xp.add(8 * g))));
                let sx = *xs[r].1.get_unchecked(b);
                for p in 0..J / 2 {
                    let mut s = _mm512_mul_ps(q[p][0], x[0]);
                    s = _mm512_fmadd_ps(q[p][1], x[1], s);
                    s = _mm512_fmadd_ps(q[p][2], x[2], s);
                    s = _mm512_fmadd_ps(q[p][3], x[3], s);
                    acc[p][r] = _mm512_fmadd_ps(dv[p], s, acc[p][r]);
                    if F != Q8_0 {
                        min[2 * p][r] = mins[p].0.mul_add(sx, min[2 * p][r]);
                        min[2 * p + 1][r] = mins[p].1.mul_add(sx, min[2 * p + 1][r]);
                    }
                }
            }
        }
        let mut out = [[0f32; R]; J];
        for p in 0..J / 2 {
            for r in 0..R {
                out[2 * p][r] = hsum(_mm512_castps512_ps256(acc[p][r])) + min[2 * p][r];
                out[2 * p + 1][r] = hsum(_mm512_extractf32x8_ps::<1>(acc[p][r])) + min[2 * p + 1][r];
            }
        }
        out
    }
}
