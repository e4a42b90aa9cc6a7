use serde::Serialize;

/// Numbers about one generation call, also written as `stats` in the CLI's `--json` output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerationStats {
    pub strategy: String,
    pub batch_size: usize,
    pub prompt_tokens: usize,
    /// Tokens in the outputs (the first token of each row comes from prefill).
    pub new_tokens: usize,
    /// Model forward passes after prefill (each verifies every active row once).
    pub steps: usize,
    /// Sum over steps of the rows active in it.
    pub row_steps: usize,
    /// Tokens the steps committed, before cutting at stop conditions.
    pub committed_in_steps: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// New tokens / (prefill + decode) seconds.
    pub tokens_per_second: f64,
    /// Tokens committed by decode steps / decode seconds.
    pub decode_tokens_per_second: f64,
    /// Mean tokens committed per row per verification step (1 for autoregressive decoding).
    pub tau: f64,
    /// Seconds per phase of a step, in the order the strategy reports them.
    pub phase_seconds: Vec<(String, f64)>,
}

impl GenerationStats {
    pub fn new(strategy: String, batch_size: usize) -> Self {
        Self { strategy, batch_size, ..Default::default() }
    }

    pub fn add_phase(&mut self, name: &str, seconds: f64) {
        match self.phase_seconds.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += seconds,
            None => self.phase_seconds.push((name.to_string(), seconds)),
        }
    }

    pub(super) fn finish(&mut self) {
        let total = self.prefill_seconds + self.decode_seconds;
        self.tokens_per_second = if total > 0.0 { self.new_tokens as f64 / total } else { 0.0 };
        self.decode_tokens_per_second =
            if self.decode_seconds > 0.0 { self.committed_in_steps as f64 / self.decode_seconds } else { 0.0 };
        self.tau = if self.row_steps > 0 { self.committed_in_steps as f64 / self.row_steps as f64 } else { 0.0 };
    }
}
