//! Command-line options shared by the binaries that decode (`redrafter generate`,
//! `redrafter distill-data`, `mt_bench`), declared once so their names, defaults and help agree.

use redrafter::{Acceptance, SamplingConfig};

/// How the LLM's next token is chosen: greedily (temperature 0, the default) or sampled.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sample at this temperature instead of decoding greedily (0, the default).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// With --temperature: sample only among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// With --temperature: nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed. Every request draws from its own stream derived from this seed and the
    /// request's index (in distill-data: its conversation id, so an answer does not depend on its
    /// batch, its shard or where a run was resumed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The decoding loop's sampling configuration, with `acceptance` for sampled ReDrafter steps.
    pub fn config(&self, acceptance: Acceptance) -> SamplingConfig {
        SamplingConfig { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, seed: self.seed, acceptance }
    }
}
