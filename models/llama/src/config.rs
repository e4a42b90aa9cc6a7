use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// How RoPE frequencies are stretched for long context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum RopeScaling {
    #[default]
    None,
    /// Positions divided by `factor` (GGUF `rope.scaling.type = linear`).
    Linear { factor: f64 },
    /// Llama 3.1 style piecewise frequency scaling (HF `rope_type = "llama3"`).
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
    /// Per-frequency divisors, as llama.cpp stores Llama 3.1 scaling in GGUF (`rope_freqs.weight`).
    FreqFactors(Vec<f32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::InvalidConfig(what));
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return bad(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!("head_dim ({}) must be even for RoPE", self.head_dim));
        }
        if !(self.rope_theta > 0.0) || !(self.rms_norm_eps > 0.0) {
            return bad("rope_theta and rms_norm_eps must be positive".into());
        }
        if let RopeScaling::FreqFactors(f) = &self.rope_scaling
            && f.len() != self.head_dim / 2
        {
            return bad(format!("rope_freqs has {} entries, expected head_dim/2 = {}", f.len(), self.head_dim / 2));
        }
        Ok(())
    }

    /// Number of weights, saturating (a config read from a file may hold absurd sizes; the
    /// memory budget then refuses it instead of an overflow wrapping to a small number).
    pub fn num_parameters(&self) -> u128 {
        use redrafter_io::budget::product;
        let (v, h, i) = (self.vocab_size as u128, self.hidden_size as u128, self.intermediate_size as u128);
        let (qd, kvd) = (product(&[self.num_heads as u128, self.head_dim as u128]), product(&[self.num_kv_heads as u128, self.head_dim as u128]));
        let attn = product(&[h, qd]).saturating_mul(2).saturating_add(product(&[h, kvd]).saturating_mul(2));
        let layer = attn.saturating_add(product(&[h, i, 3])).saturating_add(2 * h);
        let heads = if self.tie_word_embeddings { 1 } else { 2 };
        product(&[self.num_layers as u128, layer]).saturating_add(product(&[heads, v, h])).saturating_add(h)
    }

    /// Bytes of the RoPE tables (cos and sin, f32, every position).
    pub fn rope_bytes(&self) -> u128 {
        redrafter_io::budget::product(&[self.max_position_embeddings as u128, self.head_dim as u128, 4])
    }

    /// Bytes of an f32 KV cache for `rows` rows of `capacity` positions.
    pub fn kv_cache_bytes(&self, rows: usize, capacity: usize) -> u128 {
        redrafter_io::budget::product(&[
            self.num_layers as u128,
            2,
            rows as u128,
            self.num_kv_heads as u128,
            self.head_dim as u128,
            capacity as u128,
            4,
        ])
    }

    /// Query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// A small configuration for tests and examples.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 256,
            tie_word_embeddings: true,
        }
    }
}
