//! What one generation request asks of memory, checked against the budget
//! (`redrafter_io::budget`) before the KV cache or a step's workspace is allocated: a
//! `--beam-width 100000`, a batch of thousands of rows or a context of billions of positions ends
//! in an error that states the bytes, never in the kernel's OOM killer.

use redrafter_io::budget::{self, OverBudget, product};
use redrafter_llama::LlamaConfig;

/// The size of one step of a strategy, per active row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    /// Tokens each row feeds to the LLM in one forward (1 for autoregressive, the tree for ReDrafter).
    pub tokens: usize,
    /// Vocabulary-wide rows each row needs besides the LLM's logits of those tokens (a drafter's
    /// logits per beam, their warped copy).
    pub draft_logits: usize,
}

impl StepShape {
    pub const AUTOREGRESSIVE: Self = Self { tokens: 1, draft_logits: 0 };
}

/// Bytes of the large buffers of one forward of `rows` × `tokens` new tokens over `keys` keys
/// with logits for every new token: the logits, the MLP and attention activations, and one
/// layer's attention scores (layers run one after another). f32 throughout.
pub fn forward_bytes(c: &LlamaConfig, rows: usize, tokens: usize, keys: usize, logits: bool) -> u128 {
    let (rows, tokens) = (rows as u128, tokens as u128);
    let width = (c.intermediate_size as u128).saturating_mul(3).saturating_add((c.hidden_size as u128).saturating_mul(8));
    let per_token = if logits { width.saturating_add(c.vocab_size as u128) } else { width };
    let activations = product(&[rows, tokens, per_token, 4]);
    let scores = product(&[rows, c.num_heads as u128, tokens, keys as u128, 4]);
    activations.saturating_add(scores)
}

/// Checks the KV cache, the prefill and the larger of the steps of a generation of `rows` rows
/// (longest prompt `longest`, cache `capacity` positions) against the memory budget.
pub fn check(c: &LlamaConfig, rows: usize, longest: usize, capacity: usize, step: StepShape) -> Result<(), OverBudget> {
    let kv = c.kv_cache_bytes(rows, capacity);
    let prefill = forward_bytes(c, rows, longest, longest, false);
    let tree = forward_bytes(c, rows, step.tokens, capacity.saturating_add(step.tokens), true);
    let draft = product(&[rows as u128, step.draft_logits as u128, c.vocab_size as u128, 4 * 2]);
    let workspace = prefill.max(tree.saturating_add(draft));
    budget::check(
        format_args!(
            "generating {rows} row(s) of up to {capacity} positions with {} token(s) per step \
             (KV cache {}, workspace {})",
            step.tokens,
            budget::human(kv),
            budget::human(workspace)
        ),
        kv.saturating_add(workspace),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_beam_is_refused_and_a_normal_one_is_not() {
        let smollm2 = LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            max_position_embeddings: 8192,
            ..LlamaConfig::tiny(49152)
        };
        let gib = 1u64 << 30;
        budget::scoped(4 * gib, || {
            assert!(check(&smollm2, 1, 40, 296, StepShape { tokens: 3, draft_logits: 1 }).is_ok());
            assert!(check(&smollm2, 64, 200, 456, StepShape { tokens: 12, draft_logits: 4 }).is_ok());
            let e = check(&smollm2, 1, 40, 296, StepShape { tokens: 300_000, draft_logits: 100_000 }).unwrap_err();
            assert!(e.to_string().contains("300000 token(s) per step") && e.bytes > 4 * gib as u128, "{e}");
            // Sizes that overflow u64 saturate instead of wrapping into a small request.
            assert!(check(&smollm2, usize::MAX, usize::MAX, usize::MAX, StepShape::AUTOREGRESSIVE).is_err());
        });
    }
}
