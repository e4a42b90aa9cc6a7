//! Acceptance of drafted beams (spec §4.2, §4.3): which beam's leading run of drafted tokens the
//! LLM agrees with, and the bonus token that follows it.

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

/// Sampling-mode acceptance as Apple defines it (spec §4.3), approximate by construction: beam
/// search is not sampling from the drafter, and the best of W tests is biased.
///
/// `p[node]` is the LLM's sampling distribution at each packed node of this row (temperature,
/// top-k and top-p applied), as sorted (token, probability) pairs. The drafter distribution Q is
/// `beams.hist` when the source kept it; without it the drafts count as deterministic (Q = 1 on
/// the drafted token), for which the rule below is standard speculative sampling.
/// Random draws come from `sampler`'s RNG of request row `request_row`.
pub fn sampled(
    tree: &TreeIndex,
    beams: &Beams,
    row: usize,
    p: &[Vec<(u32, f32)>],
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
            let px = prob(&p[tree.node(row, i, n)], x);
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
    let at = &p[tree.node(row, beam, drafted)];
    let bonus = if drafted == l - 1 {
        sampler.sample_from(request_row, at)
    } else {
        // Residual max(0, P − Q), of probabilities, renormalised.
        let mut resid: Vec<(u32, f32)> = at.iter().map(|&(t, pt)| (t, (pt - q_of(beam, drafted, t)).max(0.0))).collect();
        resid.retain(|r| r.1 > 0.0);
        let total: f32 = resid.iter().map(|r| r.1).sum();
        if total > 0.0 {
            resid.iter_mut().for_each(|r| r.1 /= total);
            sampler.sample_from(request_row, &resid)
        } else {
            sampler.sample_from(request_row, at)
        }
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
        let p = vec![vec![(2, 0.7), (1, 0.3)], vec![(3, 1.0)]];
        let mut sampler = Sampler::new(SamplingConfig { temperature: 1.0, seed: 3, ..Default::default() }, 1);
        let (mut accepted, trials) = (0, 20000);
        for _ in 0..trials {
            let acc = sampled(&tree, &beams, 0, &p, &mut sampler, 0);
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
}
