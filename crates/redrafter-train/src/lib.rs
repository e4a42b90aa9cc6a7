//! Training ReDrafter drafters on any burn autodiff backend (spec §6): conversations or text,
//! features from the frozen LLM, the summed per-step cross-entropy, AdamW with warm-up and cosine
//! decay, gradient accumulation, checkpoints with exact resume, held-out top-k accuracy, plots.

pub mod context_attention;
pub mod data;
pub mod features;
pub mod loss;
pub mod plot;
pub mod schedule;
pub mod trainer;

use redrafter::DrafterError;
use redrafter_io::IoError;

pub use data::{Corpus, Example, read_corpus, tokenize_conversation, tokenize_text};
pub use features::{CacheMeta, HiddenCache, HiddenCaches, cache_key, fill_cache};
pub use context_attention::{ContextAttention, ContextAttentionConfig};
pub use trainer::{LogLine, Targets, TrainConfig, Trainer, evaluate, evaluate_with, saved_context_attention};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Drafter(#[from] DrafterError),
    #[error("training data: {0}")]
    Data(String),
    #[error("training config: {0}")]
    Config(String),
}
