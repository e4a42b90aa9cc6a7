//! Small vector helpers shared by the host (Flex) kernels.

/// Whether this machine runs the AVX2 + FMA bodies.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `exp` of eight floats (Cephes' `expf`: n = round(x·log2 e), r = x − n·ln 2 in two parts, a
/// degree-5 polynomial, 2^n into the exponent), within 2 ulps; arguments are clamped to
/// [−87, 88] (exp(−87) ≈ 1.6e-38, the smallest result that stays a normal float).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0));
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_mul_ps(y, _mm256_castsi256_ps(e))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn exp8_is_within_two_ulps_of_f64_exp() {
        if !super::supported() {
            return;
        }
        use std::arch::x86_64::*;
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 80.0 {
            let xs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 1e-3);
            let mut got = [0f32; 8];
            // SAFETY: supported() checked AVX2 and FMA.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), super::exp8(_mm256_loadu_ps(xs.as_ptr()))) };
            for (g, x) in got.iter().zip(xs) {
                let want = (x as f64).exp();
                worst = worst.max(((*g as f64 - want) / want).abs());
            }
            x += 0.0173;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
    }
}
