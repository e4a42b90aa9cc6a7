use redrafter_io::IoError;
use redrafter_llama::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Drafter(#[from] crate::drafter::DrafterError),
    #[error("draft source broke its contract: {0}")]
    Draft(String),
    #[error("the device failed: {0}")]
    Device(String),
    #[error("backend `{backend}` cannot start ({why}). {fix}")]
    BackendUnavailable { backend: &'static str, why: String, fix: &'static str },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("prompt {row} has {len} tokens, but the context holds {limit} (at least one position must stay free to generate)")]
    PromptTooLong { row: usize, len: usize, limit: usize },
    #[error("prompt {row} is empty")]
    EmptyPrompt { row: usize },
    #[error("prompt {row} contains token id {id}, outside the vocabulary of {vocab}")]
    TokenOutOfRange { row: usize, id: u32, vocab: usize },
}
