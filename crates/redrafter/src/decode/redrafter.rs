//! ReDrafter as a strategy of the shared loop (spec §4): draft W beams of L tokens per row, pack
//! them into a prefix tree, verify the whole tree in one LLM forward, accept the longest run the
//! LLM agrees with, keep only that path's KV, and emit its tokens plus the LLM's bonus token.
//!
//! Drafting, the tree build and the verification forward are device work with no read-back in
//! between (on cubecl backends the beam search and the tree build are kernels; elsewhere their
//! references run on the host). The step then reads back, in one transfer, what acceptance needs:
//! the argmax of every tree slot (greedy), the unpack map, the node counts and the beams. Sampling
//! with the exact rule then reads W + 1 numbers per tree node computed on the device
//! ([`accept::device`]) where the device is not host memory; on Flex or with Apple's rule it
//! reads the tree's logits (and, Apple's rule, the drafter's distributions).
//!
//! The step is five public phases, each usable on its own (a research variant replaces one):
//! [`draft`] → [`build_tree`] → [`verify`] → [`accept`] → [`commit`]. [`ReDrafter::record_steps`]
//! keeps what each step drafted, packed and accepted ([`StepRecord`]).

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_llama::{BlockInput, KernelBackend, Llama};

use super::{DecodeState, GenerationStats, StepShape, Strategy, forward_with_context};
use crate::accept::{self, Accepted};
use crate::beam::{Beams, DeviceBeams, SparseLogProbs, beam_search_until};
use crate::drafter::Drafter;
use crate::error::DecodeError;
use crate::sampling::{Acceptance, Sampler};
use crate::tree::{DeviceTree, TreeIndex, tree_build};

/// What a draft source hands the verifier.
#[derive(Debug, Clone)]
pub enum Drafts<B: Backend> {
    /// Beams built on the host; the step checks them (shape, g0 column, vocabulary) and uploads them.
    Host(Beams),
    /// Beams already on the device, as the drafter's beam search leaves them.
    Device(DeviceBeams<B>),
}

/// Where draft beams come from: the recurrent drafter's beam search, or anything else that
/// proposes W candidate continuations per row (tests drive the verifier with oracles).
pub trait DraftSource<B: Backend> {
    fn name(&self) -> String;

    /// Beams [active rows, `width`, `len`] whose column 0 is each row's pending token. With
    /// `keep_hist` (sampling mode) the source should also return the distribution behind each
    /// drafted token; without it drafts count as deterministic.
    fn draft(&mut self, model: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, keep_hist: bool)
    -> Result<Drafts<B>, DecodeError>;

    /// [`draft`](Self::draft) with an adaptive length (docs/adaptive-length.md): the source may
    /// stop early and return beams shorter than `len` (at least the pending token alone) where its
    /// own probability of every row's best drafted prefix falls below `exp(min_log_joint)`.
    /// Sources without probabilities draft the full length (this default).
    fn draft_until(
        &mut self,
        model: &Llama<B>,
        state: &DecodeState<B>,
        width: usize,
        len: usize,
        keep_hist: bool,
        _min_log_joint: f32,
    ) -> Result<Drafts<B>, DecodeError> {
        self.draft(model, state, width, len, keep_hist)
    }

    /// Called when rows leave the batch.
    fn retain_rows(&mut self, _keep: &[usize]) {}

    /// For sources that copy for some rows and draft for others ([`LookupFirst`](super::LookupFirst)):
    /// per active row of the latest draft, whether its first beam is a copy of its context. The
    /// loop splits its acceptance statistics by it (`GenerationStats::copied_row_steps`).
    fn copied_rows(&self) -> Option<&[bool]> {
        None
    }

    /// The LLM layers the source reads as its context ([`Strategy::context_layers`]).
    fn context_layers(&self) -> Option<&[usize]> {
        None
    }
}

/// A boxed source drafts as the source in it (to pick a source at run time).
impl<B: Backend> DraftSource<B> for Box<dyn DraftSource<B>> {
    fn name(&self) -> String {
        self.as_ref().name()
    }

    fn draft(&mut self, model: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, keep_hist: bool)
    -> Result<Drafts<B>, DecodeError> {
        self.as_mut().draft(model, state, width, len, keep_hist)
    }

    fn draft_until(
        &mut self,
        model: &Llama<B>,
        state: &DecodeState<B>,
        width: usize,
        len: usize,
        keep_hist: bool,
        min_log_joint: f32,
    ) -> Result<Drafts<B>, DecodeError> {
        self.as_mut().draft_until(model, state, width, len, keep_hist, min_log_joint)
    }

    fn retain_rows(&mut self, keep: &[usize]) {
        self.as_mut().retain_rows(keep)
    }

    fn copied_rows(&self) -> Option<&[bool]> {
        self.as_ref().copied_rows()
    }

    fn context_layers(&self) -> Option<&[usize]> {
        self.as_ref().context_layers()
    }
}

impl<B: KernelBackend> DraftSource<B> for Drafter<B> {
    fn name(&self) -> String {
        "drafter".into()
    }

    fn draft(&mut self, model: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, keep_hist: bool)
    -> Result<Drafts<B>, DecodeError> {
        self.bind(model)?;
        Ok(Drafts::Device(beam_search_until(self, model, state.hidden.clone(), &state.pending, width, len, keep_hist, None)))
    }

    fn draft_until(
        &mut self,
        model: &Llama<B>,
        state: &DecodeState<B>,
        width: usize,
        len: usize,
        keep_hist: bool,
        min_log_joint: f32,
    ) -> Result<Drafts<B>, DecodeError> {
        self.bind(model)?;
        Ok(Drafts::Device(beam_search_until(self, model, state.hidden.clone(), &state.pending, width, len, keep_hist, Some(min_log_joint))))
    }

    fn context_layers(&self) -> Option<&[usize]> {
        self.config.context_layers.as_deref()
    }
}

/// Beam width W and beam length L (L counts g0, so each beam drafts L − 1 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeamConfig {
    pub width: usize,
    pub length: usize,
}

impl BeamConfig {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.width == 0 {
            return Err(DecodeError::InvalidOption("beam width must be at least 1".into()));
        }
        if self.length < 2 {
            return Err(DecodeError::InvalidOption(
                "beam length must be at least 2 (it counts the LLM's own token; 1 would be autoregressive decoding)".into(),
            ));
        }
        Ok(())
    }
}

pub struct ReDrafter<S> {
    source: S,
    beams: BeamConfig,
    /// Adaptive length: drafting stops where the source's joint probability of every row's best
    /// beam falls below this; 0 drafts every step all L − 1 tokens.
    threshold: f32,
    /// Every step's beams, tree and acceptance, when asked for ([`ReDrafter::record_steps`]).
    recorded: Option<Vec<StepRecord>>,
}

/// What one ReDrafter step drafted, packed and accepted, for analysis and visualisation
/// (`examples/tree_view.rs`, `examples/acceptance.rs`).
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The drafted beams [active rows, W, len]; column 0 is each row's pending token.
    pub beams: Beams,
    /// The prefix-deduplicated tree: packed slot of every beam position, nodes per row.
    pub tree: TreeIndex,
    /// Per active row: the winning beam, how many of its drafted tokens were accepted, the bonus.
    pub accepted: Vec<Accepted>,
}

impl<S> ReDrafter<S> {
    pub fn new(source: S, beams: BeamConfig) -> Result<Self, DecodeError> {
        beams.validate()?;
        Ok(Self { source, beams, threshold: 0.0, recorded: None })
    }

    /// Adaptive draft length (docs/adaptive-length.md): each step drafts a token only while the
    /// source's joint probability of some row's best beam, that token included, is at least
    /// `p`, so a step whose first draft is unlikely verifies the pending token alone (an
    /// autoregressive step) and a confident one drafts up to L − 1 tokens. Verification is
    /// unchanged, so greedy output stays that of autoregressive decoding. `p` = 0 turns it off
    /// (the default); sources without probabilities (prompt lookup) always draft L − 1 tokens.
    pub fn draft_threshold(mut self, p: f32) -> Result<Self, DecodeError> {
        validate_draft_threshold(p)?;
        self.threshold = p;
        Ok(self)
    }

    /// The adaptive-length threshold p (0: off).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The bound on beam scores (joint log-probabilities) the threshold sets; None when off.
    fn min_log_joint(&self) -> Option<f32> {
        (self.threshold > 0.0).then(|| self.threshold.ln())
    }

    /// Keep a [`StepRecord`] of every following step (off by default: it holds the beams of every
    /// step on the host).
    pub fn record_steps(mut self, on: bool) -> Self {
        self.recorded = on.then(Vec::new);
        self
    }

    /// The steps recorded so far (empty unless [`record_steps`](Self::record_steps)); taking
    /// them starts a new record.
    pub fn take_steps(&mut self) -> Vec<StepRecord> {
        self.recorded.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn beams(&self) -> BeamConfig {
        self.beams
    }
}

/// Checks an adaptive-length threshold ([`ReDrafter::draft_threshold`]): a probability in [0, 1).
/// Front ends check their options with it before building a strategy.
pub fn validate_draft_threshold(p: f32) -> Result<(), DecodeError> {
    if !(0.0..1.0).contains(&p) {
        return Err(DecodeError::InvalidOption(format!("draft threshold {p}: must be a probability in [0, 1)")));
    }
    Ok(())
}

/// Whether beams [rows, width, got] answer a request for [rows, width, len]: exactly, or, with an
/// adaptive length, any length from 1 (g0 alone) to `len`.
fn shape_ok(got: [usize; 3], rows: usize, width: usize, len: usize, adaptive: bool) -> bool {
    got[..2] == [rows, width] && (got[2] == len || adaptive && (1..=len).contains(&got[2]))
}

fn check_beams(beams: &Beams, rows: usize, width: usize, len: usize, pending: &[u32], adaptive: bool) -> Result<(), DecodeError> {
    if !shape_ok([beams.rows, beams.width, beams.len], rows, width, len, adaptive) || beams.tokens.len() != rows * width * beams.len {
        return Err(DecodeError::Draft(format!(
            "expected beams [{rows}, {width}, {}{len}], got [{}, {}, {}] with {} tokens",
            if adaptive { "1..=" } else { "" },
            beams.rows, beams.width, beams.len, beams.tokens.len()
        )));
    }
    for (r, &g0) in pending.iter().enumerate() {
        if let Some(i) = (0..width).find(|&i| beams.beam(r, i)[0] != g0) {
            return Err(DecodeError::Draft(format!("row {r} beam {i} does not start with the pending token {g0}")));
        }
    }
    Ok(())
}

/// Drafts as the verifier takes them: device tokens [rows, W, len], plus the host beams when the
/// source built them there, and the drafter's distributions in sampling mode.
pub struct Drafted<B: Backend> {
    pub tokens: Tensor<B, 3, Int>,
    pub host: Option<Beams>,
    pub hist: Option<Vec<SparseLogProbs>>,
}

/// Phase 1, draft: asks the source for W beams of `len` tokens per active row (with
/// `min_log_joint`, an adaptive length: from 1 to `len`, [`DraftSource::draft_until`]) and checks
/// them (shape, the pending token in column 0, the vocabulary) before anything runs on them.
pub fn draft<B: KernelBackend, S: DraftSource<B>>(
    source: &mut S,
    model: &Llama<B>,
    state: &DecodeState<B>,
    width: usize,
    len: usize,
    keep_hist: bool,
    min_log_joint: Option<f32>,
) -> Result<Drafted<B>, DecodeError> {
    let n = state.rows.len();
    let vocab = model.config().vocab_size;
    let adaptive = min_log_joint.is_some();
    let drafts = match min_log_joint {
        Some(bound) => source.draft_until(model, state, width, len, keep_hist, bound)?,
        None => source.draft(model, state, width, len, keep_hist)?,
    };
    match drafts {
        Drafts::Host(beams) => {
            check_beams(&beams, n, width, len, &state.pending, adaptive)?;
            let len = beams.len;
            if let Some(&bad) = beams.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(DecodeError::Draft(format!("drafted token {bad} is outside the vocabulary of {vocab}")));
            }
            let ids = beams.tokens.iter().map(|&t| t as i64).collect();
            let tokens = Tensor::<B, 3, Int>::from_data(TensorData::new(ids, [n, width, len]), &state.hidden.device());
            Ok(Drafted { tokens, hist: None, host: Some(beams) })
        }
        Drafts::Device(d) => {
            if !shape_ok(d.tokens.dims(), n, width, len, adaptive) {
                return Err(DecodeError::Draft(format!("expected beams [{n}, {width}, {len}], got {:?}", d.tokens.dims())));
            }
            Ok(Drafted { tokens: d.tokens, host: None, hist: d.hist })
        }
    }
}

/// Phase 2, build the tree: deduplicates the beams' shared prefixes into one packed tree per row
/// (spec §3), with positions after each row's cached tokens and the tree attention mask.
pub fn build_tree<B: KernelBackend>(tokens: &Tensor<B, 3, Int>, state: &DecodeState<B>, device: &B::Device) -> DeviceTree<B> {
    tree_build(tokens.clone(), state.cache.lens(), device)
}

/// The verification forward's results with what the host read back of them.
pub struct Verified<B: Backend> {
    /// [rows × slots, C]: the drafter's context at every tree slot (the post-norm hidden state,
    /// or the context layers' states side by side).
    pub hidden: Tensor<B, 2>,
    /// [rows × slots, vocab]; read by sampling acceptance.
    pub logits: Tensor<B, 2>,
    pub tree: TreeIndex,
    pub beams: Beams,
    /// Greedy mode: the LLM's argmax at every slot [rows × slots].
    pub argmax: Option<Vec<u32>>,
}

/// Phase 3, verify: one LLM forward over every row's packed tree (its keys and values left
/// pending in the cache), then the step's one read-back of ints: the unpack map, the node
/// counts, device-drafted beams and, greedy, every slot's argmax.
pub fn verify<B: KernelBackend>(
    model: &Llama<B>,
    state: &mut DecodeState<B>,
    tree: DeviceTree<B>,
    drafted: Drafted<B>,
    greedy: bool,
    context_layers: Option<&[usize]>,
) -> Verified<B> {
    let [n, w, len] = drafted.tokens.dims();
    let grid = n * w * len;
    let slots = tree.tokens.dims()[1];
    let input = BlockInput { tokens: tree.tokens, positions: tree.positions, mask: tree.mask, prefill: false };
    let (hidden, context) = forward_with_context(model, &input, &mut state.cache, context_layers);
    let logits = model.logits(hidden.clone());
    let hidden = context.unwrap_or(hidden);
    let mut parts = vec![tree.unpack.reshape([grid]), tree.packed_len];
    if drafted.host.is_none() {
        parts.push(drafted.tokens.reshape([grid]));
    }
    if greedy {
        parts.push(logits.clone().argmax(1).reshape([n * slots]));
    }
    let ints: Vec<i64> = Tensor::cat(parts, 0).into_data().iter::<i64>().collect();
    let (tree, beams, argmax) = split_read_back(&ints, [n, w, len], slots, drafted.host, drafted.hist);
    Verified { hidden, logits, tree, beams, argmax }
}

/// Splits the read-back of [`verify`] (unpack map, node counts, then the beams if they were drafted
/// on the device, then the argmax if greedy) into its parts.
fn split_read_back(
    ints: &[i64],
    [n, w, len]: [usize; 3],
    slots: usize,
    host: Option<Beams>,
    hist: Option<Vec<SparseLogProbs>>,
) -> (TreeIndex, Beams, Option<Vec<u32>>) {
    let grid = n * w * len;
    let (unpack, rest) = ints.split_at(grid);
    let (packed_len, rest) = rest.split_at(n);
    let tree = TreeIndex {
        width: w,
        len,
        slots,
        unpack: unpack.iter().map(|&u| u as usize).collect(),
        packed_len: packed_len.iter().map(|&p| p as usize).collect(),
    };
    let (beams, rest) = match host {
        Some(b) => (b, rest),
        None => {
            let (toks, rest) = rest.split_at(grid);
            (Beams { rows: n, width: w, len, tokens: toks.iter().map(|&t| t as u32).collect(), hist }, rest)
        }
    };
    let argmax = (!rest.is_empty()).then(|| rest.iter().map(|&v| v as u32).collect());
    (tree, beams, argmax)
}

/// Phase 4, accept: per row, the beam and the number of its drafted tokens the LLM agrees with,
/// and the bonus token. Greedy compares drafts with the LLM's argmax (lossless). Sampling with
/// the exact rule, on a backend whose tensors are not host memory, computes what its walk needs
/// on the device and reads back W + 1 numbers per tree node ([`accept::device`]; `stats` counts
/// its nodes); on Flex and with Apple's rule the host reads the tree's logits
/// (docs/verification.md).
pub fn accept<B: KernelBackend>(v: &Verified<B>, sampler: &mut Sampler, rows: &[usize], vocab: usize, stats: &mut GenerationStats) -> Result<Vec<Accepted>, DecodeError> {
    let n = v.tree.packed_len.len();
    if let Some(ids) = &v.argmax {
        return Ok((0..n).map(|r| accept::greedy(&v.tree, &v.beams, r, ids)).collect());
    }
    // Where the logits already live in host memory (Flex) reading them is free and the host walk
    // touches only the nodes it visits; the device path there cost 1.8 ms more per W1 L3 step
    // (docs/verification.md). Elsewhere it saves reading back every node's vocabulary.
    if !B::host_resident() && accept::device::serves(sampler.config()) {
        let children = accept::device::Children::of(&v.tree, &v.beams);
        let uniforms = accept::device::node_uniforms(&v.tree, sampler, rows);
        let draws = accept::device::node_draws(v.logits.clone(), &children, sampler.config(), &uniforms)?;
        stats.device_nodes += children.live_nodes();
        stats.nodes_finished_on_host += draws.host_nodes;
        return Ok((0..n).map(|r| accept::device::exact(&v.tree, &v.beams, r, &draws, &children, sampler, rows[r])).collect());
    }
    let slots = v.tree.slots;
    let host = v.logits.clone().into_data().convert::<f32>().into_vec::<f32>().map_err(|e| DecodeError::Device(format!("reading the tree's logits back: {e:?}")))?;
    // The walk needs the distributions of the nodes it visits only; each is computed once.
    let config = sampler.config().clone();
    Ok((0..n)
        .map(|r| {
            let mut dists = accept::Lazy::new(v.tree.packed_len[r], |q| {
                config.distribution(&host[(r * slots + q) * vocab..(r * slots + q + 1) * vocab])
            });
            match sampler.config().acceptance {
                Acceptance::Exact => accept::exact(&v.tree, &v.beams, r, &mut dists, sampler, rows[r]),
                Acceptance::Apple => accept::sampled(&v.tree, &v.beams, r, &mut dists, sampler, rows[r]),
            }
        })
        .collect())
}

/// What commit keeps, per row: the packed slots of g0 and the accepted drafts of the winning beam
/// (the bonus is not in the cache yet), and the slot whose hidden state produced the bonus.
fn commit_plan(tree: &TreeIndex, accepted: &[Accepted]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let keep = accepted.iter().enumerate().map(|(r, a)| (0..=a.drafted).map(|k| tree.node(r, a.beam, k)).collect()).collect();
    let last = accepted.iter().enumerate().map(|(r, a)| r * tree.slots + tree.node(r, a.beam, a.drafted)).collect();
    (keep, last)
}

/// The tokens each row emits: the accepted drafts of its beam, then the bonus.
fn emitted(beams: &Beams, accepted: &[Accepted]) -> Vec<Vec<u32>> {
    accepted
        .iter()
        .enumerate()
        .map(|(r, a)| {
            let mut toks = beams.beam(r, a.beam)[1..=a.drafted].to_vec();
            toks.push(a.bonus);
            toks
        })
        .collect()
}

/// Phase 5, commit: keeps only the accepted path's keys and values (relocated to follow each
/// row's committed tokens), sets each row's hidden state and pending token to the bonus's, and
/// returns the tokens each row emits.
pub fn commit<B: KernelBackend>(state: &mut DecodeState<B>, v: &Verified<B>, accepted: &[Accepted]) -> Result<Vec<Vec<u32>>, DecodeError> {
    let (keep, last) = commit_plan(&v.tree, accepted);
    state.cache.commit(&keep)?;
    let last: Vec<i64> = last.into_iter().map(|s| s as i64).collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [accepted.len()]), &state.hidden.device());
    state.hidden = v.hidden.clone().select(0, index);
    state.pending = accepted.iter().map(|a| a.bonus).collect();
    Ok(emitted(&v.beams, accepted))
}

impl<B: KernelBackend, S: DraftSource<B>> Strategy<B> for ReDrafter<S> {
    fn name(&self) -> String {
        let p = if self.threshold > 0.0 { format!(", p={}", self.threshold) } else { String::new() };
        format!("redrafter({}, W={}, L={}{p})", self.source.name(), self.beams.width, self.beams.length)
    }

    fn step_shape(&self) -> StepShape {
        // The tree has at most W × L tokens; the beam search keeps a vocabulary row per beam.
        let (w, l) = (self.beams.width, self.beams.length);
        StepShape { tokens: w.saturating_mul(l), draft_logits: w }
    }

    /// Spec §4 as five named phases: draft → build the tree → verify → accept → commit.
    fn step(
        &mut self,
        model: &Llama<B>,
        state: &mut DecodeState<B>,
        sampler: &mut Sampler,
        stats: &mut GenerationStats,
    ) -> Result<Vec<Vec<u32>>, DecodeError> {
        let n = state.rows.len();
        // A row may commit at most room(i) tokens; shorten every beam near the end of the context.
        let len = (0..n).map(|i| state.room(i)).min().unwrap_or(1).clamp(1, self.beams.length);
        let greedy = sampler.config().is_greedy();
        let device = state.hidden.device();

        let t = Instant::now();
        // Only Apple's rule reads the drafter's distributions; the exact rule needs the drafts alone.
        let keep_hist = !greedy && sampler.config().acceptance == Acceptance::Apple;
        let bound = self.min_log_joint();
        let drafted = draft(&mut self.source, model, state, self.beams.width, len, keep_hist, bound)?;
        // With an adaptive length the step may verify fewer tokens than it asked for.
        let len = drafted.tokens.dims()[2];
        stats.end_phase::<B>("draft", t, &device)?;

        let t = Instant::now();
        let tree = build_tree(&drafted.tokens, state, &device);
        stats.end_phase::<B>("tree", t, &device)?;

        let t = Instant::now();
        let verified = verify(model, state, tree, drafted, greedy, self.source.context_layers());
        stats.record_tree(verified.tree.packed_len.iter().sum(), n * self.beams.width * len);
        let accepted = accept(&verified, sampler, &state.rows, model.config().vocab_size, stats)?;
        stats.end_phase::<B>("verify", t, &device)?;

        let t = Instant::now();
        let out = commit(state, &verified, &accepted)?;
        for a in &accepted {
            stats.record_acceptance(a.drafted, len - 1);
        }
        if let Some(copied) = self.source.copied_rows() {
            for (a, _) in accepted.iter().zip(copied).filter(|(_, c)| **c) {
                stats.record_copy_acceptance(a.drafted, len - 1);
            }
        }
        if let Some(steps) = &mut self.recorded {
            steps.push(StepRecord { beams: verified.beams, tree: verified.tree, accepted });
        }
        stats.end_phase::<B>("accept", t, &device)?;
        Ok(out)
    }

    fn retain_rows(&mut self, keep: &[usize]) {
        self.source.retain_rows(keep);
    }

    fn context_layers(&self) -> Option<&[usize]> {
        self.source.context_layers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows, W 2, L 3. Row 0: beams [7 1 2], [7 1 3] share "7 1" (4 nodes); row 1: [9 4 5],
    /// [9 6 5] share "9" (5 nodes).
    fn tree_and_beams() -> (TreeIndex, Beams) {
        let tree = TreeIndex { width: 2, len: 3, slots: 5, unpack: vec![0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 3, 4], packed_len: vec![4, 5] };
        let beams = Beams { rows: 2, width: 2, len: 3, tokens: vec![7, 1, 2, 7, 1, 3, 9, 4, 5, 9, 6, 5], hist: None };
        (tree, beams)
    }

    #[test]
    fn the_read_back_splits_into_tree_beams_and_argmax() {
        let (tree, beams) = tree_and_beams();
        let mut ints: Vec<i64> = tree.unpack.iter().map(|&u| u as i64).collect();
        ints.extend([4, 5]);
        ints.extend(beams.tokens.iter().map(|&t| t as i64));
        ints.extend((0..10).map(|v| 100 + v));
        let (t, b, argmax) = split_read_back(&ints, [2, 2, 3], 5, None, None);
        assert_eq!((t, b.tokens.clone()), (tree.clone(), beams.tokens.clone()));
        assert_eq!(argmax, Some((100..110).collect()));
        // Host beams are not read back; sampling reads no argmax.
        let n = 12 + 2;
        let (t, b, argmax) = split_read_back(&ints[..n], [2, 2, 3], 5, Some(beams.clone()), None);
        assert_eq!((t, b.tokens, argmax), (tree, beams.tokens, None));
    }

    #[test]
    fn commit_keeps_the_accepted_path_and_emits_drafts_then_bonus() {
        let (tree, beams) = tree_and_beams();
        // Row 0 accepts both drafts of beam 1 (7 1 3); row 1 accepts nothing of beam 0.
        let accepted = [Accepted { beam: 1, drafted: 2, bonus: 8 }, Accepted { beam: 0, drafted: 0, bonus: 6 }];
        let (keep, last) = commit_plan(&tree, &accepted);
        assert_eq!(keep, vec![vec![0, 1, 3], vec![0]]);
        // The bonus comes from the hidden state of the last accepted slot: row 0 slot 3, row 1 slot 0.
        assert_eq!(last, vec![3, 5]);
        assert_eq!(emitted(&beams, &accepted), vec![vec![1, 3, 8], vec![6]]);
    }
}
