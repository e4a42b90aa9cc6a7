use redrafter_io::IoError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("architecture `{0}` is not supported (supported: llama and Llama-family models: llama, mistral-style llama GGUFs)")]
    UnsupportedArchitecture(String),
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("{path}: {what}")]
    Format { path: String, what: String },
    #[error("row {row}: {needed} positions are needed but the context holds {limit}")]
    ContextOverflow { row: usize, needed: usize, limit: usize },
    #[error("invalid input: {0}")]
    InvalidInput(String),
}
