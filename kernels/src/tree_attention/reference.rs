//! The portable path: dense scores against `[committed | block]` with additive masks, written with
//! plain tensor ops. It is what the CPU backends run and what the kernel is tested against.
//!
//! Half-precision inputs (f16, bf16) are widened to f32 for the whole computation and the output
//! is rounded back once, as in the kernel: the scores, the softmax sum and the value sums are
//! where half precision would lose the most, and the casts are small beside the matmuls.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};

use super::MASKED;
use crate::bits;

pub fn tree_attention<B: Backend>(
    q: Tensor<B, 4>,
    committed: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    lens: Tensor<B, 1, Int>,
    kb: Tensor<B, 4>,
    vb: Tensor<B, 4>,
    bits: Tensor<B, 3, Int>,
    scale: f32,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        let wide = |x: Tensor<B, 4>| x.cast(DType::F32);
        let out = tree_attention(
            wide(q),
            committed.map(|(k, v)| (wide(k), wide(v))),
            lens,
            wide(kb),
            wide(vb),
            bits,
            scale,
        );
        return out.cast(dtype);
    }
    let [b, h, t, d] = q.dims();
    let hkv = kb.dims()[1];
    let g = h / hkv;
    let device = q.device();
    // Grouping the query heads of one KV head along the row axis avoids materialising repeated K/V.
    let q = q.reshape([b, hkv, g * t, d]).mul_scalar(scale);

    let block_bias = Tensor::<B, 3>::zeros([b, t, t], (&device, dtype)).mask_fill(bits::unpack(bits, t).bool_not(), MASKED);
    let block_scores = q.clone().matmul(kb.swap_dims(2, 3)).reshape([b, hkv, g, t, t]);
    let block_scores = (block_scores + block_bias.reshape([b, 1, 1, t, t])).reshape([b, hkv, g * t, t]);

    let out = match committed {
        Some((kc, vc)) if kc.dims()[2] > 0 => {
            let s = kc.dims()[2];
            let slots = Tensor::<B, 1, Int>::arange(0..s as i64, &device).reshape([1, s]).expand([b, s]);
            let hidden = slots.greater_equal(lens.reshape([b, 1]).expand([b, s]));
            let cache_bias = Tensor::<B, 2>::zeros([b, s], (&device, dtype)).mask_fill(hidden, MASKED).reshape([b, 1, 1, s]);
            let cache_scores = q.matmul(kc.swap_dims(2, 3)) + cache_bias;
            let probs = softmax(Tensor::cat(vec![cache_scores, block_scores], 3), 3);
            let pc = probs.clone().slice([0..b, 0..hkv, 0..g * t, 0..s]);
            let pb = probs.slice([0..b, 0..hkv, 0..g * t, s..s + t]);
            pc.matmul(vc) + pb.matmul(vb)
        }
        _ => softmax(block_scores, 3).matmul(vb),
    };
    out.reshape([b, h, t, d])
}
