//! Acceptance of drafted beams (spec §4.2, §4.3): which beam's leading run of drafted tokens the
//! LLM agrees with, and the bonus token that follows it.

pub mod device;

use crate::beam::Beams;
use crate::sampling::Sampler;
use crate::tree::TreeIndex;

/// The outcome for one row: beam `beam` had its first `drafted` drafted tokens accepted, so the
/// row commits g0 plus those tokens, and `bonus` (from the LLM) becomes its next g0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub beam: usize,
    pub drafted: usize,
    pub bonus: u32,
}

/// Greedy acceptance on the beam grid: `y[i][k]` is the LLM's argmax after beam i's position k.
/// Longest leading run of `beams[i][k + 1] == y[i][k]`; the first beam wins ties.
pub fn greedy_grid(beams: &[u32], y: &[u32], width: usize, len: usize) -> Accepted {
    let run = |i: usize| (0..len - 1).take_while(|&k| beams[i * len + k + 1] == y[i * len + k]).count();
    let (mut beam, mut drafted) = (0, run(0));
    for i in 1..width {
        let n = run(i);
        if n > drafted {
            (beam, drafted) = (i, n);
        }
    }
    Accepted { beam, drafted, bonus: y[beam * len + drafted] }
}

/// Greedy acceptance of row `row` from the argmax of every tree slot (`argmax[row·slots + p]`):
/// only one id per slot is read back, never full logits.
pub fn greedy(tree: &TreeIndex, beams: &Beams, row: usize, argmax: &[u32]) -> Accepted {
    let (w, l, p) = (tree.width, tree.len, tree.slots);
    let grid: Vec<u32> = beams.tokens[row * w * l..(row + 1) * w * l].to_vec();
    let y: Vec<u32> = (0..w * l).map(|x| argmax[row * p + tree.node(row, x / l, x % l)]).collect();
    greedy_grid(&grid, &y, w, l)
}

/// Probability of `token` in a sparse distribution of (token, probability) pairs.
fn prob(dist: &[(u32, f32)], token: u32) -> f32 {
    dist.iter().find(|d| d.0 == token).map_or(0.0, |d| d.1)
}

/// The LLM's sampling distribution at each packed node of a row, as (token, probability) pairs
/// ([`Sampler::distribution`]). A walk visits only the nodes of the accepted path and their
/// siblings, so [`Lazy`] computes a node's distribution when it is first asked for.
pub trait NodeDists {
    fn at(&mut self, node: usize) -> &[(u32, f32)];
}

/// Distributions computed ahead, one per packed node (tests, small trees).
impl NodeDists for Vec<Vec<(u32, f32)>> {
    fn at(&mut self, node: usize) -> &[(u32, f32)] {
        &self[node]
    }
}

/// Distributions computed by `f(node)` on first use and kept for the rest of the walk.
pub struct Lazy<F> {
    f: F,
    memo: Vec<Option<Vec<(u32, f32)>>>,
}

impl<F: FnMut(usize) -> Vec<(u32, f32)>> Lazy<F> {
    /// A row of `nodes` packed nodes.
    pub fn new(nodes: usize, f: F) -> Self {
        Self { f, memo: vec![None; nodes] }
    }
}

impl<F: FnMut(usize) -> Vec<(u32, f32)>> NodeDists for Lazy<F> {
    fn at(&mut self, node: usize) -> &[(u32, f32)] {
        self.memo[node].get_or_insert_with(|| (self.f)(node))
    }
}

/// What the exact rule's walk ([`walk`]) asks of a node: p of each child it tries, and the token
/// emitted where it stops. The host computes both from a node's distribution ([`exact`]); the
/// device path reads them back precomputed for every node ([`device::exact`]).
pub trait ExactNodes {
    /// p(c) at packed node `node` of the walked row, for `c` one of the node's children.
    fn child_prob(&mut self, node: usize, c: u32) -> f32;
    /// The token emitted at `node` where the walk stops there: drawn from p without `rejected`,
    /// which is every child of the node (none at the end of the beams).
    fn bonus(&mut self, node: usize, rejected: &[u32], sampler: &mut Sampler, request_row: usize) -> u32;
}

/// Exact sampling-mode acceptance for a tree of deterministic drafts ([`Acceptance::Exact`]).
///
/// From the root, at each accepted node: its children (the next drafted token of every beam
/// still holding the accepted prefix, each token once, in beam order) are tried in turn; child
/// c is accepted with probability `r(c) / Σr`, where r starts as the LLM's distribution `p` at
/// the node and loses each rejected child's mass. On acceptance the walk moves to that child;
/// when every child is rejected, the bonus token is drawn from what is left of r. Either way
/// the next committed token is distributed exactly as `p` at the node (child c first-accepted
/// with probability p(c), any other token t emitted with probability p(t)), so every token of
/// the output follows the LLM's sampling distribution, whatever the drafter proposed. The
/// acceptance at a node is p's mass on its children. A node at the end of the beams gives its
/// bonus from p itself. `sampler`, `request_row`: as in [`sampled`].
///
/// [`Acceptance::Exact`]: crate::sampling::Acceptance::Exact
pub fn walk(tree: &TreeIndex, beams: &Beams, row: usize, nodes: &mut impl ExactNodes, sampler: &mut Sampler, request_row: usize) -> Accepted {
    let (w, l) = (tree.width, tree.len);
    // The beams that hold the prefix accepted so far; they share its nodes.
    let mut alive: Vec<usize> = (0..w).collect();
    let mut drafted = 0;
    loop {
        let node = tree.node(row, alive[0], drafted);
        if drafted == l - 1 {
            let bonus = nodes.bonus(node, &[], sampler, request_row);
            return Accepted { beam: alive[0], drafted, bonus };
        }
        let mut children: Vec<u32> = Vec::with_capacity(alive.len());
        for &i in &alive {
            let c = beams.beam(row, i)[drafted + 1];
            if !children.contains(&c) {
                children.push(c);
            }
        }
        // p sums to one; each rejected child takes its mass out of what is left.
        let mut left = 1.0f32;
        let mut taken = None;
        for &c in &children {
            let pc = nodes.child_prob(node, c);
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
            None => {
                let bonus = nodes.bonus(node, &children, sampler, request_row);
                return Accepted { beam: alive[0], drafted, bonus };
            }
        }
    }
}

/// [`walk`] over host distributions, `p.at(node)` being the LLM's sampling distribution at each
/// packed node of the row ([`Sampler::distribution`]).
pub fn exact(tree: &TreeIndex, beams: &Beams, row: usize, p: &mut impl NodeDists, sampler: &mut Sampler, request_row: usize) -> Accepted {
    walk(tree, beams, row, &mut OnHost(p), sampler, request_row)
}

struct OnHost<'a, D>(&'a mut D);

impl<D: NodeDists> ExactNodes for OnHost<'_, D> {
    fn child_prob(&mut self, node: usize, c: u32) -> f32 {
        prob(self.0.at(node), c)
    }

    fn bonus(&mut self, node: usize, rejected: &[u32], sampler: &mut Sampler, request_row: usize) -> u32 {
        let p = self.0.at(node);
        if rejected.is_empty() {
            return sampler.sample_from(request_row, p);
        }
        // Rejecting every child leaves mass behind (a child holding all that was left is always
        // accepted); `sample_left`'s fallback to p only covers rounding.
        let left: Vec<(u32, f32)> = p.iter().filter(|e| !rejected.contains(&e.0)).copied().collect();
        sample_left(sampler, request_row, left, p)
    }
}

/// A draw from `left` (what rejections left of a node's distribution `p`) renormalised; from `p`
/// itself when nothing is left.
fn sample_left(sampler: &mut Sampler, request_row: usize, mut left: Vec<(u32, f32)>, p: &[(u32, f32)]) -> u32 {
    let total: f32 = left.iter().map(|e| e.1).sum();
    if total > 0.0 {
        left.iter_mut().for_each(|e| e.1 /= total);
        sampler.sample_from(request_row, &left)
    } else {
        sampler.sample_from(request_row, p)
    }
}

/// Sampling-mode acceptance as Apple defines it (spec §4.3), approximate by construction: beam
/// search is not sampling from the drafter, and the best of W tests is biased.
///
/// `p.at(node)` is the LLM's sampling distribution at each packed node of this row (temperature,
/// top-k and top-p applied), as [`Sampler::distribution`] gives it. The drafter distribution Q is
/// `beams.hist` when the source kept it; without it the drafts count as deterministic (Q = 1 on
/// the drafted token), for which the rule below is standard speculative sampling.
/// Random draws come from `sampler`'s RNG of request row `request_row`.
pub fn sampled(
    tree: &TreeIndex,
    beams: &Beams,
    row: usize,
    p: &mut impl NodeDists,
    sampler: &mut Sampler,
    request_row: usize,
) -> Accepted {
    let (w, l) = (tree.width, tree.len);
    // Without a kept distribution the draft is deterministic: Q is one-hot on the drafted token.
    let q_of = |i: usize, k: usize, tok: u32| -> f32 {
        match beams.hist(row, i, k) {
            Some(h) => h.logp_of(tok).exp(),
            None => f32::from(u8::from(beams.beam(row, i)[k + 1] == tok)),
        }
    };
    let mut best = (0, 0);
    for i in 0..w {
        let b = beams.beam(row, i);
        let mut n = 0;
        // One uniform per drafted position of every beam, drawn in a fixed order as Apple does.
        let us: Vec<f32> = (0..l - 1).map(|_| sampler.uniform(request_row)).collect();
        while n < l - 1 {
            let x = b[n + 1];
            let px = prob(p.at(tree.node(row, i, n)), x);
            let qx = q_of(i, n, x);
            if !(us[n] < px / qx) {
                break;
            }
            n += 1;
        }
        if n > best.1 {
            best = (i, n);
        }
    }
    let (beam, drafted) = best;
    let at = p.at(tree.node(row, beam, drafted));
    let bonus = if drafted == l - 1 {
        sampler.sample_from(request_row, at)
    } else {
        // Residual max(0, P − Q), of probabilities, renormalised.
        let mut resid: Vec<(u32, f32)> = at.iter().map(|&(t, pt)| (t, (pt - q_of(beam, drafted, t)).max(0.0))).collect();
        resid.retain(|r| r.1 > 0.0);
        sample_left(sampler, request_row, resid, at)
    };
    Accepted { beam, drafted, bonus }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingConfig;

    #[test]
    fn greedy_golden_vectors_of_spec_10() {
        let beams = [1, 2, 3, 4, 1, 2, 3, 5, 1, 3, 4, 5];
        let cases: [([u32; 12], usize, usize); 3] = [
            ([2, 3, 4, 5, 2, 3, 4, 6, 3, 4, 6, 8], 0, 3),
            ([1, 3, 4, 6, 2, 5, 4, 5, 7, 4, 6, 8], 1, 1),
            ([8, 3, 4, 6, 8, 5, 4, 5, 8, 4, 6, 8], 0, 0),
        ];
        for (y, beam, n) in cases {
            let a = greedy_grid(&beams, &y, 3, 4);
            assert_eq!((a.beam, a.drafted), (beam, n), "{y:?}");
            assert_eq!(a.bonus, y[beam * 4 + n]);
        }
    }

    #[test]
    fn mars_example_of_spec_4_8() {
        // Packed nodes 0..8 = Mars is a red reddish when dark red; argmax per node as in the spec.
        let (is, a, red, reddish, when, dark, bright, planet, in_, the) = (102, 103, 104, 203, 204, 303, 9, 10, 11, 12);
        let tokens = vec![101, is, a, red, 101, is, reddish, when, 101, is, dark, red];
        let tree = TreeIndex::from(&crate::tree::PackedTree::build(&tokens, 1, 3, 4));
        let beams = Beams { rows: 1, width: 3, len: 4, tokens, hist: None };
        let argmax = [is, dark, bright, planet, in_, the, red, planet];
        let acc = greedy(&tree, &beams, 0, &argmax);
        assert_eq!(acc, Accepted { beam: 2, drafted: 3, bonus: planet });
        let kept: Vec<usize> = (0..=acc.drafted).map(|k| tree.node(0, acc.beam, k)).collect();
        assert_eq!(kept, vec![0, 1, 6, 7], "KV moves packed {{0, 1, 6, 7}} to the row's next slots");
        let _ = when;
    }

    #[test]
    fn deterministic_drafts_accept_with_probability_p() {
        // One beam [g0, x]; P(x) = 0.3 at the root. Acceptance rate must be 0.3, and the residual
        // never re-emits the rejected token.
        let tokens = vec![0, 1];
        let tree = TreeIndex::from(&crate::tree::PackedTree::build(&tokens, 1, 1, 2));
        let beams = Beams { rows: 1, width: 1, len: 2, tokens, hist: None };
        let mut p: Vec<Vec<(u32, f32)>> = vec![vec![(2, 0.7), (1, 0.3)], vec![(3, 1.0)]];
        let mut sampler = Sampler::new(SamplingConfig { temperature: 1.0, seed: 3, ..Default::default() }, 1);
        let (mut accepted, trials) = (0, 20000);
        for _ in 0..trials {
            let acc = sampled(&tree, &beams, 0, &mut p, &mut sampler, 0);
            if acc.drafted == 1 {
                accepted += 1;
                assert_eq!(acc.bonus, 3);
            } else {
                assert_eq!(acc.bonus, 2, "the residual excludes the rejected token");
            }
        }
        let rate = accepted as f64 / trials as f64;
        assert!((rate - 0.3).abs() < 0.02, "{rate}");
    }

    /// The LLM of the exactness test: a fixed distribution over 6 tokens for every prefix, some
    /// tokens impossible at some prefixes.
    fn model(prefix: &[u32]) -> Vec<(u32, f32)> {
        let mut h = 0x9E37_79B9u32;
        for &t in prefix {
            h = (h ^ t).wrapping_mul(0x0100_0193).rotate_left(7);
        }
        let mut w: Vec<(u32, f32)> = (0..6u32).map(|t| (t, ((h >> (3 * t)) & 7) as f32)).collect();
        w.retain(|e| e.1 > 0.0);
        let total: f32 = w.iter().map(|e| e.1).sum();
        w.iter_mut().for_each(|e| e.1 /= total);
        w.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        w
    }

    /// Pearson's chi-square of the first two tokens a step commits (the second drawn from the
    /// model when the step committed only one) against the model's own joint distribution.
    fn first_two_tokens_chi_square(rule: fn(&TreeIndex, &Beams, usize, &mut Vec<Vec<(u32, f32)>>, &mut Sampler, usize) -> Accepted, trials: usize) -> f64 {
        use rand::{Rng, SeedableRng};
        // Beams sharing a first draft (1) and one apart (4), with the model's likely and
        // unlikely tokens among them.
        let tokens = vec![0, 1, 2, 0, 1, 3, 0, 4, 5];
        let tree = TreeIndex::from(&crate::tree::PackedTree::build(&tokens, 1, 3, 3));
        let beams = Beams { rows: 1, width: 3, len: 3, tokens: tokens.clone(), hist: None };
        let mut p = vec![vec![]; tree.packed_len[0]];
        for i in 0..3 {
            for k in 0..3 {
                p[tree.node(0, i, k)] = model(&tokens[i * 3..i * 3 + k + 1]);
            }
        }
        let mut sampler = Sampler::new(SamplingConfig { temperature: 1.0, seed: 11, ..Default::default() }, 1);
        let mut next = rand::rngs::StdRng::seed_from_u64(5);
        let mut seen = [[0usize; 6]; 6];
        for _ in 0..trials {
            let a = rule(&tree, &beams, 0, &mut p, &mut sampler, 0);
            let mut out: Vec<u32> = beams.beam(0, a.beam)[1..=a.drafted].to_vec();
            out.push(a.bonus);
            if out.len() == 1 {
                let u: f32 = next.random();
                let mut cum = 0.0;
                let d = model(&[0, out[0]]);
                out.push(d.iter().find(|e| { cum += e.1; u < cum }).unwrap_or(d.last().unwrap()).0);
            }
            seen[out[0] as usize][out[1] as usize] += 1;
        }
        let mut chi = 0.0;
        for (t1, p1) in model(&[0]) {
            for (t2, p2) in model(&[0, t1]) {
                let expected = trials as f64 * (p1 * p2) as f64;
                let o = std::mem::take(&mut seen[t1 as usize][t2 as usize]) as f64;
                chi += (o - expected).powi(2) / expected;
            }
        }
        assert!(seen.iter().flatten().all(|&o| o == 0), "a pair the model cannot emit: {seen:?}");
        chi
    }

    #[test]
    fn exact_acceptance_follows_the_model_and_apples_rule_does_not() {
        // At most 36 cells (35 degrees of freedom): chi-square above 80 has probability ~2e-5
        // for a rule that is exact.
        let exact_chi = first_two_tokens_chi_square(exact, 200_000);
        assert!(exact_chi < 80.0, "exact rule: chi-square {exact_chi:.1}");
        // Two beams share the first draft, so Apple's two independent tests accept it more
        // often than the model emits it.
        let apple_chi = first_two_tokens_chi_square(sampled, 200_000);
        assert!(apple_chi > 500.0, "Apple's rule should be measurably off here: chi-square {apple_chi:.1}");
    }

    #[test]
    fn exact_acceptance_of_agreeing_drafts_walks_the_whole_beam() {
        // A model certain of every drafted token accepts the full beam and samples the bonus.
        let tokens = vec![0, 1, 2, 0, 3, 4];
        let tree = TreeIndex::from(&crate::tree::PackedTree::build(&tokens, 1, 2, 3));
        let beams = Beams { rows: 1, width: 2, len: 3, tokens, hist: None };
        let mut p = vec![vec![]; tree.packed_len[0]];
        p[tree.node(0, 0, 0)] = vec![(3, 1.0)];
        p[tree.node(0, 1, 1)] = vec![(4, 1.0)];
        p[tree.node(0, 1, 2)] = vec![(5, 0.5), (1, 0.5)];
        p[tree.node(0, 0, 1)] = vec![(0, 1.0)];
        p[tree.node(0, 0, 2)] = vec![(0, 1.0)];
        let mut sampler = Sampler::new(SamplingConfig { temperature: 1.0, seed: 1, ..Default::default() }, 1);
        for _ in 0..50 {
            let a = exact(&tree, &beams, 0, &mut p, &mut sampler, 0);
            assert_eq!((a.beam, a.drafted), (1, 2));
            assert!(a.bonus == 5 || a.bonus == 1);
        }
    }
}
