//! Repetition-loop stop: ends a row once its output has fallen into a loop.
//!
//! A small greedy model often ends an answer by repeating itself until the token limit: of the
//! first 768 greedy SmolLM2-135M answers to ShareGPT prompts (256 new tokens), 64% fell into a
//! loop by this rule, and the loops were 53% of all tokens (docs/training.md). Such tokens cost a
//! full decode step each and teach a drafter nothing that a benchmark asks for, so distillation
//! stops a row there (`redrafter distill-data`), and `generate --stop-loops` offers the same.
//!
//! The rule: a token *repeats* when it closes an n-gram already seen earlier in the row's output;
//! the row is looping once more than `max_repeats` of its last `window` tokens repeat. The loop is
//! taken to start at the first repeating token of that window ([`LoopTracker::loop_start`]).
//! Tokens are judged one at a time, so a multi-token ReDrafter step stops at the same token as
//! autoregressive decoding would.

use std::collections::{HashSet, VecDeque};

use crate::error::DecodeError;

/// When a row counts as looping (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopStop {
    /// Length of the n-grams compared.
    pub ngram: usize,
    /// How many of the newest tokens are looked at.
    pub window: usize,
    /// The row loops once more than this many of the window's tokens repeat.
    pub max_repeats: usize,
}

impl Default for LoopStop {
    /// 4-grams, more than half of the last 32 tokens (the rule measured in docs/training.md).
    fn default() -> Self {
        Self { ngram: 4, window: 32, max_repeats: 16 }
    }
}

impl LoopStop {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.ngram == 0 || self.window == 0 {
            return Err(DecodeError::InvalidOption("loop stop: n-gram length and window must be at least 1".into()));
        }
        if self.max_repeats >= self.window {
            return Err(DecodeError::InvalidOption(format!(
                "loop stop: max repeats ({}) must be below the window ({}), or no row could ever stop",
                self.max_repeats, self.window
            )));
        }
        Ok(())
    }
}

/// Incremental state of [`LoopStop`] for one row. It reads the row's output rather than keeping
/// a copy: [`push`](Self::push) gets the output so far, the new token last.
#[derive(Debug, Clone)]
pub struct LoopTracker {
    rule: LoopStop,
    seen: HashSet<Vec<u32>>,
    /// Whether each of the output's last (at most `window`) tokens repeated, oldest first.
    recent: VecDeque<bool>,
    repeats: usize,
    start: Option<usize>,
}

impl LoopTracker {
    pub fn new(rule: LoopStop) -> Self {
        Self { rule, seen: HashSet::new(), recent: VecDeque::new(), repeats: 0, start: None }
    }

    /// Judges the newest token of `output` (the row's output so far, one token longer than at
    /// the previous call); returns true once the row loops (and from then on).
    pub fn push(&mut self, output: &[u32]) -> bool {
        if self.start.is_some() {
            return true;
        }
        let (n, len) = (self.rule.ngram, output.len());
        let repeat = len >= n && !self.seen.insert(output[len - n..].to_vec());
        self.recent.push_back(repeat);
        self.repeats += repeat as usize;
        if self.recent.len() > self.rule.window {
            let gone = self.recent.pop_front().expect("window is non-empty");
            self.repeats -= gone as usize;
        }
        if self.repeats > self.rule.max_repeats {
            // The window holds the output's last `recent.len()` tokens.
            self.start = self.recent.iter().position(|&r| r).map(|k| len - self.recent.len() + k);
        }
        self.start.is_some()
    }

    /// Index (in the output) of the first repeating token of the window that tripped the rule.
    pub fn loop_start(&self) -> Option<usize> {
        self.start
    }
}

/// The rule on a whole output: `(tokens up to and including the one that trips it, loop start)`,
/// or `None` when the output never loops.
pub fn find_loop(tokens: &[u32], rule: LoopStop) -> Option<(usize, usize)> {
    let mut t = LoopTracker::new(rule);
    (1..=tokens.len()).find_map(|len| t.push(&tokens[..len]).then(|| (len, t.loop_start().expect("looping"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference: recount the window from scratch at every token.
    fn reference(tokens: &[u32], rule: LoopStop) -> Option<(usize, usize)> {
        let n = rule.ngram;
        let repeats: Vec<bool> = (0..tokens.len())
            .map(|i| i + 1 >= n && (0..i + 1 - n).any(|j| tokens[j..j + n] == tokens[i + 1 - n..=i]))
            .collect();
        for i in 0..tokens.len() {
            let lo = (i + 1).saturating_sub(rule.window);
            if repeats[lo..=i].iter().filter(|&&r| r).count() > rule.max_repeats {
                return Some((i + 1, (lo..=i).find(|&j| repeats[j]).unwrap()));
            }
        }
        None
    }

    #[test]
    fn incremental_matches_the_reference() {
        let mut s = 12345u64;
        for case in 0..300 {
            let rule = LoopStop { ngram: 1 + case % 5, window: 4 + case % 29, max_repeats: (case / 7) % 4 };
            let rule = LoopStop { max_repeats: rule.max_repeats.min(rule.window - 1), ..rule };
            // Small alphabets make loops; some outputs repeat a period outright after a free prefix.
            let alphabet = 2 + (case % 9) as u64;
            let len = 10 + case % 90;
            let mut toks: Vec<u32> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) % alphabet) as u32 + 100
                })
                .collect();
            if case % 3 == 0 {
                let period = 1 + case % 6;
                for i in len / 2..len {
                    toks[i] = toks[i - period];
                }
            }
            assert_eq!(find_loop(&toks, rule), reference(&toks, rule), "case {case} rule {rule:?} toks {toks:?}");
        }
    }

    #[test]
    fn a_periodic_tail_is_cut_where_it_repeats() {
        let mut toks: Vec<u32> = (0..40).collect();
        let tail: Vec<u32> = (0..60).map(|i| 1000 + i % 5).collect();
        toks.extend(&tail);
        let rule = LoopStop::default();
        let (stop, start) = find_loop(&toks, rule).expect("loops");
        // The first 4-gram of the tail recurs one period later: index 40 + 5 + 3.
        assert_eq!(start, 48);
        assert_eq!(stop, 48 + 17, "the 17th repeat trips more-than-16");
        assert_eq!(find_loop(&toks[..stop - 1], rule), None);
        assert_eq!(find_loop(&(0..500).collect::<Vec<u32>>(), rule), None);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(LoopStop { ngram: 0, ..Default::default() }.validate().is_err());
        assert!(LoopStop { window: 0, max_repeats: 0, ..Default::default() }.validate().is_err());
        assert!(LoopStop { window: 8, max_repeats: 8, ..Default::default() }.validate().is_err());
        assert!(LoopStop::default().validate().is_ok());
    }
}
