//! The Llama-family transformer: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP, tied or
//! untied output embedding.

use redrafter_kernels::block_matmul::Activations;
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use redrafter_kernels::{KernelBackend, skinny_matmul, tree_attention};

pub use crate::projection::Projection;
use crate::projection::BlockLinear;
use crate::error::ModelError;

use crate::attention::BlockInput;
use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::rope::Rope;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Projection<B>,
    pub k_proj: Projection<B>,
    pub v_proj: Projection<B>,
    pub o_proj: Projection<B>,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
}

/// `x · W` over the last axis as one 2-D matmul: a batched matmul against a broadcast weight makes
/// some backends (ndarray) materialise the weight once per batch entry. `prefill` allows the
/// fast path for many rows (`BlockInput::prefill`).
pub fn project<B: KernelBackend>(layer: &Projection<B>, x: Tensor<B, 3>, prefill: bool) -> Tensor<B, 3> {
    let [b, t, h] = x.dims();
    let x = x.reshape([b * t, h]);
    let y = if prefill { layer.forward_prefill_2d(x) } else { layer.forward_2d(x) };
    y.reshape([b, t, layer.out_features()])
}

impl<B: KernelBackend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>, prefill: bool) -> Tensor<B, 3> {
        let act = redrafter_kernels::swiglu(project(&self.gate_proj, x.clone(), prefill), project(&self.up_proj, x, prefill));
        project(&self.down_proj, act, prefill)
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_norm: RmsNorm<B>,
    pub attn: Attention<B>,
    pub post_attn_norm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

/// What every layer of one forward pass shares: the block, the rows' committed lengths [B] (as
/// the attention kernel reads them), the rotary tables and the shapes.
pub struct Block<'a, B: Backend> {
    pub input: &'a BlockInput<B>,
    pub lens: Tensor<B, 1, Int>,
    pub rope: &'a Rope<B>,
    pub config: &'a LlamaConfig,
}

impl<B: KernelBackend> Attention<B> {
    /// Grouped-query attention of the block `x` [B, T, hidden] (already normed) over
    /// `[committed cache of layer | the block itself]` under the block's mask; the block's keys
    /// and values (after RoPE) are left pending in layer `layer` of `cache`. Returns the output
    /// projection [B, T, hidden].
    pub fn forward(&self, x: Tensor<B, 3>, block: &Block<'_, B>, cache: &mut KvCache<B>, layer: usize) -> Tensor<B, 3> {
        let cfg = block.config;
        let [b, t, _] = x.dims();
        let prefill = block.input.prefill;
        let heads = |p: &Projection<B>, n: usize| project(p, x.clone(), prefill).reshape([b, t, n, cfg.head_dim]).swap_dims(1, 2);
        let positions = &block.input.positions;
        let q = block.rope.apply(heads(&self.q_proj, cfg.num_heads), positions);
        let k = block.rope.apply(heads(&self.k_proj, cfg.num_kv_heads), positions);
        let v = heads(&self.v_proj, cfg.num_kv_heads);
        let committed = (cache.max_len() > 0).then(|| cache.committed(layer));
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        let o = tree_attention(q, committed, block.lens.clone(), k.clone(), v.clone(), block.input.mask.clone(), scale);
        cache.set_pending(layer, k, v);
        project(&self.o_proj, o.swap_dims(1, 2).reshape([b, t, cfg.num_heads * cfg.head_dim]), prefill)
    }
}

impl<B: KernelBackend> DecoderLayer<B> {
    /// Pre-norm residual layer: `x + attn(norm(x))`, then `+ mlp(norm(..))`.
    pub fn forward(&self, x: Tensor<B, 3>, block: &Block<'_, B>, cache: &mut KvCache<B>, layer: usize) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.input_norm.forward(x), block, cache, layer);
        x.clone() + self.mlp.forward(self.post_attn_norm.forward(x), block.input.prefill)
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// The layer's seven weight matrices.
    pub fn projections(&self) -> [&Projection<B>; 7] {
        let (a, m) = (&self.attn, &self.mlp);
        [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
    }
}

#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub embed: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the output projection is tied to `embed` and dense. A tied head kept in blocks
    /// is `Some` (the GGUF's `token_embd` blocks), while `embed` stays dense for the lookups.
    pub lm_head: Option<Projection<B>>,
    pub rope: Rope<B>,
    #[module(skip)]
    pub config: LlamaConfig,
}

/// Hidden states after the final norm (what the drafter reads) and the logits.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    /// [B, T, hidden]
    pub hidden: Tensor<B, 3>,
    /// [B, T, vocab]
    pub logits: Tensor<B, 3>,
}

impl<B: Backend> Llama<B> {
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Which format each kind of weight is held in, e.g. `Q4_1 projections, Q8_0 head`, with
    /// `, 8-bit activations` where integer blocks meet rounded x rows (`--weights native-q8`).
    pub fn weight_formats(&self) -> String {
        let mut kinds: Vec<String> = Vec::new();
        let mut q8 = false;
        for l in &self.layers {
            for p in l.projections() {
                let f = p.format();
                q8 |= p.activations() == Activations::Q8;
                if !kinds.contains(&f) {
                    kinds.push(f);
                }
            }
        }
        let head = self.lm_head.as_ref().map_or("F32".to_string(), |h| h.format());
        q8 |= self.lm_head.as_ref().is_some_and(|h| h.activations() == Activations::Q8);
        format!("{} projections, {head} head{}", kinds.join("+"), if q8 { ", 8-bit activations" } else { "" })
    }

    /// Bytes of weight one decode step reads: every projection and the output head.
    pub fn step_weight_bytes(&self) -> usize {
        let proj: usize = self
            .layers
            .iter()
            .map(|l| l.projections().iter().map(|p| p.weight_bytes()).sum::<usize>())
            .sum();
        let head = self.lm_head.as_ref().map_or(self.config.vocab_size * self.config.hidden_size * 4, |h| h.weight_bytes());
        proj + head
    }

    pub fn new_cache(&self, batch: usize, capacity: usize, device: &B::Device) -> KvCache<B> {
        KvCache::new(&self.config, batch, capacity, device)
    }
}

/// The passes that attend or project: they run the fused ops (see `redrafter_kernels`): kernels on
/// cubecl backends, the streaming matmul on Flex, the references elsewhere.
impl<B: KernelBackend> Llama<B> {
    /// The output head restricted to the vocabulary rows `ids`, in the head's own format (blocks
    /// stay blocks; a tied dense head becomes the selected embedding rows, read through a
    /// transposed view): `head_rows(ids).forward_2d(h)` is `logits(h)` at columns `ids`, bit for
    /// bit. A drafter's reduced draft vocabulary projects through it (docs/drafter.md).
    pub fn head_rows(&self, ids: &[u32]) -> Result<Projection<B>, ModelError> {
        let v = self.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= v) {
            return Err(ModelError::InvalidInput(format!("head row {bad} is outside the vocabulary of {v}")));
        }
        let device = self.embed.weight.device();
        let index = || Tensor::<B, 1, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect(), [ids.len()]), &device);
        Ok(match &self.lm_head {
            Some(Projection::Blocks(b)) => {
                let rows = b.weight.select_rows(ids).map_err(|e| ModelError::InvalidInput(e.to_string()))?;
                Projection::Blocks(BlockLinear { weight: rows, bias: b.bias.as_ref().map(|p| Param::from_tensor(p.val().select(0, index()))) })
            }
            Some(Projection::Dense(l)) => {
                let w = l.weight.val();
                // Host-resident backends keep a dense weight as stored, [out, in], behind a
                // transposed view (`load`): rows of the stored table, viewed the same way, keep
                // the same kernel.
                let w = if B::host_resident() { w.transpose().select(0, index()).transpose() } else { w.select(1, index()) };
                Projection::Dense(Linear { weight: Param::from_tensor(w), bias: l.bias.as_ref().map(|p| Param::from_tensor(p.val().select(0, index()))) })
            }
            None => Projection::Dense(Linear { weight: Param::from_tensor(self.embed.weight.val().select(0, index()).transpose()), bias: None }),
        })
    }

    /// Projects hidden states [.., hidden] onto the vocabulary.
    pub fn logits<const D: usize>(&self, hidden: Tensor<B, D>) -> Tensor<B, D> {
        let dims = hidden.dims();
        let h = dims[D - 1];
        let n = hidden.shape().num_elements() / h;
        let mut out = dims;
        out[D - 1] = self.config.vocab_size;
        let rows = hidden.reshape([n, h]);
        match &self.lm_head {
            Some(head) => head.forward_2d(rows).reshape(out),
            // The tied head reads the [vocab, hidden] table through a transposed view, never a copy.
            None => skinny_matmul(rows, self.embed.weight.val().transpose()).reshape(out),
        }
    }

    /// Runs the block through the model. The block's keys and values are left pending in `cache`
    /// until [`KvCache::commit`]. Returns post-final-norm hidden states [B, T, hidden].
    pub fn forward_hidden(&self, input: &BlockInput<B>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        self.forward_hidden_layers(input, cache, &[self.layers.len()]).pop().expect("one layer asked")
    }

    /// Like [`forward_hidden`](Self::forward_hidden), but returns the residual stream after each
    /// of `layers` (counted as layers applied: `num_hidden_layers` is the model's own output),
    /// each through the final norm, in the order asked. The forward stops after the deepest one.
    /// A drafter may read earlier layers besides the last (docs/drafter.md, "Context layers").
    pub fn forward_hidden_layers(&self, input: &BlockInput<B>, cache: &mut KvCache<B>, layers: &[usize]) -> Vec<Tensor<B, 3>> {
        let deepest = layers.iter().copied().max().unwrap_or(0);
        assert!(deepest <= self.layers.len(), "layer {deepest} of a {}-layer model", self.layers.len());
        let [b, _] = input.dims();
        let lens: Vec<i64> = cache.lens().iter().map(|&l| l as i64).collect();
        let lens = Tensor::<B, 1, Int>::from_data(TensorData::new(lens, [b]), &input.tokens.device());
        let block = Block { input, lens, rope: &self.rope, config: &self.config };
        let mut x = self.embed.forward(input.tokens.clone());
        let mut out: Vec<Option<Tensor<B, 3>>> = vec![None; layers.len()];
        let mut take = |applied: usize, x: &Tensor<B, 3>| {
            for (slot, &l) in out.iter_mut().zip(layers) {
                if l == applied {
                    *slot = Some(self.norm.forward(x.clone()));
                }
            }
        };
        take(0, &x);
        for (i, layer) in self.layers.iter().take(deepest).enumerate() {
            x = layer.forward(x, &block, cache, i);
            take(i + 1, &x);
        }
        out.into_iter().map(|t| t.expect("every asked layer was reached")).collect()
    }

    pub fn forward(&self, input: &BlockInput<B>, cache: &mut KvCache<B>) -> ModelOutput<B> {
        let hidden = self.forward_hidden(input, cache);
        let logits = self.logits(hidden.clone());
        ModelOutput { hidden, logits }
    }
}
