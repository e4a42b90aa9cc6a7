use std::path::PathBuf;

/// Everything that can go wrong while reading model files, tokenizers and downloads.
///
/// Every variant names the file, tensor or key at fault so that a user can act on the message.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a GGUF file (magic bytes {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (only versions 2 and 3 are)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path} is truncated: {what}")]
    Truncated { path: PathBuf, what: String },
    #[error("{path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: tensor `{tensor}` has type {dtype}, which is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")]
    UnsupportedTensorType { path: PathBuf, tensor: String, dtype: String },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: metadata key `{key}` is missing or has the wrong type")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{path}: {what}")]
    Safetensors { path: PathBuf, what: String },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("download of {what} failed: {why}")]
    Download { what: String, why: String },
    #[error(transparent)]
    OverBudget(#[from] crate::budget::OverBudget),
    #[error("{path}: sha256 is {found}, expected {expected}")]
    Checksum { path: PathBuf, expected: String, found: String },
}

pub type Result<T> = std::result::Result<T, IoError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IoError {
    let path = path.into();
    move |source| IoError::Io { path, source }
}
