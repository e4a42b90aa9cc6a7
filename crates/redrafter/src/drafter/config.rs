//! The drafter's `config.json`, in the format of Apple's `DrafterConfig` (spec §1.6).

use serde::{Deserialize, Serialize};

use super::DrafterError;

/// Hyper-parameters of a recurrent drafter. Field names follow Apple's checkpoints, so a
/// `config.json` written by their trainer deserializes here and ours loads there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrafterConfig {
    /// Vocabulary of the LLM the drafter was trained for.
    pub vocab_size: usize,
    /// The LLM's hidden size H (also the RNN state size).
    pub hidden_size: usize,
    /// Width E of the residual head; an `input_proj` (C+H)→E exists iff E ≠ C + H, C being the
    /// context width ([`context_width`](Self::context_width), H unless `context_layers` is set).
    pub exit_dim: usize,
    /// Number N of residual blocks in the head.
    pub num_draft_layers: usize,
    /// SiLU recurrence (`true`) or a running sum of embeddings (`false`, Apple's trainer default).
    #[serde(default)]
    pub rnn: bool,
    /// Declared by Apple's config, never used.
    #[serde(default = "minus_one")]
    pub num_lookback_tokens: i64,
    /// MLX compatibility: an `emb_norm.weight` tensor may exist; it is never applied.
    #[serde(default)]
    pub emb_norm: bool,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Ours, not Apple's: the head ends in a projection E→H followed by the LLM's own (frozen)
    /// output embedding instead of an E→V matrix. Apple's code cannot load such a drafter.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tied_lm_head: bool,
    /// Ours, not Apple's: the drafter scores only K tokens, whose full-vocabulary ids are the
    /// checkpoint's `draft_vocab_ids` tensor (docs/drafter.md, "Reduced draft vocabulary").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_vocab_size: Option<usize>,
    /// Ours, not Apple's: the LLM layers (counted as layers applied, so the LLM's layer count is
    /// its own output) whose residual streams, each through the LLM's final norm and
    /// concatenated in this order, form the context the drafter reads instead of the last
    /// state alone (docs/drafter.md, "Context layers"). `None`: the last layer, Apple's h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_layers: Option<Vec<usize>>,
}

fn minus_one() -> i64 {
    -1
}

fn default_eps() -> f64 {
    1e-5
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl DrafterConfig {
    /// Apple's published recipe shape for an LLM of hidden size `hidden`: E = 2H, N = 2, RNN.
    pub fn for_llm(vocab_size: usize, hidden_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size,
            exit_dim: 2 * hidden_size,
            num_draft_layers: 2,
            rnn: true,
            num_lookback_tokens: -1,
            emb_norm: false,
            rms_norm_eps: 1e-5,
            tied_lm_head: false,
            draft_vocab_size: None,
            context_layers: None,
        }
    }

    pub fn with_tied_lm_head(mut self, tied: bool) -> Self {
        self.tied_lm_head = tied;
        self
    }

    /// Width C of the LLM context the drafter reads: H per context layer.
    pub fn context_width(&self) -> usize {
        self.hidden_size.saturating_mul(self.context_layers.as_ref().map_or(1, Vec::len))
    }

    /// Width of the head's input `concat(context, s)`: C + H.
    pub fn input_width(&self) -> usize {
        self.context_width().saturating_add(self.hidden_size)
    }

    /// The context layers for an LLM of `llm_layers` layers: its last alone unless set.
    pub fn context_layers_for(&self, llm_layers: usize) -> Vec<usize> {
        self.context_layers.clone().unwrap_or_else(|| vec![llm_layers])
    }

    pub fn has_input_proj(&self) -> bool {
        self.exit_dim != self.input_width()
    }

    /// Output width of the final projection: V (K with a draft vocabulary), or H for the tied head.
    pub fn head_out(&self) -> usize {
        if self.tied_lm_head { self.hidden_size } else { self.draft_vocab_size.unwrap_or(self.vocab_size) }
    }

    pub fn validate(&self) -> Result<(), DrafterError> {
        let bad = |what: &str| Err(DrafterError::InvalidConfig(what.to_string()));
        if self.vocab_size == 0 {
            return bad("vocab_size must be positive");
        }
        if self.hidden_size == 0 {
            return bad("hidden_size must be positive");
        }
        if self.exit_dim == 0 {
            return bad("exit_dim must be positive");
        }
        if let Some(layers) = &self.context_layers {
            if layers.is_empty() || layers.len() > 64 {
                return bad("context_layers must name between 1 and 64 layers");
            }
            if names_a_layer_twice(layers) {
                return bad("context_layers names a layer twice");
            }
        }
        if let Some(k) = self.draft_vocab_size {
            if k == 0 || k > self.vocab_size {
                return Err(DrafterError::InvalidConfig(format!(
                    "draft_vocab_size {k} must be between 1 and vocab_size {}",
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// The JSON Apple's `save_pretrained` writes, plus our own keys.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain struct serializes");
        let m = v.as_object_mut().expect("struct is an object");
        m.insert("model_type".into(), "recurrent_drafting_drafter".into());
        m.insert("architectures".into(), serde_json::json!(["Drafter"]));
        m.insert("torch_dtype".into(), "float32".into());
        v
    }

    /// Number of trainable parameters, saturating: a `config.json` may hold absurd sizes, and the
    /// memory budget must see them as huge rather than wrapped around.
    pub fn num_parameters(&self) -> u128 {
        use redrafter_io::budget::product;
        let (h, e, n) = (self.hidden_size as u128, self.exit_dim as u128, self.num_draft_layers as u128);
        let rnn = if self.rnn { product(&[2, h, h]).saturating_add(h) } else { 0 };
        let proj = if self.has_input_proj() { product(&[self.input_width() as u128, e]).saturating_add(e) } else { 0 };
        let blocks = product(&[n, product(&[e, e]).saturating_add(e)]);
        rnn.saturating_add(proj).saturating_add(blocks).saturating_add(product(&[e, self.head_out() as u128]))
    }
}

/// Whether a list of LLM layers names one twice: the drafter's context layers and the trainer's
/// feature layers both index a row by layer, so each must be distinct.
pub fn names_a_layer_twice(layers: &[usize]) -> bool {
    let mut sorted = layers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() != layers.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_spec_table() {
        // Spec §1.5: Vicuna 7B, N = 2, RNN: 429,936,640.
        assert_eq!(DrafterConfig::for_llm(32000, 4096).num_parameters(), 429_936_640);
        let no_rnn = DrafterConfig { rnn: false, num_draft_layers: 1, ..DrafterConfig::for_llm(32000, 4096) };
        assert_eq!(no_rnn.num_parameters(), 329_261_056);
    }

    #[test]
    fn apple_config_json_parses() {
        let j = r#"{"architectures":["Drafter"],"exit_dim":8192,"hidden_size":4096,"model_type":"recurrent_drafting_drafter",
                   "num_draft_layers":2,"num_lookback_tokens":-1,"rnn":true,"torch_dtype":"float32",
                   "transformers_version":"4.41.2","vocab_size":32000}"#;
        let c: DrafterConfig = serde_json::from_str(j).unwrap();
        assert_eq!(c, DrafterConfig::for_llm(32000, 4096));
        let back: DrafterConfig = serde_json::from_value(c.to_json()).unwrap();
        assert_eq!(back, c);
        assert!(c.to_json().get("tied_lm_head").is_none(), "Apple's keys only for Apple's layout");
    }

    #[test]
    fn context_layers_must_be_distinct_in_any_order() {
        assert!(!names_a_layer_twice(&[30, 10, 20]));
        assert!(names_a_layer_twice(&[10, 20, 10]));
        let with = |layers: Vec<usize>| DrafterConfig { context_layers: Some(layers), ..DrafterConfig::for_llm(64, 8) };
        assert!(with(vec![30, 10, 20]).validate().is_ok());
        let err = with(vec![10, 20, 10]).validate().unwrap_err().to_string();
        assert!(err.contains("names a layer twice"), "{err}");
        assert!(with(vec![]).validate().is_err());
    }
}
