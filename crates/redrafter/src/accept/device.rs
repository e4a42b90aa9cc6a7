//! The exact rule ([`super::walk`]) without reading the tree's logits back (issue 21).
//!
//! The walk of the exact rule needs little of each node's distribution p: the probability of
//! each child it may try there, and, where it stops, one token drawn from p with the node's
//! children removed (every child rejected; a node at the end of the beams has no children, so
//! its bonus comes from p itself). Both are computed on the device for every packed node at
//! once ([`node_draws`]): p (temperature, top-k and top-p applied exactly as
//! [`SamplingConfig::distribution`] applies them), the children's probabilities by a gather,
//! the residual by subtracting them, and the bonus by inverse CDF against one uniform per node
//! drawn on the host from the row's RNG. The host reads back W + 1 numbers per node instead of
//! the vocabulary's logits, then walks the tree ([`exact`]) with the host rule's walk.
//!
//! **Top-k and top-p by selection.** Top-k keeps the k best scaled logits by
//! [`warp_top_k`]'s radix select (logit descending, the lower id first on ties: the host's order).
//! Top-p needs the nucleus: the head of that order whose mass reaches p. Its candidates are the
//! top-k set when top-k is on, else the [`NUCLEUS_CANDIDATES`] best, selected the same way and
//! already in the host's order, so the cut is a prefix sum over them: a candidate is kept while
//! the mass before it is below p. Where a node's nucleus runs past its candidates (a flat
//! distribution; the last candidate is still kept), that node alone is finished on the host from
//! its own logits row, read back in a second transfer ([`NodeDraws::host_nodes`] counts them).
//!
//! The bonus of every node is drawn before the walk, but only the stopping node's is used, and
//! its uniform is independent of the walk's, so the emitted token still follows p at the
//! stopping node exactly: the output distribution is that of [`super::exact`] (and of
//! autoregressive sampling); the samples for a given seed differ from it.

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use redrafter_kernels::warp_top_k;
use redrafter_llama::KernelBackend;

use super::{Accepted, ExactNodes};
use crate::beam::Beams;
use crate::error::DecodeError;
use crate::sampling::{Acceptance, Sampler, SamplingConfig, inverse_cdf};
use crate::tree::TreeIndex;

/// Whether `config` is served by this module: the exact rule, sampling.
pub fn serves(config: &SamplingConfig) -> bool {
    config.acceptance == Acceptance::Exact && !config.is_greedy()
}

/// Top-p's candidates per node when top-k is off: the nucleus is cut inside this many most likely
/// tokens, and a node whose nucleus holds more is finished on the host.
pub const NUCLEUS_CANDIDATES: usize = 1024;

/// The tokens the walk may try at each packed node (`rows × slots` of them): the next drafted
/// token of every beam through the node, each once, in beam order, which is the order
/// [`super::exact`] tries them in.
pub struct Children {
    width: usize,
    tokens: Vec<u32>,
    count: Vec<usize>,
    /// Whether slot g holds a node of the tree (not padding past a row's packed nodes).
    live: Vec<bool>,
}

impl Children {
    pub fn of(tree: &TreeIndex, beams: &Beams) -> Self {
        let (rows, w, l, slots) = (tree.packed_len.len(), tree.width, tree.len, tree.slots);
        let (mut tokens, mut count) = (vec![0u32; rows * slots * w], vec![0usize; rows * slots]);
        for r in 0..rows {
            for i in 0..w {
                let beam = beams.beam(r, i);
                for d in 0..l - 1 {
                    let g = r * slots + tree.node(r, i, d);
                    let c = beam[d + 1];
                    if !tokens[g * w..g * w + count[g]].contains(&c) {
                        tokens[g * w + count[g]] = c;
                        count[g] += 1;
                    }
                }
            }
        }
        let live = (0..rows * slots).map(|g| g % slots < tree.packed_len[g / slots]).collect();
        Self { width: w, tokens, count, live }
    }

    /// The tree's nodes (padding slots left out).
    pub fn live_nodes(&self) -> usize {
        self.live.iter().filter(|&&l| l).count()
    }

    /// Node `g`'s children (`g = row · slots + packed index`).
    pub fn at(&self, g: usize) -> &[u32] {
        &self.tokens[g * self.width..][..self.count[g]]
    }

    fn nodes(&self) -> usize {
        self.count.len()
    }
}

/// What the device computed per node: `probs[g · W + j]` is p(child j) at node g (0 past its
/// children), `bonus[g]` a token drawn from p at g without its children.
pub struct NodeDraws {
    width: usize,
    pub probs: Vec<f32>,
    pub bonus: Vec<u32>,
    /// Nodes whose nucleus ran past [`NUCLEUS_CANDIDATES`] and were finished on the host.
    pub host_nodes: usize,
}

/// p at every node of `logits` [nodes, vocab], its children's probabilities and one bonus token
/// per node, drawn with `uniforms[g]` ∈ [0, 1); one read-back of `nodes × (W + 1)` numbers.
pub fn node_draws<B: KernelBackend>(logits: Tensor<B, 2>, children: &Children, config: &SamplingConfig, uniforms: &[f32]) -> Result<NodeDraws, DecodeError> {
    let [nodes, vocab] = logits.dims();
    let w = children.width;
    if nodes != children.nodes() || uniforms.len() != nodes {
        return Err(DecodeError::Device(format!("{nodes} logit rows for {} tree nodes and {} uniforms", children.nodes(), uniforms.len())));
    }
    if nodes == 0 {
        return Ok(NodeDraws { width: w, probs: vec![], bonus: vec![], host_nodes: 0 });
    }
    let device = logits.device();
    // Largest logit subtracted before dividing, as on the host (a small T cannot overflow).
    let top = logits.clone().max_dim(1);
    let mut scaled = (logits.clone() - top.expand([nodes, vocab])).div_scalar(config.temperature);
    let mut top_k_ids = None;
    if config.top_k > 0 && config.top_k < vocab {
        // warp_top_k orders by logit, the lower id first on ties: the host's selection.
        let (_, ids) = warp_top_k(scaled.clone(), config.top_k);
        let kept = Tensor::<B, 2>::zeros([nodes, vocab], &device).scatter(1, ids.clone(), Tensor::ones([nodes, config.top_k], &device), IndexingUpdateOp::Add);
        scaled = scaled.mask_fill(kept.lower_elem(0.5), f32::NEG_INFINITY);
        top_k_ids = Some(ids);
    }
    let e = scaled.clone().exp();
    let mut p = e.clone() / e.sum_dim(1).expand([nodes, vocab]);
    // 1 where a node's nucleus may run past its candidates (top-p over the NUCLEUS_CANDIDATES best).
    let mut open = None;
    if config.top_p < 1.0 {
        let (ids, whole) = match top_k_ids {
            Some(ids) => (ids, true),
            None => {
                let k = vocab.min(NUCLEUS_CANDIDATES);
                (warp_top_k(scaled, k).1, k == vocab)
            }
        };
        let k = ids.dims()[1];
        // The candidates' probabilities in the host's order; a candidate is kept while the mass
        // before it is below top-p (the host's `cum >= p` stop, taken before adding it).
        let head = p.clone().gather(1, ids.clone());
        let before = blocked_cumsum(head.clone()) - head;
        let keep = before.lower_elem(config.top_p).float();
        if !whole {
            open = Some(keep.clone().slice([0..nodes, k - 1..k]).reshape([nodes]));
        }
        let kept = Tensor::<B, 2>::zeros([nodes, vocab], &device).scatter(1, ids, keep, IndexingUpdateOp::Add);
        let nucleus = p * kept;
        p = nucleus.clone() / nucleus.sum_dim(1).expand([nodes, vocab]);
    }
    let ids: Vec<i64> = children.tokens.iter().map(|&t| t as i64).collect();
    let valid: Vec<f32> = (0..nodes * w).map(|x| if x % w < children.count[x / w] { 1.0 } else { 0.0 }).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [nodes, w]), &device);
    let child_p = p.clone().gather(1, ids.clone()) * Tensor::<B, 2>::from_data(TensorData::new(valid, [nodes, w]), &device);
    // p without the children (a padding slot subtracts 0), then the inverse CDF: the bonus is
    // the number of tokens whose cumulative mass is at most u · total, i.e. the first token
    // whose cumulative mass exceeds it (never one of zero mass).
    let rest = p.scatter(1, ids, child_p.clone().neg(), IndexingUpdateOp::Add);
    let cdf = blocked_cumsum(rest.clone());
    let total = cdf.clone().slice([0..nodes, vocab - 1..vocab]);
    let u = Tensor::<B, 2>::from_data(TensorData::new(uniforms.to_vec(), [nodes, 1]), &device);
    let below = cdf.lower_equal((u * total).expand([nodes, vocab])).int().sum_dim(1);
    // Rounding can put u · total at the very end: take the last token with mass instead.
    let at = Tensor::<B, 1, Int>::arange(0..vocab as i64, &device).reshape([1, vocab]).repeat_dim(0, nodes);
    let last = rest.greater_elem(0.0).int().mul(at).max_dim(1);
    let bonus = below.min_pair(last).float();
    let mut parts = vec![child_p.reshape([nodes * w]), bonus.reshape([nodes])];
    parts.extend(open);
    let host = read(Tensor::cat(parts, 0), "the tree's node draws")?;
    let mut draws = NodeDraws { width: w, probs: host[..nodes * w].to_vec(), bonus: host[nodes * w..nodes * (w + 1)].iter().map(|&b| b as u32).collect(), host_nodes: 0 };
    let open: Vec<usize> = host[nodes * (w + 1)..].iter().enumerate().filter(|e| *e.1 > 0.5 && children.live[e.0]).map(|e| e.0).collect();
    if !open.is_empty() {
        finish_on_host(&mut draws, logits, &open, children, config, uniforms)?;
    }
    Ok(draws)
}

/// The cumulative sum of `x` [rows, len] along its rows, in blocks of about √len: within each
/// block, then each block's total added to the blocks after it. burn-cubecl's cumsum sums every
/// element's whole prefix, O(len²) a row: 1.2 G additions for a 49152-token row, 31 s for the
/// draws of a W1 L3 step on lavapipe (`kernel_bench`). In blocks it is O(len · 2√len).
fn blocked_cumsum<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, len] = x.dims();
    let block = ((len as f64).sqrt().ceil() as usize).max(1);
    let chunks = len.div_ceil(block);
    let x = match chunks * block - len {
        0 => x,
        pad => {
            let zeros = Tensor::zeros([rows, pad], &x.device());
            Tensor::cat(vec![x, zeros], 1)
        }
    };
    let inner = x.reshape([rows, chunks, block]).cumsum(2);
    let totals = inner.clone().slice([0..rows, 0..chunks, block - 1..block]);
    let before = totals.clone().cumsum(1) - totals;
    (inner + before.expand([rows, chunks, block])).reshape([rows, chunks * block]).slice([0..rows, 0..len])
}

fn read<B: KernelBackend>(t: Tensor<B, 1>, what: &str) -> Result<Vec<f32>, DecodeError> {
    t.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| DecodeError::Device(format!("reading {what} back: {e:?}")))
}

/// The draws of nodes `open` from their logits rows on the host: the children's probabilities
/// and the bonus by inverse CDF over [`SamplingConfig::distribution`] without the children, with
/// the node's own uniform.
fn finish_on_host<B: KernelBackend>(draws: &mut NodeDraws, logits: Tensor<B, 2>, open: &[usize], children: &Children, config: &SamplingConfig, uniforms: &[f32]) -> Result<(), DecodeError> {
    let [_, vocab] = logits.dims();
    let device = logits.device();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(open.iter().map(|&g| g as i64).collect::<Vec<_>>(), [open.len()]), &device);
    let host = read(logits.select(0, rows).reshape([open.len() * vocab]), "the logits of flat nodes")?;
    for (i, &g) in open.iter().enumerate() {
        let dist = config.distribution(&host[i * vocab..(i + 1) * vocab]);
        let kids = children.at(g);
        for (j, &c) in kids.iter().enumerate() {
            draws.probs[g * draws.width + j] = super::prob(&dist, c);
        }
        let rest: Vec<(u32, f32)> = dist.into_iter().filter(|e| !kids.contains(&e.0)).collect();
        let total: f32 = rest.iter().map(|e| e.1).sum();
        if let Some(t) = inverse_cdf(&rest, uniforms[g] * total) {
            draws.bonus[g] = t;
        }
    }
    draws.host_nodes = open.len();
    Ok(())
}

/// One uniform per packed node of every row (`rows × slots`, padding slots 0), each from its
/// request row's RNG, drawn before the walk so a row's draws do not depend on its batch.
pub fn node_uniforms(tree: &TreeIndex, sampler: &mut Sampler, rows: &[usize]) -> Vec<f32> {
    let slots = tree.slots;
    let mut u = vec![0f32; tree.packed_len.len() * slots];
    for (r, &n) in tree.packed_len.iter().enumerate() {
        for q in 0..n {
            u[r * slots + q] = sampler.uniform(rows[r]);
        }
    }
    u
}

/// [`super::walk`] on the device's draws: the same children in the same order, the acceptance
/// test against the residual mass, the bonus drawn on the device.
pub fn exact(tree: &TreeIndex, beams: &Beams, row: usize, draws: &NodeDraws, children: &Children, sampler: &mut Sampler, request_row: usize) -> Accepted {
    super::walk(tree, beams, row, &mut Drawn { draws, children, first: row * tree.slots }, sampler, request_row)
}

/// One row's view of [`NodeDraws`]: packed node q is draw `first + q`.
struct Drawn<'a> {
    draws: &'a NodeDraws,
    children: &'a Children,
    first: usize,
}

impl ExactNodes for Drawn<'_> {
    fn child_prob(&mut self, node: usize, c: u32) -> f32 {
        let g = self.first + node;
        self.children.at(g).iter().position(|&t| t == c).map_or(0.0, |j| self.draws.probs[g * self.draws.width + j])
    }

    fn bonus(&mut self, node: usize, _rejected: &[u32], _sampler: &mut Sampler, _request_row: usize) -> u32 {
        // Drawn on the device from p without every child, or from p at the end of the beams:
        // the walk stops at a node only after rejecting all of its children, or at a leaf.
        self.draws.bonus[self.first + node]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::NdArrayBackend as B;

    fn logits(vocab: usize) -> Vec<f32> {
        (0..vocab).map(|i| ((i as u32).wrapping_mul(2654435761) % 1000) as f32 / 170.0 - 3.0).collect()
    }

    /// Every node gets the host distribution's probabilities for its children, and bonus draws
    /// at evenly spaced uniforms land on each other token as often as p without the children
    /// says (to within one draw): the inverse CDF is exact, for temperature alone, with top-k,
    /// top-p and both, and where a flat nucleus runs past the candidates and the host finishes.
    #[test]
    fn node_draws_are_the_host_distribution_without_the_children() {
        let nodes = 600;
        let flat = |vocab: usize| -> Vec<f32> { logits(vocab).iter().map(|l| l * 0.01).collect() };
        let cases = [
            (logits(12), SamplingConfig { temperature: 0.8, ..Default::default() }, false),
            (logits(12), SamplingConfig { temperature: 1.5, top_k: 5, ..Default::default() }, false),
            (logits(12), SamplingConfig { temperature: 1.0, top_p: 0.6, ..Default::default() }, false),
            (logits(12), SamplingConfig { temperature: 0.7, top_k: 8, top_p: 0.8, ..Default::default() }, false),
            // 1500 tokens: top-p's candidates are the 1024 best; a peaked row's nucleus fits in
            // them, a flat one's does not and is finished on the host.
            (logits(1500), SamplingConfig { temperature: 0.3, top_p: 0.9, ..Default::default() }, false),
            (flat(1500), SamplingConfig { temperature: 1.0, top_p: 0.9, ..Default::default() }, true),
        ];
        for (l, config, on_host) in cases {
            let vocab = l.len();
            let host = config.distribution(&l);
            let p = |t: u32| host.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1);
            // Children: the likeliest token and the least likely one (outside top-k or top-p:
            // mass 0), then a padding slot.
            let least = (0..vocab as u32).min_by(|&a, &b| l[a as usize].total_cmp(&l[b as usize])).unwrap();
            let kids = [host[0].0, least];
            let children = Children { width: 3, tokens: (0..nodes).flat_map(|_| [kids[0], kids[1], 0]).collect(), count: vec![2; nodes], live: vec![true; nodes] };
            let rows: Vec<f32> = (0..nodes).flat_map(|_| l.iter().copied()).collect();
            let t = Tensor::<B, 2>::from_data(TensorData::new(rows, [nodes, vocab]), &Default::default());
            let u: Vec<f32> = (0..nodes).map(|j| (j as f32 + 0.5) / nodes as f32).collect();
            let d = node_draws(t, &children, &config, &u).unwrap();
            assert_eq!(d.host_nodes, if on_host { nodes } else { 0 }, "{config:?}");
            for g in 0..nodes {
                assert!((d.probs[g * 3] - p(kids[0])).abs() < 1e-5 && (d.probs[g * 3 + 1] - p(kids[1])).abs() < 1e-6, "{config:?}");
                assert_eq!(d.probs[g * 3 + 2], 0.0, "padding");
            }
            let rest = 1.0 - p(kids[0]) - p(kids[1]);
            for tok in 0..vocab as u32 {
                let seen = d.bonus.iter().filter(|&&b| b == tok).count() as f32;
                let want = if kids.contains(&tok) { 0.0 } else { nodes as f32 * p(tok) / rest };
                assert!((seen - want).abs() <= 1.01, "{config:?}: token {tok} drawn {seen} times, want {want}");
            }
        }
    }

    /// The blocked cumulative sum is the running sum, for lengths that fill their blocks and
    /// lengths that leave the last one short.
    #[test]
    fn blocked_cumsum_is_the_running_sum() {
        for len in [1, 2, 7, 16, 17, 1000, 49152] {
            let rows = 3;
            let x: Vec<f32> = (0..rows * len).map(|i| ((i as u32).wrapping_mul(2654435761) % 1000) as f32 / 1000.0).collect();
            let t = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [rows, len]), &Default::default());
            let got = blocked_cumsum(t).into_data().into_vec::<f32>().unwrap();
            for r in 0..rows {
                let mut run = 0f64;
                for i in 0..len {
                    run += x[r * len + i] as f64;
                    let g = got[r * len + i] as f64;
                    assert!((g - run).abs() <= 1e-5 * run.max(1.0), "len {len} row {r} at {i}: {g} against {run}");
                }
            }
        }
    }

    /// A node's children are the next drafted tokens of the beams through it, each once, in beam
    /// order; a row's slots past its packed nodes have none.
    #[test]
    fn children_are_the_next_drafts_of_the_beams_through_a_node() {
        // Row 0: beams [5, 7, 8], [5, 7, 9], [5, 6, 8] packed as 0:5, 1:7, 2:8, 3:9, 4:6, 5:8.
        let tree = TreeIndex { width: 3, len: 3, slots: 7, unpack: vec![0, 1, 2, 0, 1, 3, 0, 4, 5], packed_len: vec![6] };
        let beams = Beams { rows: 1, width: 3, len: 3, tokens: vec![5, 7, 8, 5, 7, 9, 5, 6, 8], hist: None };
        let c = Children::of(&tree, &beams);
        assert_eq!((c.at(0), c.at(1), c.at(4)), (&[7, 6][..], &[8, 9][..], &[8][..]));
        assert!(c.at(2).is_empty() && c.at(5).is_empty() && c.at(6).is_empty());
    }
}
