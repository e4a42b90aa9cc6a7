//! Host (CPU) kernels for `y [m, n] = x [m, k] · Wᵀ`, W [n, k] stored row by row in a ggml block
//! format ([`BlockMatrix`]), for the few token rows of a decode, verification or draft step.
//!
//! A decode step on a CPU is bound by streaming the weights, so the kernels read the blocks as
//! stored (Q4_1: 0.625 bytes a weight against 4 for f32) and unpack them in registers:
//!
//! * **Q8_0, Q4_0, Q4_1: integer dot products** ([`Activations::Q8`], llama.cpp's way). Each x row is quantized once
//!   per call to 8 bits per 32-value block with an f32 scale ([`QuantRows`]). A block's dot
//!   product is exact in i32 (`maddubs` + `madd` on AVX2), then scaled by `d_w · d_x` into an
//!   8-lane f32 accumulator. Q4_1's minimum (and Q4_0's `-8`, written as the minimum `-8 d`)
//!   enters as `m_w · d_x · Σq_x` in a scalar accumulator.
//! * **Q8_0, Q4_0, Q4_1 against f32 activations** ([`Activations::F32`], the default): the blocks
//!   are widened in registers and meet the unrounded x in FMAs (`super::widen`).
//! * **F16, BF16: f32 FMAs** against the widened weight, like the f32 transposed kernel.
//!
//! **Same bits whatever the batch.** Every output element has its own accumulators, filled over
//! k in a fixed order and reduced by a fixed tree; which tile, row pair or thread computes it
//! does not change its arithmetic. A token verified inside a tree therefore gets the same
//! projections as the same token decoded alone, so greedy ReDrafter stays token-for-token equal
//! to greedy autoregressive decoding of the same quantized model (tests below, and the lossless
//! tests on native weights). The portable bodies do the same arithmetic lane for lane, so they
//! give the same bits as the AVX2 ones (tested where AVX2 exists).

use redrafter_io::gguf::{GgmlType, QK};

use super::{Activations, BlockMatrix};
#[cfg(target_arch = "x86_64")]
use crate::skinny_matmul::host::hsum;
use crate::skinny_matmul::host::{CacheAligned, SyncPtr, reduce8, split_columns};

/// x rows quantized for the integer kernels: per 32-value block, `q = round(x / d)` with
/// `d = max|x| / 127`, and `s = d · Σq` (what a weight block's minimum multiplies).
pub struct QuantRows {
    pub k: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl QuantRows {
    pub fn new(m: usize, k: usize, x: &[f32]) -> Self {
        assert!(k % QK == 0 && x.len() == m * k, "quantize rows: k must be whole blocks");
        let blocks = m * k / QK;
        let (mut q, mut d, mut s) = (vec![0i8; m * k], Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        for (xb, qb) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let db = amax / 127.0;
            let id = if db > 0.0 { 1.0 / db } else { 0.0 };
            let mut sum = 0i32;
            for (o, v) in qb.iter_mut().zip(xb) {
                *o = (v * id).round().clamp(-127.0, 127.0) as i8;
                sum += *o as i32;
            }
            d.push(db);
            s.push(db * sum as f32);
        }
        Self { k, q, d, s }
    }

    /// The values the integer kernels multiply by, for the reference: `d · q`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q.chunks_exact(QK).zip(&self.d).flat_map(|(qb, d)| qb.iter().map(move |q| d * *q as f32)).collect()
    }

    fn row(&self, i: usize) -> XRow<'_> {
        let kb = self.k / QK;
        XRow { q: &self.q[i * self.k..][..self.k], d: &self.d[i * kb..][..kb], s: &self.s[i * kb..][..kb] }
    }
}

#[derive(Clone, Copy)]
struct XRow<'a> {
    q: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
}

/// Whether the AVX2 bodies run (x86-64 with AVX2, FMA and F16C); elsewhere the portable bodies.
pub fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the f32-activation block tiles may use AVX-512 (F, DQ, VL) where [`simd`] holds;
/// `REDRAFTER_AVX512=0` turns it off (the AVX2 body gives the same bits).
pub fn avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var("REDRAFTER_AVX512").map_or(true, |v| v != "0")
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `y[m, n] = x[m, k] · Wᵀ`. Runs on every machine: AVX2 where [`simd`] says so, else the
/// portable bodies (same bits, slower).
pub fn matmul(m: usize, x: &[f32], w: &BlockMatrix, y: &mut [f32]) {
    matmul_with(m, x, w, y, simd())
}

/// [`matmul`] with the code path chosen by the caller (`simd` is ignored where unsupported).
pub fn matmul_with(m: usize, x: &[f32], w: &BlockMatrix, y: &mut [f32], simd: bool) {
    matmul_paths(m, x, w, y, simd, avx512())
}

/// [`matmul_with`], also choosing whether AVX-512 may serve (ignored where unsupported).
pub fn matmul_paths(m: usize, x: &[f32], w: &BlockMatrix, y: &mut [f32], simd: bool, avx512: bool) {
    let avx512 = avx512 && self::avx512();
    let (n, k) = (w.rows(), w.cols());
    assert!(x.len() == m * k && y.len() == m * n, "block matmul: slice lengths");
    if m == 0 || n == 0 {
        return;
    }
    let simd = simd && self::simd();
    // Every tile reads x rows from L1 once per weight row: keep them on cache lines.
    let aligned = CacheAligned::new(x);
    let x: &[f32] = &aligned;
    let out = SyncPtr(y.as_mut_ptr());
    match w.ty() {
        GgmlType::F16 | GgmlType::BF16 => {
            let bf16 = w.ty() == GgmlType::BF16;
            split_columns(m * n * k, n, &|lo, hi| {
                // SAFETY: tasks write disjoint column ranges [lo, hi) of every row of y.
                unsafe { half_cols(m, k, n, x, w, bf16, simd, out.get(), lo, hi) }
            });
        }
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => match w.activations() {
            Activations::Q8 => {
                let xq = QuantRows::new(m, k, x);
                by_tiles(m, n, k, &IntTiles { xq: &xq, w, simd }, out);
            }
            Activations::F32 => {
                #[cfg(target_arch = "x86_64")]
                if simd && !avx512 && m >= super::panel::min_rows(w.ty()) {
                    // SAFETY: `simd` holds only where AVX2, FMA and F16C were detected.
                    return unsafe { super::panel::matmul(m, x, w, out) };
                }
                by_tiles(m, n, k, &super::widen::WideTiles { x, w, simd, avx512 }, out);
            }
        },
        other => unreachable!("BlockMatrix::new refuses {other:?}"),
    }
}

fn f16_bits(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

// ---------------------------------------------------------------------------------------------
// Integer formats.

/// A weight block as the kernels see it: scale, minimum (Q4_0: `-8 d`, Q8_0: unused) and where
/// its packed values start.
#[inline(always)]
pub(super) fn block_params(ty: GgmlType, blk: &[u8]) -> (f32, f32, usize) {
    let d = f16_bits(blk, 0);
    match ty {
        GgmlType::Q4_1 => (d, f16_bits(blk, 2), 4),
        GgmlType::Q4_0 => (d, -8.0 * d, 2),
        _ => (d, 0.0, 2),
    }
}

/// One tile of a block product: weight rows `j..j + J` against x rows `i..i + R`.
pub(super) trait Tiles: Sync {
    fn tile<const J: usize, const R: usize>(&self, j: usize, i: usize) -> [[f32; R]; J];

    /// Which tiles the body's registers hold ([`block_cols`]).
    fn shape(&self) -> Shape {
        Shape::Pairs
    }
}

/// The tile shapes a body takes. Every (row, column) is its own accumulator chain whatever tile
/// holds it, so the shape changes speed only, never bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Shape {
    /// One x row against 4 weight rows (four independent chains), 2 against 4, and 3 or more
    /// against 2 weight rows (each unpacked block serves 4 x rows): the integer tiles.
    Pairs,
    /// 4 weight rows against up to 4 x rows (AVX-512's 32 registers hold the 16 accumulators).
    Quad,
    /// At most 4 accumulators of two registers each (AVX2's 16 registers): 4 weight rows against
    /// one x row, 2 against 2, and one against up to 4.
    Narrow,
}
/// `y [m, n]` (at `out`) in tiles, its columns split between threads.
fn by_tiles<T: Tiles>(m: usize, n: usize, k: usize, tiles: &T, out: SyncPtr) {
    split_columns(m * n * k, n, &|lo, hi| {
        // SAFETY: tasks write disjoint column ranges [lo, hi) of every row of y, which is m × n.
        unsafe { block_cols(m, n, tiles, out.get(), lo, hi) }
    });
}

/// Columns `lo..hi` of `y [m, n]` in tiles of the body's [`Shape`]: each pass over the rows takes
/// one column step (the tiles' weight rows), then single weight rows at the end of the range.
///
/// # Safety
/// `y` points at `m × n` floats, and no other task writes columns `lo..hi`.
unsafe fn block_cols<T: Tiles>(m: usize, n: usize, tiles: &T, y: *mut f32, lo: usize, hi: usize) {
    let wide = match tiles.shape() {
        Shape::Pairs if m <= 2 => 4,
        Shape::Pairs => 2,
        Shape::Quad => 4,
        Shape::Narrow => [4, 2, 1][m.min(3) - 1],
    };
    let mut j = lo;
    while j < hi {
        let step = if hi - j >= wide { wide } else { 1 };
        let mut i = 0;
        while i < m {
            macro_rules! tile {
                ($J:literal, $R:literal) => {{
                    let out = tiles.tile::<$J, $R>(j, i);
                    for t in 0..$J {
                        for r in 0..$R {
                            // SAFETY: (i + r, j + t) lies inside y and column j + t belongs to this task.
                            unsafe { *y.add((i + r) * n + j + t) = out[t][r] };
                        }
                    }
                    $R
                }};
            }
            i += match (step, m - i) {
                (4, 1) => tile!(4, 1),
                (4, 2) => tile!(4, 2),
                (4, 3) => tile!(4, 3),
                (4, _) => tile!(4, 4),
                (2, 1) => tile!(2, 1),
                (2, 2) => tile!(2, 2),
                (2, 3) => tile!(2, 3),
                (2, _) => tile!(2, 4),
                (_, 1) => tile!(1, 1),
                (_, 2) => tile!(1, 2),
                (_, 3) => tile!(1, 3),
                (_, _) => tile!(1, 4),
            };
        }
        j += step;
    }
}

/// The integer tiles: 8-bit x rows against the blocks.
struct IntTiles<'a> {
    xq: &'a QuantRows,
    w: &'a BlockMatrix,
    simd: bool,
}

impl Tiles for IntTiles<'_> {
    #[inline(always)]
    fn tile<const J: usize, const R: usize>(&self, j: usize, i: usize) -> [[f32; R]; J] {
        let rows: [&[u8]; J] = std::array::from_fn(|t| self.w.row(j + t));
        let xs: [XRow; R] = std::array::from_fn(|r| self.xq.row(i + r));
        int_tile::<J, R>(self.w.ty(), rows, xs, self.simd)
    }
}

#[inline(always)]
fn int_tile<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [XRow; R], simd: bool) -> [[f32; R]; J] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true where AVX2, FMA and F16C were detected.
        return unsafe { int_tile_avx2::<J, R>(ty, rows, xs) };
    }
    let _ = simd;
    int_tile_portable::<J, R>(ty, rows, xs)
}

/// Lane `l` of a block's integer dot product: bytes `4l..4l+4` (what `maddubs` + `madd` sum).
#[inline(always)]
fn lanes(w: impl Fn(usize) -> i32, x: &[i8]) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|t| w(t) * x[t] as i32).sum())
}

fn int_tile_portable<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [XRow; R]) -> [[f32; R]; J] {
    let bsz = ty.block().expect("block type").1;
    let kb = xs[0].d.len();
    let mut out = [[0f32; R]; J];
    for t in 0..J {
        let mut acc = [[0f32; 8]; R];
        let mut min = [0f32; R];
        for b in 0..kb {
            let blk = &rows[t][b * bsz..][..bsz];
            let (d, mw, off) = block_params(ty, blk);
            let qs = &blk[off..];
            for r in 0..R {
                let xb = &xs[r].q[b * QK..][..QK];
                let p = match ty {
                    GgmlType::Q8_0 => lanes(|i| qs[i] as i8 as i32, xb),
                    _ => lanes(|i| if i < QK / 2 { (qs[i] & 0x0f) as i32 } else { (qs[i - QK / 2] >> 4) as i32 }, xb),
                };
                let scale = d * xs[r].d[b];
                for l in 0..8 {
                    acc[r][l] = (p[l] as f32).mul_add(scale, acc[r][l]);
                }
                if ty != GgmlType::Q8_0 {
                    min[r] = mw.mul_add(xs[r].s[b], min[r]);
                }
            }
        }
        for r in 0..R {
            out[t][r] = reduce8(acc[r]) + min[r];
        }
    }
    out
}

/// Formats of the block kernels (integer and f32-activation), as const parameters so each gets
/// its own loop.
#[cfg(target_arch = "x86_64")]
pub(super) const Q8_0: u8 = 0;
#[cfg(target_arch = "x86_64")]
pub(super) const Q4_0: u8 = 1;
#[cfg(target_arch = "x86_64")]
pub(super) const Q4_1: u8 = 2;

/// Panics unless each weight row holds `kb` blocks of `ty`: what the SIMD bodies read unchecked.
#[cfg(target_arch = "x86_64")]
pub(super) fn check_rows(ty: GgmlType, rows: &[&[u8]], kb: usize) {
    let bytes = kb * ty.block().expect("block type").1;
    assert!(rows.iter().all(|r| r.len() >= bytes), "block row length");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn int_tile_avx2<const J: usize, const R: usize>(ty: GgmlType, rows: [&[u8]; J], xs: [XRow; R]) -> [[f32; R]; J] {
    let kb = xs[0].d.len();
    check_rows(ty, &rows, kb);
    for r in 0..R {
        assert!(xs[r].q.len() >= kb * QK && xs[r].s.len() >= kb, "x row length");
    }
    // SAFETY: the lengths were checked above; the caller checked the target features.
    unsafe {
        match ty {
            GgmlType::Q8_0 => int_loop::<J, R, Q8_0, 34>(rows, xs, kb),
            GgmlType::Q4_0 => int_loop::<J, R, Q4_0, 18>(rows, xs, kb),
            _ => int_loop::<J, R, Q4_1, 20>(rows, xs, kb),
        }
    }
}

/// One tile's blocks in order: per block, each of the J weight rows is unpacked once and
/// multiplied with each of the R x rows (`maddubs` → `madd` → i32 lanes → f32, times `d_w·d_x`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn int_loop<const J: usize, const R: usize, const F: u8, const BS: usize>(rows: [&[u8]; J], xs: [XRow; R], kb: usize) -> [[f32; R]; J] {
    use std::arch::x86_64::*;
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let low = _mm_set1_epi8(0x0f);
        let mut acc = [[_mm256_setzero_ps(); R]; J];
        let mut min = [[0f32; R]; J];
        let wp: [*const u8; J] = std::array::from_fn(|t| rows[t].as_ptr());
        for b in 0..kb {
            let xv: [__m256i; R] = std::array::from_fn(|r| _mm256_loadu_si256(xs[r].q.as_ptr().add(b * QK) as *const __m256i));
            let dx: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*xs[r].d.get_unchecked(b)));
            let sx: [f32; R] = std::array::from_fn(|r| *xs[r].s.get_unchecked(b));
            for t in 0..J {
                let blk = wp[t].add(b * BS);
                // Ahead of use: the next tile's rows start right after this one's.
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(J * BS * kb) as *const i8);
                if F == Q8_0 {
                    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(blk as *const u16) as i32));
                    let dv = _mm256_broadcastss_ps(d);
                    let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                    let wa = _mm256_sign_epi8(wv, wv);
                    for r in 0..R {
                        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv[r], wv)), ones);
                        // d_w · d_x rounded once, as the portable body's scalar product.
                        acc[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dv, dx[r]), acc[t][r]);
                    }
                } else {
                    let head = std::ptr::read_unaligned(blk as *const u32) as i32;
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(head));
                    let d = _mm_cvtss_f32(dm);
                    let dv = _mm256_broadcastss_ps(dm);
                    let mw = if F == Q4_1 { _mm_cvtss_f32(_mm_shuffle_ps::<1>(dm, dm)) } else { -8.0 * d };
                    let qs = _mm_loadu_si128(blk.add(if F == Q4_1 { 4 } else { 2 }) as *const __m128i);
                    let wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(qs), low), _mm_and_si128(qs, low));
                    for r in 0..R {
                        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv[r]), ones);
                        acc[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dv, dx[r]), acc[t][r]);
                        min[t][r] = mw.mul_add(sx[r], min[t][r]);
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

// ---------------------------------------------------------------------------------------------
// Half-precision formats.

/// Columns `lo..hi` of an F16/BF16 weight: pairs of x rows against 4 weight rows and a last x
/// row against 4 (one row alone: against 8, so eight accumulator chains hide the FMA latency),
/// then single weight rows at the end of the range.
#[allow(clippy::too_many_arguments)]
unsafe fn half_cols(m: usize, k: usize, n: usize, x: &[f32], w: &BlockMatrix, bf16: bool, simd: bool, y: *mut f32, lo: usize, hi: usize) {
    let wide = if m == 1 { 8 } else { 4 };
    let mut j = lo;
    while j < hi {
        let full = hi - j >= wide;
        let mut i = 0;
        while i < m {
            let pair = m - i >= 2;
            macro_rules! tile {
                ($J:literal, $R:literal) => {{
                    let rows: [&[u8]; $J] = std::array::from_fn(|t| w.row(j + t));
                    let xs: [&[f32]; $R] = std::array::from_fn(|r| &x[(i + r) * k..][..k]);
                    let out = half_tile::<$J, $R>(bf16, rows, xs, simd);
                    for t in 0..$J {
                        for r in 0..$R {
                            // SAFETY: (i + r, j + t) lies inside y and column j + t belongs to this task.
                            unsafe { *y.add((i + r) * n + j + t) = out[t][r] };
                        }
                    }
                    $R
                }};
            }
            i += match (full, wide, pair) {
                (true, 8, _) => tile!(8, 1),
                (true, _, true) => tile!(4, 2),
                (true, _, false) => tile!(4, 1),
                (false, _, true) => tile!(1, 2),
                (false, _, false) => tile!(1, 1),
            };
        }
        j += if full { wide } else { 1 };
    }
}

#[inline(always)]
fn half_tile<const J: usize, const R: usize>(bf16: bool, rows: [&[u8]; J], xs: [&[f32]; R], simd: bool) -> [[f32; R]; J] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true where AVX2, FMA and F16C were detected.
        return unsafe { half_tile_avx2::<J, R>(bf16, rows, xs) };
    }
    let _ = simd;
    half_tile_portable::<J, R>(bf16, rows, xs)
}

#[inline(always)]
fn half_at(bf16: bool, row: &[u8], c: usize) -> f32 {
    let b = [row[2 * c], row[2 * c + 1]];
    if bf16 { half::bf16::from_le_bytes(b).to_f32() } else { half::f16::from_le_bytes(b).to_f32() }
}

fn half_tile_portable<const J: usize, const R: usize>(bf16: bool, rows: [&[u8]; J], xs: [&[f32]; R]) -> [[f32; R]; J] {
    let k = xs[0].len();
    let kv = k / 8 * 8;
    let mut out = [[0f32; R]; J];
    for t in 0..J {
        for r in 0..R {
            let mut acc = [0f32; 8];
            for c in (0..kv).step_by(8) {
                for l in 0..8 {
                    acc[l] = xs[r][c + l].mul_add(half_at(bf16, rows[t], c + l), acc[l]);
                }
            }
            let mut tail = 0f32;
            for c in kv..k {
                tail = xs[r][c].mul_add(half_at(bf16, rows[t], c), tail);
            }
            out[t][r] = reduce8(acc) + tail;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_tile_avx2<const J: usize, const R: usize>(bf16: bool, rows: [&[u8]; J], xs: [&[f32]; R]) -> [[f32; R]; J] {
    // SAFETY: the caller checked the target features; every pointer read stays inside its slice.
    unsafe {
        use std::arch::x86_64::*;
        let k = xs[0].len();
        let kv = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); R]; J];
        let mut c = 0;
        while c < kv {
            if c % 32 == 0 {
                // The next tile's rows (right after this one's), a cache line ahead of use: the
                // J interleaved rows are J streams the hardware prefetcher alone keeps poorly
                // fed (Zen 3, one thread, the f16 head: one x row 4.9 → 4.2 ms, four 8.0 → 5.3).
                for row in &rows {
                    _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(2 * c + J * 2 * k).cast());
                }
            }
            let xv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(xs[r].as_ptr().add(c)));
            for t in 0..J {
                let raw = _mm_loadu_si128(rows[t].as_ptr().add(2 * c) as *const __m128i);
                let wv = if bf16 {
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16))
                } else {
                    _mm256_cvtph_ps(raw)
                };
                for r in 0..R {
                    acc[t][r] = _mm256_fmadd_ps(xv[r], wv, acc[t][r]);
                }
            }
            c += 8;
        }
        let mut out = [[0f32; R]; J];
        for t in 0..J {
            for r in 0..R {
                let mut tail = 0f32;
                for c in kv..k {
                    tail = xs[r][c].mul_add(half_at(bf16, rows[t], c), tail);
                }
                out[t][r] = hsum(acc[t][r]) + tail;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrafter_io::gguf::quantize;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// f64 dot products of what the kernel multiplies: the dequantized weight against x, or
    /// against the 8-bit x for the integer formats.
    fn want(m: usize, x: &[f32], w: &BlockMatrix) -> Vec<f64> {
        let (n, k) = (w.rows(), w.cols());
        let xs = match w.activations() {
            Activations::F32 => x.to_vec(),
            Activations::Q8 => QuantRows::new(m, k, x).dequantize(),
        };
        let wd = w.dequantize();
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k).map(|c| xs[i * k + c] as f64 * wd[j * k + c] as f64).sum();
            }
        }
        y
    }

    /// Shapes from 4 (Q8_0) or 5 rows on take the AVX2 panel (`super::panel`), with its tails: an
    /// odd last x row, and 1–3 weight rows after the panels of 4 (n = 5, 6, 9, 11, 37).
    #[test]
    fn every_format_matches_f64_is_row_independent_and_portable_equals_simd() {
        let formats = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16];
        let acts = [Activations::F32, Activations::Q8];
        for (ty, act) in formats.into_iter().flat_map(|t| acts.map(|a| (t, a))) {
            for &(m, k, n) in &[(1, 32, 1), (3, 64, 7), (2, 96, 13), (4, 64, 9), (4, 96, 5), (5, 576, 37), (5, 64, 6), (6, 64, 4), (7, 96, 6), (9, 64, 11), (17, 128, 9), (64, 64, 5)] {
                let x = data(m * k, 1);
                let w = BlockMatrix::new(ty, n, k, quantize(ty, &data(n * k, 2))).unwrap().with_activations(act);
                let mut y = vec![0f32; m * n];
                matmul(m, &x, &w, &mut y);
                let want = want(m, &x, &w);
                let scale = (k as f64).sqrt();
                for (g, w) in y.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() <= 1e-5 * scale * (1.0 + w.abs()), "{ty:?}/{act:?} {m}x{k}x{n}: {g} vs {w}");
                }
                for i in 0..m {
                    let mut one = vec![0f32; n];
                    matmul(1, &x[i * k..][..k], &w, &mut one);
                    assert_eq!(one, y[i * n..][..n], "{ty:?}/{act:?} {m}x{k}x{n}: row {i} alone");
                }
                let mut portable = vec![0f32; m * n];
                matmul_with(m, &x, &w, &mut portable, false);
                assert_eq!(portable, y, "{ty:?}/{act:?} {m}x{k}x{n}: portable vs simd");
                // Where AVX-512 serves by default, the AVX2 body must give the same bits too.
                let mut avx2 = vec![0f32; m * n];
                matmul_paths(m, &x, &w, &mut avx2, true, false);
                assert_eq!(avx2, y, "{ty:?}/{act:?} {m}x{k}x{n}: AVX2 vs default ({})", if avx512() { "AVX-512" } else { "AVX2" });
            }
        }
    }

    #[test]
    fn half_formats_take_a_tail_shorter_than_eight() {
        for ty in [GgmlType::F16, GgmlType::BF16] {
            let (m, k, n) = (3, 13, 11);
            let x = data(m * k, 5);
            let w = BlockMatrix::new(ty, n, k, quantize(ty, &data(n * k, 6))).unwrap();
            let mut y = vec![0f32; m * n];
            matmul(m, &x, &w, &mut y);
            for (g, w) in y.iter().zip(&want(m, &x, &w)) {
                assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{ty:?}: {g} vs {w}");
            }
            let mut one = vec![0f32; n];
            matmul(1, &x[2 * k..], &w, &mut one);
            assert_eq!(one, y[2 * n..]);
        }
    }

    #[test]
    fn zero_rows_quantize_to_zero() {
        let q = QuantRows::new(1, 32, &[0.0; 32]);
        assert_eq!((q.d[0], q.s[0]), (0.0, 0.0));
        assert!(q.q.iter().all(|v| *v == 0));
    }
}
