use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::error::DecodeError;

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
    /// Whether every phase ended with a device sync (`GenerationConfig::sync_phases`): then phase
    /// times are device times; otherwise host times, with asynchronous device work counted in the
    /// phase that waited for it.
    pub synced_phases: bool,
    /// Speculative strategies: for draft position k = 1, 2, ..., the fraction of row-steps that
    /// offered a token at k whose accepted run reached k.
    pub acceptance_by_position: Vec<f64>,
    /// Speculative strategies: drafted tokens accepted per row-step (τ − 1).
    pub mean_accepted: f64,
    /// Speculative strategies: drafted tokens offered for verification per row-step (L − 1, or
    /// less with an adaptive draft length or near the end of the context).
    pub mean_offered: f64,
    /// Real packed tree tokens / beam-grid tokens (W·L), over all verification steps.
    pub tree_compression: f64,
    pub packed_tokens: usize,
    pub grid_tokens: usize,
    /// Speculative strategies: `accepted_counts[k]` = row-steps that accepted exactly k drafts.
    pub accepted_counts: Vec<usize>,
    /// Sampling with top-p on the device: tree nodes whose nucleus ran past its candidates and
    /// was finished on the host (`accept::device::NUCLEUS_CANDIDATES`), of `device_nodes`.
    pub nodes_finished_on_host: usize,
    /// Tree nodes whose acceptance draws were computed on the device (`accept::device`).
    pub device_nodes: usize,
    /// Speculative strategies: for draft position k = 1, 2, ..., the row-steps that offered a
    /// token at k (the denominators of `acceptance_by_position`, so that calls can be pooled
    /// exactly when the draft length varies).
    pub offered_by_position: Vec<usize>,
    /// ... and the row-steps whose accepted run reached k (the numerators).
    pub accepted_by_position: Vec<usize>,
    /// Copy-first drafting ([`LookupFirst`](super::LookupFirst)): the row-steps whose first beam
    /// was a copy of the row's context (0 for other sources).
    pub copied_row_steps: usize,
    /// ... per draft position k, those of them that offered a token at k, and (next) those whose
    /// accepted run, on whichever beam, reached k: [`offered_by_position`](Self::offered_by_position)
    /// and [`accepted_by_position`](Self::accepted_by_position) restricted to copying rows (the
    /// drafter's rows are the difference).
    pub copy_offered_by_position: Vec<usize>,
    pub copy_accepted_by_position: Vec<usize>,
    /// ... and their ratio, as [`acceptance_by_position`](Self::acceptance_by_position).
    pub copy_acceptance_by_position: Vec<f64>,
    #[serde(skip)]
    accepted_total: usize,
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

    /// Ends the phase `name` begun at `start`, after waiting for `device` if phases are synced.
    pub fn end_phase<B: Backend>(&mut self, name: &str, start: Instant, device: &B::Device) -> Result<(), DecodeError> {
        if self.synced_phases {
            B::sync(device).map_err(|e| DecodeError::Device(format!("{e:?}")))?;
        }
        self.add_phase(name, start.elapsed().as_secs_f64());
        Ok(())
    }

    /// One row-step of a speculative strategy: `offered` drafted positions, `accepted` of them.
    pub fn record_acceptance(&mut self, accepted: usize, offered: usize) {
        count_run(&mut self.offered_by_position, &mut self.accepted_by_position, accepted, offered);
        self.accepted_total += accepted;
        if self.accepted_counts.len() <= accepted {
            self.accepted_counts.resize(accepted + 1, 0);
        }
        self.accepted_counts[accepted] += 1;
    }

    /// A row-step whose first beam was a copy (also recorded by [`record_acceptance`](Self::record_acceptance)).
    pub fn record_copy_acceptance(&mut self, accepted: usize, offered: usize) {
        self.copied_row_steps += 1;
        count_run(&mut self.copy_offered_by_position, &mut self.copy_accepted_by_position, accepted, offered);
    }

    pub fn record_tree(&mut self, packed: usize, grid: usize) {
        self.packed_tokens += packed;
        self.grid_tokens += grid;
    }

    pub(super) fn finish(&mut self) {
        let ratios = |a: &[usize], o: &[usize]| -> Vec<f64> {
            a.iter().zip(o).map(|(&a, &o)| if o > 0 { a as f64 / o as f64 } else { 0.0 }).collect()
        };
        self.acceptance_by_position = ratios(&self.accepted_by_position, &self.offered_by_position);
        self.copy_acceptance_by_position = ratios(&self.copy_accepted_by_position, &self.copy_offered_by_position);
        self.mean_accepted = if self.row_steps > 0 { self.accepted_total as f64 / self.row_steps as f64 } else { 0.0 };
        let offered: usize = self.offered_by_position.iter().sum();
        self.mean_offered = if self.row_steps > 0 { offered as f64 / self.row_steps as f64 } else { 0.0 };
        self.tree_compression = if self.grid_tokens > 0 { self.packed_tokens as f64 / self.grid_tokens as f64 } else { 0.0 };
        let total = self.prefill_seconds + self.decode_seconds;
        self.tokens_per_second = if total > 0.0 { self.new_tokens as f64 / total } else { 0.0 };
        self.decode_tokens_per_second =
            if self.decode_seconds > 0.0 { self.committed_in_steps as f64 / self.decode_seconds } else { 0.0 };
        self.tau = if self.row_steps > 0 { self.committed_in_steps as f64 / self.row_steps as f64 } else { 0.0 };
    }
}

/// One row-step's run in per-position counts: positions `0..offered` offered, `0..accepted`
/// (at most `offered`) accepted; the vectors grow to the longest step.
fn count_run(offered_by: &mut Vec<usize>, accepted_by: &mut Vec<usize>, accepted: usize, offered: usize) {
    if offered_by.len() < offered {
        offered_by.resize(offered, 0);
        accepted_by.resize(offered, 0);
    }
    offered_by[..offered].iter_mut().for_each(|o| *o += 1);
    accepted_by[..accepted].iter_mut().for_each(|a| *a += 1);
}
