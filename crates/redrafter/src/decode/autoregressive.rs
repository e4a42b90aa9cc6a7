//! Plain autoregressive decoding: each step feeds every row's pending token and commits it.

use std::time::Instant;

use burn::tensor::Tensor;
use redrafter_llama::{BlockInput, KernelBackend, Llama};

use super::{DecodeState, GenerationStats, Strategy, sample_rows};
use crate::error::DecodeError;
use crate::sampling::Sampler;

#[derive(Debug, Default, Clone, Copy)]
pub struct Autoregressive;

impl<B: KernelBackend> Strategy<B> for Autoregressive {
    fn name(&self) -> String {
        "autoregressive".into()
    }

    fn step(
        &mut self,
        model: &Llama<B>,
        state: &mut DecodeState<B>,
        sampler: &mut Sampler,
        stats: &mut GenerationStats,
    ) -> Result<Vec<Vec<u32>>, DecodeError> {
        let t0 = Instant::now();
        let n = state.rows.len();
        let device = state.hidden.device();
        let tokens: Vec<i64> = state.pending.iter().map(|&t| t as i64).collect();
        let positions: Vec<i64> = state.cache.lens().iter().map(|&l| l as i64).collect();
        let input = BlockInput::from_host(tokens, positions, vec![true; n], n, 1, &device);
        let hidden = model.forward_hidden(&input, &mut state.cache);
        state.cache.commit(&vec![vec![0]; n])?;
        let hidden: Tensor<B, 2> = hidden.reshape([n, model.config().hidden_size]);
        let logits = model.logits(hidden.clone());
        let next = sample_rows(&logits, sampler, &state.rows);
        state.hidden = hidden;
        state.pending = next.clone();
        stats.end_phase::<B>("forward", t0, &device)?;
        Ok(next.into_iter().map(|t| vec![t]).collect())
    }
}
