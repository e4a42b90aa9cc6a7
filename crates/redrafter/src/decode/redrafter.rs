//! ReDrafter as a strategy of the shared loop (spec §4): draft W beams of L tokens per row, pack
//! them into a prefix tree, verify the whole tree in one LLM forward, accept the longest run the
//! LLM agrees with, keep only that path's KV, and emit its tokens plus the LLM's bonus token.
//!
//! Drafting, the tree build and the verification forward are device work with no read-back in
//! between (on cubecl backends the beam search and the tree build are kernels; elsewhere their
//! references run on the host). The step then reads back, in one transfer, what acceptance needs:
//! the argmax of every tree slot (greedy), the unpack map, the node counts and the beams. Sampling
//! mode also reads the logits of the tree and the drafter's.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_llama::{BlockInput, KernelBackend, Llama};

use super::{DecodeState, GenerationStats, StepShape, Strategy};
use crate::accept::{self, Accepted};
use crate::beam::{Beams, DeviceBeams, beam_search};
use crate::drafter::Drafter;
use crate::error::DecodeError;
use crate::sampling::{Acceptance, Sampler};
use crate::tree::{TreeIndex, tree_build};

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

    /// Called when rows leave the batch.
    fn retain_rows(&mut self, _keep: &[usize]) {}
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

    fn retain_rows(&mut self, keep: &[usize]) {
        self.as_mut().retain_rows(keep)
    }
}

impl<B: KernelBackend> DraftSource<B> for Drafter<B> {
    fn name(&self) -> String {
        "drafter".into()
    }

    fn draft(&mut self, model: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, keep_hist: bool)
    -> Result<Drafts<B>, DecodeError> {
        self.bind(model)?;
        Ok(Drafts::Device(beam_search(self, model, state.hidden.clone(), &state.pending, width, len, keep_hist)))
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
}

impl<S> ReDrafter<S> {
    pub fn new(source: S, beams: BeamConfig) -> Result<Self, DecodeError> {
        beams.validate()?;
        Ok(Self { source, beams })
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn beams(&self) -> BeamConfig {
        self.beams
    }
}

fn check_beams(beams: &Beams, rows: usize, width: usize, len: usize, pending: &[u32]) -> Result<(), DecodeError> {
    if (beams.rows, beams.width, beams.len) != (rows, width, len) || beams.tokens.len() != rows * width * len {
        return Err(DecodeError::Draft(format!(
            "expected beams [{rows}, {width}, {len}], got [{}, {}, {}] with {} tokens",
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

impl<B: KernelBackend, S: DraftSource<B>> Strategy<B> for ReDrafter<S> {
    fn name(&self) -> String {
        format!("redrafter({}, W={}, L={})", self.source.name(), self.beams.width, self.beams.length)
    }

    fn step_shape(&self) -> StepShape {
        // The tree has at most W × L tokens; the beam search keeps a vocabulary row per beam.
        let (w, l) = (self.beams.width, self.beams.length);
        StepShape { tokens: w.saturating_mul(l), draft_logits: w }
    }

    fn step(
        &mut self,
        model: &Llama<B>,
        state: &mut DecodeState<B>,
        sampler: &mut Sampler,
        stats: &mut GenerationStats,
    ) -> Result<Vec<Vec<u32>>, DecodeError> {
        let n = state.rows.len();
        let w = self.beams.width;
        // A row may commit at most room(i) tokens; shorten every beam near the end of the context.
        let len = (0..n).map(|i| state.room(i)).min().unwrap_or(1).clamp(1, self.beams.length);
        let greedy = sampler.config().is_greedy();
        let device = state.hidden.device();
        let vocab = model.config().vocab_size;
        let grid = n * w * len;

        let t = Instant::now();
        let (tokens, host_beams, hist) = match self.source.draft(model, state, w, len, !greedy)? {
            Drafts::Host(beams) => {
                check_beams(&beams, n, w, len, &state.pending)?;
                if let Some(&bad) = beams.tokens.iter().find(|&&t| t as usize >= vocab) {
                    return Err(DecodeError::Draft(format!("drafted token {bad} is outside the vocabulary of {vocab}")));
                }
                let ids = beams.tokens.iter().map(|&t| t as i64).collect();
                (Tensor::<B, 3, Int>::from_data(TensorData::new(ids, [n, w, len]), &device), Some(beams), None)
            }
            Drafts::Device(d) => {
                if d.tokens.dims() != [n, w, len] {
                    return Err(DecodeError::Draft(format!("expected beams [{n}, {w}, {len}], got {:?}", d.tokens.dims())));
                }
                (d.tokens, None, d.hist)
            }
        };
        stats.end_phase::<B>("draft", t, &device)?;

        let t = Instant::now();
        let tree = tree_build(tokens.clone(), state.cache.lens(), &device);
        let slots = tree.tokens.dims()[1];
        let input = BlockInput { tokens: tree.tokens, positions: tree.positions, mask: tree.mask };
        stats.end_phase::<B>("tree", t, &device)?;

        let t = Instant::now();
        let hidden = model.forward_hidden(&input, &mut state.cache).reshape([n * slots, model.config().hidden_size]);
        let logits = model.logits(hidden.clone());
        // The step's one read-back of ints: unpack map, node counts, device beams, slot argmax.
        let mut parts = vec![tree.unpack.reshape([grid]), tree.packed_len];
        if host_beams.is_none() {
            parts.push(tokens.reshape([grid]));
        }
        if greedy {
            parts.push(logits.clone().argmax(1).reshape([n * slots]));
        }
        let ints: Vec<i64> = Tensor::cat(parts, 0).into_data().iter::<i64>().collect();
        let (unpack, rest) = ints.split_at(grid);
        let (packed_len, rest) = rest.split_at(n);
        let tree = TreeIndex {
            width: w,
            len,
            slots,
            unpack: unpack.iter().map(|&u| u as usize).collect(),
            packed_len: packed_len.iter().map(|&p| p as usize).collect(),
        };
        let (beams, rest) = match host_beams {
            Some(b) => (b, rest),
            None => {
                let (toks, rest) = rest.split_at(grid);
                (Beams { rows: n, width: w, len, tokens: toks.iter().map(|&t| t as u32).collect(), hist }, rest)
            }
        };
        stats.record_tree(tree.packed_len.iter().sum(), grid);
        let accepted: Vec<Accepted> = if greedy {
            let ids: Vec<u32> = rest.iter().map(|&v| v as u32).collect();
            (0..n).map(|r| accept::greedy(&tree, &beams, r, &ids)).collect()
        } else {
            let host = logits.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
            (0..n)
                .map(|r| {
                    let dists: Vec<Vec<(u32, f32)>> = (0..tree.packed_len[r])
                        .map(|q| sampler.distribution(&host[(r * slots + q) * vocab..(r * slots + q + 1) * vocab]))
                        .collect();
                    match sampler.config().acceptance {
                        Acceptance::Exact => accept::exact(&tree, &beams, r, &dists, sampler, state.rows[r]),
                        Acceptance::Apple => accept::sampled(&tree, &beams, r, &dists, sampler, state.rows[r]),
                    }
                })
                .collect()
        };
        stats.end_phase::<B>("verify", t, &device)?;

        let t = Instant::now();
        // Keep g0 and the accepted drafts of the best beam; the bonus is not in the cache yet.
        let keep: Vec<Vec<usize>> =
            accepted.iter().enumerate().map(|(r, a)| (0..=a.drafted).map(|k| tree.node(r, a.beam, k)).collect()).collect();
        state.cache.commit(&keep)?;
        let last: Vec<i64> = accepted.iter().enumerate().map(|(r, a)| (r * slots + tree.node(r, a.beam, a.drafted)) as i64).collect();
        state.hidden = hidden.select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(last, [n]), &device));
        state.pending = accepted.iter().map(|a| a.bonus).collect();
        let out = accepted
            .iter()
            .enumerate()
            .map(|(r, a)| {
                stats.record_acceptance(a.drafted, len - 1);
                let mut toks = beams.beam(r, a.beam)[1..=a.drafted].to_vec();
                toks.push(a.bonus);
                toks
            })
            .collect();
        stats.end_phase::<B>("accept", t, &device)?;
        Ok(out)
    }

    fn retain_rows(&mut self, keep: &[usize]) {
        self.source.retain_rows(keep);
    }
}
