//! The `#[cube]` tree-build kernels and their launcher for `CubeBackend`: two launches, one unit
//! per beam position (b, i, k) or slot, over the N = W·L slot layout of [`super::DeviceTree`].
//!
//! The first pass derives each unit's node straight from the beams instead of sharing
//! intermediate arrays (lcp table, owner table, scan of own-suffix sizes) through shared memory
//! and barriers. That repeats O(W²·L) comparisons per unit, which for the trees ReDrafter drafts
//! (W·L up to a few hundred) is cheaper than the launches of the five-pass decomposition of spec
//! §3.10, and keeps the kernels free of compile-time sizes. The second pass reads the unpack map
//! back to fill the bitsets, O(L) per word instead of another O(W²·L) per ancestor.

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use crate::bits::words;

/// Length of the common prefix of beams `i` and `j` of row `b`.
#[cube]
fn lcp<I: Int>(beams: &Tensor<I>, b: usize, i: usize, j: usize) -> usize {
    let base = b * beams.stride(0);
    let mut n = 0usize;
    for k in 0..beams.shape(2) {
        if beams[base + i * beams.stride(1) + k * beams.stride(2)] != beams[base + j * beams.stride(1) + k * beams.stride(2)] {
            break;
        }
        n += 1;
    }
    n
}

/// f_j: the first depth at which beam `j` owns its node (L when an earlier beam equals it).
#[cube]
fn first_own<I: Int>(beams: &Tensor<I>, b: usize, j: usize) -> usize {
    let mut f = 0usize;
    for jj in 0..j {
        let n = lcp::<I>(beams, b, j, jj);
        if n > f {
            f = n;
        }
    }
    f
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn tree_build_kernel<I: Int>(
    beams: &Tensor<I>,
    lens: &Tensor<I>,
    tokens: &mut Tensor<I>,
    positions: &mut Tensor<I>,
    unpack: &mut Tensor<I>,
    packed_len: &mut Tensor<I>,
    src: &mut Tensor<I>,
    #[define(I)] _dtype: StorageType,
) {
    let width = beams.shape(1);
    let len = beams.shape(2);
    let slots = width * len;
    if ABSOLUTE_POS >= beams.shape(0) * slots {
        terminate!();
    }
    let b = ABSOLUTE_POS / slots;
    let slot = ABSOLUTE_POS % slots;
    let i = slot / len;
    let k = slot % len;

    // The owner T (the first beam sharing the prefix through k); the node's packed index is
    // start_T + k − f_T, start_T being the own-suffix sizes L − f_j of the beams before T. One
    // pass over the beams gives start_T, f_T and the row's node count, each f_j computed once.
    let mut owner = i;
    for j in 0..i {
        if owner == i && lcp::<I>(beams, b, i, j) > k {
            owner = j;
        }
    }
    let mut start = 0usize;
    let mut f_owner = 0usize;
    let mut total = 0usize;
    for j in 0..width {
        let f = first_own::<I>(beams, b, j);
        if j < owner {
            start += len - f;
        }
        if j == owner {
            f_owner = f;
        }
        total += len - f;
    }
    let me = start + k - f_owner;
    unpack[b * unpack.stride(0) + i * unpack.stride(1) + k * unpack.stride(2)] = I::cast_from(me);
    if slot == 0 {
        packed_len[b * packed_len.stride(0)] = I::cast_from(total);
    }
    let committed = lens[b * lens.stride(0)];
    // Own node: this unit is the only one to write slot `me`.
    if owner == i {
        tokens[b * tokens.stride(0) + me * tokens.stride(1)] =
            beams[b * beams.stride(0) + i * beams.stride(1) + k * beams.stride(2)];
        positions[b * positions.stride(0) + me * positions.stride(1)] = committed + I::cast_from(k);
        src[b * src.stride(0) + me * src.stride(1)] = I::cast_from(slot);
    }
    // Slots past the row's nodes are fillers; unit `slot` fills slot `slot`.
    if slot >= total {
        tokens[b * tokens.stride(0) + slot * tokens.stride(1)] = beams[b * beams.stride(0)];
        positions[b * positions.stride(0) + slot * positions.stride(1)] = committed;
    }
}

/// Second pass, one unit per slot: the ancestor bitset of node p on beam i at depth k is the set
/// `unpack[i][0..=k]` (read back from the first pass); a filler sees only itself.
#[cube(launch)]
fn tree_mask_kernel<I: Int>(
    unpack: &Tensor<I>,
    packed_len: &Tensor<I>,
    src: &Tensor<I>,
    bits: &mut Tensor<I>,
    #[define(I)] _dtype: StorageType,
) {
    let len = unpack.shape(2);
    let slots = unpack.shape(1) * len;
    if ABSOLUTE_POS >= unpack.shape(0) * slots {
        terminate!();
    }
    let b = ABSOLUTE_POS / slots;
    let slot = ABSOLUTE_POS % slots;
    let filler = slot >= usize::cast_from(packed_len[b * packed_len.stride(0)]);
    let mut i = 0usize;
    let mut k = 0usize;
    if !filler {
        let s = usize::cast_from(src[b * src.stride(0) + slot * src.stride(1)]);
        i = s / len;
        k = s % len;
    }
    let base = b * bits.stride(0) + slot * bits.stride(1);
    // 32-bit words, as in `crate::bits`.
    for w in 0..bits.shape(2) {
        let mut word = 0u32;
        if filler {
            if slot / 32 == w {
                word = 1u32 << u32::cast_from(slot % 32);
            }
        } else {
            for kk in 0..k + 1 {
                let q = usize::cast_from(unpack[b * unpack.stride(0) + i * unpack.stride(1) + kk * unpack.stride(2)]);
                if q / 32 == w {
                    word |= 1u32 << u32::cast_from(q % 32);
                }
            }
        }
        // Through i32 so that bit 31 reads as on the host: a negative i32, sign-extended in i64.
        bits[base + w * bits.stride(2)] = I::cast_from(i32::cast_from(word));
    }
}

/// Launches the two passes; the arguments are those of
/// [`TreeBuildOps::tree_build`](crate::TreeBuildOps::tree_build).
pub(crate) fn launch<R: CubeRuntime>(beams: CubeTensor<R>, lens: CubeTensor<R>) -> [CubeTensor<R>; 5] {
    let shape = beams.meta.shape().clone();
    let (rows, w, l) = (shape[0], shape[1], shape[2]);
    let n = w * l;
    let dtype = beams.dtype;
    let alloc = |dims: Vec<usize>| empty_device_contiguous_dtype(beams.client.clone(), beams.device.clone(), Shape::from(dims), dtype);
    let tokens = alloc(vec![rows, n]);
    let positions = alloc(vec![rows, n]);
    let bits = alloc(vec![rows, n, words(n)]);
    let unpack = alloc(vec![rows, w, l]);
    let packed_len = alloc(vec![rows]);
    // Beam-grid source of each packed node, for the mask pass (fillers are never read).
    let src = alloc(vec![rows, n]);
    let units = rows * n;
    if units > 0 {
        let lens = into_contiguous(lens);
        let cube_dim = CubeDim::new(&beams.client, units);
        let cube_count = calculate_cube_count_elemwise(&beams.client, units, cube_dim);
        tree_build_kernel::launch::<R>(
            &beams.client,
            cube_count.clone(),
            cube_dim,
            beams.clone().into_tensor_arg(),
            lens.into_tensor_arg(),
            tokens.clone().into_tensor_arg(),
            positions.clone().into_tensor_arg(),
            unpack.clone().into_tensor_arg(),
            packed_len.clone().into_tensor_arg(),
            src.clone().into_tensor_arg(),
            dtype.into(),
        );
        tree_mask_kernel::launch::<R>(
            &beams.client,
            cube_count,
            cube_dim,
            unpack.clone().into_tensor_arg(),
            packed_len.clone().into_tensor_arg(),
            src.into_tensor_arg(),
            bits.clone().into_tensor_arg(),
            dtype.into(),
        );
    }
    [tokens, positions, bits, unpack, packed_len]
}
