//! Beam search over the drafter (spec §2): W beams of L tokens, the first being the LLM's own
//! token g0, with Apple's top-50 warp of the drafter's logits and f32 beam scores.
//!
//! The drafter runs all beams of all rows as one batch per step on the device; the warp and the
//! top-W merge run on the host over each beam's own top-W candidates (global top-W over W·V equals
//! top-W over the union of per-beam top-W), which avoids sorting a W·V row.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_llama::{KernelBackend, Llama};

use crate::drafter::Drafter;

/// Apple's warp keeps the 50 largest drafter logits (and ties of the 50th).
pub const WARP_TOP_K: usize = 50;
/// The finite "log 0" the warp writes over every other logit.
pub const LOG_ZERO: f32 = -50000.0;

/// One warped drafter distribution, stored sparsely: the kept tokens and their log-probs; every
/// other token has log-prob `floor` (effectively zero probability).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseLogProbs {
    pub tokens: Vec<u32>,
    pub logp: Vec<f32>,
    pub floor: f32,
}

impl SparseLogProbs {
    pub fn logp_of(&self, token: u32) -> f32 {
        self.tokens.iter().position(|&t| t == token).map_or(self.floor, |i| self.logp[i])
    }
}

/// A row of drafter logits after the warp: its best `k` tokens with their log-probs (best first,
/// lower id first on ties) and, if asked for, the whole sparse distribution.
pub struct Warped {
    pub top: Vec<(u32, f32)>,
    pub dist: Option<SparseLogProbs>,
}

pub fn warp(logits: &[f32], k: usize, keep_dist: bool) -> Warped {
    let v = logits.len();
    let kk = WARP_TOP_K.min(v);
    let want = k.max(kk).min(v);
    let desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    let mut idx: Vec<u32> = (0..v as u32).collect();
    if want < v {
        idx.select_nth_unstable_by(want - 1, desc);
        idx.truncate(want);
    }
    idx.sort_unstable_by(desc);
    let max = logits[idx[0] as usize];
    let threshold = logits[idx[kk - 1] as usize];
    let lse: f32 = logits.iter().filter(|&&l| l >= threshold).map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
    // log_softmax of the warped, max-shifted logits: kept tokens l − max − lse, the rest −50000 − lse.
    let floor = LOG_ZERO - lse;
    let logq = |t: u32| {
        let l = logits[t as usize];
        if l >= threshold { l - max - lse } else { floor }
    };
    let top = idx.iter().take(k.min(v)).map(|&t| (t, logq(t))).collect();
    let dist = keep_dist.then(|| {
        let tokens: Vec<u32> = (0..v as u32).filter(|&t| logits[t as usize] >= threshold).collect();
        let logp = tokens.iter().map(|&t| logq(t)).collect();
        SparseLogProbs { tokens, logp, floor }
    });
    Warped { top, dist }
}

/// Chooses the `width` best children over all beams: joint score = beam score + log q. Returns
/// (parent beam, token, score), best first; ties go to the lower parent, then the lower token.
pub fn select_children(scores: &[f32], candidates: &[&[(u32, f32)]], width: usize) -> Vec<(usize, u32, f32)> {
    let mut all: Vec<(usize, u32, f32)> = candidates
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |&(t, lq)| (i, t, scores[i] + lq)))
        .collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    all.truncate(width);
    all
}

/// Drafted beams of a batch: `tokens` [rows, W, L] with column 0 = g0, beam 0 the most likely;
/// `hist` [rows, W, L−1] the drafter distribution behind each drafted token (sampling mode only).
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

fn to_host<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32")
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
) -> Beams {
    let rows = g0.len();
    let (w, c) = (width, len - 1);
    let device = hidden.device();
    let mut tokens: Vec<Vec<u32>> = (0..rows * w).map(|x| vec![g0[x / w]]).collect();
    let mut hist: Vec<Vec<SparseLogProbs>> = vec![vec![]; rows * w];
    if c == 0 {
        return Beams { rows, width, len, tokens: tokens.concat(), hist: keep_hist.then(Vec::new) };
    }
    let mut scores: Vec<f32> = (0..rows * w).map(|x| if x % w == 0 { 0.0 } else { LOG_ZERO }).collect();

    // Step 1: every beam is g0 with the zero state, so one drafter row per batch row suffices;
    // the "dead" beams 1.. offer the same candidates at score −50000 (they matter only if W > 50).
    let g0_ids = index::<B>(g0.iter().map(|&t| t as i64).collect(), &device);
    let mut state = drafter.advance(llm, None, g0_ids);
    let first = to_host(drafter.logits(llm, hidden.clone(), state.clone()));
    let v = first.len() / rows;
    let spread = index::<B>((0..rows * w).map(|x| (x / w) as i64).collect(), &device);
    let ctx = hidden.select(0, spread.clone());
    state = state.select(0, spread);
    let mut step_logits = first;
    let mut step_rows_per_batch_row = 1;
    for step in 0..c {
        let mut parents = Vec::with_capacity(rows * w);
        let mut next_tokens = Vec::with_capacity(rows * w);
        let mut next_hist = Vec::with_capacity(rows * w);
        for r in 0..rows {
            let warped: Vec<Warped> = (0..step_rows_per_batch_row)
                .map(|i| {
                    let at = (r * step_rows_per_batch_row + i) * v;
                    warp(&step_logits[at..at + v], w, keep_hist)
                })
                .collect();
            let cands: Vec<&[(u32, f32)]> = (0..w).map(|i| warped[i.min(step_rows_per_batch_row - 1)].top.as_slice()).collect();
            for (parent, tok, score) in select_children(&scores[r * w..(r + 1) * w], &cands, w) {
                parents.push(r * w + parent);
                next_tokens.push(tok);
                scores[next_tokens.len() - 1] = score;
                if keep_hist {
                    let d = warped[parent.min(step_rows_per_batch_row - 1)].dist.clone().expect("kept");
                    let mut h = hist[r * w + parent].clone();
                    h.push(d);
                    next_hist.push(h);
                }
            }
        }
        tokens = parents.iter().zip(&next_tokens).map(|(&p, &t)| {
            let mut b = tokens[p].clone();
            b.push(t);
            b
        }).collect();
        if keep_hist {
            hist = next_hist;
        }
        if step + 1 == c {
            break;
        }
        let parent_ids = index::<B>(parents.iter().map(|&p| p as i64).collect(), &device);
        let last = index::<B>(next_tokens.iter().map(|&t| t as i64).collect(), &device);
        state = drafter.advance(llm, Some(state.select(0, parent_ids)), last);
        step_logits = to_host(drafter.logits(llm, ctx.clone(), state.clone()));
        step_rows_per_batch_row = w;
    }
    Beams { rows, width, len, tokens: tokens.concat(), hist: keep_hist.then(|| hist.concat()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_keeps_top_50_and_normalises_over_them() {
        let logits: Vec<f32> = (0..200).map(|i| (i % 100) as f32 * 0.1).collect();
        let w = warp(&logits, 3, true);
        // Values 9.9 (ids 99, 199), 9.8 (98, 198), ...: ties go to the lower id.
        assert_eq!(w.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![99, 199, 98]);
        let d = w.dist.unwrap();
        assert_eq!(d.tokens.len(), 50, "the 50th largest value is 7.5 (25 values × 2 copies)");
        let total: f64 = d.logp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(d.floor < -49000.0);
        assert_eq!(d.logp_of(0), d.floor);
        // Ties at the threshold keep more than 50.
        let flat = vec![1.0f32; 60];
        assert_eq!(warp(&flat, 1, true).dist.unwrap().tokens.len(), 60);
    }

    #[test]
    fn only_beam_zero_is_alive_at_the_start() {
        let cands = vec![(5u32, -0.1f32), (6, -2.0), (7, -3.0)];
        let scores = [0.0, LOG_ZERO, LOG_ZERO];
        let chosen = select_children(&scores, &[&cands, &cands, &cands], 3);
        assert_eq!(chosen.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(0, 5), (0, 6), (0, 7)]);
    }
}
