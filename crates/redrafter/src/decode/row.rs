//! Per-request bookkeeping: generated tokens, stop conditions and streamed text.

use redrafter_io::TextTokenizer;
use serde::Serialize;

use super::loops::{LoopStop, LoopTracker};
use super::{GenerationConfig, OnText};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    StopString,
    MaxNewTokens,
    ContextLimit,
    /// The output fell into a repetition loop (`GenerationConfig::stop_loops`).
    Loop,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowOutput {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    /// With `finish == Loop`: where in `tokens` the loop starts (the tokens from there on are the
    /// loop that tripped the rule; they are kept, like every emitted token).
    pub loop_start: Option<usize>,
}

pub(super) struct RowState {
    prompt_len: usize,
    tokens: Vec<u32>,
    text: String,
    streamed: usize,
    pub(super) finish: Option<FinishReason>,
    loops: Option<LoopTracker>,
}

impl RowState {
    pub(super) fn new(prompt_len: usize, stop_loops: Option<LoopStop>) -> Self {
        Self { prompt_len, tokens: vec![], text: String::new(), streamed: 0, finish: None, loops: stop_loops.map(LoopTracker::new) }
    }

    /// Appends a step's tokens, stopping at the first stop condition; returns how many were kept.
    pub(super) fn push_tokens(
        &mut self,
        toks: &[u32],
        cfg: &GenerationConfig,
        tokenizer: Option<&TextTokenizer>,
        limit: usize,
        on_text: OnText<'_>,
        row: usize,
    ) -> usize {
        let mut kept = 0;
        for &tok in toks {
            if self.finish.is_some() {
                break;
            }
            self.tokens.push(tok);
            kept += 1;
            if !cfg.stop_strings.is_empty() {
                self.refresh_text(tokenizer);
                if let Some(pos) = cfg.stop_strings.iter().filter_map(|s| self.text.find(s.as_str())).min() {
                    self.text.truncate(pos);
                    self.finish = Some(FinishReason::StopString);
                }
            }
            if self.finish.is_none() {
                if cfg.eos_ids.contains(&tok) {
                    self.finish = Some(FinishReason::Eos);
                } else if self.tokens.len() >= cfg.max_new_tokens {
                    self.finish = Some(FinishReason::MaxNewTokens);
                } else if self.prompt_len + self.tokens.len() >= limit {
                    self.finish = Some(FinishReason::ContextLimit);
                } else if self.loops.as_mut().is_some_and(|l| l.push(&self.tokens)) {
                    self.finish = Some(FinishReason::Loop);
                }
            }
        }
        if self.finish != Some(FinishReason::StopString) {
            self.refresh_text(tokenizer);
        }
        self.stream(cfg, on_text, row);
        kept
    }

    fn refresh_text(&mut self, tokenizer: Option<&TextTokenizer>) {
        if let Some(t) = tokenizer {
            // Special tokens (EOS) are skipped by the decoder; a decode error leaves the old text.
            if let Ok(s) = t.decode(&self.tokens) {
                self.text = s;
            }
        }
    }

    /// Sends new text, holding back an incomplete UTF-8 sequence and anything that could still
    /// grow into a stop string.
    fn stream(&mut self, cfg: &GenerationConfig, on_text: OnText<'_>, row: usize) {
        let mut end = self.text.len();
        if self.finish.is_none() {
            let complete = self.text.trim_end_matches('\u{FFFD}').len();
            end = complete;
            for s in &cfg.stop_strings {
                for (i, _) in s.char_indices().skip(1) {
                    if self.text[..complete].ends_with(&s[..i]) {
                        end = end.min(complete - i);
                    }
                }
            }
        }
        if end > self.streamed && self.text.is_char_boundary(end) {
            on_text(row, &self.text[self.streamed..end]);
            self.streamed = end;
        }
    }

    pub(super) fn into_output(self) -> RowOutput {
        RowOutput {
            prompt_tokens: self.prompt_len,
            tokens: self.tokens,
            text: self.text,
            finish: self.finish.unwrap_or(FinishReason::MaxNewTokens),
            loop_start: self.loops.as_ref().and_then(LoopTracker::loop_start),
        }
    }
}
