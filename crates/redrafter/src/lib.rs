//! ReDrafter speculative decoding on burn.
//!
//! [`decode`] holds the one generation loop; autoregressive decoding and ReDrafter are strategies
//! of it. Everything is generic over burn's `Backend`, so the same code runs on ndarray, flex,
//! wgpu and CUDA.

pub mod accept;
pub mod backends;
pub mod beam;
pub mod decode;
pub mod drafter;
pub mod error;
pub mod sampling;
pub mod tree;

pub use decode::{Autoregressive, BeamConfig, DraftSource, Drafts, ReDrafter, StepRecord, FinishReason, GenerationConfig, LoopStop, LookupFirst, PromptLookup, GenerationOutput, GenerationStats, Generator, Strategy};
pub use drafter::{Drafter, DrafterConfig, DrafterError, load_drafter, save_drafter};
pub use error::DecodeError;
pub use redrafter_llama::KernelBackend;
pub use sampling::{Acceptance, SamplingConfig, Sampler};
