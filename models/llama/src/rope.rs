//! Rotary position embeddings with explicit per-token positions (tree tokens are not contiguous).
//!
//! Uses the "rotate half" pairing of Hugging Face Llama: dimension i rotates with i + d/2. GGUF
//! files store Q/K rows permuted for llama.cpp's interleaved pairing; the loader undoes that, so
//! one rotation serves both formats.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::{LlamaConfig, RopeScaling};

#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// [max_positions, head_dim / 2]
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

pub fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64)).collect();
    match &cfg.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::FreqFactors(div) => base.iter().zip(div).map(|(f, d)| f / *d as f64).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old = *original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl<B: Backend> Rope<B> {
    pub fn new(cfg: &LlamaConfig, device: &B::Device) -> Self {
        let inv = inverse_frequencies(cfg);
        let half = inv.len();
        let n = cfg.max_position_embeddings;
        // f32 products, as the reference implementations compute them.
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in &inv {
                let angle = (p as f32) * (*f as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [n, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [n, half]), device),
        }
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }
}

impl<B: redrafter_kernels::RotaryOps> Rope<B> {
    /// `x`: [B, heads, T, head_dim]; `positions`: [B, T]. A fused op (`redrafter_kernels::rotary`).
    pub fn apply(&self, x: Tensor<B, 4>, positions: &Tensor<B, 2, Int>) -> Tensor<B, 4> {
        redrafter_kernels::rotary(x, self.cos.clone(), self.sin.clone(), positions.clone())
    }
}
