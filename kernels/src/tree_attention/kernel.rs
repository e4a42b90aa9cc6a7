//! The `#[cube]` tree-attention kernel and its launcher for `CubeBackend`.
//!
//! One cube per query (x: block position, y: query head, z: row). Its `SPLIT` units take the
//! row's keys round-robin (committed slots first, then the block keys the query's bitset allows),
//! each folding them into its own online-softmax state (running max, sum, weighted values); the
//! states are merged through shared memory. Committed keys are read in place from the cache
//! tensor, strided, so neither the cache nor the permuted q/k/v need a copy. Nothing of size
//! T × (S + T) is ever materialised.
//!
//! Storage is the tensors' float type `F` (f32, f16 or bf16). Scores, the softmax state and the
//! weighted values are in `A`, which the launcher sets to f32 whatever `F` is: a half-precision
//! running sum over hundreds of keys would lose about as many bits as the inputs have, while
//! here the output is rounded to `F` once.

use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

/// Units per query. A warp on CUDA; the committed length is usually hundreds of keys.
const SPLIT: usize = 32;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn tree_attention_kernel<F: Float, I: Int, A: Float>(
    q: &Tensor<F>,
    kc: &Tensor<F>,
    vc: &Tensor<F>,
    lens: &Tensor<I>,
    kb: &Tensor<F>,
    vb: &Tensor<F>,
    bits: &Tensor<I>,
    out: &mut Tensor<F>,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] split: usize,
    #[comptime] has_cache: bool,
    #[define(F, I, A)] _dtypes: [StorageType; 3],
) {
    let i = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let unit = UNIT_POS_X as usize;
    let t = kb.shape(2);
    let kvh = h / (q.shape(1) / kb.shape(1));

    let q_base = b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
    let mut qv = Array::<A>::new(head_dim);
    let mut acc = Array::<A>::new(head_dim);
    for d in 0..head_dim {
        qv[d] = A::cast_from(q[q_base + d * q.stride(3)]) * A::cast_from(scale);
        acc[d] = A::new(0.0);
    }
    let mut m = A::new(-1.0e30);
    let mut l = A::new(0.0);

    let mut len = 0usize;
    if comptime!(has_cache) {
        len = usize::cast_from(lens[b * lens.stride(0)]);
    }
    let kc_base = b * kc.stride(0) + kvh * kc.stride(1);
    let vc_base = b * vc.stride(0) + kvh * vc.stride(1);
    let kb_base = b * kb.stride(0) + kvh * kb.stride(1);
    let vb_base = b * vb.stride(0) + kvh * vb.stride(1);
    let bits_base = b * bits.stride(0) + i * bits.stride(1);

    let mut j = unit;
    while j < len + t {
        let in_cache = j < len;
        let jb = j - select(in_cache, 0, len);
        let mut visible = true;
        if !in_cache {
            let word = u32::cast_from(bits[bits_base + (jb / 32) * bits.stride(2)]);
            visible = ((word >> u32::cast_from(jb % 32)) & 1u32) == 1u32;
        }
        if visible {
            // Branches, not `select`: the other tensor's index may be out of bounds.
            let mut s = A::new(0.0);
            if in_cache {
                let ko = kc_base + j * kc.stride(2);
                for d in 0..head_dim {
                    s += qv[d] * A::cast_from(kc[ko + d * kc.stride(3)]);
                }
            } else {
                let ko = kb_base + jb * kb.stride(2);
                for d in 0..head_dim {
                    s += qv[d] * A::cast_from(kb[ko + d * kb.stride(3)]);
                }
            }
            let m_new = A::max(m, s);
            let corr = A::exp(m - m_new);
            let p = A::exp(s - m_new);
            l = l * corr + p;
            if in_cache {
                let vo = vc_base + j * vc.stride(2);
                for d in 0..head_dim {
                    acc[d] = acc[d] * corr + p * A::cast_from(vc[vo + d * vc.stride(3)]);
                }
            } else {
                let vo = vb_base + jb * vb.stride(2);
                for d in 0..head_dim {
                    acc[d] = acc[d] * corr + p * A::cast_from(vb[vo + d * vb.stride(3)]);
                }
            }
            m = m_new;
        }
        j += split;
    }

    let mut sm_m = SharedMemory::<A>::new(split);
    let mut sm_l = SharedMemory::<A>::new(split);
    let mut sm_acc = SharedMemory::<A>::new(split * head_dim);
    sm_m[unit] = m;
    sm_l[unit] = l;
    for d in 0..head_dim {
        sm_acc[unit * head_dim + d] = acc[d];
    }
    sync_cube();

    let mut gm = A::new(-1.0e30);
    for u in 0..split {
        gm = A::max(gm, sm_m[u]);
    }
    let mut total = A::new(0.0);
    for u in 0..split {
        total += sm_l[u] * A::exp(sm_m[u] - gm);
    }
    let o_base = b * out.stride(0) + h * out.stride(1) + i * out.stride(2);
    let mut d = unit;
    while d < head_dim {
        let mut o = A::new(0.0);
        for u in 0..split {
            o += sm_acc[u * head_dim + d] * A::exp(sm_m[u] - gm);
        }
        out[o_base + d * out.stride(3)] = F::cast_from(o / total);
        d += split;
    }
}

/// Launches the kernel; the arguments are those of
/// [`TreeAttentionOps::tree_attention`](crate::TreeAttentionOps::tree_attention).
pub(crate) fn launch<R: CubeRuntime>(
    q: CubeTensor<R>,
    committed: Option<(CubeTensor<R>, CubeTensor<R>)>,
    lens: CubeTensor<R>,
    kb: CubeTensor<R>,
    vb: CubeTensor<R>,
    bits: CubeTensor<R>,
    scale: f32,
) -> CubeTensor<R> {
    let shape = q.meta.shape().clone();
    let (b, h, t, d) = (shape[0], shape[1], shape[2], shape[3]);
    let dtype: DType = q.dtype;
    // One element type for the whole launch; the model keeps its cache in the activations' type.
    let mismatch = [&kb, &vb].into_iter().chain(committed.iter().flat_map(|(k, v)| [k, v])).find(|x| x.dtype != dtype);
    assert!(mismatch.is_none(), "tree_attention: q is {dtype:?} but a key/value tensor is {:?}", mismatch.map(|x| x.dtype));
    let int_dtype: DType = bits.dtype;
    let out = empty_device_contiguous_dtype(q.client.clone(), q.device.clone(), shape, dtype);
    let has_cache = committed.is_some();
    // Without committed keys the kernel never reads the cache arguments; the block stands in.
    let (kc, vc) = committed.unwrap_or_else(|| (kb.clone(), vb.clone()));
    let lens = into_contiguous(lens);
    tree_attention_kernel::launch::<R>(
        &out.client,
        CubeCount::Static(t as u32, h as u32, b as u32),
        CubeDim::new_1d(SPLIT as u32),
        q.into_tensor_arg(),
        kc.into_tensor_arg(),
        vc.into_tensor_arg(),
        lens.into_tensor_arg(),
        kb.into_tensor_arg(),
        vb.into_tensor_arg(),
        bits.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        scale,
        d,
        SPLIT,
        has_cache,
        // The accumulator type A is always f32.
        [dtype.into(), int_dtype.into(), DType::F32.into()],
    );
    out
}
