//! Copy first: a draft source that drafts by prompt lookup where a row's context repeats itself,
//! and asks another source (the recurrent drafter) everywhere else.
//!
//! The two sources fail in different places. The drafter is trained on loop-free answers and
//! predicts the next words of new text; prompt lookup is right where the text copies itself
//! (quotes, code, lists, a small model's own repetition) and almost never elsewhere. So a row
//! whose last `lookup.min_ngram` or more tokens occurred before drafts the copy that followed
//! them as its first beam, and the other source's best beams fill the rest of the W. With W = 1
//! a step whose every row found a copy does not run the other source at all (it costs nothing).
//! Verification is unchanged, so greedy output stays that of autoregressive decoding; copies are
//! deterministic drafts (in sampling mode a one-hot distribution, as prompt lookup's are).
//!
//! With an adaptive length (docs/adaptive-length.md) the drafter drafts only what it believes
//! in; a copy then drafts one token per matched token beyond `min_ngram − 1` (with n-grams
//! 2..=4: a 2-token match copies 1 token, a 4-token match 3), so a weak match is not verified
//! at full length. Without one, copies draft L − 1 tokens like every other beam.
//!
//! See docs/prompt-lookup.md, "Copy first".

use burn::tensor::backend::Backend;
use redrafter_llama::Llama;

use super::DecodeState;
use super::lookup::PromptLookup;
use super::redrafter::{DraftSource, Drafts};
use crate::beam::{Beams, LOG_ZERO, SparseLogProbs};
use crate::error::DecodeError;

/// The lookup `LookupFirst::over` uses: repeated suffixes of 2 to 4 tokens (measured against
/// 3 to 4 and 2 to 3 on MT-Bench, docs/prompt-lookup.md).
pub const LOOKUP_FIRST_NGRAMS: PromptLookup = PromptLookup { max_ngram: 4, min_ngram: 2 };

/// Prompt lookup first, `inner` where the context holds no copy (see the module doc).
#[derive(Debug, Clone)]
pub struct LookupFirst<S> {
    pub inner: S,
    /// The lookup; its `min_ngram` is the shortest repeated suffix trusted over `inner`.
    pub lookup: PromptLookup,
    copied: usize,
    row_steps: usize,
    /// Per active row of the latest draft: whether its first beam is a copy.
    last_copied: Vec<bool>,
}

impl<S> LookupFirst<S> {
    /// `inner` drafting wherever `lookup` finds no repeated suffix of `lookup.min_ngram` or more
    /// tokens.
    pub fn new(inner: S, lookup: PromptLookup) -> Result<Self, DecodeError> {
        lookup.validate()?;
        Ok(Self { inner, lookup, copied: 0, row_steps: 0, last_copied: vec![] })
    }

    /// `inner` with the default lookup, [`LOOKUP_FIRST_NGRAMS`].
    pub fn over(inner: S) -> Self {
        Self { inner, lookup: LOOKUP_FIRST_NGRAMS, copied: 0, row_steps: 0, last_copied: vec![] }
    }

    /// (row-steps whose first beam was a copy, row-steps drafted) since the source was made.
    pub fn copied(&self) -> (usize, usize) {
        (self.copied, self.row_steps)
    }

    /// The copy each active row drafts, if its context repeats its suffix: `len − 1` tokens, or
    /// with an adaptive length (`scaled`) one token per matched token beyond `min_ngram − 1`
    /// (a 2-token match of 2..=4 copies 1 token, a 4-token match 3), at most `len − 1`.
    fn copies<B: Backend>(&self, state: &DecodeState<B>, len: usize, scaled: bool) -> Vec<Option<Vec<u32>>> {
        let min = self.lookup.min_ngram;
        state
            .tokens
            .iter()
            .map(|context| {
                let (n, mut copy) = self.lookup.keyed_proposals(context, 1, len).into_iter().next()?;
                if scaled {
                    copy.truncate(n + 1 - min);
                }
                Some(copy)
            })
            .collect()
    }

    fn draft_with<B: Backend>(
        &mut self,
        model: &Llama<B>,
        state: &DecodeState<B>,
        width: usize,
        len: usize,
        keep_hist: bool,
        min_log_joint: Option<f32>,
    ) -> Result<Drafts<B>, DecodeError>
    where
        S: DraftSource<B>,
    {
        let rows = state.pending.len();
        let copies = self.copies(state, len, min_log_joint.is_some());
        self.last_copied = copies.iter().map(Option::is_some).collect();
        let n_copied = copies.iter().filter(|c| c.is_some()).count();
        self.copied += n_copied;
        self.row_steps += rows;
        // The longest copy sets the step's length where copies alone are drafted.
        let copy_len = 1 + copies.iter().flatten().map(Vec::len).max().unwrap_or(0);
        if width == 1 && n_copied == rows {
            // Every row copies: the other source is not asked (and costs nothing this step).
            // Shorter copies (scaled by their match) are padded like short drafter beams.
            let mut tokens = Vec::with_capacity(rows * copy_len);
            for (c, &g0) in copies.iter().zip(&state.pending) {
                let beam: Vec<u32> = std::iter::once(g0).chain(c.iter().flatten().copied()).collect();
                push_padded(&mut tokens, None, &beam, std::iter::empty(), copy_len);
            }
            return Ok(Drafts::Host(Beams { rows, width, len: copy_len, tokens, hist: None }));
        }
        let inner = match min_log_joint {
            Some(bound) => self.inner.draft_until(model, state, width, len, keep_hist, bound)?,
            None => self.inner.draft(model, state, width, len, keep_hist)?,
        };
        if n_copied == 0 {
            // Nothing to copy: the other source's drafts as they are (on the device, unread).
            return Ok(inner);
        }
        let inner = match inner {
            Drafts::Host(b) => b,
            Drafts::Device(d) => {
                let [r, w, l] = d.tokens.dims();
                let data = d.tokens.into_data();
                let tokens = data.iter::<i64>().map(|t| t as u32).collect();
                Beams { rows: r, width: w, len: l, tokens, hist: d.hist }
            }
        };
        if inner.rows != rows || inner.width != width || inner.len == 0 || inner.len > len {
            return Err(DecodeError::Draft(format!(
                "copy first: the inner source drafted [{}, {}, {}] for [{rows}, {width}, {len}]",
                inner.rows, inner.width, inner.len
            )));
        }
        // With scaled copies the step is as long as its longest beam, copy or drafter's.
        let step_len = if min_log_joint.is_some() { copy_len.max(inner.len) } else { len };
        Ok(Drafts::Host(merge(&inner, &copies, width, step_len)))
    }
}

/// Beams [rows, width, len]: a row with a copy takes it as its first beam and `inner`'s best
/// width − 1 after it, a row without takes `inner`'s. Beams and copies shorter than `len` (an
/// adaptive length stopped early, a copy scaled to its match) are padded ([`push_padded`]);
/// longer copies are cut. Distributions, when `inner` kept them, are one-hot for copied tokens.
fn merge(inner: &Beams, copies: &[Option<Vec<u32>>], width: usize, len: usize) -> Beams {
    let rows = copies.len();
    let mut tokens = Vec::with_capacity(rows * width * len);
    let mut hist = inner.hist.as_ref().map(|_| Vec::with_capacity(rows * width * (len - 1)));
    for (r, copy) in copies.iter().enumerate() {
        let from_inner = match copy {
            Some(c) => {
                let c = &c[..c.len().min(len - 1)];
                let beam: Vec<u32> = std::iter::once(inner.beam(r, 0)[0]).chain(c.iter().copied()).collect();
                push_padded(&mut tokens, hist.as_mut(), &beam, c.iter().map(|&t| one_hot(t)), len);
                width - 1
            }
            None => width,
        };
        for i in 0..from_inner {
            let beam = inner.beam(r, i);
            let drafted = (0..beam.len() - 1).map(|k| inner.hist(r, i, k).expect("inner kept its distributions").clone());
            push_padded(&mut tokens, hist.as_mut(), beam, drafted, len);
        }
    }
    Beams { rows, width, len, tokens, hist }
}

/// A deterministic draft as a distribution: all mass on `t`.
fn one_hot(t: u32) -> SparseLogProbs {
    SparseLogProbs { tokens: vec![t], logp: vec![0.0], floor: LOG_ZERO }
}

/// Appends `beam` (the pending token first) padded to `len` tokens by repeating its last token,
/// a guess verification may take or reject like any other; with `hist`, the distributions of its
/// drafted tokens (`drafted`) and one-hot ones for the padding.
fn push_padded(
    tokens: &mut Vec<u32>,
    hist: Option<&mut Vec<SparseLogProbs>>,
    beam: &[u32],
    drafted: impl Iterator<Item = SparseLogProbs>,
    len: usize,
) {
    let last = *beam.last().expect("beams hold at least the pending token");
    tokens.extend(beam);
    tokens.extend(std::iter::repeat_n(last, len - beam.len()));
    if let Some(h) = hist {
        h.extend(drafted);
        h.extend((beam.len()..len).map(|_| one_hot(last)));
    }
}

impl<B: Backend, S: DraftSource<B>> DraftSource<B> for LookupFirst<S> {
    fn name(&self) -> String {
        format!("{}, prompt lookup first (n-grams {}..={})", self.inner.name(), self.lookup.min_ngram, self.lookup.max_ngram)
    }

    fn draft(&mut self, model: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, keep_hist: bool)
    -> Result<Drafts<B>, DecodeError> {
        self.draft_with(model, state, width, len, keep_hist, None)
    }

    fn draft_until(
        &mut self,
        model: &Llama<B>,
        state: &DecodeState<B>,
        width: usize,
        len: usize,
        keep_hist: bool,
        min_log_joint: f32,
    ) -> Result<Drafts<B>, DecodeError> {
        self.draft_with(model, state, width, len, keep_hist, Some(min_log_joint))
    }

    fn retain_rows(&mut self, keep: &[usize]) {
        self.inner.retain_rows(keep)
    }

    fn copied_rows(&self) -> Option<&[bool]> {
        Some(&self.last_copied)
    }

    fn context_layers(&self) -> Option<&[usize]> {
        self.inner.context_layers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beams(rows: usize, width: usize, len: usize, tokens: Vec<u32>, hist: bool) -> Beams {
        let hist = hist.then(|| {
            (0..rows * width * (len - 1)).map(|i| SparseLogProbs { tokens: vec![100 + i as u32, 7], logp: vec![-0.1, -2.0], floor: LOG_ZERO }).collect()
        });
        Beams { rows, width, len, tokens, hist }
    }

    #[test]
    fn copies_come_first_and_short_beams_are_padded() {
        // Two rows, W 2; the inner source stopped early at length 2 of 4.
        let inner = beams(2, 2, 2, vec![5, 6, 5, 7, 9, 1, 9, 2], true);
        let merged = merge(&inner, &[Some(vec![40, 41, 42]), None], 2, 4);
        assert_eq!((merged.rows, merged.width, merged.len), (2, 2, 4));
        // Row 0: the copy, then the inner's best beam padded with its last token.
        assert_eq!(merged.beam(0, 0), &[5, 40, 41, 42]);
        assert_eq!(merged.beam(0, 1), &[5, 6, 6, 6]);
        // Row 1: no copy, the inner's two beams padded.
        assert_eq!(merged.beam(1, 0), &[9, 1, 1, 1]);
        assert_eq!(merged.beam(1, 1), &[9, 2, 2, 2]);
        // Distributions: one-hot for copied and padded tokens, the inner's own otherwise.
        assert_eq!(merged.hist(0, 0, 1).unwrap().tokens, vec![41]);
        assert_eq!(merged.hist(0, 0, 1).unwrap().logp, vec![0.0]);
        assert_eq!(merged.hist(0, 1, 0), inner.hist(0, 0, 0));
        assert_eq!(merged.hist(0, 1, 2).unwrap().tokens, vec![6]);
        assert_eq!(merged.hist(1, 1, 0), inner.hist(1, 1, 0));
        assert_eq!(merged.hist.as_ref().unwrap().len(), 2 * 2 * 3);
    }

    #[test]
    fn copies_shorter_than_the_step_are_padded_and_longer_ones_cut() {
        let inner = beams(2, 1, 4, vec![5, 6, 7, 8, 9, 1, 2, 3], true);
        let merged = merge(&inner, &[Some(vec![40]), Some(vec![50, 51, 52, 53])], 1, 4);
        assert_eq!(merged.beam(0, 0), &[5, 40, 40, 40]);
        assert_eq!(merged.beam(1, 0), &[9, 50, 51, 52]);
        assert_eq!(merged.hist(0, 0, 2).unwrap().tokens, vec![40]);
        assert_eq!(merged.hist.as_ref().unwrap().len(), 2 * 3);
    }

    #[test]
    fn without_inner_distributions_none_are_made() {
        let inner = beams(1, 1, 3, vec![5, 6, 7], false);
        let merged = merge(&inner, &[Some(vec![8, 9])], 1, 3);
        assert_eq!(merged.beam(0, 0), &[5, 8, 9]);
        assert!(merged.hist.is_none());
    }

    #[test]
    fn bad_lookup_lengths_are_refused() {
        assert!(LookupFirst::new((), PromptLookup { max_ngram: 2, min_ngram: 3 }).is_err());
        let s = LookupFirst::new((), PromptLookup { max_ngram: 4, min_ngram: 2 }).unwrap();
        assert_eq!(s.copied(), (0, 0));
    }
}
