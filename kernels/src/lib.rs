//! Fused ops of the ReDrafter step, in burn's custom-kernel pattern.
//!
//! Each op is a backend-extension trait whose default method is the reference: the same
//! computation written with plain burn tensor ops, so it runs on every backend. `CubeBackend<R, ..>`
//! overrides it with a `#[cube]` kernel that compiles for any cubecl runtime (CUDA, wgpu on
//! Vulkan / Metal / DX12). The model and the decoding loop are generic over [`KernelBackend`], so a
//! cubecl backend takes the kernels and the CPU backends the reference, with no code change.
//!
//! * [`tree_attention`]: packed tree queries over per-row committed keys plus the tree block
//!   under an ancestor bitset, grouped-query heads, online softmax.
//! * [`kv_relocate`]: per-row copy of the accepted block entries into the cache, in place.

pub mod bits;
pub mod kv_relocate;
pub mod tree_attention;

mod backends;
#[cfg(feature = "cube")]
mod cube;

pub use bits::{pack_mask, WORD_BITS};
pub use kv_relocate::{KvRelocateOps, kv_relocate};
pub use tree_attention::{TreeAttentionOps, tree_attention};

/// Every op of this crate; what the model and the decoding loop require of a backend.
pub trait KernelBackend: TreeAttentionOps + KvRelocateOps {}

impl<B: TreeAttentionOps + KvRelocateOps> KernelBackend for B {}
