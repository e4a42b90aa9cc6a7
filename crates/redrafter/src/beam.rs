//! Beam search over the drafter (spec §2): W beams of L tokens, the first being the LLM's own
//! token g0, with Apple's top-50 warp of the drafter's logits and f32 beam scores.
//!
//! Every draft step is device work: the drafter runs all beams of all rows as one batch, then
//! two fused ops (`redrafter_kernels`) take each beam's warped top W ([`warp_top_k`]) and keep
//! the W best children per row ([`beam_merge`]); the global top W over W·V equals the top W over
//! the union of the per-beam top W. On cubecl backends both are kernels, so greedy drafting reads
//! nothing back; elsewhere their references run the host code ([`warp`], [`select_children`]).
//! Sampling mode also reads each step's logits back, to keep the drafter distributions that
//! acceptance needs.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_kernels::{beam_merge, warp_top_k};
use redrafter_llama::{KernelBackend, Llama};

pub use redrafter_kernels::beam_merge::select_children;
pub use redrafter_kernels::warp_top_k::{LOG_ZERO, SparseLogProbs, WARP_TOP_K, Warped, warp};

use crate::drafter::Drafter;

/// Drafted beams of a batch on the host: `tokens` [rows, W, L] with column 0 = g0, beam 0 the most
/// likely; `hist` [rows, W, L−1] the drafter distribution behind each drafted token (sampling
/// mode only).
#[derive(Debug, Clone)]
pub struct Beams {
    pub rows: usize,
    pub width: usize,
    pub len: usize,
    pub tokens: Vec<u32>,
    pub hist: Option<Vec<SparseLogProbs>>,
}

impl Beams {
    pub fn beam(&self, row: usize, i: usize) -> &[u32] {
        let at = (row * self.width + i) * self.len;
        &self.tokens[at..at + self.len]
    }

    /// The drafter distribution that produced `beam(row, i)[k + 1]`.
    pub fn hist(&self, row: usize, i: usize, k: usize) -> Option<&SparseLogProbs> {
        let c = self.len - 1;
        self.hist.as_ref().map(|h| &h[(row * self.width + i) * c + k])
    }
}

/// Drafted beams still on the device: `tokens` [rows, W, L] as in [`Beams`], with the kept
/// distributions on the host when they were asked for.
#[derive(Debug, Clone)]
pub struct DeviceBeams<B: Backend> {
    pub tokens: Tensor<B, 3, Int>,
    pub hist: Option<Vec<SparseLogProbs>>,
}

fn index<B: Backend>(idx: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = idx.len();
    Tensor::from_data(TensorData::new(idx, [n]), device)
}

/// Runs the beam search for every row: `hidden` [rows, H] is the LLM state that produced `g0`.
pub fn beam_search<B: KernelBackend>(
    drafter: &Drafter<B>,
    llm: &Llama<B>,
    hidden: Tensor<B, 2>,
    g0: &[u32],
    width: usize,
    len: usize,
    keep_hist: bool,
) -> DeviceBeams<B> {
    beam_search_until(drafter, llm, hidden, g0, width, len, keep_hist, None)
}

/// [`beam_search`] with an adaptive length (docs/adaptive-length.md): after each draft step it
/// reads back every row's best beam score (the drafter's joint log-probability of that beam's
/// drafts, warped as the search scores them) and, when no row's reaches `min_log_joint`, drops
/// that step's tokens and returns the beams as they stood before it. The beams then hold fewer
/// than `len` columns, at least g0 alone (an autoregressive step). Scores only fall from step to
/// step, so a later step could not bring a row back above the bound. `None` drafts all `len`.
/// The read-back is one small transfer per draft step: free where tensors live in host memory,
/// a synchronisation per draft step on a GPU.
#[allow(clippy::too_many_arguments)]
pub fn beam_search_until<B: KernelBackend>(
    drafter: &Drafter<B>,
    llm: &Llama<B>,
    hidden: Tensor<B, 2>,
    g0: &[u32],
    width: usize,
    len: usize,
    keep_hist: bool,
    min_log_joint: Option<f32>,
) -> DeviceBeams<B> {
    let rows = g0.len();
    let (w, c) = (width, len - 1);
    let device = hidden.device();
    let g0_ids = index::<B>(g0.iter().map(|&t| t as i64).collect(), &device);
    let mut beams: Tensor<B, 3, Int> = g0_ids.clone().reshape([rows, 1, 1]).repeat_dim(1, w);
    if c == 0 {
        return DeviceBeams { tokens: beams, hist: keep_hist.then(Vec::new) };
    }
    // Only beam 0 is alive at first, so the first expansion spreads beam 0's best W over the W beams.
    let scores: Vec<f32> = (0..rows * w).map(|x| if x % w == 0 { 0.0 } else { LOG_ZERO }).collect();
    let mut scores = Tensor::<B, 2>::from_data(TensorData::new(scores, [rows, w]), &device);
    let mut hist: Vec<Vec<SparseLogProbs>> = vec![vec![]; rows * w];

    // Step 1: every beam is g0 with the zero state, so one drafter row per batch row suffices
    // (beam_merge reads it for all W beams); the state is spread by the merge's source rows.
    let mut state = drafter.advance(llm, None, g0_ids);
    let mut logits = drafter.logits(llm, hidden.clone(), state.clone());
    let ctx = hidden.select(0, index::<B>((0..rows * w).map(|x| (x / w) as i64).collect(), &device));
    for step in 0..c {
        let (logq, ids) = warp_top_k(logits.clone(), w);
        // A reduced draft vocabulary scores draft ids; beams hold the LLM's token ids.
        let ids = match drafter.draft_vocab() {
            Some(v) => v.to_tokens(ids),
            None => ids,
        };
        let merged = beam_merge(scores, logq, ids, beams.clone());
        if let Some(bound) = min_log_joint {
            let best = merged.scores.clone().max_dim(1).into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
            if best.iter().all(|&s| s < bound) {
                return DeviceBeams { tokens: beams, hist: keep_hist.then(|| hist.concat()) };
            }
        }
        if keep_hist {
            let map = drafter.draft_vocab().map(|v| v.token_ids());
            hist = extend_hist(&hist, logits.clone(), merged.rows.clone(), w, step == 0, map);
        }
        scores = merged.scores;
        beams = merged.beams;
        if step + 1 == c {
            break;
        }
        let src = merged.rows.reshape([rows * w]);
        let last = beams.clone().slice([0..rows, 0..w, step + 1..step + 2]).reshape([rows * w]);
        state = drafter.advance(llm, Some(state.select(0, src)), last);
        logits = drafter.logits(llm, ctx.clone(), state.clone());
    }
    DeviceBeams { tokens: beams, hist: keep_hist.then(|| hist.concat()) }
}

/// Sampling mode: each child's history is its parent's plus the warped distribution of the
/// candidate row it came from, over token ids (`map` turns draft ids into them). Reads the
/// step's logits and source rows back.
fn extend_hist<B: Backend>(
    hist: &[Vec<SparseLogProbs>],
    logits: Tensor<B, 2>,
    src: Tensor<B, 2, Int>,
    width: usize,
    first: bool,
    map: Option<&[u32]>,
) -> Vec<Vec<SparseLogProbs>> {
    let v = logits.dims()[1];
    let host = logits.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
    let src: Vec<usize> = src.into_data().iter::<i64>().map(|r| r as usize).collect();
    let mut dists: Vec<Option<SparseLogProbs>> = vec![None; host.len() / v];
    src.iter()
        .map(|&s| {
            let d = dists[s].get_or_insert_with(|| {
                let mut d = warp(&host[s * v..(s + 1) * v], width, true).dist.expect("kept");
                if let Some(map) = map {
                    d.tokens.iter_mut().for_each(|t| *t = map[*t as usize]);
                }
                d
            });
            // Candidate row s is the parent beam's global index, except at the first step (no history yet).
            let mut h = if first { vec![] } else { hist[s].clone() };
            h.push(d.clone());
            h
        })
        .collect()
}
