//! The `#[cube]` beam-merge kernel and its launcher for `CubeBackend`: one cube per batch row.
//!
//! Each of the W·K candidates finds its rank by counting the candidates that beat it (joint score
//! by `f32::total_cmp`, then parent, then token: a strict total order, since a beam's candidate
//! tokens are distinct), so ranks are a permutation and the W best write their slot with no
//! sort and no shared state. O((W·K)²) comparisons per row spread over the cube's units; with
//! K = W that is 65 536 for W = 16, nothing next to a drafter step.

use burn::tensor::Shape;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use crate::order_key::order_key;

const UNITS: usize = 64;

/// Candidate row of beam `i` in batch row `b`.
#[cube]
fn cand_row(b: usize, i: usize, per_row: usize) -> usize {
    b * per_row + select(i < per_row, i, per_row - 1)
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn beam_merge_kernel<F: Float, I: Int>(
    scores: &Tensor<F>,
    logq: &Tensor<F>,
    ids: &Tensor<I>,
    beams: &Tensor<I>,
    out_scores: &mut Tensor<F>,
    out_rows: &mut Tensor<I>,
    out_beams: &mut Tensor<I>,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let b = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let w = scores.shape(1);
    let k = logq.shape(1);
    let per_row = logq.shape(0) / scores.shape(0);
    let t = beams.shape(2);
    let n = w * k;

    let mut c = unit;
    while c < n {
        let i = c / k;
        let row = cand_row(b, i, per_row);
        let joint = f32::cast_from(scores[b * scores.stride(0) + i * scores.stride(1)])
            + f32::cast_from(logq[row * logq.stride(0) + (c % k) * logq.stride(1)]);
        let key = order_key(joint);
        let tok = ids[row * ids.stride(0) + (c % k) * ids.stride(1)];
        let mut rank = 0usize;
        for o in 0..n {
            let io = o / k;
            let ro = cand_row(b, io, per_row);
            let ko = order_key(
                f32::cast_from(scores[b * scores.stride(0) + io * scores.stride(1)])
                    + f32::cast_from(logq[ro * logq.stride(0) + (o % k) * logq.stride(1)]),
            );
            let to = ids[ro * ids.stride(0) + (o % k) * ids.stride(1)];
            if ko > key || (ko == key && (io < i || (io == i && to < tok))) {
                rank += 1;
            }
        }
        if rank < w {
            out_scores[b * out_scores.stride(0) + rank * out_scores.stride(1)] = F::cast_from(joint);
            out_rows[b * out_rows.stride(0) + rank * out_rows.stride(1)] = I::cast_from(row);
            let src = b * beams.stride(0) + i * beams.stride(1);
            let dst = b * out_beams.stride(0) + rank * out_beams.stride(1);
            for x in 0..t {
                out_beams[dst + x * out_beams.stride(2)] = beams[src + x * beams.stride(2)];
            }
            out_beams[dst + t * out_beams.stride(2)] = tok;
        }
        c += UNITS;
    }
}

/// Launches the kernel; the arguments are those of
/// [`BeamMergeOps::beam_merge`](crate::BeamMergeOps::beam_merge).
pub(crate) fn launch<R: CubeRuntime>(
    scores: CubeTensor<R>,
    logq: CubeTensor<R>,
    ids: CubeTensor<R>,
    beams: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) {
    let (rows, w) = (scores.meta.shape()[0], scores.meta.shape()[1]);
    let t = beams.meta.shape()[2];
    let (fdt, idt) = (scores.dtype, ids.dtype);
    let alloc = |dims: Vec<usize>, dtype| empty_device_contiguous_dtype(scores.client.clone(), scores.device.clone(), Shape::from(dims), dtype);
    let out_scores = alloc(vec![rows, w], fdt);
    let out_rows = alloc(vec![rows, w], idt);
    let out_beams = alloc(vec![rows, w, t + 1], idt);
    beam_merge_kernel::launch::<R>(
        &scores.client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        scores.clone().into_tensor_arg(),
        logq.into_tensor_arg(),
        ids.into_tensor_arg(),
        beams.into_tensor_arg(),
        out_scores.clone().into_tensor_arg(),
        out_rows.clone().into_tensor_arg(),
        out_beams.clone().into_tensor_arg(),
        [fdt.into(), idt.into()],
    );
    (out_scores, out_rows, out_beams)
}
