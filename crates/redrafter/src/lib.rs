//! ReDrafter speculative decoding on burn.
//!
//! [`decode`] holds the one generation loop; autoregressive decoding and ReDrafter are strategies
//! of it. Everything is generic over burn's `Backend`, so the same code runs on ndarray, flex,
//! wgpu and CUDA.

pub mod backends;
pub mod decode;
pub mod error;
pub mod sampling;

pub use decode::{Autoregressive, FinishReason, GenerationConfig, GenerationOutput, GenerationStats, Generator, Strategy};
pub use error::DecodeError;
pub use sampling::{SamplingConfig, Sampler};
