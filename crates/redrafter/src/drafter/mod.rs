//! The recurrent drafter (spec §1): a small RNN over the LLM's own token embeddings and a residual
//! head that reads the LLM's last hidden state. See `docs/drafter.md`.

mod checkpoint;
mod config;
pub mod vocab;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redrafter_io::{HostTensor, IoError};
use redrafter_llama::torch_layout::linear_from_torch;
use redrafter_io::GgmlType;
use redrafter_kernels::BlockMatrix;
use redrafter_llama::{BlockLinear, KernelBackend, Llama, LlamaConfig, Projection};

pub use checkpoint::{load_drafter, save_drafter};
pub use config::{DrafterConfig, names_a_layer_twice};
pub use vocab::DraftVocab;

#[derive(Debug, thiserror::Error)]
pub enum DrafterError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("invalid drafter config: {0}")]
    InvalidConfig(String),
    #[error("the drafter does not fit the LLM: drafter {what} is {drafter}, LLM {what} is {llm}")]
    Mismatch { what: &'static str, drafter: usize, llm: usize },
}

/// One residual block of the head: `z + SiLU(A z + a)`. The field name keeps Apple's tensor
/// names (`lm_head.{n}.linear.*`).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub linear: Linear<B>,
}

impl<B: Backend> ResBlock<B> {
    pub fn forward<const D: usize>(&self, z: Tensor<B, D>) -> Tensor<B, D> {
        z.clone() + silu(self.linear.forward(z))
    }
}

/// The head's layers as a draft step multiplies them (see [`Drafter::bind`]): each through the
/// fused few-row ops, as f16 blocks where the backend multiplies blocks on the host and every
/// weight of the layer is exact in f16 (Apple's checkpoints are f16), else dense.
#[derive(Module, Debug)]
pub struct BoundHead<B: Backend> {
    input_proj: Option<Projection<B>>,
    blocks: Vec<Projection<B>>,
    lm_head: Projection<B>,
}

impl<B: KernelBackend> BoundHead<B> {
    fn of(d: &Drafter<B>) -> Self {
        let bind = |l: &Linear<B>| half_blocks(l).unwrap_or_else(|| Projection::Dense(l.clone()));
        Self {
            input_proj: d.input_proj.as_ref().map(bind),
            blocks: d.blocks.iter().map(|b| bind(&b.linear)).collect(),
            lm_head: bind(&d.lm_head),
        }
    }

    /// The head up to the vocabulary projection: `z` [n, 2H] → [n, E or V].
    fn forward(&self, mut z: Tensor<B, 2>) -> Tensor<B, 2> {
        if let Some(p) = &self.input_proj {
            z = p.forward_2d(z);
        }
        for b in &self.blocks {
            z = z.clone() + silu(b.forward_2d(z));
        }
        self.lm_head.forward_2d(z)
    }
}

/// `l` as F16 blocks ([out, in], bias kept), when the backend multiplies blocks on the host and
/// every weight survives the round trip through f16 unchanged; `None` otherwise. Halves the bytes
/// a draft step streams: the two 1152² blocks of the bundled drafter are 10.6 MB in f32, and
/// burn's matmul on them took 2.9 ms of a 4.4 ms draft step (docs/benchmarks.md).
fn half_blocks<B: KernelBackend>(l: &Linear<B>) -> Option<Projection<B>> {
    if !<B as redrafter_kernels::BlockMatmulOps>::host_resident() {
        return None;
    }
    let [k, n] = l.weight.dims();
    let w = l.weight.val().transpose().into_data().convert::<f32>().into_vec::<f32>().ok()?;
    let blocks = BlockMatrix::from_f32(GgmlType::F16, n, k, &w).ok()?;
    if blocks.dequantize() != w {
        return None;
    }
    Some(Projection::Blocks(BlockLinear { weight: blocks, bias: l.bias.clone() }))
}

#[derive(Module, Debug)]
pub struct Drafter<B: Backend> {
    /// R_w: H→H, no bias (`rnn` only).
    pub rnn_w: Option<Linear<B>>,
    /// R_u: H→H with bias (`rnn` only).
    pub rnn_u: Option<Linear<B>>,
    /// 2H→E, present iff E ≠ 2H.
    pub input_proj: Option<Linear<B>>,
    pub blocks: Vec<ResBlock<B>>,
    /// E→V (E→K with a draft vocabulary), or E→H before the LLM's output embedding when
    /// `tied_lm_head`.
    pub lm_head: Linear<B>,
    /// The reduced draft vocabulary, when `config.draft_vocab_size` is set.
    pub vocab: Option<DraftVocab<B>>,
    /// The head's layers bound for drafting by [`Drafter::bind`]; `None` until then (training
    /// and evaluation use the layers above through burn's ops). Not part of the checkpoint.
    pub bound: Option<BoundHead<B>>,
    #[module(skip)]
    pub config: DrafterConfig,
}

impl<B: Backend> Drafter<B> {
    pub fn config(&self) -> &DrafterConfig {
        &self.config
    }

    /// A freshly initialised drafter, PyTorch's default `nn.Linear` init (uniform in ±1/√fan_in)
    /// drawn on the host from `seed`, so every backend gets the same weights.
    pub fn random(config: DrafterConfig, seed: u64, device: &B::Device) -> Result<Self, DrafterError> {
        config.validate()?;
        // Training options (`--layers`, `--exit-dim`) set these sizes.
        redrafter_io::budget::check(
            format_args!("a drafter of {} layers, hidden {}, exit dim {} (f32)", config.num_draft_layers, config.hidden_size, config.exit_dim),
            config.num_parameters().saturating_mul(4),
        )
        .map_err(IoError::from)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut lin = |inp: usize, out: usize, bias: bool| {
            let bound = 1.0 / (inp as f32).sqrt();
            let mut draw = |n: usize| (0..n).map(|_| rng.random_range(-bound..bound)).collect::<Vec<f32>>();
            let w = HostTensor::new(vec![out, inp], draw(out * inp));
            let b = bias.then(|| HostTensor::new(vec![out], draw(out)));
            linear_from_torch::<B>(w, b, device)
        };
        let (h, e) = (config.hidden_size, config.exit_dim);
        let (rnn_w, rnn_u) = if config.rnn { (Some(lin(h, h, false)), Some(lin(h, h, true))) } else { (None, None) };
        let input_proj = config.has_input_proj().then(|| lin(config.input_width(), e, true));
        let blocks = (0..config.num_draft_layers).map(|_| ResBlock { linear: lin(e, e, true) }).collect();
        let lm_head = lin(e, config.head_out(), false);
        Ok(Self { rnn_w, rnn_u, input_proj, blocks, lm_head, vocab: None, bound: None, config })
    }

    /// The reduced draft vocabulary, if any.
    pub fn draft_vocab(&self) -> Option<&DraftVocab<B>> {
        self.vocab.as_ref()
    }

    /// Width of [`logits`](Self::logits): K with a draft vocabulary, else V.
    pub fn draft_vocab_size(&self) -> usize {
        self.config.draft_vocab_size.unwrap_or(self.config.vocab_size)
    }

    /// This drafter drafting over the tokens `ids` only (FR-Spec's training-free reduction): a
    /// tied head keeps its weights and projects through those rows of the LLM's head; an own
    /// E→V head keeps those of its rows. A drafter that already has a vocabulary is reduced
    /// within it (`ids` are full-vocabulary ids and must all be in it).
    pub fn with_draft_vocab(mut self, mut ids: Vec<u32>) -> Result<Self, DrafterError> {
        ids.sort_unstable();
        ids.dedup();
        let device = self.lm_head.weight.device();
        let vocab = DraftVocab::new(ids, self.config.vocab_size, &device)?;
        if !self.config.tied_lm_head {
            // Columns of burn's [E, out] weight; positions in the current head's numbering.
            let cols: Vec<i64> = vocab
                .token_ids()
                .iter()
                .map(|&t| match &self.vocab {
                    Some(old) => old.draft_id(t).map(|d| d as i64).ok_or(t),
                    None => Ok(t as i64),
                })
                .collect::<Result<_, u32>>()
                .map_err(|t| DrafterError::InvalidConfig(format!("token {t} is not in the drafter's draft vocabulary")))?;
            let n = cols.len();
            let cols = Tensor::<B, 1, Int>::from_data(TensorData::new(cols, [n]), &device);
            self.lm_head.weight = burn::module::Param::from_tensor(self.lm_head.weight.val().select(1, cols));
        }
        self.config.draft_vocab_size = Some(vocab.len());
        self.vocab = Some(vocab);
        self.bound = None;
        Ok(self)
    }

    /// A tied drafter without its draft vocabulary: it scores the whole vocabulary again (the
    /// weights do not change). An own-head drafter cannot grow rows it does not have.
    pub fn with_full_vocab(mut self) -> Result<Self, DrafterError> {
        if self.vocab.is_some() && !self.config.tied_lm_head {
            return Err(DrafterError::InvalidConfig(
                "a drafter with its own reduced E→K head has no weights for the other tokens".into(),
            ));
        }
        self.vocab = None;
        self.config.draft_vocab_size = None;
        self.bound = None;
        Ok(self)
    }

    /// This drafter reading the LLM layers `layers` (which must include the last, `llm_layers`)
    /// and computing exactly what it computed before: an `input_proj` is added that passes the
    /// last layer's state and the RNN state through unchanged and gives every other layer zero
    /// weight, which training then learns (docs/drafter.md, "Context layers"). Only for a drafter
    /// that reads the last layer alone and has no `input_proj` (E = 2H), e.g. Apple's.
    pub fn with_context_layers(mut self, layers: Vec<usize>, llm_layers: usize) -> Result<Self, DrafterError> {
        let c = &self.config;
        if c.context_layers.is_some() || self.input_proj.is_some() {
            return Err(DrafterError::InvalidConfig("only a drafter that reads the last layer alone, without input_proj, can be widened".into()));
        }
        if layers.len() < 2 {
            return Err(DrafterError::InvalidConfig(format!("widening to the layers {layers:?}: name the last layer and at least one more")));
        }
        let Some(at) = layers.iter().position(|&l| l == llm_layers) else {
            return Err(DrafterError::InvalidConfig(format!(
                "widening keeps what the drafter computes only if it still reads the last layer ({llm_layers}); asked {layers:?}"
            )));
        };
        let config = DrafterConfig { context_layers: Some(layers), ..c.clone() };
        config.validate()?;
        let (h, e, width) = (config.hidden_size, config.exit_dim, config.input_width());
        // torch layout [out E = 2H, in C + H]: row j < H reads the last layer's column at·H + j,
        // row H + j reads the RNN state's column C + j.
        let mut w = vec![0f32; e * width];
        for j in 0..h {
            w[j * width + at * h + j] = 1.0;
            w[(h + j) * width + config.context_width() + j] = 1.0;
        }
        let device = self.lm_head.weight.device();
        self.input_proj = Some(linear_from_torch::<B>(HostTensor::new(vec![e, width], w), Some(HostTensor::new(vec![e], vec![0.0; e])), &device));
        self.config = config;
        self.bound = None;
        Ok(self)
    }

    /// Checks that this drafter was built for an LLM of this shape.
    pub fn check_compatible(&self, llm: &LlamaConfig) -> Result<(), DrafterError> {
        let c = &self.config;
        if c.hidden_size != llm.hidden_size {
            return Err(DrafterError::Mismatch { what: "hidden size", drafter: c.hidden_size, llm: llm.hidden_size });
        }
        if c.vocab_size != llm.vocab_size {
            return Err(DrafterError::Mismatch { what: "vocabulary size", drafter: c.vocab_size, llm: llm.vocab_size });
        }
        if let Some(&deepest) = c.context_layers.iter().flatten().max() {
            if deepest > llm.num_layers {
                return Err(DrafterError::InvalidConfig(format!(
                    "context_layers asks for layer {deepest}, but the LLM has {} layers",
                    llm.num_layers
                )));
            }
        }
        Ok(())
    }

    /// The RNN state after consuming `tokens` (one per row) from `state` (`None` = the zero
    /// initial state). Embeddings come from the LLM's (frozen) input table.
    pub fn advance(&self, llm: &Llama<B>, state: Option<Tensor<B, 2>>, tokens: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let e = llm.embed.weight.val().select(0, tokens);
        self.advance_embedded(state, e)
    }

    /// [`advance`](Self::advance) for embeddings already looked up: `e` is [.., H].
    pub fn advance_embedded<const D: usize>(&self, state: Option<Tensor<B, D>>, e: Tensor<B, D>) -> Tensor<B, D> {
        match (&self.rnn_w, &self.rnn_u) {
            (Some(w), Some(u)) => {
                let x = w.forward(e);
                // With the zero initial state, R_u·s vanishes and only its bias remains.
                let rec = match state {
                    Some(s) => u.forward(s),
                    None => u.bias.as_ref().map_or_else(|| x.zeros_like(), |b| b.val().unsqueeze::<D>() + x.zeros_like()),
                };
                silu(x + rec)
            }
            _ => match state {
                Some(s) => s + e,
                None => e,
            },
        }
    }
}

/// The tied head projects through the LLM's vocabulary head, a fused op (see `redrafter_kernels`).
impl<B: KernelBackend> Drafter<B> {
    /// Drafter logits [.., V] from the LLM context `h` [.., C] (post-final-norm states of the
    /// context layers, C = H for Apple's drafters) and RNN state `s` [.., H];
    /// [.., K] over draft ids with a draft vocabulary ([`DraftVocab::to_tokens`] maps them).
    pub fn logits<const D: usize>(&self, llm: &Llama<B>, h: Tensor<B, D>, s: Tensor<B, D>) -> Tensor<B, D> {
        let mut z = Tensor::cat(vec![h, s], D - 1);
        let out = match &self.bound {
            Some(head) => {
                let mut dims = z.dims();
                let width = dims[D - 1];
                let y = head.forward(z.reshape([dims[..D - 1].iter().product(), width]));
                dims[D - 1] = y.dims()[1];
                y.reshape(dims)
            }
            None => {
                if let Some(p) = &self.input_proj {
                    z = p.forward(z);
                }
                for block in &self.blocks {
                    z = block.forward(z);
                }
                self.lm_head.forward(z)
            }
        };
        if !self.config.tied_lm_head {
            return out;
        }
        match &self.vocab {
            None => llm.logits(out),
            Some(vocab) => {
                let mut dims = out.dims();
                let hs = dims[D - 1];
                let rows = out.shape().num_elements() / hs;
                dims[D - 1] = vocab.len();
                vocab.logits(llm, out.reshape([rows, hs])).reshape(dims)
            }
        }
    }

    /// Prepares the drafter for draft steps, once: its head's layers as [`BoundHead`] (f16 blocks
    /// on host backends when exact), and a tied drafter's draft-vocabulary rows of the LLM head,
    /// so that draft steps do not select them per product. Beam search binds on first use. Bind
    /// after any change to the weights (training does not bind).
    pub fn bind(&mut self, llm: &Llama<B>) -> Result<(), DrafterError> {
        if self.bound.is_none() {
            self.bound = Some(BoundHead::of(self));
        }
        if !self.config.tied_lm_head {
            return Ok(());
        }
        if let Some(vocab) = self.vocab.as_mut() {
            if vocab.head.is_none() {
                vocab.head = Some(llm.head_rows(vocab.token_ids()).map_err(|e| DrafterError::InvalidConfig(e.to_string()))?);
            }
        }
        Ok(())
    }
}

/// Tensors of `config`'s shape in Apple's layout; used by tests and by loaders of other formats.
pub(crate) fn expected_shapes(c: &DrafterConfig) -> Vec<(String, Vec<usize>)> {
    let (h, e, n) = (c.hidden_size, c.exit_dim, c.num_draft_layers);
    let mut v = vec![];
    if c.rnn {
        v.push(("rnn_w.weight".into(), vec![h, h]));
        v.push(("rnn_u.weight".into(), vec![h, h]));
        v.push(("rnn_u.bias".into(), vec![h]));
    }
    if c.has_input_proj() {
        v.push(("input_proj.weight".into(), vec![e, c.input_width()]));
        v.push(("input_proj.bias".into(), vec![e]));
    }
    for i in 0..n {
        v.push((format!("lm_head.{i}.linear.weight"), vec![e, e]));
        v.push((format!("lm_head.{i}.linear.bias"), vec![e]));
    }
    v.push((format!("lm_head.{n}.weight"), vec![c.head_out(), e]));
    v
}

/// The checkpoint tensor holding the draft vocabulary's full-vocabulary ids ([K], I64).
pub(crate) const DRAFT_VOCAB_TENSOR: &str = "draft_vocab_ids";

