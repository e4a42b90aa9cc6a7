//! A Llama-family causal language model on burn, generic over any `Backend`.
//!
//! The forward pass takes a block of tokens per row with explicit positions and a block mask, so
//! the same model serves prefill, autoregressive steps and ReDrafter's packed token trees; the
//! [`KvCache`] keeps per-row lengths and commits only the block entries the caller keeps.

pub mod attention;
pub mod cache;
pub mod config;
pub mod error;
pub mod load;
pub mod model;
pub mod projection;
pub mod rope;
#[cfg(feature = "testing")]
pub mod testing;
pub mod torch_layout;
pub mod weight_arena;

pub use attention::BlockInput;
pub use redrafter_kernels::KernelBackend;
pub use cache::KvCache;
pub use config::{LlamaConfig, RopeScaling};
pub use error::ModelError;
pub use load::{LoadedModel, load, load_gguf, load_hf_dir, load_with};
pub use model::{Llama, ModelOutput};
pub use projection::{BlockLinear, Projection, WeightFormat};
