//! Next-token selection: greedy, or temperature / top-k / top-p sampling with a seeded RNG per row.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 disables.
    pub top_p: f32,
    pub seed: u64,
    /// How ReDrafter accepts drafted tokens when sampling (greedy decoding ignores it).
    pub acceptance: Acceptance,
}

/// The acceptance rule of sampled ReDrafter steps (docs/verification.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acceptance {
    /// Exact for trees of deterministic drafts: at an accepted node the children are tried in
    /// order, each accepted with its probability under the LLM's residual distribution, which
    /// loses each rejected child's mass; the bonus token comes from what is left. Every
    /// committed token then follows the LLM's sampling distribution exactly.
    #[default]
    Exact,
    /// Apple's reference rule (spec §4.3): an independent test per beam, the longest accepted
    /// beam kept, the bonus from max(0, P − Q). Approximate; kept to compare with the reference.
    Apple,
}

impl std::str::FromStr for Acceptance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Self::Exact),
            "apple" => Ok(Self::Apple),
            other => Err(format!("unknown acceptance rule `{other}` (exact or apple)")),
        }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, acceptance: Acceptance::Exact }
    }
}

/// Temperatures below this decode greedily. At 1e-5 a logit gap of 0.001 is already a factor
/// e^-100 in probability, so sampling would pick the argmax anyway; far below it, `logit / T`
/// overflows to infinity and the softmax turns into NaN.
pub const GREEDY_BELOW: f32 = 1e-5;

impl SamplingConfig {
    /// Turns logits into the sampling distribution (temperature, top-k, top-p applied), as
    /// (token, probability) pairs with probability above zero. When top-k or top-p cuts the
    /// vocabulary the pairs are sorted by descending probability (ties: lower id first);
    /// otherwise they are in token order. The kept tokens are found by selection, not by
    /// sorting the vocabulary (a sort of 49152 logits per tree node cost more than the rest of
    /// a sampled step's acceptance).
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let c = self;
        // Subtract the largest logit before dividing: (l - max) / T is at most 0, so a small T
        // sends the others towards -inf (probability 0) instead of every logit to +inf (NaN).
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut idx: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(i, l)| (i as u32, (*l - top) / c.temperature)).collect();
        let cut_k = c.top_k > 0 && c.top_k < idx.len();
        if cut_k {
            idx.select_nth_unstable_by(c.top_k - 1, descending);
            idx.truncate(c.top_k);
            // The nucleus below sorts what it keeps itself.
            if c.top_p >= 1.0 {
                idx.sort_unstable_by(descending);
            }
        }
        // The largest scaled logit is exactly 0 and always kept, so exp needs no shift.
        let sum: f64 = idx.iter().map(|e| e.1.exp() as f64).sum();
        let prob = |scaled: f32| (scaled.exp() as f64 / sum) as f32;
        if c.top_p < 1.0 {
            nucleus(&mut idx, c.top_p as f64, prob);
        }
        for e in idx.iter_mut() {
            e.1 = prob(e.1);
        }
        idx.retain(|e| e.1 > 0.0);
        if c.top_p < 1.0 {
            let total: f32 = idx.iter().map(|e| e.1).sum();
            idx.iter_mut().for_each(|e| e.1 /= total);
        }
        idx
    }

    pub fn greedy() -> Self {
        Self::default()
    }

    /// Greedy at temperature 0 and below [`GREEDY_BELOW`]: so sharp a distribution is the argmax
    /// up to ties, and dividing logits by it would overflow f32.
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_BELOW
    }

    pub fn validate(&self) -> Result<(), DecodeError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(DecodeError::InvalidOption(format!("temperature must be >= 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(DecodeError::InvalidOption(format!("top-p must be in (0, 1], got {}", self.top_p)));
        }
        Ok(())
    }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Descending probability (or scaled logit), ties broken by the lower token id: the order
/// top-k and top-p cut in.
fn descending(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the smallest head of `scaled` (scaled logits, in any order) whose probability mass,
/// `prob` of each, reaches `p`, sorted in [`descending`] order. The head is found by selecting the
/// largest m, m = 64, 256, …, so a peaked distribution never sorts its tail.
fn nucleus(scaled: &mut Vec<(u32, f32)>, p: f64, prob: impl Fn(f32) -> f32) {
    let n = scaled.len();
    let mut m = n.min(64);
    loop {
        if m < n {
            scaled.select_nth_unstable_by(m - 1, descending);
        }
        scaled[..m].sort_unstable_by(descending);
        let mut cum = 0.0f64;
        for j in 0..m {
            cum += prob(scaled[j].1) as f64;
            if cum >= p {
                scaled.truncate(j + 1);
                return;
            }
        }
        if m == n {
            // Rounding kept the whole mass just below p: keep everything.
            return;
        }
        m = (m * 4).min(n);
    }
}

/// Inverse-CDF sampling: the first token of `dist` whose cumulative probability exceeds
/// `target` (`u` for a normalised `dist`, `u` times its mass otherwise), the last one when
/// rounding leaves `target` at or past the end; `None` for an empty `dist`.
pub fn inverse_cdf(dist: &[(u32, f32)], target: f32) -> Option<u32> {
    let mut cum = 0.0;
    for (tok, p) in dist {
        cum += p;
        if target < cum {
            return Some(*tok);
        }
    }
    dist.last().map(|d| d.0)
}

/// One RNG per request row, so a row's samples do not depend on which other rows share its batch.
pub struct Sampler {
    config: SamplingConfig,
    rngs: Vec<StdRng>,
}

impl Sampler {
    pub fn new(config: SamplingConfig, rows: usize) -> Self {
        let rngs = (0..rows as u64).map(|r| StdRng::seed_from_u64(Self::row_seed(config.seed, r))).collect();
        Self { config, rngs }
    }

    /// The seed [`Sampler::new`] gives request row `row` for `seed` (`seed ^ row·φ`, φ the
    /// 64-bit golden ratio, so neighbouring rows get unrelated streams). A caller that places
    /// requests in batches itself passes `row_seed(seed, id)` for each request's own id to
    /// [`Sampler::with_row_seeds`], and its draws then do not depend on the batch slot.
    pub fn row_seed(seed: u64, row: u64) -> u64 {
        seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// One RNG per request row seeded with `seeds[r]` as given (`config.seed` is not used):
    /// a row's draws then depend on its seed only, not on its slot in the batch.
    pub fn with_row_seeds(config: SamplingConfig, seeds: &[u64]) -> Self {
        Self { config, rngs: seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect() }
    }

    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// [`SamplingConfig::distribution`] of this sampler's configuration.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        self.config.distribution(logits)
    }

    /// Picks the next token of request row `row` from its logits.
    pub fn sample(&mut self, row: usize, logits: &[f32]) -> u32 {
        if self.config.is_greedy() {
            return argmax(logits);
        }
        let dist = self.distribution(logits);
        self.sample_from(row, &dist)
    }

    /// Draws a token of request row `row` from (token, probability) pairs.
    pub fn sample_from(&mut self, row: usize, dist: &[(u32, f32)]) -> u32 {
        let u = self.uniform(row);
        inverse_cdf(dist, u).expect("distribution keeps at least one token")
    }

    /// A draw from U(0, 1) on request row `row`'s RNG.
    pub fn uniform(&mut self, row: usize) -> f32 {
        self.rngs[row].random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        let mut s = Sampler::new(SamplingConfig::greedy(), 1);
        assert_eq!(s.sample(0, &[0.0, -1.0, 5.0]), 2);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [0.0, 1.0, 2.0, 3.0, 4.0];
        let s = Sampler::new(SamplingConfig { temperature: 1.0, top_k: 2, ..Default::default() }, 1);
        let d = s.distribution(&logits);
        assert_eq!(d.iter().map(|e| e.0).collect::<Vec<_>>(), vec![4, 3]);
        assert!((d[0].1 - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);

        let s = Sampler::new(SamplingConfig { temperature: 1.0, top_p: 0.5, ..Default::default() }, 1);
        assert_eq!(s.distribution(&logits).len(), 1, "the top token alone holds 64% of the mass");
        let s = Sampler::new(SamplingConfig { temperature: 1.0, top_p: 0.9, ..Default::default() }, 1);
        assert_eq!(s.distribution(&logits).len(), 3);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_the_distribution() {
        let cfg = SamplingConfig { temperature: 1.0, seed: 7, ..Default::default() };
        let logits = [0.0, (3f32).ln()]; // p = [0.25, 0.75]
        let draw = |cfg: &SamplingConfig| {
            let mut s = Sampler::new(cfg.clone(), 2);
            (0..4000).map(|_| s.sample(1, &logits)).collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        let ones = a.iter().filter(|&&t| t == 1).count() as f32 / a.len() as f32;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
        assert_ne!(a, draw(&SamplingConfig { seed: 8, ..cfg }));
    }

    #[test]
    fn tiny_temperatures_are_greedy_and_never_nan() {
        let logits = [10.0, 20.0, 5.0, 19.0];
        for t in [1e-38, f32::MIN_POSITIVE, 1e-20, 9e-6] {
            let mut s = Sampler::new(SamplingConfig { temperature: t, seed: 1, ..Default::default() }, 1);
            assert!(s.config().is_greedy(), "{t}");
            assert!((0..50).all(|_| s.sample(0, &logits) == 1), "temperature {t} must pick the argmax");
            // The distribution itself stays finite at any positive temperature.
            let d = s.distribution(&logits);
            assert_eq!(d, vec![(1, 1.0)], "temperature {t}");
        }
        let s = Sampler::new(SamplingConfig { temperature: 1e-5, ..Default::default() }, 1);
        assert!(!s.config().is_greedy());
        let d = s.distribution(&[1000.0, 1000.00001, -1000.0]);
        assert!(d.iter().all(|e| e.1.is_finite()) && (d.iter().map(|e| e.1).sum::<f32>() - 1.0).abs() < 1e-6, "{d:?}");
    }

    /// The sort-everything distribution this module computed before selection replaced it.
    fn sorted_reference(c: &SamplingConfig, logits: &[f32]) -> Vec<(u32, f32)> {
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut idx: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, l)| (i as u32, (*l - top) / c.temperature)).collect();
        idx.sort_unstable_by(descending);
        if c.top_k > 0 && c.top_k < idx.len() {
            idx.truncate(c.top_k);
        }
        let sum: f64 = idx.iter().map(|e| e.1.exp() as f64).sum();
        let mut cum = 0.0f64;
        let mut out = vec![];
        for e in &idx {
            let q = (e.1.exp() as f64 / sum) as f32;
            if q == 0.0 {
                break;
            }
            out.push((e.0, q));
            cum += q as f64;
            if c.top_p < 1.0 && cum >= c.top_p as f64 {
                break;
            }
        }
        let total: f32 = out.iter().map(|e| e.1).sum();
        out.iter_mut().for_each(|e| e.1 /= total);
        out
    }

    #[test]
    fn selection_keeps_what_sorting_kept() {
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..300 {
            let v = [5, 64, 300, 4096][case % 4];
            // Peaked and flat logits, with ties (rounded values) in some cases.
            let scale = [0.5f32, 3.0, 12.0][case % 3];
            let logits: Vec<f32> = (0..v)
                .map(|_| {
                    let x: f32 = rng.random::<f32>() * scale;
                    if case % 5 == 0 { (x * 4.0).round() / 4.0 } else { x }
                })
                .collect();
            let cfg = SamplingConfig {
                temperature: [0.3f32, 0.7, 1.0, 2.0][case % 4],
                top_k: [0, 1, 3, 50, 10_000][case % 5],
                top_p: [1.0f32, 0.9, 0.5, 0.99][(case / 5) % 4],
                ..Default::default()
            };
            let got = Sampler::new(cfg.clone(), 1).distribution(&logits);
            let mut want = sorted_reference(&cfg, &logits);
            let cut = (cfg.top_k > 0 && cfg.top_k < v) || cfg.top_p < 1.0;
            let mut got_sorted = got.clone();
            if !cut {
                // Token order without a cut: the same pairs.
                assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "case {case}: token order");
                got_sorted.sort_unstable_by(descending);
                want.sort_unstable_by(descending);
            }
            assert_eq!(got_sorted.len(), want.len(), "case {case} {cfg:?}");
            for (g, w) in got_sorted.iter().zip(&want) {
                assert_eq!(g.0, w.0, "case {case} {cfg:?}");
                assert!((g.1 - w.1).abs() <= 1e-6 * w.1.max(1e-3), "case {case}: {} vs {}", g.1, w.1);
            }
        }
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert!(SamplingConfig { temperature: -1.0, ..Default::default() }.validate().is_err());
        assert!(SamplingConfig { temperature: f32::NAN, ..Default::default() }.validate().is_err());
        assert!(SamplingConfig { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(SamplingConfig { top_p: 1.5, ..Default::default() }.validate().is_err());
    }
}
