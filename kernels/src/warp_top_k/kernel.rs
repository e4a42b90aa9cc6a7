//! The `#[cube]` warp/top-k kernel and its launcher for `CubeBackend`.
//!
//! A row of a SmolLM2-sized vocabulary (49 152 logits) is too much for one cube to scan eight
//! times: on a GPU that is one workgroup doing hundreds of dependent loads per unit per pass
//! while the rest of the chip idles. So rows longer than the chunk length
//! ([`chunk_len`](super::chunk_len), 4096 by default) take two launches:
//! * **chunk**: one cube per chunk of a row (12 per SmolLM2 row) selects that chunk's
//!   `want` best (logit descending, lower id first). The row's `want` best are among the union,
//!   because the order is a strict total order. Each chunk also reports how many of its logits it
//!   left out that equal its smallest kept one (the log-softmax counts ties of the 50th);
//! * **merge**: one cube per row selects, sorts and normalises over the chunks' candidates.
//!
//! Shorter rows take the merge step alone, over the row itself ("direct"). Every step is the
//! same select:
//! 1. Radix select, 4 bits a pass over a 32-bit order key (`f32::total_cmp` as an unsigned
//!    number), finds the key of the `want`-th largest element, `want = max(k, 50)`: every unit
//!    counts its elements per digit, the counts are summed through shared memory, and all units
//!    walk the 16 bins to the one holding the `want`-th. At most eight passes: it stops scanning
//!    once the chosen bin holds exactly the winners still missing.
//! 2. If that key is tied and only some of the ties fit, the same select over the token ids
//!    (smallest first) picks which: ties go to the lower id, as on the host.
//! 3. The `want` winners are gathered (a prefix sum of per-unit counts gives each unit its
//!    offset); the merge sorts them by rank counting, O(want) per winner.
//! 4. The merge sums `exp(l − max)` over the logits at or above the 50th, for the log-softmax.
//!
//! No atomics, and every barrier sits in control flow whose trip counts are compile-time
//! constants, which WGSL's uniformity rules require.

use burn::tensor::DType;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use crate::order_key::order_key;

use super::{LOG_ZERO, WARP_TOP_K};

/// Units per cube: a few warps.
const UNITS: usize = 128;
/// Radix digits of 4 bits.
const BINS: usize = 16;

/// Which step a launch of [`warp_top_k_kernel`] runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Step {
    /// One cube per row over the row's logits: select, sort, normalise.
    Direct,
    /// One cube per chunk of a row: select the chunk's candidates.
    Chunk,
    /// One cube per row over the chunks' candidates: select, sort, normalise.
    Merge,
}

/// Publishes this unit's digit counts `local` to `hist` [UNITS, BINS] and sums every unit's into
/// `totals` (two barriers).
#[cube]
fn reduce_bins(local: &Array<u32>, hist: &mut SharedMemory<u32>, totals: &mut SharedMemory<u32>, unit: usize) {
    for d in 0..BINS {
        hist[unit * BINS + d] = local[d];
    }
    sync_cube();
    if unit < BINS {
        let mut s = 0u32;
        for u in 0..UNITS {
            s += hist[u * BINS + unit];
        }
        totals[unit] = s;
    }
    sync_cube();
}

/// A radix bin: its digit, the elements of the bins walked before it, and its own count.
#[derive(CubeType)]
struct Bin {
    digit: u32,
    before: u32,
    count: u32,
}

/// The bin that holds the `need`-th element, walking from the largest digit (`descending`) or
/// from the smallest: whole bins are skipped while they hold fewer than `need`.
#[cube]
fn find_bin(totals: &SharedMemory<u32>, need: u32, #[comptime] descending: bool) -> Bin {
    let flip = comptime!(if descending { 15u32 } else { 0u32 });
    let mut digit = 0u32;
    let mut before = 0u32;
    let mut count = 0u32;
    let mut found = false;
    for walked in 0..16u32 {
        let d = walked ^ flip;
        let c = totals[usize::cast_from(d)];
        if !found {
            if before + c >= need {
                digit = d;
                count = c;
                found = true;
            } else {
                before += c;
            }
        }
    }
    Bin { digit, before, count }
}

/// The key of +0, which [`float_class`] also gives −0.
const ZERO_CLASS: u32 = 0x8000_0000;

/// The order key with −0 folded onto +0: equal folded keys are equal floats (NaN aside), the
/// comparison the log-softmax's `l >= threshold` makes.
#[cube]
fn float_class(key: u32) -> u32 {
    select(key == 0x7FFF_FFFFu32, ZERO_CLASS, key)
}

/// Whether an element is one of the winners the select fixed: its key above the chosen prefix,
/// or at it with an id up to `id_limit`.
#[cube]
fn wins(key: u32, id: u32, decided: u32, prefix: u32, id_limit: u32) -> bool {
    let masked = key & decided;
    masked > prefix || (masked == prefix && id <= id_limit)
}

/// The kernel, for every [`Step`]. Element `j` of a cube is: logit `j` of the row (direct), logit
/// `start + j` (chunk), or candidate slot `j` of the row (merge; slot `c·want + i` is chunk `c`'s
/// `i`-th, valid while `i` is below that chunk's candidate count). `ids_in` / `extra_in` are the
/// chunk step's candidate ids and (smallest kept key class, left-out ties) per chunk, read by the
/// merge; `extra` is written by the chunk step. Unused tensors are one-element placeholders.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn warp_top_k_kernel<F: Float, I: Int>(
    vals: &Tensor<F>,
    ids_in: &Tensor<I>,
    extra_in: &Tensor<u32>,
    out_val: &mut Tensor<F>,
    out_id: &mut Tensor<I>,
    extra: &mut Tensor<u32>,
    #[comptime] step_kind: Step,
    #[comptime] vocab: usize,
    #[comptime] chunk_len: usize,
    #[comptime] k: usize,
    #[comptime] keep: usize,
    #[comptime] want: usize,
    #[comptime] id_passes: u32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let chunked = comptime!(step_kind == Step::Chunk);
    let merged = comptime!(step_kind == Step::Merge);
    let chunks = comptime!(vocab.div_ceil(chunk_len));
    let unit = UNIT_POS_X as usize;
    let row = select(chunked, CUBE_POS_Y as usize, CUBE_POS_X as usize);
    let chunk = CUBE_POS_X as usize;
    let start = select(chunked, chunk * chunk_len, 0usize);
    let stride = vals.stride(1);
    // Element j of this cube is vals[base + j * stride].
    let base = row * vals.stride(0) + start * stride;
    // Elements of this cube (the merge's include invalid slots, skipped by `valid`).
    let mut n = 0usize;
    n += comptime!(vocab);
    if comptime!(chunked) {
        let left = vocab - start;
        n = select(left < chunk_len, left, chunk_len);
    }
    if comptime!(merged) {
        n = 0usize;
        n += comptime!(chunks * want);
    }

    let mut hist = SharedMemory::<u32>::new(UNITS * BINS);
    let mut totals = SharedMemory::<u32>::new(BINS);
    let mut local = Array::<u32>::new(BINS);

    // 1. The key of the want-th largest element, or a key prefix whose bin holds exactly the
    //    missing winners: then every element with that prefix or a larger one wins, and the
    //    remaining passes have nothing to scan.
    let mut prefix = 0u32;
    let mut decided = 0u32;
    // A comptime value makes a constant; start from a literal to get a mutable local.
    let mut need = 0u32;
    need += comptime!(want as u32);
    if comptime!(chunked) {
        need = select(n < want, n as u32, need);
    }
    let mut tied = 0u32;
    let mut done = false;
    for pass in 0..8u32 {
        let shift = 28u32 - pass * 4u32;
        for d in 0..BINS {
            local[d] = 0u32;
        }
        if !done {
            let mut j = unit;
            while j < n {
                if valid(j, want, vocab, chunk_len, merged) {
                    let key = order_key(f32::cast_from(vals[base + j * stride]));
                    if (key & decided) == prefix {
                        local[usize::cast_from((key >> shift) & 15u32)] += 1u32;
                    }
                }
                j += UNITS;
            }
        }
        reduce_bins(&local, &mut hist, &mut totals, unit);
        if !done {
            let bin = find_bin(&totals, need, true);
            need -= bin.before;
            tied = bin.count;
            prefix |= bin.digit << shift;
            decided |= 15u32 << shift;
            done = bin.count == need;
        }
        sync_cube();
    }

    // 2. Only `need` of the `tied` elements equal to the want-th fit: take the lowest ids.
    let split_ties = need < tied;
    let mut id_prefix = 0u32;
    let mut id_decided = 0u32;
    for pass in 0..id_passes {
        let shift = (id_passes - 1u32 - pass) * 4u32;
        for d in 0..BINS {
            local[d] = 0u32;
        }
        if split_ties {
            let mut j = unit;
            while j < n {
                if valid(j, want, vocab, chunk_len, merged) {
                    let id = element_id(ids_in, row, start, j, merged);
                    let key = order_key(f32::cast_from(vals[base + j * stride]));
                    if (key & decided) == prefix && (id & id_decided) == id_prefix {
                        local[usize::cast_from((id >> shift) & 15u32)] += 1u32;
                    }
                }
                j += UNITS;
            }
        }
        reduce_bins(&local, &mut hist, &mut totals, unit);
        let bin = find_bin(&totals, need, false);
        if split_ties {
            need -= bin.before;
        }
        id_prefix |= bin.digit << shift;
        id_decided |= 15u32 << shift;
        sync_cube();
    }
    let id_limit = select(split_ties, id_prefix, 0xFFFF_FFFFu32);

    // 3. Gather the winners: keys above the prefix, and those with it up to `id_limit`.
    let mut count = 0u32;
    let mut j = unit;
    while j < n {
        if valid(j, want, vocab, chunk_len, merged) {
            let key = order_key(f32::cast_from(vals[base + j * stride]));
            let id = element_id(ids_in, row, start, j, merged);
            if wins(key, id, decided, prefix, id_limit) {
                count += 1u32;
            }
        }
        j += UNITS;
    }
    hist[unit] = count;
    sync_cube();
    let mut offset = 0u32;
    for u in 0..unit {
        offset += hist[u];
    }
    sync_cube();

    if comptime!(chunked) {
        // The candidates go straight to the merge's slots; the smallest kept key and the
        // left-out logits equal to it go to `extra`.
        let slot0 = row * out_val.stride(0) + chunk * want * out_val.stride(1);
        // Left-out logits equal to the smallest kept one are counted in the same pass. A loser
        // can share a winner's key only where the select split ties, i.e. ran every pass and
        // left `prefix` as the exact key of the smallest kept logit; so `same_key` counts them.
        // The zero class is the exception (−0 and +0 differ in key, not in value), hence `zeros`.
        let mut smallest = 0xFFFF_FFFFu32;
        let mut same_key = 0u32;
        let mut zeros = 0u32;
        let mut j = unit;
        while j < n {
            let x = vals[base + j * stride];
            let key = order_key(f32::cast_from(x));
            let id = (start + j) as u32;
            if wins(key, id, decided, prefix, id_limit) {
                let at = usize::cast_from(offset);
                out_val[slot0 + at * out_val.stride(1)] = x;
                out_id[row * out_id.stride(0) + (chunk * want + at) * out_id.stride(1)] = I::cast_from(id);
                offset += 1u32;
                smallest = select(key < smallest, key, smallest);
            } else {
                if key == prefix {
                    same_key += 1u32;
                }
                if float_class(key) == ZERO_CLASS {
                    zeros += 1u32;
                }
            }
            j += UNITS;
        }
        hist[unit * 3] = smallest;
        hist[unit * 3 + 1] = same_key;
        hist[unit * 3 + 2] = zeros;
        sync_cube();
        let mut cut = 0xFFFF_FFFFu32;
        let mut same_total = 0u32;
        let mut zeros_total = 0u32;
        for u in 0..UNITS {
            let s = hist[u * 3];
            cut = select(s < cut, s, cut);
            same_total += hist[u * 3 + 1];
            zeros_total += hist[u * 3 + 2];
        }
        let cut = float_class(cut);
        let left_out = select(cut == ZERO_CLASS, zeros_total, same_total);
        if unit == 0 {
            let at = row * extra.stride(0) + chunk * extra.stride(1);
            extra[at] = cut;
            extra[at + extra.stride(2)] = left_out;
        }
    } else {
        let mut sel_val = SharedMemory::<f32>::new(want);
        let mut sel_id = SharedMemory::<u32>::new(want);
        let mut j = unit;
        while j < n {
            if valid(j, want, vocab, chunk_len, merged) {
                let x = f32::cast_from(vals[base + j * stride]);
                let id = element_id(ids_in, row, start, j, merged);
                if wins(order_key(x), id, decided, prefix, id_limit) {
                    let at = usize::cast_from(offset);
                    sel_val[at] = x;
                    sel_id[at] = id;
                    offset += 1u32;
                }
            }
            j += UNITS;
        }
        sync_cube();
        let mut sorted_val = SharedMemory::<f32>::new(want);
        let mut sorted_id = SharedMemory::<u32>::new(want);
        let mut e = unit;
        while e < want {
            let key = order_key(sel_val[e]);
            let id = sel_id[e];
            let mut rank = 0usize;
            for o in 0..want {
                let ko = order_key(sel_val[o]);
                if ko > key || (ko == key && sel_id[o] < id) {
                    rank += 1;
                }
            }
            sorted_val[rank] = sel_val[e];
            sorted_id[rank] = id;
            e += UNITS;
        }
        sync_cube();

        // 4. log-softmax over the kept logits (those at or above the 50th largest): here the
        //    row's (direct) or the candidates' plus each chunk's left-out ties of the 50th (merge).
        let max = sorted_val[0];
        let threshold = sorted_val[keep - 1];
        let mut partial = 0.0f32;
        let mut j = unit;
        while j < n {
            if valid(j, want, vocab, chunk_len, merged) {
                let x = f32::cast_from(vals[base + j * stride]);
                if x >= threshold {
                    partial += f32::exp(x - max);
                }
            }
            j += UNITS;
        }
        if comptime!(merged) {
            let class = float_class(order_key(threshold));
            let tie = f32::exp(threshold - max);
            let mut c = unit;
            while c < chunks {
                let at = row * extra_in.stride(0) + c * extra_in.stride(1);
                if extra_in[at] == class {
                    partial += f32::cast_from(extra_in[at + extra_in.stride(2)]) * tie;
                }
                c += UNITS;
            }
        }
        let mut sums = SharedMemory::<f32>::new(UNITS);
        sums[unit] = partial;
        sync_cube();
        let mut total = 0.0f32;
        for u in 0..UNITS {
            total += sums[u];
        }
        let lse = f32::ln(total);

        let mut c = unit;
        while c < k {
            let x = sorted_val[c];
            let lq = select(x >= threshold, x - max - lse, LOG_ZERO - lse);
            out_val[row * out_val.stride(0) + c * out_val.stride(1)] = F::cast_from(lq);
            out_id[row * out_id.stride(0) + c * out_id.stride(1)] = I::cast_from(sorted_id[c]);
            c += UNITS;
        }
    }
}

/// Whether element `j` holds a value: always, except the merge's unused slots (chunk `c` has
/// `min(want, its length)` candidates).
#[cube]
fn valid(j: usize, #[comptime] want: usize, #[comptime] vocab: usize, #[comptime] chunk_len: usize, #[comptime] merged: bool) -> bool {
    let mut ok = true;
    if comptime!(merged) {
        let c = j / want;
        let left = vocab - c * chunk_len;
        let len = select(left < chunk_len, left, chunk_len);
        ok = (j % want) < len;
    }
    ok
}

/// The token id of element `j`: its position in the row, or the candidate's id (merge).
#[cube]
fn element_id<I: Int>(ids_in: &Tensor<I>, row: usize, start: usize, j: usize, #[comptime] merged: bool) -> u32 {
    if comptime!(merged) {
        u32::cast_from(ids_in[row * ids_in.stride(0) + j * ids_in.stride(1)])
    } else {
        (start + j) as u32
    }
}

/// Launches the kernel; the arguments are those of
/// [`WarpTopKOps::warp_top_k`](crate::WarpTopKOps::warp_top_k). `int_dtype` is the backend's
/// int type, for the ids.
pub(crate) fn launch<R: CubeRuntime>(logits: CubeTensor<R>, k: usize, int_dtype: DType) -> (CubeTensor<R>, CubeTensor<R>) {
    let shape = logits.meta.shape().clone();
    let (rows, v) = (shape[0], shape[1]);
    let dtype = logits.dtype;
    let k = k.min(v);
    let keep = WARP_TOP_K.min(v);
    let want = k.max(keep);
    // Enough 4-bit digits for the largest id, v − 1.
    let id_bits = usize::BITS - (v.max(2) - 1).leading_zeros();
    let id_passes = id_bits.div_ceil(4);
    let (client, device) = (logits.client.clone(), logits.device.clone());
    let empty = |shape: Vec<usize>, dtype: DType| empty_device_contiguous_dtype(client.clone(), device.clone(), shape.into(), dtype);
    let logq = empty(vec![rows, k], dtype);
    let ids = empty(vec![rows, k], int_dtype);
    if rows == 0 {
        return (logq, ids);
    }
    let chunk_len = super::chunk_len();
    let run = |step: Step, cubes: CubeCount, vals: &CubeTensor<R>, ids_in: &CubeTensor<R>, extra_in: &CubeTensor<R>, outs: [&CubeTensor<R>; 3]| {
        warp_top_k_kernel::launch::<R>(
            &client,
            cubes,
            CubeDim::new_1d(UNITS as u32),
            vals.clone().into_tensor_arg(),
            ids_in.clone().into_tensor_arg(),
            extra_in.clone().into_tensor_arg(),
            outs[0].clone().into_tensor_arg(),
            outs[1].clone().into_tensor_arg(),
            outs[2].clone().into_tensor_arg(),
            step,
            v,
            chunk_len.max(1),
            k,
            keep,
            want,
            id_passes,
            [dtype.into(), int_dtype.into()],
        );
    };
    // Placeholders for the tensors a step does not use; an input and an output are never one
    // buffer (wgpu refuses a buffer bound both read-only and read-write in one dispatch).
    let none_ids = empty(vec![1, 1], int_dtype);
    let none_extra_in = empty(vec![1, 1, 2], DType::U32);
    let none_extra_out = empty(vec![1, 1, 2], DType::U32);
    if chunk_len == 0 || v <= chunk_len {
        let cubes = CubeCount::Static(rows as u32, 1, 1);
        run(Step::Direct, cubes, &logits, &none_ids, &none_extra_in, [&logq, &ids, &none_extra_out]);
    } else {
        let chunks = v.div_ceil(chunk_len);
        let cand_val = empty(vec![rows, chunks * want], dtype);
        let cand_id = empty(vec![rows, chunks * want], int_dtype);
        let extra = empty(vec![rows, chunks, 2], DType::U32);
        let cubes = CubeCount::Static(chunks as u32, rows as u32, 1);
        run(Step::Chunk, cubes, &logits, &none_ids, &none_extra_in, [&cand_val, &cand_id, &extra]);
        let cubes = CubeCount::Static(rows as u32, 1, 1);
        run(Step::Merge, cubes, &cand_val, &cand_id, &extra, [&logq, &ids, &none_extra_out]);
    }
    (logq, ids)
}
