//! The exact rule ([`super::exact`]) without reading the tree's logits back (issue 21).
//!
//! The walk of the exact rule needs little of each node's distribution p: the probability of
//! each child it may try there, and, where it stops, one token drawn from p with the node's
//! children removed (every child rejected; a node at the end of the beams has no children, so
//! its bonus comes from p itself). Both are computed on the device for every packed node at
//! once ([`node_draws`]): p (temperature and top-k applied exactly as
//! [`SamplingConfig::distribution`] applies them), the children's probabilities by a gather,
//! the residual by subtracting them, and the bonus by inverse CDF against one uniform per node
//! drawn on the host from the row's RNG. The host reads back W + 1 numbers per node instead of
//! the vocabulary's logits, then walks the tree ([`exact`]) as the host rule does.
//!
//! The bonus of every node is drawn before the walk, but only the stopping node's is used, and
//! its uniform is independent of the walk's, so the emitted token still follows p at the
//! stopping node exactly: the output distribution is that of [`super::exact`] (and of
//! autoregressive sampling); the samples for a given seed differ from it. Top-p needs the
//! sorted distribution; it stays on the host path.

use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use redrafter_kernels::warp_top_k;
use redrafter_llama::KernelBackend;

use super::Accepted;
use crate::beam::Beams;
use crate::error::DecodeError;
use crate::sampling::{Acceptance, Sampler, SamplingConfig};
use crate::tree::TreeIndex;

/// Whether `config` is served by this module: the exact rule without top-p.
pub fn serves(config: &SamplingConfig) -> bool {
    config.acceptance == Acceptance::Exact && config.top_p >= 1.0 && !config.is_greedy()
}

/// The tokens the walk may try at each packed node (`rows × slots` of them): the next drafted
/// token of every beam through the node, each once, in beam order, which is the order
/// [`super::exact`] tries them in.
pub struct Children {
    width: usize,
    tokens: Vec<u32>,
    count: Vec<usize>,
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
        Self { width: w, tokens, count }
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
        return Ok(NodeDraws { width: w, probs: vec![], bonus: vec![] });
    }
    let device = logits.device();
    // Largest logit subtracted before dividing, as on the host (a small T cannot overflow).
    let top = logits.clone().max_dim(1);
    let mut scaled = (logits - top.expand([nodes, vocab])).div_scalar(config.temperature);
    if config.top_k > 0 && config.top_k < vocab {
        // warp_top_k orders by logit, the lower id first on ties: the host's selection.
        let (_, ids) = warp_top_k(scaled.clone(), config.top_k);
        let kept = Tensor::<B, 2>::zeros([nodes, vocab], &device).scatter(1, ids, Tensor::ones([nodes, config.top_k], &device), IndexingUpdateOp::Add);
        scaled = scaled.mask_fill(kept.lower_elem(0.5), f32::NEG_INFINITY);
    }
    let e = scaled.exp();
    let p = e.clone() / e.sum_dim(1).expand([nodes, vocab]);
    let ids: Vec<i64> = children.tokens.iter().map(|&t| t as i64).collect();
    let valid: Vec<f32> = (0..nodes * w).map(|x| if x % w < children.count[x / w] { 1.0 } else { 0.0 }).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [nodes, w]), &device);
    let child_p = p.clone().gather(1, ids.clone()) * Tensor::<B, 2>::from_data(TensorData::new(valid, [nodes, w]), &device);
    // p without the children (a padding slot subtracts 0), then the inverse CDF: the bonus is
    // the number of tokens whose cumulative mass is at most u · total, i.e. the first token
    // whose cumulative mass exceeds it (never one of zero mass).
    let rest = p.scatter(1, ids, child_p.clone().neg(), IndexingUpdateOp::Add);
    let cdf = rest.clone().cumsum(1);
    let total = cdf.clone().slice([0..nodes, vocab - 1..vocab]);
    let u = Tensor::<B, 2>::from_data(TensorData::new(uniforms.to_vec(), [nodes, 1]), &device);
    let below = cdf.lower_equal((u * total).expand([nodes, vocab])).int().sum_dim(1);
    // Rounding can put u · total at the very end: take the last token with mass instead.
    let at = Tensor::<B, 1, Int>::arange(0..vocab as i64, &device).reshape([1, vocab]).repeat_dim(0, nodes);
    let last = rest.greater_elem(0.0).int().mul(at).max_dim(1);
    let bonus = below.min_pair(last).float();
    let read = Tensor::cat(vec![child_p.reshape([nodes * w]), bonus.reshape([nodes])], 0);
    let host = read.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| DecodeError::Device(format!("reading the tree's node draws back: {e:?}")))?;
    let (probs, bonus) = host.split_at(nodes * w);
    Ok(NodeDraws { width: w, probs: probs.to_vec(), bonus: bonus.iter().map(|&b| b as u32).collect() })
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

/// [`super::exact`] on the device's draws: the same walk, the same children in the same order,
/// the acceptance test against the residual mass, the bonus drawn on the device.
pub fn exact(tree: &TreeIndex, beams: &Beams, row: usize, draws: &NodeDraws, children: &Children, sampler: &mut Sampler, request_row: usize) -> Accepted {
    let (w, l, slots) = (tree.width, tree.len, tree.slots);
    let mut alive: Vec<usize> = (0..w).collect();
    let mut drafted = 0;
    loop {
        let g = row * slots + tree.node(row, alive[0], drafted);
        if drafted == l - 1 {
            return Accepted { beam: alive[0], drafted, bonus: draws.bonus[g] };
        }
        // p sums to one; each rejected child takes its mass out of what is left.
        let mut left = 1.0f32;
        let mut taken = None;
        for (j, &c) in children.at(g).iter().enumerate() {
            let pc = draws.probs[g * draws.width + j];
            if pc > 0.0 {
                if sampler.uniform(request_row) * left < pc {
                    taken = Some(c);
                    break;
                }
                left -= pc;
            }
        }
        match taken {
            Some(c) => {
                alive.retain(|&i| beams.beam(row, i)[drafted + 1] == c);
                drafted += 1;
            }
            None => return Accepted { beam: alive[0], drafted, bonus: draws.bonus[g] },
        }
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
    /// says (to within one draw): the inverse CDF is exact, for temperature alone and with top-k.
    #[test]
    fn node_draws_are_the_host_distribution_without_the_children() {
        let (vocab, nodes) = (12, 600);
        let l = logits(vocab);
        for config in [SamplingConfig { temperature: 0.8, ..Default::default() }, SamplingConfig { temperature: 1.5, top_k: 5, ..Default::default() }] {
            let host = config.distribution(&l);
            let p = |t: u32| host.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1);
            // Children: the likeliest token and the least likely one (outside top-k: mass 0),
            // then a padding slot.
            let least = (0..vocab as u32).min_by(|&a, &b| l[a as usize].total_cmp(&l[b as usize])).unwrap();
            let kids = [host[0].0, least];
            let children = Children { width: 3, tokens: (0..nodes).flat_map(|_| [kids[0], kids[1], 0]).collect(), count: vec![2; nodes] };
            let rows: Vec<f32> = (0..nodes).flat_map(|_| l.iter().copied()).collect();
            let t = Tensor::<B, 2>::from_data(TensorData::new(rows, [nodes, vocab]), &Default::default());
            let u: Vec<f32> = (0..nodes).map(|j| (j as f32 + 0.5) / nodes as f32).collect();
            let d = node_draws(t, &children, &config, &u).unwrap();
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
