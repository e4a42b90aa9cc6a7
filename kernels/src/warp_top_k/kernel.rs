//! The `#[cube]` warp/top-k kernel and its launcher for `CubeBackend`: one cube per row of
//! logits, `UNITS` units striding over the vocabulary.
//!
//! 1. Radix select, 4 bits a pass over a 32-bit order key (`f32::total_cmp` as an unsigned
//!    number), finds the key of the `want`-th largest logit, `want = max(k, 50)`: every unit
//!    counts its logits per digit, the counts are summed through shared memory, and all units
//!    walk the 16 bins to the one holding the `want`-th. At most eight passes over the row: it
//!    stops scanning once the chosen bin holds exactly the winners still missing.
//! 2. If that key is tied and only some of the ties fit, the same select over the token ids
//!    (smallest first) picks which: ties go to the lower id, as on the host.
//! 3. The `want` winners are gathered (a prefix sum of per-unit counts gives each unit its
//!    offset) and sorted by rank counting, O(want) per winner.
//! 4. One more pass sums `exp(l − max)` over the logits at or above the 50th, for the log-softmax.
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

/// Units per row: a few warps; the row is tens of thousands of logits.
const UNITS: usize = 128;
/// Radix digits of 4 bits.
const BINS: usize = 16;

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

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn warp_top_k_kernel<F: Float, I: Int>(
    logits: &Tensor<F>,
    logq: &mut Tensor<F>,
    ids: &mut Tensor<I>,
    #[comptime] k: usize,
    #[comptime] keep: usize,
    #[comptime] want: usize,
    #[comptime] id_passes: u32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let v = logits.shape(1);
    let base = row * logits.stride(0);
    let step = logits.stride(1);

    let mut hist = SharedMemory::<u32>::new(UNITS * BINS);
    let mut totals = SharedMemory::<u32>::new(BINS);
    let mut local = Array::<u32>::new(BINS);

    // 1. The key of the want-th largest logit, or a key prefix whose bin holds exactly the
    //    missing winners: then every logit with that prefix or a larger one wins, and the
    //    remaining passes have nothing to scan. Rows of real logits get there in a few passes.
    let mut prefix = 0u32;
    let mut decided = 0u32;
    // A comptime value makes a constant; start from a literal to get a mutable local.
    let mut need = 0u32;
    need += comptime!(want as u32);
    let mut tied = 0u32;
    let mut done = false;
    for pass in 0..8u32 {
        let shift = 28u32 - pass * 4u32;
        for d in 0..BINS {
            local[d] = 0u32;
        }
        if !done {
            let mut j = unit;
            while j < v {
                let key = order_key(f32::cast_from(logits[base + j * step]));
                if (key & decided) == prefix {
                    local[usize::cast_from((key >> shift) & 15u32)] += 1u32;
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

    // 2. Only `need` of the `tied` logits equal to the want-th fit: take the lowest ids.
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
            while j < v {
                let id = j as u32;
                let key = order_key(f32::cast_from(logits[base + j * step]));
                if (key & decided) == prefix && (id & id_decided) == id_prefix {
                    local[usize::cast_from((id >> shift) & 15u32)] += 1u32;
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

    // 3. Gather the `want` winners: keys above the prefix, and those with it up to `id_limit`.
    let mut count = 0u32;
    let mut j = unit;
    while j < v {
        let key = order_key(f32::cast_from(logits[base + j * step])) & decided;
        if key > prefix || (key == prefix && (j as u32) <= id_limit) {
            count += 1u32;
        }
        j += UNITS;
    }
    hist[unit] = count;
    sync_cube();
    let mut offset = 0u32;
    for u in 0..unit {
        offset += hist[u];
    }
    let mut sel_val = SharedMemory::<f32>::new(want);
    let mut sel_id = SharedMemory::<u32>::new(want);
    let mut j = unit;
    while j < v {
        let x = f32::cast_from(logits[base + j * step]);
        let key = order_key(x) & decided;
        if key > prefix || (key == prefix && (j as u32) <= id_limit) {
            let at = usize::cast_from(offset);
            sel_val[at] = x;
            sel_id[at] = j as u32;
            offset += 1u32;
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

    // 4. log-softmax over the kept logits (those at or above the 50th largest).
    let max = sorted_val[0];
    let threshold = sorted_val[keep - 1];
    let mut partial = 0.0f32;
    let mut j = unit;
    while j < v {
        let x = f32::cast_from(logits[base + j * step]);
        if x >= threshold {
            partial += f32::exp(x - max);
        }
        j += UNITS;
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
        logq[row * logq.stride(0) + c * logq.stride(1)] = F::cast_from(lq);
        ids[row * ids.stride(0) + c * ids.stride(1)] = I::cast_from(sorted_id[c]);
        c += UNITS;
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
    let logq = empty_device_contiguous_dtype(logits.client.clone(), logits.device.clone(), [rows, k].into(), dtype);
    let ids = empty_device_contiguous_dtype(logits.client.clone(), logits.device.clone(), [rows, k].into(), int_dtype);
    if rows > 0 {
        warp_top_k_kernel::launch::<R>(
            &logits.client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            logits.clone().into_tensor_arg(),
            logq.clone().into_tensor_arg(),
            ids.clone().into_tensor_arg(),
            k,
            keep,
            want,
            id_passes,
            [dtype.into(), int_dtype.into()],
        );
    }
    (logq, ids)
}
