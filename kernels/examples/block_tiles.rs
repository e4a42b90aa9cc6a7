//! The block kernels' cost per extra token row, on one thread: the weight products of one
//! SmolLM2-135M forward (30 layers of q, k, v, o, gate, up, down in one format, and the tied
//! vocabulary head in Q8_0) for m = 1, 2, 3, … token rows, with each x86 body.
//!
//!     RAYON_NUM_THREADS=1 taskset -c 1 cargo run --release -p redrafter-kernels --features flex \
//!         --example block_tiles -- [--format q4_1] [--rows 1,2,3,4,5,8,16,32] [--reps 5]
//!
//! `--format f16` is `--weights f16`: every projection and the head as F16 blocks. `--format f32`
//! times the dense f32 kernels (`skinny_matmul::host`) instead, with the weights in both layouts:
//! as stored, `[out, in]` (dot products, what `--weights f32` loads on Flex), and `[in, out]` (row
//! updates), the f32 head as the `[vocab, hidden]` table.
//!
//! The weights sit in huge pages as the loader puts them (`redrafter_kernels::huge_pages`);
//! `REDRAFTER_HUGE_PAGES=0` keeps them in ordinary heap memory, for the comparison.
//!
//! Why: a decode step is one row, verifying a tree of t tokens is t rows, a batch of b rows is b
//! rows; how the time of a pass grows with m is what the verification and batched-decoding costs
//! come down to on the CPU (docs/skinny-matmul.md). Each layer has its own weights (about 70 MB
//! of Q4_1 in all), so the blocks stream from memory as in a real step instead of sitting in cache.
//! Prints the median ms per pass of `--reps` passes, its ratio to one row, and the fastest pass
//! (on a shared or virtual machine the minimum is the steadier estimate), per body; then the
//! roofline of this core: its measured FMA rate (independent register chains) and read
//! bandwidth (a sum over 512 MB), and what they allow a pass of m rows.

use std::time::Instant;

use redrafter_io::gguf::GgmlType;
use redrafter_kernels::block_matmul::{BlockMatrix, host};
use redrafter_kernels::huge_pages::{self, ArenaBytes, HugePageArena};
use redrafter_kernels::skinny_matmul::host as dense;

const HIDDEN: usize = 576;
const INTER: usize = 1536;
const KV: usize = 192;
const LAYERS: usize = 30;
const VOCAB: usize = 49152;

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Multiply-adds per second of one core in f32 FMAs (16 independent 512-bit chains where the
/// CPU has AVX-512, else 8-lane AVX2), from registers only.
fn fma_rate() -> f64 {
    let iters = 50_000_000u64;
    let t0 = Instant::now();
    let lanes = fma_chains(iters);
    iters as f64 * 16.0 * lanes as f64 / t0.elapsed().as_secs_f64()
}

#[cfg(target_arch = "x86_64")]
fn fma_chains(iters: u64) -> usize {
    if host::avx512() {
        // SAFETY: AVX-512 F was detected.
        unsafe { fma_chains_avx512(iters) };
        16
    } else if host::simd() {
        // SAFETY: AVX2 and FMA were detected.
        unsafe { fma_chains_avx2(iters) };
        8
    } else {
        0
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_chains(_: u64) -> usize {
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(iters: u64) {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 16];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    std::hint::black_box(acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iters: u64) {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 16];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    std::hint::black_box(acc);
}

/// Bytes per second one core reads from memory: the median of 3 sums over 512 MB.
fn read_rate() -> f64 {
    let v = vec![1u64; 64 << 20];
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            let s = v.chunks_exact(8).fold([0u64; 8], |mut a, c| {
                for i in 0..8 {
                    a[i] = a[i].wrapping_add(c[i]);
                }
                a
            });
            std::hint::black_box(s);
            (v.len() * 8) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let format = match arg(&args, "--format").unwrap_or("q4_1") {
        "q4_0" => GgmlType::Q4_0,
        "q4_1" => GgmlType::Q4_1,
        "q8_0" => GgmlType::Q8_0,
        "f16" => GgmlType::F16,
        "f32" => GgmlType::F32,
        other => {
            eprintln!("error: --format must be q4_0, q4_1, q8_0, f16 or f32, not {other:?}");
            std::process::exit(2);
        }
    };
    let rows: Vec<usize> = match arg(&args, "--rows").unwrap_or("1,2,3,4,5,8,16,32").split(',').map(str::parse).collect() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --rows takes comma-separated row counts: {e}");
            std::process::exit(2);
        }
    };
    let reps: usize = arg(&args, "--reps").map_or(Ok(5), str::parse).unwrap_or_else(|e| {
        eprintln!("error: --reps: {e}");
        std::process::exit(2);
    });
    if rows.iter().any(|&m| m == 0 || m > 256) || reps == 0 {
        eprintln!("error: rows must be 1..=256 and --reps at least 1");
        std::process::exit(2);
    }

    // (rows n, cols k) of each projection, in the order a layer runs them.
    let shapes = [(HIDDEN, HIDDEN), (KV, HIDDEN), (KV, HIDDEN), (HIDDEN, HIDDEN), (INTER, HIDDEN), (INTER, HIDDEN), (HIDDEN, INTER)];
    let arena = huge_pages::enabled().then(HugePageArena::new);
    eprintln!("weights in {}", if arena.is_some() { "huge pages" } else { "ordinary pages (REDRAFTER_HUGE_PAGES=0)" });
    if format == GgmlType::F32 {
        dense_f32(&shapes, &rows, reps, arena.as_ref());
        return;
    }
    // The loader's head: F16 blocks with `--weights f16`, the GGUF's Q8_0 with `native`.
    let head_format = if format == GgmlType::F16 { GgmlType::F16 } else { GgmlType::Q8_0 };
    eprintln!("quantizing {LAYERS} layers of {} and a {VOCAB}x{HIDDEN} {} head ...", format.name(), head_format.name());
    let place = |b: BlockMatrix| match &arena {
        Some(a) => b.in_huge_pages(a),
        None => b,
    };
    let layers: Vec<Vec<BlockMatrix>> = (0..LAYERS)
        .map(|l| {
            shapes
                .iter()
                .enumerate()
                .map(|(i, &(n, k))| place(BlockMatrix::from_f32(format, n, k, &values(n * k, (l * 16 + i) as u64)).expect("whole blocks")))
                .collect()
        })
        .collect();
    let head = place(BlockMatrix::from_f32(head_format, VOCAB, HIDDEN, &values(VOCAB * HIDDEN, 999)).expect("whole blocks"));

    let bodies: Vec<(&str, bool, bool)> = [("avx512", true, true), ("avx2", true, false)]
        .into_iter()
        .filter(|(_, _, wide)| !*wide || host::avx512())
        .filter(|_| host::simd())
        .collect();
    println!("| body | rows | layers ms | head ms | pass ms | pass / 1 row | min pass ms | min / 1 row |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, simd, avx512) in bodies {
        let (mut one, mut one_min) = (None, None);
        for &m in &rows {
            let x_hidden = values(m * HIDDEN, 7);
            let x_inter = values(m * INTER, 8);
            let mut y = vec![0f32; m * VOCAB.max(INTER)];
            let mut times = Vec::with_capacity(reps);
            for _ in 0..reps + 1 {
                let t0 = Instant::now();
                for layer in &layers {
                    for w in layer {
                        let x = if w.cols() == HIDDEN { &x_hidden } else { &x_inter };
                        host::matmul_paths(m, x, w, &mut y[..m * w.rows()], simd, avx512);
                    }
                }
                let t1 = Instant::now();
                host::matmul_paths(m, &x_hidden, &head, &mut y[..m * VOCAB], simd, avx512);
                let t2 = Instant::now();
                times.push(((t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3));
            }
            let (lay, hd, pass, min) = summarize(&mut times);
            let (base, base_min) = (*one.get_or_insert(pass), *one_min.get_or_insert(min));
            println!("| {name} | {m} | {lay:.2} | {hd:.2} | {pass:.2} | {:.2} | {min:.2} | {:.2} |", pass / base, min / base_min);
        }
    }

    let macs = (LAYERS * shapes.iter().map(|(n, k)| n * k).sum::<usize>() + VOCAB * HIDDEN) as f64;
    let bytes = (layers.iter().flatten().map(BlockMatrix::byte_len).sum::<usize>() + head.byte_len()) as f64;
    let (fma, read) = (fma_rate(), read_rate());
    println!();
    println!(
        "roofline: {:.1} GMAC/s of f32 FMAs, {:.1} GB/s read; a pass is {:.1} M multiply-adds per row over {:.1} MB of blocks",
        fma / 1e9,
        read / 1e9,
        macs / 1e6,
        bytes / 1e6
    );
    println!("| rows | FMA floor ms | read floor ms | floor ms |");
    println!("|---|---|---|---|");
    for &m in &rows {
        let (f, r) = (m as f64 * macs / fma * 1e3, bytes / read * 1e3);
        println!("| {m} | {f:.2} | {r:.2} | {:.2} |", f.max(r));
    }
}

/// Median of a non-empty list.
/// (layers, head) ms per pass, first pass dropped (it warms the pages): the medians of the
/// layers, the head and the whole pass, and the fastest whole pass.
fn summarize(times: &mut Vec<(f64, f64)>) -> (f64, f64, f64, f64) {
    times.remove(0);
    let med = |f: fn(&(f64, f64)) -> f64| median(times.iter().map(f).collect());
    let min = times.iter().map(|t| t.0 + t.1).fold(f64::INFINITY, f64::min);
    (med(|t| t.0), med(|t| t.1), med(|t| t.0 + t.1), min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `--format f32`: the dense kernels over f32 weights in both layouts, one pass = every layer's
/// projections and the tied head (a [vocab, hidden] table, dot products in both cases).
fn dense_f32(shapes: &[(usize, usize)], rows: &[usize], reps: usize, arena: Option<&HugePageArena>) {
    eprintln!("filling {LAYERS} layers and a {VOCAB}x{HIDDEN} head in f32 ...");
    // Stored [n, k]; the row-major copy holds the same values as [k, n].
    let stored: Vec<Vec<Weights>> = (0..LAYERS)
        .map(|l| shapes.iter().enumerate().map(|(i, &(n, k))| Weights::new(values(n * k, (l * 16 + i) as u64), arena)).collect())
        .collect();
    let rowmajor: Vec<Vec<Vec<f32>>> = stored
        .iter()
        .map(|layer| {
            layer
                .iter()
                .zip(shapes)
                .map(|(w, &(n, k))| {
                    let mut t = vec![0f32; n * k];
                    for r in 0..n {
                        for c in 0..k {
                            t[c * n + r] = w[r * k + c];
                        }
                    }
                    t
                })
                .collect()
        })
        .collect();
    let head = Weights::new(values(VOCAB * HIDDEN, 999), arena);
    println!("| weights | rows | layers ms | head ms | pass ms | pass / 1 row | min pass ms | GB/s (min pass) |");
    println!("|---|---|---|---|---|---|---|---|");
    let bytes = (LAYERS * shapes.iter().map(|(n, k)| n * k).sum::<usize>() + VOCAB * HIDDEN) as f64 * 4.0;
    for (name, stored_rows) in [("[out, in] (dot products)", true), ("[in, out] (row updates)", false)] {
        let mut one = None;
        for &m in rows {
            let x = values(m * INTER, 7);
            let mut y = vec![0f32; m * VOCAB];
            let mut times = Vec::with_capacity(reps);
            for _ in 0..reps + 1 {
                let t0 = Instant::now();
                for (l, layer) in stored.iter().enumerate() {
                    for (i, &(n, k)) in shapes.iter().enumerate() {
                        let (x, y) = (&x[..m * k], &mut y[..m * n]);
                        let ran = if stored_rows {
                            dense::matmul_transposed(m, k, n, x, &layer[i], y)
                        } else {
                            dense::matmul_rowmajor(m, k, n, x, &rowmajor[l][i], y)
                        };
                        assert!(ran, "this machine has no FMA path for the dense kernels");
                    }
                }
                let t1 = Instant::now();
                dense::matmul_transposed(m, HIDDEN, VOCAB, &x[..m * HIDDEN], &head, &mut y);
                let t2 = Instant::now();
                times.push(((t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3));
            }
            let (lay, hd, pass, min) = summarize(&mut times);
            let base = *one.get_or_insert(pass);
            println!("| {name} | {m} | {lay:.2} | {hd:.2} | {pass:.2} | {:.2} | {min:.2} | {:.1} |", pass / base, bytes / min / 1e6);
        }
    }
    println!();
    println!("roofline: {:.1} GB/s read (a sum over 512 MB); a pass reads {:.1} MB", read_rate() / 1e9, bytes / 1e6);
}

/// f32 weights where the loader would put them: in the huge-page arena, else a vector.
enum Weights {
    Heap(Vec<f32>),
    HugePages(ArenaBytes),
}

impl Weights {
    fn new(values: Vec<f32>, arena: Option<&HugePageArena>) -> Self {
        match arena.and_then(|a| a.copy_f32(&values)) {
            Some(bytes) => Self::HugePages(bytes),
            None => Self::Heap(values),
        }
    }
}

impl std::ops::Deref for Weights {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Self::Heap(v) => v,
            // SAFETY: the arena's slices start on a 64-byte line and hold the copied floats.
            Self::HugePages(b) => unsafe { std::slice::from_raw_parts(b.as_slice().as_ptr().cast::<f32>(), b.len() / 4) },
        }
    }
}
