//! The one generation loop shared by every decoding strategy.
//!
//! The loop owns prefill, stopping (EOS, stop strings, max new tokens, context limit), streaming,
//! batching with per-row lengths, and statistics. A [`Strategy`] owns only "propose, verify,
//! commit": given each active row's pending token (sampled, emitted, not yet in the KV cache) it
//! runs the model and returns the tokens each row commits. Autoregressive decoding commits one
//! token per step; ReDrafter commits a variable number per row.

mod autoregressive;
pub mod memory;
pub mod redrafter;
mod lookup;
mod lookup_first;
mod loops;
mod row;
mod stats;

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_io::TextTokenizer;
use redrafter_llama::{BlockInput, KernelBackend, KvCache, Llama};

pub use autoregressive::Autoregressive;
pub use redrafter::{BeamConfig, DraftSource, Drafts, ReDrafter, StepRecord, validate_draft_threshold};
pub use memory::StepShape;
pub use lookup::PromptLookup;
pub use lookup_first::{LOOKUP_FIRST_NGRAMS, LookupFirst};
pub use loops::{LoopStop, LoopTracker, find_loop};
pub use row::{FinishReason, RowOutput};
pub use stats::GenerationStats;

use crate::error::DecodeError;
use crate::sampling::{Sampler, SamplingConfig};
use row::RowState;

#[derive(Debug, Clone)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Generation of a row stops when its text contains one of these; the text is cut before it.
    pub stop_strings: Vec<String>,
    /// Token ids that end a row (usually the tokenizer's EOS / end-of-turn ids). Kept in the output tokens.
    pub eos_ids: Vec<u32>,
    /// Upper bound on prompt + generated tokens, below the model's own context length.
    pub context_limit: Option<usize>,
    /// Wait for the device at the end of every phase of a step, so that the phase times in the
    /// stats are the device's. Off, they are host times: on an asynchronous backend (wgpu, CUDA)
    /// a step's device work then shows up in the phase that reads results back.
    pub sync_phases: bool,
    /// Stop a row once its output falls into a repetition loop (see [`LoopStop`]); off by default.
    pub stop_loops: Option<LoopStop>,
    /// The sampling seed of each request row, when a row's samples must not depend on its slot
    /// in the batch (e.g. a seed derived from the request's id, so that a resumed run that
    /// batches the rest differently draws the same answers). Empty: row `r` gets
    /// `sampling.seed ^ r·φ` ([`Sampler::new`]). Greedy decoding ignores it.
    pub row_seeds: Vec<u64>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: SamplingConfig::default(),
            stop_strings: vec![],
            eos_ids: vec![],
            context_limit: None,
            sync_phases: false,
            stop_loops: None,
            row_seeds: vec![],
        }
    }
}

/// What every strategy sees of the batch: only the rows still generating.
pub struct DecodeState<B: Backend> {
    pub cache: KvCache<B>,
    /// Active row -> index of its request row (for per-row RNGs and outputs).
    pub rows: Vec<usize>,
    /// Per active row, the newest token: already emitted, not yet in the cache.
    pub pending: Vec<u32>,
    /// [active rows, C]: the drafter's context at the position that produced `pending`: the
    /// post-norm hidden state (C = H), or the states of the strategy's
    /// [`context_layers`](Strategy::context_layers) side by side.
    pub hidden: Tensor<B, 2>,
    /// Context length: positions `0..limit` exist.
    pub limit: usize,
    /// Per active row, every token so far: the prompt, then the output; the last is `pending`.
    /// (Draft sources that read the context, such as [`PromptLookup`], draft from it.)
    pub tokens: Vec<Vec<u32>>,
}

impl<B: Backend> DecodeState<B> {
    /// Tokens row `i` may still add after its pending token without leaving the context.
    /// Bounded by the cache, which holds the longest prompt plus `max_new_tokens`.
    pub fn room(&self, i: usize) -> usize {
        self.limit.min(self.cache.capacity()).saturating_sub(self.cache.lens()[i] + 1)
    }

    fn retain(&mut self, keep: &[usize]) {
        self.cache.retain_rows(keep);
        self.rows = keep.iter().map(|&i| self.rows[i]).collect();
        self.pending = keep.iter().map(|&i| self.pending[i]).collect();
        self.tokens = keep.iter().map(|&i| std::mem::take(&mut self.tokens[i])).collect();
        let idx: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [keep.len()]), &self.hidden.device());
        self.hidden = self.hidden.clone().select(0, idx);
    }
}

pub trait Strategy<B: KernelBackend> {
    fn name(&self) -> String;

    /// Runs one step for every active row and commits what it accepts to `state.cache`. Returns,
    /// per active row, the tokens it adds to the output (at least one, at most `state.room(i)`);
    /// the last of them becomes the row's new pending token, and `state.hidden` must then hold the
    /// hidden state that produced it.
    fn step(
        &mut self,
        model: &Llama<B>,
        state: &mut DecodeState<B>,
        sampler: &mut Sampler,
        stats: &mut GenerationStats,
    ) -> Result<Vec<Vec<u32>>, DecodeError>;

    /// Called when rows leave the batch, for strategies that keep per-row state.
    fn retain_rows(&mut self, _keep: &[usize]) {}

    /// The size of one step per row, for the memory check before generation starts.
    fn step_shape(&self) -> StepShape {
        StepShape::AUTOREGRESSIVE
    }

    /// The LLM layers whose states `state.hidden` holds (see [`DecodeState::hidden`]); `None`:
    /// the final state alone.
    fn context_layers(&self) -> Option<&[usize]> {
        None
    }
}

/// One forward of `input` giving the post-norm final states (for the logits), [B·T, H], and
/// the context of `layers` side by side, [B·T, C]; `None` without layers (the final states are
/// the context). Rows come flattened because both callers pick rows of them.
pub fn forward_with_context<B: KernelBackend>(
    model: &Llama<B>,
    input: &BlockInput<B>,
    cache: &mut KvCache<B>,
    layers: Option<&[usize]>,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let [b, t] = input.dims();
    let flat = |x: Tensor<B, 3>| {
        let width = x.dims()[2];
        x.reshape([b * t, width])
    };
    let Some(layers) = layers else {
        return (flat(model.forward_hidden(input, cache)), None);
    };
    // The final layer goes last: every layer must run anyway for the cache.
    let mut asked = layers.to_vec();
    asked.push(model.config().num_layers);
    let mut states = model.forward_hidden_layers(input, cache, &asked);
    let hidden = states.pop().expect("the final layer was asked");
    (flat(hidden), Some(flat(Tensor::cat(states, 2))))
}

pub struct GenerationOutput {
    pub rows: Vec<RowOutput>,
    pub stats: GenerationStats,
}

/// Streams text as it is generated: `(request row, new text)`.
pub type OnText<'a> = &'a mut dyn FnMut(usize, &str);

pub struct Generator<'a, B: KernelBackend> {
    pub model: &'a Llama<B>,
    pub tokenizer: Option<&'a TextTokenizer>,
}

impl<'a, B: KernelBackend> Generator<'a, B> {
    pub fn new(model: &'a Llama<B>, tokenizer: Option<&'a TextTokenizer>) -> Self {
        Self { model, tokenizer }
    }

    /// Context length in effect for `config`.
    pub fn context_limit(&self, config: &GenerationConfig) -> usize {
        let model_max = self.model.config().max_position_embeddings;
        config.context_limit.map_or(model_max, |c| c.min(model_max))
    }

    fn validate(&self, prompts: &[Vec<u32>], config: &GenerationConfig) -> Result<usize, DecodeError> {
        config.sampling.validate()?;
        if config.max_new_tokens == 0 {
            return Err(DecodeError::InvalidOption("max-new-tokens must be at least 1".into()));
        }
        if prompts.is_empty() {
            return Err(DecodeError::InvalidOption("no prompts given".into()));
        }
        // An empty stop string is found in every text, so every row would end after one token.
        if config.stop_strings.iter().any(String::is_empty) {
            return Err(DecodeError::InvalidOption("a stop string must not be empty".into()));
        }
        if let Some(rule) = &config.stop_loops {
            rule.validate()?;
        }
        if !config.row_seeds.is_empty() && config.row_seeds.len() != prompts.len() {
            return Err(DecodeError::InvalidOption(format!(
                "{} row seeds for {} prompts: give one per prompt, or none",
                config.row_seeds.len(),
                prompts.len()
            )));
        }
        let limit = self.context_limit(config);
        let vocab = self.model.config().vocab_size;
        for (row, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(DecodeError::EmptyPrompt { row });
            }
            if p.len() >= limit {
                return Err(DecodeError::PromptTooLong { row, len: p.len(), limit });
            }
            if let Some(&id) = p.iter().find(|&&id| id as usize >= vocab) {
                return Err(DecodeError::TokenOutOfRange { row, id, vocab });
            }
        }
        Ok(limit)
    }

    pub fn generate(
        &self,
        strategy: &mut dyn Strategy<B>,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        on_text: Option<OnText<'_>>,
    ) -> Result<GenerationOutput, DecodeError> {
        let limit = self.validate(prompts, config)?;
        let device = self.model.embed.weight.device();
        let mut noop = |_: usize, _: &str| {};
        let on_text: OnText<'_> = on_text.unwrap_or(&mut noop);
        let mut stats = GenerationStats::new(strategy.name(), prompts.len());
        stats.synced_phases = config.sync_phases;
        stats.prompt_tokens = prompts.iter().map(Vec::len).sum();
        let mut sampler = match config.row_seeds.as_slice() {
            [] => Sampler::new(config.sampling.clone(), prompts.len()),
            seeds => Sampler::with_row_seeds(config.sampling.clone(), seeds),
        };
        let mut rows: Vec<RowState> = prompts.iter().map(|p| RowState::new(p.len(), config.stop_loops)).collect();

        let start = Instant::now();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        // max_new_tokens may be anything up to usize::MAX ("until the context is full").
        let capacity = limit.min(longest.saturating_add(config.max_new_tokens));
        memory::check(self.model.config(), prompts.len(), longest, capacity, strategy.step_shape()).map_err(redrafter_io::IoError::from)?;
        let mut cache = self.model.new_cache(prompts.len(), capacity, &device);
        let (pending, hidden) = self.prefill(prompts, &mut cache, &mut sampler, strategy.context_layers())?;
        stats.prefill_seconds = start.elapsed().as_secs_f64();
        let tokens = prompts.iter().zip(&pending).map(|(p, &t)| p.iter().copied().chain([t]).collect()).collect();
        let mut state = DecodeState { cache, rows: (0..prompts.len()).collect(), pending, hidden, limit, tokens };
        for (i, &tok) in state.pending.iter().enumerate() {
            rows[i].push_tokens(&[tok], config, self.tokenizer, limit, on_text, i);
        }
        stats.new_tokens += prompts.len();

        let decode_start = Instant::now();
        loop {
            let keep: Vec<usize> = (0..state.rows.len()).filter(|&i| rows[state.rows[i]].finish.is_none()).collect();
            // Stop before shrinking the batch to nothing: selecting zero rows launches a kernel
            // over zero elements, which CUDA refuses (CUDA_ERROR_INVALID_VALUE) where wgpu and the
            // CPU backends accept it.
            if keep.is_empty() {
                break;
            }
            if keep.len() != state.rows.len() {
                strategy.retain_rows(&keep);
                state.retain(&keep);
            }
            let committed = strategy.step(self.model, &mut state, &mut sampler, &mut stats)?;
            stats.steps += 1;
            stats.row_steps += state.rows.len();
            for (i, toks) in committed.iter().enumerate() {
                let r = state.rows[i];
                stats.committed_in_steps += toks.len();
                state.tokens[i].extend(toks);
                stats.new_tokens += rows[r].push_tokens(toks, config, self.tokenizer, limit, on_text, r);
            }
        }
        stats.decode_seconds = decode_start.elapsed().as_secs_f64();
        stats.finish();
        let rows = rows.into_iter().map(RowState::into_output).collect();
        Ok(GenerationOutput { rows, stats })
    }

    /// Runs all prompts as one right-padded causal block, commits their real tokens, and samples
    /// each row's first new token from the logits at its last prompt position.
    fn prefill(
        &self,
        prompts: &[Vec<u32>],
        cache: &mut KvCache<B>,
        sampler: &mut Sampler,
        context_layers: Option<&[usize]>,
    ) -> Result<(Vec<u32>, Tensor<B, 2>), DecodeError> {
        let device = cache.device().clone();
        let b = prompts.len();
        let input = BlockInput::prefill(prompts, &vec![0; b], &device);
        let [_, t] = input.dims();
        let (hidden, context) = forward_with_context(self.model, &input, cache, context_layers);
        cache.commit(&prompts.iter().map(|p| (0..p.len()).collect()).collect::<Vec<_>>())?;
        let last: Vec<i64> = prompts.iter().enumerate().map(|(r, p)| (r * t + p.len() - 1) as i64).collect();
        let last = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [b]), &device);
        let hidden = hidden.select(0, last.clone());
        let context = context.map_or_else(|| hidden.clone(), |c| c.select(0, last));
        let logits = self.model.logits(hidden);
        let pending = sample_rows(&logits, sampler, &(0..b).collect::<Vec<_>>());
        Ok((pending, context))
    }
}

/// Samples one token per row of `logits` [rows, vocab]; greedy reads back only the argmax ids.
pub fn sample_rows<B: Backend>(logits: &Tensor<B, 2>, sampler: &mut Sampler, request_rows: &[usize]) -> Vec<u32> {
    if sampler.config().is_greedy() {
        let ids = logits.clone().argmax(1).into_data();
        return ids.iter::<i64>().map(|v| v as u32).collect();
    }
    let [n, v] = logits.dims();
    let data = logits.clone().into_data().convert::<f32>();
    let values = data.as_slice::<f32>().expect("converted to f32");
    (0..n).map(|i| sampler.sample(request_rows[i], &values[i * v..(i + 1) * v])).collect()
}

