//! A training-side probe: one causal attention layer over the context, added to the drafter's
//! context vector (docs/training.md, "Context attention").
//!
//! ReDrafter's drafter sees the LLM only through h_t, the state at the last accepted token; the
//! LLM's own next forward (the one the drafter stands in for) attends over the whole context
//! with the next token as part of its query. EAGLE's draft model keeps that attention. This
//! module gives the RNN drafter a small share of it. The query at position t reads
//! [c_t ; e(x_{t+1})] (the drafter's context states at t and the token the LLM just chose);
//! the key and value of every position j ≤ t read [c_{j−1} ; e(x_j) ; e(x_{j+1})], a token of
//! the context with the one that followed it, all known when drafting at t. So one head can
//! find where x_{t+1} occurred before and carry what followed it (an induction head, what
//! prompt lookup does by exact match), and others can summarise the context. ALiBi recency
//! biases per head (fixed slopes, so no position table is learned), and an output projection
//! initialised to zero, so a drafter with the module starts out computing exactly what it did
//! without it.
//! The result is added to c_t before the drafter reads it.
//!
//! Decoding does not read it yet: it measures, on the held-out proxy, whether the drafter gains
//! from context beyond h_t before the decode loop is taught to keep the drafter's keys.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use redrafter_io::host::HostTensor;
use redrafter_llama::torch_layout::linear_from_torch;
use serde::{Deserialize, Serialize};

/// Shape of the attention: `heads` heads of `head_dim` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextAttentionConfig {
    pub heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct ContextAttention<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    heads: usize,
    head_dim: usize,
}

/// Masked-out scores: finite, so a row's softmax never sees only −∞.
const MASKED: f32 = -1e9;

impl<B: Backend> ContextAttention<B> {
    /// Fresh weights from `seed` (uniform in ±1/√fan_in, drawn on the host so every backend gets
    /// the same), the output projection zero. `context` is the drafter's context width C,
    /// `embed` the LLM's embedding width H.
    pub fn random(config: ContextAttentionConfig, context: usize, embed: usize, seed: u64, device: &B::Device) -> Self {
        let mut x = seed ^ 0x5851_F42D_4C95_7F2D;
        let mut uniform = move |bound: f32| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound
        };
        let width = config.heads * config.head_dim;
        let mut lin = |inp: usize, out: usize, zero: bool| {
            let bound = if zero { 0.0 } else { 1.0 / (inp as f32).sqrt() };
            let w = HostTensor::new(vec![out, inp], (0..out * inp).map(|_| uniform(bound)).collect());
            let b = HostTensor::new(vec![out], (0..out).map(|_| uniform(bound)).collect());
            linear_from_torch::<B>(w, Some(b), device)
        };
        let (query, key) = (context + embed, context + 2 * embed);
        Self {
            q: lin(query, width, false),
            k: lin(key, width, false),
            v: lin(key, width, false),
            o: lin(width, context, true),
            heads: config.heads,
            head_dim: config.head_dim,
        }
    }

    /// ALiBi slopes 2^(−8(i+1)/heads): the first head looks at the last few tokens, the last
    /// one nearly evenly over the context.
    fn slopes(&self) -> Vec<f32> {
        (0..self.heads).map(|i| 2f32.powf(-8.0 * (i + 1) as f32 / self.heads as f32)).collect()
    }

    /// The additions to the context vectors of `context` [S, L, C] of a sequence x whose tokens'
    /// embeddings are `embed` [S, L, H] (row j: e(x_j)): [S, L, C].
    pub fn forward(&self, context: Tensor<B, 3>, embed: Tensor<B, 3>) -> Tensor<B, 3> {
        let [s, l, c] = context.dims();
        let h = embed.dims()[2];
        let (nh, dh) = (self.heads, self.head_dim);
        let device = context.device();
        // c_{j−1}, zero before the first token.
        let zero = Tensor::zeros([s, 1, c], &device);
        let before = if l > 1 { Tensor::cat(vec![zero, context.clone().slice([0..s, 0..l - 1, 0..c])], 1) } else { zero };
        // e(x_{j+1}), zero past the last row (only positions after it would read it).
        let zero = Tensor::zeros([s, 1, h], &device);
        let next_embed = if l > 1 { Tensor::cat(vec![embed.clone().slice([0..s, 1..l, 0..h]), zero], 1) } else { zero };
        let query = Tensor::cat(vec![context, next_embed.clone()], 2);
        let key = Tensor::cat(vec![before, embed, next_embed], 2);
        let split = |t: Tensor<B, 3>| t.reshape([s, l, nh, dh]).swap_dims(1, 2); // [S, heads, L, dh]
        let q = split(self.q.forward(query));
        let k = split(self.k.forward(key.clone()));
        let v = split(self.v.forward(key));
        let slopes = self.slopes();
        let mut bias = vec![MASKED; nh * l * l];
        for (h, m) in slopes.iter().enumerate() {
            for t in 0..l {
                for j in 0..=t {
                    bias[(h * l + t) * l + j] = -m * (t - j) as f32;
                }
            }
        }
        let bias = Tensor::<B, 4>::from_data(TensorData::new(bias, [1, nh, l, l]), &q.device());
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f32).sqrt()) + bias;
        let mixed = softmax(scores, 3).matmul(v); // [S, heads, L, dh]
        self.o.forward(mixed.swap_dims(1, 2).reshape([s, l, nh * dh]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn starts_as_a_no_op_and_only_reads_the_past() {
        let dev = Default::default();
        let cfg = ContextAttentionConfig { heads: 2, head_dim: 4 };
        let mut a = ContextAttention::<NdArray>::random(cfg, 6, 3, 1, &dev);
        let ctx = Tensor::<NdArray, 3>::random([2, 5, 6], burn::tensor::Distribution::Default, &dev);
        let emb = Tensor::<NdArray, 3>::random([2, 5, 3], burn::tensor::Distribution::Default, &dev);
        let zero: Vec<f32> = a.forward(ctx.clone(), emb.clone()).into_data().to_vec().unwrap();
        assert!(zero.iter().all(|&x| x == 0.0), "zero-initialised output projection");
        // A nonzero output projection: position 2's output must not change when later
        // positions do, and must when an earlier one does.
        let w: Vec<f32> = (0..6 * 8).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
        a.o = linear_from_torch::<NdArray>(HostTensor::new(vec![6, 8], w), None, &dev);
        // Position 2 reads c_0..c_2 and x_0..x_3 (x_3 is the token the LLM chose after it).
        let at2 = |c: Tensor<NdArray, 3>, e: Tensor<NdArray, 3>| -> Vec<f32> { a.forward(c, e).slice([0..2, 2..3, 0..6]).into_data().to_vec().unwrap() };
        let base = at2(ctx.clone(), emb.clone());
        assert!(base.iter().any(|&x| x != 0.0));
        let nine = |t: &Tensor<NdArray, 3>, rows: std::ops::Range<usize>| {
            let w = t.dims()[2];
            t.clone().slice_assign([0..2, rows.clone(), 0..w], Tensor::ones([2, rows.len(), w], &dev).mul_scalar(9.0))
        };
        assert_eq!(at2(nine(&ctx, 3..5), emb.clone()), base, "later states do not reach position 2");
        assert_eq!(at2(ctx.clone(), nine(&emb, 4..5)), base, "nor x_4");
        let moved = |x: Vec<f32>| x.iter().zip(&base).any(|(x, y)| (x - y).abs() > 1e-4);
        assert!(moved(at2(nine(&ctx, 0..1), emb.clone())), "c_0 does");
        assert!(moved(at2(ctx.clone(), nine(&emb, 0..1))), "x_0 does");
        assert!(moved(at2(ctx.clone(), nine(&emb, 3..4))), "x_3 does");
        // A one-token sequence has nothing before or after it.
        let one = a.forward(ctx.clone().slice([0..1, 0..1, 0..6]), emb.clone().slice([0..1, 0..1, 0..3]));
        assert_eq!(one.dims(), [1, 1, 6]);
    }
}
