//! The training loop: frozen LLM features per micro-batch, the summed per-step loss, AdamW with
//! warm-up + cosine, gradient accumulation, checkpoints with exact resume, and held-out metrics.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};
use redrafter::drafter::{DraftVocab, names_a_layer_twice};
use redrafter::{Drafter, DrafterConfig, load_drafter, save_drafter};
use redrafter_io::IoError;
use redrafter_llama::{KernelBackend, Llama};
use serde::{Deserialize, Serialize};

use crate::context_attention::{ContextAttention, ContextAttentionConfig};
use crate::data::Example;
use crate::features::{HiddenCaches, hidden_states, live_states};
use crate::loss::{Batch, Teacher, redrafter_loss, valid_counts};
use crate::schedule::learning_rate;
use crate::TrainError;

/// What the drafter learns to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targets {
    /// The training text itself (Apple's public script).
    GroundTruth,
    /// The LLM's own greedy next token at every position, under teacher forcing on the training
    /// text: a one-forward approximation of the paper's distillation (see docs/training.md).
    LlmGreedy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Draft steps T trained per position (Apple: 5).
    pub draft_steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Training positions drawn per sequence (0 = every position). The drafter's output
    /// projection dominates the cost per position, so sampling positions buys more sequences
    /// (more diverse contexts) for the same compute.
    pub positions_per_sequence: usize,
    pub grad_accum: usize,
    /// Optimizer steps in the whole run.
    pub steps: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f32,
    pub seed: u64,
    pub targets: Targets,
    /// Save a checkpoint every this many optimizer steps (0 = only at the end).
    pub checkpoint_every: usize,
    pub drafter: DrafterConfig,
    /// Start from this drafter (Apple's format) instead of random weights: fine-tuning, e.g. a
    /// ground-truth drafter on distillation targets. Its config must equal `drafter`.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Train over a reduced draft vocabulary: these full-vocabulary ids, ascending (K of them,
    /// `drafter.draft_vocab_size == Some(K)`). Labels outside them do not count; the drafter
    /// could never propose them (docs/training.md, "Reduced draft vocabulary").
    #[serde(default)]
    pub draft_vocab: Option<Vec<u32>>,
    /// Weight w in [0, 1] of the LLM's own next-token distribution in each draft step's loss:
    /// (1 − w)·CE(label) + w·CE(LLM softmax over the drafter's vocabulary), computed from the same
    /// hidden states as the labels (no extra LLM pass). 0: labels only (Apple's loss).
    #[serde(default)]
    pub soft_targets: f32,
    /// The LLM layers whose states a batch carries (and the hidden-state cache holds), side by
    /// side per token: a superset of the drafter's context layers, so that one cache serves
    /// drafters reading different layers. `None`: the drafter's context layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_layers: Option<Vec<usize>>,
    /// Train a causal attention layer over the context beside the drafter, added to its context
    /// vector (a probe: decoding does not read it yet; context_attention.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_attention: Option<ContextAttentionConfig>,
}

impl TrainConfig {
    /// The layers batches carry for an LLM of `llm_layers` layers (see `feature_layers`),
    /// checked: each context layer is among them, once, and so is the LLM's last when the
    /// targets read its head (LLM-greedy labels, soft targets).
    pub fn features_for(&self, llm_layers: usize) -> Result<Vec<usize>, TrainError> {
        let context = self.drafter.context_layers_for(llm_layers);
        let features = self.feature_layers.clone().unwrap_or_else(|| context.clone());
        if features.is_empty() || names_a_layer_twice(&features) || features.iter().any(|&l| l > llm_layers) {
            return Err(TrainError::Config(format!("feature layers {features:?}: want distinct layers of 0..={llm_layers}")));
        }
        if let Some(l) = context.iter().find(|l| !features.contains(l)) {
            return Err(TrainError::Config(format!("the drafter reads layer {l}, which the feature layers {features:?} do not hold")));
        }
        let reads_head = self.targets == Targets::LlmGreedy || self.soft_targets > 0.0;
        if reads_head && !features.contains(&llm_layers) {
            return Err(TrainError::Config(format!(
                "LLM-greedy labels and soft targets read the LLM's last layer ({llm_layers}), which the feature layers {features:?} do not hold"
            )));
        }
        Ok(features)
    }
}

/// Where one layer's state sits in a token's row of feature states: `stride` values per token,
/// this layer's H of them from `offset`.
#[derive(Debug, Clone, Copy)]
struct LayerAt {
    stride: usize,
    offset: usize,
}

impl LayerAt {
    fn of(features: &[usize], layer: usize, h: usize) -> Self {
        let at = features.iter().position(|&l| l == layer).expect("checked by features_for");
        Self { stride: features.len() * h, offset: at * h }
    }

    fn row<'a>(&self, states: &'a [f32], t: usize, h: usize) -> &'a [f32] {
        &states[t * self.stride + self.offset..t * self.stride + self.offset + h]
    }
}

/// Trainer state saved with each checkpoint; resuming requires the same `config` (up to
/// `checkpoint_every`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    config: TrainConfig,
    log: Vec<LogLine>,
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    /// Per draft step: mean cross-entropy and top-1 accuracy on this step's batches.
    pub step_loss: Vec<f64>,
    pub step_acc: Vec<f64>,
    /// Wall time of this optimizer step (features, forward, backward, update).
    #[serde(default)]
    pub seconds: f64,
}

/// Everything the loop reads: the frozen LLM (on the autodiff backend, gradients off) and data.
pub struct Trainer<'a, B: AutodiffBackend> {
    pub llm: &'a Llama<B>,
    pub examples: &'a [Example],
    pub config: TrainConfig,
    pub out_dir: PathBuf,
    /// Stop (with a checkpoint) once this step is reached in this invocation, e.g. to time-box
    /// runs on a small machine; rerunning resumes. `None` trains to `config.steps`.
    pub stop_after: Option<usize>,
    /// The LLM states of `examples` on disk (slot = index in `examples`; one cache per data
    /// source): filled during the first epoch, read afterwards. `None` runs the LLM for every
    /// micro-batch. Either way gives the same numbers (features.rs).
    pub hidden_cache: Option<HiddenCaches>,
}

/// Maps an I/O error on `path` to the training error that names it.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io(IoError::Io { path: path.to_path_buf(), source })
}

/// Deterministic order of example indices for an epoch (Fisher-Yates with SplitMix64).
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut x = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    v
}

/// The examples of micro-batch `k` of the run (epochs wrap around with a fresh shuffle).
pub fn micro_batch(n: usize, batch: usize, seed: u64, k: usize) -> Vec<usize> {
    // One shuffle per epoch the batch touches, not one per example.
    let mut order: Option<(usize, Vec<usize>)> = None;
    (0..batch)
        .map(|j| {
            let flat = k * batch + j;
            let (epoch, at) = (flat / n, flat % n);
            if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                order = Some((epoch, epoch_order(n, seed, epoch as u64)));
            }
            order.as_ref().expect("set above").1[at]
        })
        .collect()
}

/// Builds the draft chains of a micro-batch: the frozen LLM's states of the sequences (from
/// `cache` where it has them, else one forward without autodiff), then up to `positions`
/// training positions per sequence (all when 0), drawn from `seed`. `slots` are the examples'
/// indices in the training set (the cache's keys). Labels are draft ids under
/// `config.draft_vocab`; one outside it is not valid. Returns the batch and its host-side
/// validity matrix.
pub fn make_batch<B: AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend>(
    llm: &Llama<B>,
    examples: &[&Example],
    slots: &[usize],
    cache: Option<&mut HiddenCaches>,
    config: &TrainConfig,
    seed: u64,
) -> Result<(Batch<B>, Vec<Vec<bool>>), TrainError> {
    make_batch_parts(llm, examples, slots, cache, config, seed).map(|p| (p.batch, p.valid))
}

/// A micro-batch with what built it: per example, the chosen positions (the batch's rows, in
/// order) and the LLM's feature states.
pub struct BatchParts<B: Backend> {
    pub batch: Batch<B>,
    pub valid: Vec<Vec<bool>>,
    pub chosen: Vec<Vec<usize>>,
    pub states: Vec<Vec<f32>>,
}

/// [`make_batch`], keeping the chosen positions and the states.
pub fn make_batch_parts<B: AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend>(
    llm: &Llama<B>,
    examples: &[&Example],
    slots: &[usize],
    cache: Option<&mut HiddenCaches>,
    config: &TrainConfig,
    seed: u64,
) -> Result<BatchParts<B>, TrainError> {
    let inner: Llama<B::InnerBackend> = llm.valid();
    let device = llm.embed.weight.device();
    let hsz = llm.config().hidden_size;
    let last = llm.config().num_layers;
    let features = config.features_for(last)?;
    let context: Vec<LayerAt> = config.drafter.context_layers_for(last).iter().map(|&l| LayerAt::of(&features, l, hsz)).collect();
    let states = hidden_states(&inner, examples, slots, cache, &features)?;

    let t_steps = config.draft_steps;
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // Per example, the chosen positions.
    let mut chosen: Vec<Vec<usize>> = Vec::with_capacity(examples.len());
    for e in examples {
        // The label of step i at position t is token t + i + 1; keep positions whose first label counts.
        let mut pos: Vec<usize> = (0..e.tokens.len().saturating_sub(2)).filter(|&t| e.target[t + 2]).collect();
        if config.positions_per_sequence > 0 && pos.len() > config.positions_per_sequence {
            for i in 0..config.positions_per_sequence {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = i + (rng % (pos.len() - i) as u64) as usize;
                pos.swap(i, j);
            }
            pos.truncate(config.positions_per_sequence);
            pos.sort_unstable();
        }
        chosen.push(pos);
    }
    let head_in = || LayerAt::of(&features, last, hsz);
    let greedy = match config.targets {
        Targets::LlmGreedy => Some(greedy_labels(&inner, examples, &states, head_in(), &chosen, t_steps)),
        Targets::GroundTruth => None,
    };
    let teacher = if config.soft_targets > 0.0 {
        Some(teacher_probs(&inner, examples, &states, head_in(), &chosen, t_steps, config.draft_vocab.as_deref())?)
    } else {
        None
    };
    let to_draft = |token: u32| -> Option<u32> {
        match &config.draft_vocab {
            None => Some(token),
            Some(ids) => ids.binary_search(&token).ok().map(|d| d as u32),
        }
    };

    let (mut hid, mut inputs, mut labels, mut valid) = (vec![], vec![], vec![], vec![]);
    for (r, (e, pos)) in examples.iter().zip(&chosen).enumerate() {
        let len = e.tokens.len();
        for &t in pos {
            for at in &context {
                hid.extend_from_slice(at.row(&states[r], t, hsz));
            }
            let mut row_valid = Vec::with_capacity(t_steps);
            for i in 1..=t_steps {
                inputs.push(e.tokens.get(t + i).copied().unwrap_or(0) as i64);
                let k = t + i + 1;
                let label = (k < len).then(|| match &greedy {
                    Some(g) => g[r].get(&(k - 1)).copied().expect("computed for every chosen position"),
                    None => e.tokens[k],
                });
                match label.and_then(|l| to_draft(l).map(|d| (d, e.target[k]))) {
                    Some((d, v)) => {
                        labels.push(d as i64);
                        row_valid.push(v);
                    }
                    None => {
                        labels.push(0);
                        row_valid.push(false);
                    }
                }
            }
            valid.push(row_valid);
        }
    }
    let rows_n = valid.len().max(1);
    if valid.is_empty() {
        // No usable position: one dummy chain with nothing valid keeps shapes non-empty.
        hid = vec![0.0; hsz * context.len()];
        inputs = vec![0; t_steps];
        labels = vec![0; t_steps];
        valid.push(vec![false; t_steps]);
    }
    let teacher = match teacher {
        Some((probs, index)) if !index.is_empty() => {
            let k = probs.dims()[1];
            let index = Tensor::<B::InnerBackend, 1, Int>::from_data(TensorData::new(index, [rows_n * t_steps]), &probs.device());
            let probs = probs.select(0, index).reshape([rows_n, t_steps, k]);
            Some(Teacher { probs: Tensor::from_inner(probs), weight: config.soft_targets })
        }
        // No chain, or no label read from any state: nothing for a teacher to weigh.
        _ => None,
    };
    let flat_valid: Vec<bool> = valid.concat();
    let batch = Batch {
        hidden: Tensor::from_data(TensorData::new(hid, [rows_n, hsz * context.len()]), &device),
        inputs: Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, [rows_n, t_steps]), &device),
        labels: Tensor::<B, 2, Int>::from_data(TensorData::new(labels, [rows_n, t_steps]), &device),
        valid: Tensor::<B, 2, Bool>::from_data(TensorData::new(flat_valid, [rows_n, t_steps]), &device),
        teacher,
    };
    Ok(BatchParts { batch, valid, chosen, states })
}

/// The context attention's additions to a batch's context vectors, one per row (chosen
/// position), from the examples' whole context: the drafter's context layers of `states` and the
/// tokens' embeddings.
fn context_delta<B: KernelBackend>(
    attention: &ContextAttention<B>,
    llm: &Llama<B>,
    examples: &[&Example],
    parts_states: &[Vec<f32>],
    chosen: &[Vec<usize>],
    config: &TrainConfig,
) -> Result<Tensor<B, 2>, TrainError> {
    let hsz = llm.config().hidden_size;
    let last = llm.config().num_layers;
    let features = config.features_for(last)?;
    let context: Vec<LayerAt> = config.drafter.context_layers_for(last).iter().map(|&l| LayerAt::of(&features, l, hsz)).collect();
    let c = hsz * context.len();
    let (s, l) = (examples.len(), examples.iter().map(|e| e.tokens.len()).max().unwrap_or(1).max(1));
    let mut ctx = vec![0f32; s * l * c];
    let mut ids = vec![0i64; s * l];
    for (r, e) in examples.iter().enumerate() {
        for t in 0..e.tokens.len() {
            for (k, at) in context.iter().enumerate() {
                ctx[(r * l + t) * c + k * hsz..(r * l + t) * c + (k + 1) * hsz].copy_from_slice(at.row(&parts_states[r], t, hsz));
            }
            ids[r * l + t] = e.tokens[t] as i64;
        }
    }
    let device = llm.embed.weight.device();
    let ctx = Tensor::<B, 3>::from_data(TensorData::new(ctx, [s, l, c]), &device);
    let embed = llm.embed.forward(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [s, l]), &device));
    let all = attention.forward(ctx, embed).reshape([s * l, c]);
    let rows: Vec<i64> = chosen.iter().enumerate().flat_map(|(r, pos)| pos.iter().map(move |&t| (r * l + t) as i64)).collect();
    let n = rows.len();
    Ok(all.select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device)))
}

/// What an optimizer step updates: the drafter, and the context attention beside it when the
/// run trains one.
#[derive(Module, Debug)]
struct Trained<B: Backend> {
    drafter: Drafter<B>,
    attention: Option<ContextAttention<B>>,
}

/// The context attention a run of `config` left in `out_dir` (its last checkpoint), if it
/// trains one.
pub fn saved_context_attention<B: KernelBackend>(
    out_dir: &Path,
    config: &TrainConfig,
    llm: &Llama<B>,
) -> Result<Option<ContextAttention<B>>, TrainError> {
    let Some(fresh) = fresh_attention(config, llm)? else { return Ok(None) };
    let device = llm.embed.weight.device();
    let path = out_dir.join("checkpoint").join("attention");
    fresh
        .load_file(&path, &NamedMpkFileRecorder::<FullPrecisionSettings>::new(), &device)
        .map(Some)
        .map_err(|e| TrainError::Config(format!("{}: context attention: {e}", path.display())))
}

/// The context attention `config` trains, freshly initialised; its size checked first (the
/// head count comes from a command-line option).
fn fresh_attention<B: Backend>(config: &TrainConfig, llm: &Llama<B>) -> Result<Option<ContextAttention<B>>, TrainError> {
    let Some(ac) = config.context_attention else { return Ok(None) };
    let h = llm.config().hidden_size;
    let width = h * config.drafter.context_layers_for(llm.config().num_layers).len();
    if ac.heads == 0 || ac.head_dim == 0 || ac.heads.saturating_mul(ac.head_dim) > 8 * h {
        return Err(TrainError::Config(format!(
            "context attention of {} heads of {}: want at least one, and at most {} values wide in all (8 × the LLM's width)",
            ac.heads,
            ac.head_dim,
            8 * h
        )));
    }
    Ok(Some(ContextAttention::random(ac, width, h, config.seed, &llm.embed.weight.device())))
}

/// The positions (example, q) whose next token some chosen chain takes as a label
/// (q = t + 1 ..= t + T for chosen t, with q + 1 inside the example), each once, in order.
fn label_positions(examples: &[&Example], chosen: &[Vec<usize>], t_steps: usize) -> Vec<(usize, usize)> {
    let mut wanted: Vec<(usize, usize)> = vec![];
    for (r, pos) in chosen.iter().enumerate() {
        let mut p: Vec<usize> = pos.iter().flat_map(|&t| (t + 1..=t + t_steps).filter(|&q| q + 1 < examples[r].tokens.len())).collect();
        p.sort_unstable();
        p.dedup();
        wanted.extend(p.into_iter().map(|q| (r, q)));
    }
    wanted
}

/// The LLM's softmax after every label position of the chosen chains (f16-rounded states, like
/// the labels), over the draft vocabulary `draft_vocab` when given (renormalised over it), else
/// over all V tokens: [U, K] for the U distinct positions, and per chain and draft step (in the
/// batch's row order) the row of its label's position (0 where a step has no label, which does
/// not count). Each distinct position goes through the head once.
fn teacher_probs<B: KernelBackend>(
    llm: &Llama<B>,
    examples: &[&Example],
    states: &[Vec<f32>],
    at: LayerAt,
    chosen: &[Vec<usize>],
    t_steps: usize,
    draft_vocab: Option<&[u32]>,
) -> Result<(Tensor<B, 2>, Vec<i64>), TrainError> {
    let h = llm.config().hidden_size;
    let wanted = label_positions(examples, chosen, t_steps);
    let row_of: std::collections::HashMap<(usize, usize), i64> = wanted.iter().enumerate().map(|(i, &p)| (p, i as i64)).collect();
    let mut index = vec![];
    for (r, pos) in chosen.iter().enumerate() {
        for &t in pos {
            index.extend((1..=t_steps).map(|i| row_of.get(&(r, t + i)).copied().unwrap_or(0)));
        }
    }
    let device = llm.embed.weight.device();
    let head = draft_vocab.map(|ids| llm.head_rows(ids)).transpose().map_err(|e| TrainError::Config(format!("draft vocabulary: {e}")))?;
    let rows: Vec<f32> = wanted.iter().flat_map(|&(r, q)| at.row(&states[r], q, h).iter().copied()).collect();
    let mut parts = vec![];
    // A few hundred rows at a time keeps the [rows, V] logits small.
    for chunk in rows.chunks(256 * h) {
        let m = chunk.len() / h;
        let x = Tensor::<B, 2>::from_data(TensorData::new(chunk.to_vec(), [m, h]), &device);
        let logits = match &head {
            Some(head) => head.forward_2d(x),
            None => llm.logits(x),
        };
        parts.push(burn::tensor::activation::softmax(logits, 1));
    }
    if parts.is_empty() {
        return Ok((Tensor::zeros([1, draft_vocab.map_or(llm.config().vocab_size, <[u32]>::len)], &device), vec![]));
    }
    Ok((Tensor::cat(parts, 0), index))
}

/// The LLM's greedy next token after each position that a chosen chain reads a label from
/// (t + 1 ..= t + T for chosen t), per example, from the (f16-rounded) states: only those
/// positions go through the LLM's head.
fn greedy_labels<B: KernelBackend>(
    llm: &Llama<B>,
    examples: &[&Example],
    states: &[Vec<f32>],
    at: LayerAt,
    chosen: &[Vec<usize>],
    t_steps: usize,
) -> Vec<std::collections::HashMap<usize, u32>> {
    let h = llm.config().hidden_size;
    let wanted = label_positions(examples, chosen, t_steps);
    let mut out = vec![std::collections::HashMap::new(); examples.len()];
    if wanted.is_empty() {
        return out;
    }
    let rows: Vec<f32> = wanted.iter().flat_map(|&(r, q)| at.row(&states[r], q, h).iter().copied()).collect();
    let device = llm.embed.weight.device();
    // A few hundred rows at a time keeps the [rows, V] logits small.
    let mut ids = Vec::with_capacity(wanted.len());
    for chunk in rows.chunks(256 * h) {
        let m = chunk.len() / h;
        let x = Tensor::<B, 3>::from_data(TensorData::new(chunk.to_vec(), [1, m, h]), &device);
        ids.extend(llm.logits(x).argmax(2).into_data().iter::<i64>().map(|v| v as u32));
    }
    for (&(r, q), id) in wanted.iter().zip(ids) {
        out[r].insert(q, id);
    }
    out
}

/// A drafter of `config` with fresh weights from `seed`, with its draft vocabulary attached
/// when the config has one (the reduced own head is E→K from the start).
fn fresh_drafter<B: KernelBackend>(config: &TrainConfig, device: &B::Device) -> Result<Drafter<B>, TrainError> {
    let mut d = Drafter::<B>::random(config.drafter.clone(), config.seed, device)?;
    d.vocab = check_vocab(config)?.map(|ids| DraftVocab::new(ids.to_vec(), config.drafter.vocab_size, device)).transpose()?;
    Ok(d)
}

/// `draft_vocab` and `drafter.draft_vocab_size` must agree.
fn check_vocab(config: &TrainConfig) -> Result<Option<&[u32]>, TrainError> {
    match (&config.draft_vocab, config.drafter.draft_vocab_size) {
        (None, None) => Ok(None),
        (Some(ids), Some(k)) if ids.len() == k => Ok(Some(ids)),
        (ids, k) => Err(TrainError::Config(format!(
            "draft vocabulary of {} ids for a drafter config with draft_vocab_size {k:?}",
            ids.as_ref().map_or(0, Vec::len)
        ))),
    }
}

impl<B: AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend> Trainer<'_, B> {
    fn checkpoint_dir(&self) -> PathBuf {
        self.out_dir.join("checkpoint")
    }

    /// Trains from scratch, or resumes from `out_dir/checkpoint` when one exists (it must have
    /// been made with the same config). `progress(step, total, line)` runs after each step.
    pub fn run(&mut self, progress: &mut dyn FnMut(usize, usize, &LogLine)) -> Result<(Drafter<B>, Vec<LogLine>), TrainError> {
        let cfg = &self.config.clone();
        if self.examples.is_empty() {
            return Err(TrainError::Data("no training examples".into()));
        }
        if cfg.batch_size == 0 || cfg.grad_accum == 0 || cfg.steps == 0 || cfg.draft_steps == 0 {
            return Err(TrainError::Config("batch size, gradient accumulation, steps and draft steps must be positive".into()));
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return Err(TrainError::Config(format!("weight decay {} must be a finite number ≥ 0", cfg.weight_decay)));
        }
        if !(0.0..=1.0).contains(&cfg.soft_targets) {
            return Err(TrainError::Config(format!("soft-target weight {} is outside [0, 1]", cfg.soft_targets)));
        }
        let device = self.llm.embed.weight.device();
        let ckpt = self.checkpoint_dir();
        let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init::<B, Trained<B>>();
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let (mut model, mut state) = if ckpt.join("state.json").is_file() {
            let text = std::fs::read_to_string(ckpt.join("state.json")).map_err(io(&ckpt))?;
            let state: State = serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", ckpt.display())))?;
            // How often checkpoints are written does not change the run.
            let same = |c: &TrainConfig| TrainConfig { checkpoint_every: 0, ..c.clone() };
            if same(&state.config) != same(cfg) {
                return Err(TrainError::Config(format!(
                    "{} holds a checkpoint of another configuration; use another output directory or the same options",
                    ckpt.display()
                )));
            }
            // The burn record keeps parameter ids, which key the optimizer state; a drafter
            // rebuilt from Apple's format would get fresh ids and silently lose the moments.
            let drafter = fresh_drafter::<B>(cfg, &device)?
                .load_file(ckpt.join("drafter"), &recorder, &device)
                .map_err(|e| TrainError::Config(format!("{}: drafter state: {e}", ckpt.display())))?;
            let attention = match fresh_attention(cfg, self.llm)? {
                Some(a) => Some(
                    a.load_file(ckpt.join("attention"), &recorder, &device)
                        .map_err(|e| TrainError::Config(format!("{}: context attention state: {e}", ckpt.display())))?,
                ),
                None => None,
            };
            let record = recorder
                .load(ckpt.join("optimizer"), &device)
                .map_err(|e| TrainError::Config(format!("{}: optimizer state: {e}", ckpt.display())))?;
            optim = optim.load_record(record);
            (Trained { drafter, attention }, state)
        } else {
            let drafter = match &cfg.init {
                Some(path) => {
                    let mut d = load_drafter::<B>(path, &device)?;
                    // An Apple-shaped drafter fine-tuned to read more layers starts out computing
                    // what it computed (the new layers' weights zero).
                    if let (Some(layers), None) = (&cfg.drafter.context_layers, &d.config.context_layers) {
                        d = d.with_context_layers(layers.clone(), self.llm.config().num_layers)?;
                    }
                    // A full-vocabulary drafter fine-tuned over K is first reduced to them.
                    if let (Some(ids), None) = (check_vocab(cfg)?, d.draft_vocab()) {
                        d = d.with_draft_vocab(ids.to_vec())?;
                    }
                    let theirs = d.draft_vocab().map(|v| v.token_ids().to_vec());
                    if theirs != cfg.draft_vocab {
                        return Err(TrainError::Config(format!(
                            "{}: the initial drafter's draft vocabulary ({} ids) differs from the one being trained ({} ids)",
                            path.display(),
                            theirs.map_or(0, |v| v.len()),
                            cfg.draft_vocab.as_ref().map_or(0, Vec::len)
                        )));
                    }
                    if d.config != cfg.drafter {
                        return Err(TrainError::Config(format!(
                            "{}: the initial drafter's config ({:?}) differs from the one being trained ({:?})",
                            path.display(),
                            d.config,
                            cfg.drafter
                        )));
                    }
                    d
                }
                None => fresh_drafter::<B>(cfg, &device)?,
            };
            (Trained { drafter, attention: fresh_attention(cfg, self.llm)? }, State { step: 0, config: cfg.clone(), log: vec![] })
        };
        let warmup = (cfg.steps as f64 * cfg.warmup_ratio).round() as usize;
        let stop = self.stop_after.unwrap_or(cfg.steps).min(cfg.steps);
        while state.step < stop {
            let step = state.step;
            let started = std::time::Instant::now();
            let mut acc = GradientsAccumulator::<Trained<B>>::new();
            let (mut loss_sum, mut step_loss, mut hits, mut counts) = (0.0, vec![0.0; cfg.draft_steps], vec![0usize; cfg.draft_steps], vec![0usize; cfg.draft_steps]);
            for micro in 0..cfg.grad_accum {
                let idx = micro_batch(self.examples.len(), cfg.batch_size, cfg.seed, step * cfg.grad_accum + micro);
                let exs: Vec<&Example> = idx.iter().map(|&i| &self.examples[i]).collect();
                let k = step * cfg.grad_accum + micro;
                let seed = cfg.seed ^ (k as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let BatchParts { mut batch, valid, chosen, states } = make_batch_parts(self.llm, &exs, &idx, self.hidden_cache.as_mut(), cfg, seed)?;
                if let Some(attention) = model.attention.as_ref().filter(|_| chosen.iter().any(|p| !p.is_empty())) {
                    batch.hidden = batch.hidden + context_delta(attention, self.llm, &exs, &states, &chosen, cfg)?;
                }
                let vc = valid_counts(&valid, cfg.draft_steps);
                let (loss, parts) = redrafter_loss(&model.drafter, self.llm, &batch, &vc);
                loss_sum += loss.clone().into_scalar().elem::<f64>() / cfg.grad_accum as f64;
                for (i, p) in parts.iter().enumerate() {
                    if let Some(p) = p {
                        step_loss[i] += p.loss.clone().into_scalar().elem::<f64>() / cfg.grad_accum as f64;
                        hits[i] += p.correct.clone().into_scalar().elem::<i64>() as usize;
                        counts[i] += p.count;
                    }
                }
                let grads = GradientsParams::from_grads(loss.div_scalar(cfg.grad_accum as f32).backward(), &model);
                acc.accumulate(&model, grads);
            }
            let lr = learning_rate(step, cfg.steps, warmup, cfg.lr);
            model = optim.step(lr, model, acc.grads());
            let line = LogLine {
                step: step + 1,
                lr,
                loss: loss_sum,
                step_loss,
                step_acc: hits.iter().zip(&counts).map(|(&h, &c)| if c > 0 { h as f64 / c as f64 } else { 0.0 }).collect(),
                seconds: started.elapsed().as_secs_f64(),
            };
            progress(step + 1, cfg.steps, &line);
            state.log.push(line);
            state.step += 1;
            let last = state.step == stop;
            if last || (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0) {
                save_drafter(&model.drafter, &ckpt, false)?;
                model
                    .drafter
                    .clone()
                    .save_file(ckpt.join("drafter"), &recorder)
                    .map_err(|e| TrainError::Config(format!("{}: saving drafter state: {e}", ckpt.display())))?;
                if let Some(a) = &model.attention {
                    a.clone()
                        .save_file(ckpt.join("attention"), &recorder)
                        .map_err(|e| TrainError::Config(format!("{}: saving context attention state: {e}", ckpt.display())))?;
                }
                recorder
                    .record(optim.to_record(), ckpt.join("optimizer"))
                    .map_err(|e| TrainError::Config(format!("{}: saving optimizer state: {e}", ckpt.display())))?;
                let text = serde_json::to_string(&state).expect("state serializes");
                std::fs::write(ckpt.join("state.json"), text).map_err(io(&ckpt))?;
            }
        }
        Ok((model.drafter, state.log))
    }
}

/// Per draft step top-k accuracy (k = 1..=5) on held-out examples, without gradients.
pub fn evaluate<B: KernelBackend>(
    drafter: &Drafter<B>,
    llm: &Llama<B>,
    examples: &[Example],
    draft_steps: usize,
    batch_size: usize,
) -> Vec<[f64; 5]> {
    evaluate_with(drafter, None, llm, examples, draft_steps, batch_size)
}

/// [`evaluate`] for a drafter trained with a context attention beside it.
pub fn evaluate_with<B: KernelBackend>(
    drafter: &Drafter<B>,
    attention: Option<&ContextAttention<B>>,
    llm: &Llama<B>,
    examples: &[Example],
    draft_steps: usize,
    batch_size: usize,
) -> Vec<[f64; 5]> {
    let mut hits = vec![[0usize; 5]; draft_steps];
    let mut counts = vec![0usize; draft_steps];
    let device = llm.embed.weight.device();
    for chunk in examples.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<u32>> = chunk.iter().map(|e| e.tokens.clone()).collect();
        let (b, n) = (rows.len(), rows.iter().map(Vec::len).max().unwrap_or(1));
        let h = llm.config().hidden_size;
        let layers = drafter.config().context_layers_for(llm.config().num_layers);
        let c = h * layers.len();
        // The training path's states (f16-rounded), right-padded into [b, n, C].
        let mut host = vec![0f32; b * n * c];
        for (r, st) in live_states(llm, &rows.iter().map(Vec::as_slice).collect::<Vec<_>>(), &layers).into_iter().enumerate() {
            host[r * n * c..r * n * c + st.len()].copy_from_slice(&st);
        }
        let hidden = Tensor::<B, 3>::from_data(TensorData::new(host, [b, n, c]), &device);
        let ids: Vec<i64> = (0..b * n).map(|x| rows[x / n].get(x % n).copied().unwrap_or(0) as i64).collect();
        let emb = llm.embed.forward(Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [b, n]), &device));
        let hidden = match attention {
            Some(a) => hidden.clone() + a.forward(hidden, emb.clone()),
            None => hidden,
        };
        let mut state: Option<Tensor<B, 3>> = None;
        for i in 1..=draft_steps {
            if n < i + 2 {
                break;
            }
            let m = n - i - 1;
            let s = drafter.advance_embedded(state.map(|s| s.slice([0..b, 0..m, 0..h])), emb.clone().slice([0..b, i..i + m, 0..h]));
            let logits = drafter.logits(llm, hidden.clone().slice([0..b, 0..m, 0..c]), s.clone());
            state = Some(s);
            let v = logits.dims()[2];
            let mut top = logits.reshape([b * m, v]).topk_with_indices(5.min(v), 1).1;
            if let Some(vocab) = drafter.draft_vocab() {
                top = vocab.to_tokens(top);
            }
            let kk = 5.min(v);
            let top: Vec<i64> = top.into_data().iter::<i64>().collect();
            for r in 0..b {
                for t in 0..m {
                    let pos = t + i + 1;
                    if pos >= chunk[r].tokens.len() || !chunk[r].target[pos] {
                        continue;
                    }
                    counts[i - 1] += 1;
                    let label = ids[r * n + pos];
                    if let Some(rank) = top[(r * m + t) * kk..(r * m + t + 1) * kk].iter().position(|&x| x == label) {
                        (rank..5).for_each(|k| hits[i - 1][k] += 1);
                    }
                }
            }
        }
    }
    hits.iter()
        .zip(&counts)
        .map(|(h, &c)| std::array::from_fn(|k| if c > 0 { h[k] as f64 / c as f64 } else { 0.0 }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_are_a_deterministic_permutation_per_epoch() {
        let all: Vec<usize> = (0..5).flat_map(|k| micro_batch(10, 2, 7, k)).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(micro_batch(10, 2, 7, 3), micro_batch(10, 2, 7, 3));
        assert_ne!(micro_batch(10, 10, 7, 0), micro_batch(10, 10, 7, 1), "epochs reshuffle");
    }

    #[test]
    fn feature_layers_are_checked_against_the_llm_and_the_drafter() {
        let drafter = DrafterConfig { context_layers: Some(vec![10, 20]), ..DrafterConfig::for_llm(64, 8) };
        let cfg = |features: Option<Vec<usize>>, targets| TrainConfig {
            draft_steps: 5,
            batch_size: 1,
            positions_per_sequence: 0,
            grad_accum: 1,
            steps: 1,
            lr: 1e-3,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            seed: 0,
            targets,
            checkpoint_every: 0,
            drafter: drafter.clone(),
            init: None,
            draft_vocab: None,
            soft_targets: 0.0,
            feature_layers: features,
            context_attention: None,
        };
        let err = |c: TrainConfig| c.features_for(30).unwrap_err().to_string();
        assert_eq!(cfg(None, Targets::GroundTruth).features_for(30).unwrap(), vec![10, 20]);
        assert_eq!(cfg(Some(vec![30, 20, 10]), Targets::LlmGreedy).features_for(30).unwrap(), vec![30, 20, 10]);
        assert!(err(cfg(Some(vec![10, 20, 10]), Targets::GroundTruth)).contains("want distinct layers"));
        assert!(err(cfg(Some(vec![10, 20, 31]), Targets::GroundTruth)).contains("want distinct layers"));
        assert!(err(cfg(Some(vec![]), Targets::GroundTruth)).contains("want distinct layers"));
        assert!(err(cfg(Some(vec![10, 30]), Targets::GroundTruth)).contains("reads layer 20"));
        assert!(err(cfg(None, Targets::LlmGreedy)).contains("last layer (30)"));
    }
}
