//! The f32-activation block product for **many x rows on AVX2** (a batch, a wide tree, a batch
//! of trees): the weights are widened once per call, four rows at a time, into an f32 panel
//! in L1, and the panel meets the x rows in GEMM-like register tiles, with the bits of the
//! [`widen`](super::widen) tiles.
//!
//! **Why.** The AVX2 tiles of `widen` hold each (weight row, x row) accumulator in two
//! registers, so at most 4 pairs fit: one weight row against 4 x rows. With m x rows each
//! weight row is widened m / 4 times, and every FMA loads its x operand (from L2 once the x
//! rows outgrow L1). Measured on Zen 3 (SmolLM2-135M's products in Q4_1, one thread): 4 rows
//! 21 ms, 8 rows 44, 32 rows 227 — more than 2x the FMA count's cost at 32 rows.
//!
//! **How, with the same bits.** The `widen` arithmetic fixes per pair only the order within two
//! 8-lane chains: chain 0 takes weights 0–7 then 16–23 of each block, chain 1 weights 8–15 then
//! 24–31, block after block; the result is `hsum(chain 0 + chain 1)`. The chains are
//! independent, so a tile runs them one after the other (the "phased" schedule of
//! `skinny_matmul::host::transposed_phased_avx2`): one register per pair, and 4 weight rows × 2 x
//! rows = 8 accumulators, each widened weight vector (a load from the panel) serving 2 x rows
//! and each x vector serving 4 weight rows. Each weight is widened once per call, by the same
//! [`widen_block`] as the tiles, so the panel holds exactly the weights the tiles multiply. The
//! tiles and this path therefore give the same bits for every element, whatever the row count
//! (tests in `host`: every row alone, portable and AVX-512 bodies).
//!
//! Measured in the scratch benchmark (docs/skinny-matmul.md, "Many rows on the block formats"):
//! from 6 rows on the panel is faster (8 rows 39 ms against 43, 32 rows 140 against 227); at
//! 4 rows one pass of 1×4 tiles widens each 4-bit weight once anyway and stays faster. Since
//! session 38 the panel also takes 5 rows (where the tiles widen every weight twice) and, for
//! Q8_0, 4 ([`min_rows`]). AVX-512 keeps its own 4×4 tiles (32 registers hold 16 accumulators).

use redrafter_io::gguf::{GgmlType, QK};

use super::BlockMatrix;
use super::host::{Q4_0, Q4_1, Q8_0, check_rows};
use super::widen::widen_block;
use crate::skinny_matmul::host::{SyncPtr, hsum, split_columns};

/// From how many x rows on AVX2 takes the panel for a weight of format `ty` (below it, the
/// `widen` tiles are faster). Measured with `block_tiles` on Zen 3 (SmolLM2-135M's products,
/// one thread, median pass ms, docs/skinny-matmul.md "Panels from 4 and 5 rows"): at 5 rows the
/// 1×4 + 1×1 tiles widen every weight twice and cost more than 6 rows in the panel (Q4_1 layers
/// 26.3 → 22.5 ms, the Q8_0 head 11.4 → 7.3); at 4 rows the panel wins for the Q8_0 head (7.2 →
/// 6.2) but not for Q4_1 (16.7 → 18.5); at 2–3 rows the tiles win or tie.
pub(super) fn min_rows(ty: GgmlType) -> usize {
    if ty == GgmlType::Q8_0 { 4 } else { 5 }
}

/// Weight rows per panel (and per register tile).
const PANEL: usize = 4;

/// `y [m, n] = x [m, k] · Wᵀ` for a Q8_0, Q4_0 or Q4_1 weight against f32 x, columns split
/// between threads as in the tiles.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `x` holds `m × k` floats and `y` points at `m × n`.
pub(super) unsafe fn matmul(m: usize, x: &[f32], w: &BlockMatrix, y: SyncPtr) {
    let (n, k) = (w.rows(), w.cols());
    assert!(x.len() == m * k && k % QK == 0, "block panel: x is m × k, k whole blocks");
    split_columns(m * n * k, n, &|lo, hi| {
        // SAFETY: tasks write disjoint column ranges [lo, hi) of every row of y; the caller
        // checked the target features.
        unsafe {
            match w.ty() {
                GgmlType::Q8_0 => cols::<Q8_0, 34>(m, x, w, y.get(), lo, hi),
                GgmlType::Q4_0 => cols::<Q4_0, 18>(m, x, w, y.get(), lo, hi),
                GgmlType::Q4_1 => cols::<Q4_1, 20>(m, x, w, y.get(), lo, hi),
                other => unreachable!("the panel takes the integer block formats, not {other:?}"),
            }
        }
    });
}

/// Columns `lo..hi` of `y`: panels of 4 weight rows, then one panel of the 1–3 left.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn cols<const F: u8, const BS: usize>(m: usize, x: &[f32], w: &BlockMatrix, y: *mut f32, lo: usize, hi: usize) {
    use std::arch::x86_64::*;
    let k = w.cols();
    let kb = k / QK;
    // 32-byte vectors, so the panel's rows sit on vector boundaries (k is whole blocks).
    let mut panel = vec![_mm256_setzero_ps(); PANEL * k / 8];
    let p = panel.as_mut_ptr() as *mut f32;
    let mut j = lo;
    // SAFETY: each panel's rows are checked to hold kb blocks, x holds m × k floats, the panel
    // PANEL × k; y's columns lo..hi are this task's.
    unsafe {
        while j < hi {
            let take = (hi - j).min(PANEL);
            let rows: [&[u8]; PANEL] = std::array::from_fn(|t| w.row(j + t.min(take - 1)));
            check_rows(w.ty(), &rows[..take], kb);
            for (t, row) in rows[..take].iter().enumerate() {
                let blk = row.as_ptr();
                for b in 0..kb {
                    let g = widen_block::<F, BS>(blk.add(b * BS));
                    for (q, v) in g.into_iter().enumerate() {
                        _mm256_storeu_ps(p.add(t * k + b * QK + 8 * q), v);
                    }
                }
            }
            match take {
                4 => panel_rows::<4>(m, k, x, p, y, w.rows(), j),
                3 => panel_rows::<3>(m, k, x, p, y, w.rows(), j),
                2 => panel_rows::<2>(m, k, x, p, y, w.rows(), j),
                _ => panel_rows::<1>(m, k, x, p, y, w.rows(), j),
            }
            j += take;
        }
    }
}

/// Every x row against the J widened rows at `p`: pairs of x rows, then the last one alone.
///
/// # Safety
/// `p` holds J × k floats, `x` m × k, and columns `j..j + J` of `y [m, n]` are the caller's.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn panel_rows<const J: usize>(m: usize, k: usize, x: &[f32], p: *const f32, y: *mut f32, n: usize, j: usize) {
    let mut i = 0;
    // SAFETY: as the caller's contract says.
    unsafe {
        while i + 2 <= m {
            let out = tile::<J, 2>(p, k, x.as_ptr().add(i * k));
            for t in 0..J {
                for r in 0..2 {
                    *y.add((i + r) * n + j + t) = out[t][r];
                }
            }
            i += 2;
        }
        if i < m {
            let out = tile::<J, 1>(p, k, x.as_ptr().add(i * k));
            for t in 0..J {
                *y.add(i * n + j + t) = out[t][0];
            }
        }
    }
}

/// J panel rows × R x rows: chain 0 (weights 0–7 and 16–23 of every block) over all blocks,
/// then chain 1 (8–15 and 24–31), one accumulator per pair each time.
///
/// # Safety
/// `p` holds J × k floats and `x` R × k.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile<const J: usize, const R: usize>(p: *const f32, k: usize, x: *const f32) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    // SAFETY: every offset below is < k in a row of p or x.
    unsafe {
        let mut chains = [[[_mm256_setzero_ps(); R]; J]; 2];
        for (h, chain) in chains.iter_mut().enumerate() {
            let mut acc = *chain;
            for b in 0..k / QK {
                for g in [8 * h, 16 + 8 * h] {
                    let at = b * QK + g;
                    let xv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(x.add(r * k + at)));
                    for t in 0..J {
                        let wv = _mm256_loadu_ps(p.add(t * k + at));
                        for r in 0..R {
                            acc[t][r] = _mm256_fmadd_ps(wv, xv[r], acc[t][r]);
                        }
                    }
                }
            }
            *chain = acc;
        }
        let mut out = [[0f32; R]; J];
        for t in 0..J {
            for r in 0..R {
                out[t][r] = hsum(_mm256_add_ps(chains[0][t][r], chains[1][t][r]));
            }
        }
        out
    }
}
