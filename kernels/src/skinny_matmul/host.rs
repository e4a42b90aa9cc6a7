//! Host (CPU) kernels for `x [m, k] · w [k, n]` with few rows m.
//!
//! General GEMM libraries pack `w` into panels before multiplying. For m ≈ 1..64 that packing
//! reads and writes the whole weight once more, and on a 135M-parameter model the weights do not
//! fit in cache, so decoding 4 tree tokens cost 2.7x decoding one (docs/skinny-matmul.md). These
//! kernels stream `w` from memory exactly once and reuse each loaded piece for all m rows, so the
//! cost stays near the one-row cost while memory bandwidth, not arithmetic, is the limit.
//!
//! Every output element is accumulated in an order that depends only on k, never on m, on the
//! element's position or on the thread split. A row verified inside a tree therefore gets the
//! same bits as the same row decoded alone, which keeps greedy ReDrafter and autoregressive
//! decoding on the same logits.

/// Granularity of the column split between threads.
const NB: usize = 256;

/// Floats of y kept hot per column block of the row-major kernel.
const Y_BLOCK_FLOATS: usize = 8192;

/// Which fused-multiply-add code path this machine runs, if any.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `y[m, n] = x[m, k] · w[k, n]` with `w` row-major. Returns `false` (and leaves `y` alone) when
/// the machine has no FMA path, so the caller falls back to its general matmul.
pub fn matmul_rowmajor(m: usize, k: usize, n: usize, x: &[f32], w: &[f32], y: &mut [f32]) -> bool {
    run(m, k, n, x, w, y, ROWMAJOR)
}

/// `y[m, n] = x[m, k] · e[n, k]ᵀ`: dot products with the rows of `e` (a projection stored as
/// `[out, in]`, or a tied embedding table used as the output head). Returns `false` when the
/// machine has no FMA path.
pub fn matmul_transposed(m: usize, k: usize, n: usize, x: &[f32], e: &[f32], y: &mut [f32]) -> bool {
    run(m, k, n, &CacheAligned::new(x), e, y, TRANSPOSED)
}

/// A cache line of floats: the unit [`CacheAligned`] allocates.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([f32; 16]);

/// x rows starting on a cache line: borrowed when they already do, else copied. The kernels
/// read every x row once per weight row from L1, and a 32-byte load that straddles two cache
/// lines costs two; from a 16-byte-aligned heap buffer every other one does. Measured on the
/// f32 kernel (Zen 3, one thread, SmolLM2-135M's products): 4 rows 41.9 → 38.3 ms, 8 rows
/// 65.8 → 56.4, 16 rows 121.8 → 106.5, one row unchanged (docs/benchmarks.md, session 25). The
/// copy is m × k floats against n × k weights read.
pub(crate) enum CacheAligned<'a> {
    Borrowed(&'a [f32]),
    Copied(Vec<Line>, usize),
}

impl<'a> CacheAligned<'a> {
    pub(crate) fn new(x: &'a [f32]) -> Self {
        if (x.as_ptr() as usize).is_multiple_of(std::mem::align_of::<Line>()) {
            return Self::Borrowed(x);
        }
        let mut lines = vec![Line([0.0; 16]); x.len().div_ceil(16)];
        for (line, chunk) in lines.iter_mut().zip(x.chunks(16)) {
            line.0[..chunk.len()].copy_from_slice(chunk);
        }
        Self::Copied(lines, x.len())
    }
}

impl std::ops::Deref for CacheAligned<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Self::Borrowed(x) => x,
            // SAFETY: the lines are contiguous floats, at least `len` of them, all initialised.
            Self::Copied(lines, len) => unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), *len) },
        }
    }
}

/// Signature of the kernels: `(m, k, n, x, w, y, lo, hi)` fills columns `lo..hi` of y.
type Kernel = unsafe fn(usize, usize, usize, &[f32], &[f32], *mut f32, usize, usize);

// x86-64 takes the bodies compiled for AVX2+FMA (`supported` checks them at run time); aarch64
// always has FMA, so the plain bodies vectorise there.
#[cfg(target_arch = "x86_64")]
const ROWMAJOR: Kernel = rowmajor_avx2;
#[cfg(not(target_arch = "x86_64"))]
const ROWMAJOR: Kernel = rowmajor_body;
#[cfg(target_arch = "x86_64")]
const TRANSPOSED: Kernel = transposed_avx2;
#[cfg(not(target_arch = "x86_64"))]
const TRANSPOSED: Kernel = transposed_portable;

fn run(m: usize, k: usize, n: usize, x: &[f32], w: &[f32], y: &mut [f32], kernel: Kernel) -> bool {
    assert!(x.len() == m * k && w.len() == k * n && y.len() == m * n, "skinny matmul: slice lengths");
    if !supported() {
        return false;
    }
    let out = SyncPtr(y.as_mut_ptr());
    split_columns(m * n * k, n, &|lo, hi| {
        // SAFETY: tasks write disjoint column ranges [lo, hi) of every row of y.
        unsafe { kernel(m, k, n, x, w, out.get(), lo, hi) }
    });
    true
}

#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);
// SAFETY: only used to hand disjoint output ranges to worker threads.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}
impl SyncPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `f(lo, hi)` over column ranges, in parallel on the rayon pool when the work is large
/// enough to pay for it (the same scale at which burn-flex parallelises its matmul).
pub(crate) fn split_columns(work: usize, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    #[cfg(feature = "flex")]
    {
        let threads = rayon::current_num_threads();
        if threads > 1 && work >= 1 << 20 && n >= 2 * NB {
            let parts = threads.min(n / NB).max(1);
            // Whole NB blocks per part, so the per-element arithmetic never depends on the split.
            let blocks = n.div_ceil(NB);
            let per = blocks.div_ceil(parts) * NB;
            rayon::scope(|s| {
                for p in 0..parts {
                    let (lo, hi) = (p * per, ((p + 1) * per).min(n));
                    if lo < hi {
                        s.spawn(move |_| f(lo, hi));
                    }
                }
            });
            return;
        }
    }
    let _ = work;
    f(0, n)
}

/// The sum of eight lanes in a fixed order: `((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))`. Every
/// kernel that keeps 8-lane accumulators reduces them so, on the host as with AVX2 ([`hsum`]).
#[inline(always)]
pub(crate) fn reduce8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// [`reduce8`] of an AVX register.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rowmajor_avx2(m: usize, k: usize, n: usize, x: &[f32], w: &[f32], y: *mut f32, lo: usize, hi: usize) {
    unsafe { rowmajor_body(m, k, n, x, w, y, lo, hi) }
}

/// Column blocks of y; inside a block, w is consumed four rows at a time, in memory order, and every y row gets
/// `y += x0·w0 + x1·w1 + x2·w2 + x3·w3` as four chained FMAs. Compiled inside a target-feature
/// function, the j loop becomes vector FMAs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rowmajor_body(m: usize, k: usize, n: usize, x: &[f32], w: &[f32], y: *mut f32, lo: usize, hi: usize) {
    // A y block of at most 32 KiB stays in L1 while w streams through it in memory order.
    let block = (Y_BLOCK_FLOATS / m).max(64) / 16 * 16;
    let mut j0 = lo;
    while j0 < hi {
        let nb = block.min(hi - j0);
        for i in 0..m {
            // SAFETY: row i, columns [j0, j0 + nb) lie inside y and belong to this task.
            unsafe { std::slice::from_raw_parts_mut(y.add(i * n + j0), nb) }.fill(0.0);
        }
        let mut kk = 0;
        while kk + 4 <= k {
            let w0 = &w[kk * n + j0..][..nb];
            let w1 = &w[(kk + 1) * n + j0..][..nb];
            let w2 = &w[(kk + 2) * n + j0..][..nb];
            let w3 = &w[(kk + 3) * n + j0..][..nb];
            for i in 0..m {
                let a = &x[i * k + kk..][..4];
                // SAFETY: as above.
                let out = unsafe { std::slice::from_raw_parts_mut(y.add(i * n + j0), nb) };
                for j in 0..nb {
                    let mut acc = out[j];
                    acc = a[0].mul_add(w0[j], acc);
                    acc = a[1].mul_add(w1[j], acc);
                    acc = a[2].mul_add(w2[j], acc);
                    acc = a[3].mul_add(w3[j], acc);
                    out[j] = acc;
                }
            }
            kk += 4;
        }
        while kk < k {
            let w0 = &w[kk * n + j0..][..nb];
            for i in 0..m {
                let a0 = x[i * k + kk];
                // SAFETY: as above.
                let out = unsafe { std::slice::from_raw_parts_mut(y.add(i * n + j0), nb) };
                for j in 0..nb {
                    out[j] = a0.mul_add(w0[j], out[j]);
                }
            }
            kk += 1;
        }
        j0 += nb;
    }
}

/// Lanes of the transposed kernels' accumulators. Lane l sums the products at the positions
/// c ≡ l (mod 32) below `k / 32 · 32`, in order of c; [`reduce32`] then adds the lanes in a fixed
/// tree and the tail positions follow in order. Four AVX2 registers hold the 32 lanes; the
/// portable body keeps them in an array and gives the same bits.
const LANES: usize = 32;

/// The sum of 32 lanes in a fixed order: `(a[l] + a[l+16]) + (a[l+8] + a[l+24])` for the eight
/// l, then [`reduce8`].
#[inline(always)]
pub(crate) fn reduce32(a: &[f32; LANES]) -> f32 {
    reduce8(std::array::from_fn(|l| (a[l] + a[l + 16]) + (a[l + 8] + a[l + 24])))
}

/// The products past the last whole group of 32, in order.
#[inline(always)]
fn tail(k32: usize, xr: &[f32], er: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for c in k32..xr.len() {
        s = xr[c].mul_add(er[c], s);
    }
    s
}

/// One e row at a time, in memory order, against every x row (in groups that fit the registers;
/// the next group reads the row again from L1). On one core a single sequential stream is what
/// the hardware prefetcher keeps fed: on SmolLM2-135M's weights (Zen 4, one thread) the dot
/// products of one e row after another read at 24 GB/s, eight e rows interleaved at 18 GB/s and
/// the row-major form (`y += x[c] · w[c, :]`) at 15 GB/s, against 23–25 GB/s for a plain sum
/// (docs/skinny-matmul.md, "One e row at a time"). 256-bit registers on every x86 machine: a
/// 512-bit body was slower there at 1–4 rows (24.6 against 22.0 ms for the model's products at
/// one row), as its unaligned loads cross a cache line each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn transposed_avx2(m: usize, k: usize, n: usize, x: &[f32], e: &[f32], y: *mut f32, lo: usize, hi: usize) {
    use std::arch::x86_64::*;
    /// G x rows against one e row: four accumulators of 8 lanes (0..8, 8..16, 16..24, 24..32)
    /// per x row, folded to `(l + l+16) + (l+8 + l+24)` of reduce32's tree.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const G: usize, const PREFETCH: bool>(x: *const f32, k: usize, er: *const f32, k32: usize) -> [__m256; G] {
        let mut acc = [[_mm256_setzero_ps(); 4]; G];
        let mut c = 0;
        while c < k32 {
            if PREFETCH {
                // The next e row's two lines at this offset (a hint: no fault, even past the end).
                _mm_prefetch::<_MM_HINT_T0>(er.wrapping_add(k + c).cast());
                _mm_prefetch::<_MM_HINT_T0>(er.wrapping_add(k + c + 16).cast());
            }
            // SAFETY: c + 32 ≤ k32 ≤ k inside the e row and each x row.
            unsafe {
                let ev: [__m256; 4] = std::array::from_fn(|q| _mm256_loadu_ps(er.add(c + 8 * q)));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xr = x.add(r * k + c);
                    for q in 0..4 {
                        a[q] = _mm256_fmadd_ps(_mm256_loadu_ps(xr.add(8 * q)), ev[q], a[q]);
                    }
                }
            }
            c += LANES;
        }
        acc.map(|a| _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3])))
    }
    let k32 = k / LANES * LANES;
    if m >= PHASED_MIN_ROWS {
        // SAFETY: as this function's own contract (AVX2 + FMA, columns lo..hi of y are ours).
        unsafe { transposed_phased_avx2(m, k, n, x, e, y, lo, hi) };
        return;
    }
    for v in lo..hi {
        let er = &e[v * k..][..k];
        // Each x row's sums, reduced and stored (with the tail) at column v.
        let put = |i: usize, sums: &[__m256]| {
            for (r, s) in sums.iter().enumerate() {
                let xr = &x[(i + r) * k..][..k];
                // SAFETY: (i + r, v) lies inside y and column v belongs to this task.
                unsafe { *y.add((i + r) * n + v) = hsum(*s) + tail(k32, xr, er) };
            }
        };
        // Two rows at a time (8 accumulators and 4 e registers of the 16), then a last one. From
        // three x rows on, the FMAs take as long as reading the e row, and the hardware
        // prefetcher alone lets the stream stall: each pass also asks for the next e row's lines
        // (Zen 3, one thread, the model's products: 4 rows 36.9 → 34.5 ms, 8 rows 57.1 → 47.6;
        // at one or two rows the hint only costs, 25.7 → 32.3 ms at one).
        let mut i = 0;
        while i < m {
            // SAFETY: AVX2 and FMA are enabled here; the rows read (i, and i + 1 < m) exist.
            unsafe {
                let xs = x.as_ptr().add(i * k);
                match (m - i, m >= 3) {
                    (1, false) => put(i, &rows::<1, false>(xs, k, er.as_ptr(), k32)),
                    (1, true) => put(i, &rows::<1, true>(xs, k, er.as_ptr(), k32)),
                    (_, false) => put(i, &rows::<2, false>(xs, k, er.as_ptr(), k32)),
                    (_, true) => put(i, &rows::<2, true>(xs, k, er.as_ptr(), k32)),
                }
                i += (m - i).min(2);
            }
        }
    }
}

/// Rows from which [`transposed_phased_avx2`] replaces the one-e-row-at-a-time body (Zen 3, one
/// thread, the model's products: 16 rows 101 → 95 ms, 32 rows 205 → 154, 64 rows 422 → 277;
/// below 16 rows it is slower: 47 → 73 ms at 8).
const PHASED_MIN_ROWS: usize = 16;

/// The products of [`transposed_avx2`], bit for bit, scheduled for many x rows. That body keeps
/// four 8-lane partial sums per (e row, x row) pair (partial q takes lanes 8q..8q+8 of every
/// group of 32 positions, in order of position) and holds two x rows' eight of them in
/// registers, so it loads 1.5 operands per FMA and is load-bound from about 8 rows on. Here a
/// tile of 4 e rows × 2 x rows computes one partial q at a time over a block of 256 positions
/// (8 accumulators, one load of x per 4 FMAs and of e per 2), saving the tile's four partials in
/// memory between phases; each partial still adds its products in order of position, and the
/// fold `(p0 + p2) + (p1 + p3)`, [`hsum`] and the tail are the same, so every element gets the
/// same bits as from the other body, and a row the same bits whatever m.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn transposed_phased_avx2(m: usize, k: usize, n: usize, x: &[f32], e: &[f32], y: *mut f32, lo: usize, hi: usize) {
    use std::arch::x86_64::*;
    /// Positions per block: the tile's e and x pieces (6 KiB) stay in L1 over the four phases.
    const BLOCK: usize = 256;
    /// J e rows × R x rows, folded partials per pair.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const J: usize, const R: usize>(x: *const f32, k: usize, e: *const f32, k32: usize) -> [[__m256; R]; J] {
        let mut part = [[[_mm256_setzero_ps(); R]; J]; 4];
        let mut b = 0;
        while b < k32 {
            let end = (b + BLOCK).min(k32);
            for (q, p) in part.iter_mut().enumerate() {
                let mut acc = *p;
                let mut c = b + 8 * q;
                while c < end {
                    // SAFETY: c + 8 ≤ end ≤ k32 ≤ k inside each of the J e rows and R x rows.
                    unsafe {
                        let xv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(x.add(r * k + c)));
                        for (j, a) in acc.iter_mut().enumerate() {
                            let ev = _mm256_loadu_ps(e.add(j * k + c));
                            for (r, a) in a.iter_mut().enumerate() {
                                *a = _mm256_fmadd_ps(xv[r], ev, *a);
                            }
                        }
                    }
                    c += LANES;
                }
                *p = acc;
            }
            b = end;
        }
        std::array::from_fn(|j| {
            std::array::from_fn(|r| _mm256_add_ps(_mm256_add_ps(part[0][j][r], part[2][j][r]), _mm256_add_ps(part[1][j][r], part[3][j][r])))
        })
    }
    /// The tile at e row v, x row i, reduced and stored with the tails.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn put<const J: usize, const R: usize>(k: usize, n: usize, x: &[f32], e: &[f32], y: *mut f32, v: usize, i: usize, k32: usize) {
        // SAFETY: rows i..i + R of x and v..v + J of e exist (the callers' loops).
        let sums = unsafe { tile::<J, R>(x.as_ptr().add(i * k), k, e.as_ptr().add(v * k), k32) };
        for (j, row) in sums.iter().enumerate() {
            let er = &e[(v + j) * k..][..k];
            for (r, s) in row.iter().enumerate() {
                let xr = &x[(i + r) * k..][..k];
                // SAFETY: (i + r, v + j) lies inside y and column v + j belongs to this task.
                unsafe { *y.add((i + r) * n + v + j) = hsum(*s) + tail(k32, xr, er) };
            }
        }
    }
    /// Every x row against e rows v..v + J.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const J: usize>(m: usize, k: usize, n: usize, x: &[f32], e: &[f32], y: *mut f32, v: usize, k32: usize) {
        let mut i = 0;
        while i + 2 <= m {
            // SAFETY: forwarded.
            unsafe { put::<J, 2>(k, n, x, e, y, v, i, k32) };
            i += 2;
        }
        if i < m {
            // SAFETY: forwarded.
            unsafe { put::<J, 1>(k, n, x, e, y, v, i, k32) };
        }
    }
    let k32 = k / LANES * LANES;
    let mut v = lo;
    while v + 4 <= hi {
        // SAFETY: forwarded.
        unsafe { rows::<4>(m, k, n, x, e, y, v, k32) };
        v += 4;
    }
    while v < hi {
        // SAFETY: forwarded.
        unsafe { rows::<1>(m, k, n, x, e, y, v, k32) };
        v += 1;
    }
}

/// The same arithmetic with arrays (32 lanes, [`reduce32`], the tail in order), for targets
/// where FMA is always present.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[allow(clippy::too_many_arguments)]
unsafe fn transposed_portable(m: usize, k: usize, n: usize, x: &[f32], e: &[f32], y: *mut f32, lo: usize, hi: usize) {
    let k32 = k / LANES * LANES;
    for v in lo..hi {
        let er = &e[v * k..][..k];
        for i in 0..m {
            let xr = &x[i * k..][..k];
            let mut acc = [0f32; LANES];
            for c in (0..k32).step_by(LANES) {
                for l in 0..LANES {
                    acc[l] = xr[c + l].mul_add(er[c + l], acc[l]);
                }
            }
            // SAFETY: (i, v) lies inside y and v belongs to this task.
            unsafe { *y.add(i * n + v) = reduce32(&acc) + tail(k32, xr, er) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, x: &[f32], w_at: impl Fn(usize, usize) -> f32) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k).map(|c| x[i * k + c] as f64 * w_at(c, j) as f64).sum();
            }
        }
        y
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[test]
    fn both_layouts_match_f64_and_are_row_independent() {
        if !supported() {
            return;
        }
        for &(m, k, n) in &[(1, 5, 3), (3, 13, 600), (7, 64, 257), (16, 576, 300), (2, 9, 1), (5, 75, 33), (1, 1536, 40), (17, 600, 37), (40, 300, 13)] {
            let x = data(m * k, 1);
            let w = data(k * n, 2);
            let mut y = vec![0f32; m * n];
            assert!(matmul_rowmajor(m, k, n, &x, &w, &mut y));
            let want = naive(m, k, n, &x, |c, j| w[c * n + j]);
            let e = data(n * k, 3);
            let mut yt = vec![0f32; m * n];
            assert!(matmul_transposed(m, k, n, &x, &e, &mut yt));
            let want_t = naive(m, k, n, &x, |c, j| e[j * k + c]);
            for (got, want) in [(&y, &want), (&yt, &want_t)] {
                for (g, w) in got.iter().zip(want) {
                    assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}x{k}x{n}: {g} vs {w}");
                }
            }
            // Each row alone gives the same bits as inside the batch.
            for i in 0..m {
                let mut one = vec![0f32; n];
                matmul_rowmajor(1, k, n, &x[i * k..][..k], &w, &mut one);
                assert_eq!(one, y[i * n..][..n], "row-major row {i}");
                matmul_transposed(1, k, n, &x[i * k..][..k], &e, &mut one);
                assert_eq!(one, yt[i * n..][..n], "transposed row {i}");
            }
        }
    }

    /// Wherever x starts (copied onto cache lines or not), the bits are the same.
    #[test]
    fn x_alignment_does_not_change_bits() {
        if !supported() {
            return;
        }
        let (m, k, n) = (3, 96, 20);
        let (x, e) = (data(m * k, 8), data(n * k, 7));
        let mut want = None;
        for off in 0..16 {
            let mut buf = vec![0f32; m * k + 16];
            buf[off..off + m * k].copy_from_slice(&x);
            let placed = &buf[off..off + m * k];
            let aligned = CacheAligned::new(placed);
            assert_eq!(&aligned[..], &x[..], "offset {off}: the rows are x");
            assert_eq!(aligned.as_ptr() as usize % 64, 0, "offset {off}");
            let mut y = vec![0f32; m * n];
            assert!(matmul_transposed(m, k, n, placed, &e, &mut y));
            assert_eq!(&y, want.get_or_insert_with(|| y.clone()), "offset {off}");
        }
    }

    /// The x86 body and the portable one (what aarch64 runs) give the same bits, tails included.
    #[test]
    fn transposed_bodies_agree_bit_for_bit() {
        if !supported() {
            return;
        }
        for &(m, k, n) in &[(1, 576, 70), (3, 100, 17), (4, 31, 9), (5, 64, 12), (18, 600, 37), (33, 100, 9)] {
            let (x, e) = (data(m * k, 4), data(n * k, 5));
            let (mut fast, mut portable) = (vec![0f32; m * n], vec![0f32; m * n]);
            assert!(matmul_transposed(m, k, n, &x, &e, &mut fast));
            // SAFETY: the slices have the lengths the kernel reads and writes.
            unsafe { transposed_portable(m, k, n, &x, &e, portable.as_mut_ptr(), 0, n) };
            assert_eq!(fast, portable, "{m}x{k}x{n}");
        }
    }
}
