//! Prompt lookup: a draft source that needs no drafter. It drafts by copying: the row's last few
//! tokens are looked up earlier in its own context (prompt and output so far), and what followed
//! them there becomes the draft. It pays off where outputs repeat their input, as in code editing,
//! summaries that quote, or a model's own repetition. (Saxena's "prompt lookup decoding";
//! llama.cpp's and vLLM's n-gram speculators work the same way.)
//!
//! Per row and step: for n from `max_ngram` down to `min_ngram`, the last n tokens (the pending
//! token last) are searched for in the context, most recent occurrence first; each occurrence
//! proposes the tokens after it. Distinct proposals fill the W beams, longest match first. A
//! proposal that runs into the end of the context continues by copying its own start (as LZ77
//! does), so a loop of period p drafts the loop. Rows with fewer than W proposals repeat their
//! first beam (the tree merges identical beams), and a row with none drafts its pending token
//! again, which the verifier simply rejects.
//!
//! Drafts are deterministic (no distribution), so in sampling mode they are judged as such.

use burn::tensor::backend::Backend;
use redrafter_llama::Llama;

use super::DecodeState;
use super::redrafter::{DraftSource, Drafts};
use crate::beam::Beams;
use crate::error::DecodeError;

/// Prompt-lookup drafting (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLookup {
    /// Longest suffix looked up (tried first).
    pub max_ngram: usize,
    /// Shortest suffix looked up.
    pub min_ngram: usize,
}

impl Default for PromptLookup {
    /// Suffixes of 3 down to 1 tokens (the common choice in llama.cpp and vLLM).
    fn default() -> Self {
        Self { max_ngram: 3, min_ngram: 1 }
    }
}

impl PromptLookup {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.min_ngram == 0 || self.min_ngram > self.max_ngram {
            return Err(DecodeError::InvalidOption(format!(
                "prompt lookup: n-gram lengths must satisfy 1 <= min ({}) <= max ({})",
                self.min_ngram, self.max_ngram
            )));
        }
        Ok(())
    }

    /// Up to `width` distinct continuations of `context` of `len - 1` tokens each (see the module doc).
    pub fn proposals(&self, context: &[u32], width: usize, len: usize) -> Vec<Vec<u32>> {
        self.keyed_proposals(context, width, len).into_iter().map(|(_, p)| p).collect()
    }

    /// [`proposals`](Self::proposals), each with the length of the suffix that matched.
    pub fn keyed_proposals(&self, context: &[u32], width: usize, len: usize) -> Vec<(usize, Vec<u32>)> {
        let mut out: Vec<(usize, Vec<u32>)> = vec![];
        let c = context.len();
        for n in (self.min_ngram..=self.max_ngram.min(c.saturating_sub(1))).rev() {
            let key = &context[c - n..];
            // Occurrences ending before the context's end, most recent first.
            for start in (0..c - n).rev() {
                if out.len() >= width {
                    return out;
                }
                if &context[start..start + n] != key {
                    continue;
                }
                let from = start + n;
                let mut p: Vec<u32> = Vec::with_capacity(len - 1);
                for j in 0..len - 1 {
                    // Past the context's end the copy reads itself: index from + j in context ++ p.
                    let at = from + j;
                    p.push(if at < c { context[at] } else { p[at - c] });
                }
                if !out.iter().any(|(_, q)| *q == p) {
                    out.push((n, p));
                }
            }
        }
        out
    }
}

impl<B: Backend> DraftSource<B> for PromptLookup {
    fn name(&self) -> String {
        format!("prompt-lookup (n-grams {}..={})", self.min_ngram, self.max_ngram)
    }

    fn draft(&mut self, _: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, _keep_hist: bool)
    -> Result<Drafts<B>, DecodeError> {
        self.validate()?;
        let mut tokens = Vec::with_capacity(state.rows.len() * width * len);
        for (i, &pending) in state.pending.iter().enumerate() {
            let context = &state.tokens[i];
            debug_assert_eq!(context.last(), Some(&pending));
            let mut beams = self.proposals(context, width, len);
            if beams.is_empty() {
                beams.push(vec![pending; len - 1]);
            }
            for b in 0..width {
                tokens.push(pending);
                tokens.extend(&beams[b.min(beams.len() - 1)]);
            }
        }
        Ok(Drafts::Host(Beams { rows: state.rows.len(), width, len, tokens, hist: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_most_recent_match_first_and_loops_continue() {
        let pl = PromptLookup::default();
        // "7 8 9" occurs once before the end: its continuation is 1 2.
        let ctx = [7, 8, 9, 1, 2, 5, 5, 8, 9, 3, 7, 8, 9];
        assert_eq!(pl.proposals(&ctx, 1, 3), vec![vec![1, 2]]);
        // Wider: then the 2-gram "8 9" (most recent first: followed by 3 7); its older occurrence
        // and the 1-gram "9" only repeat these.
        let all = pl.proposals(&ctx, 4, 3);
        assert_eq!(all, vec![vec![1, 2], vec![3, 7]]);
        // A loop of period 2 at the end continues itself past the context's end.
        let ctx = [1, 2, 3, 4, 3, 4, 3];
        assert_eq!(pl.proposals(&ctx, 1, 6), vec![vec![4, 3, 4, 3, 4]]);
        // Nothing to find.
        assert!(pl.proposals(&[1, 2, 3], 2, 4).is_empty());
        assert!(pl.proposals(&[5], 2, 4).is_empty());
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(PromptLookup { max_ngram: 2, min_ngram: 0 }.validate().is_err());
        assert!(PromptLookup { max_ngram: 2, min_ngram: 3 }.validate().is_err());
        assert!(PromptLookup::default().validate().is_ok());
    }
}
