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
//! * [`tree_build`]: prefix dedup of each row's beams into the packed tree block (tokens,
//!   positions, ancestor bitsets, unpack map) in two launches, at a fixed W·L slots per row.
//! * [`warp_top_k`]: the drafter's top-50 warp, log-softmax and best `k` tokens per row.
//! * [`beam_merge`]: one beam-search expansion, the W best children per batch row.
//! * [`rotary`]: rotary position embedding at explicit per-token positions (a host pass on
//!   Flex; the reference's elementwise ops elsewhere).
//! * [`swiglu`]: the MLP's `silu(gate) · up` (one vector pass on Flex).
//! * [`skinny_matmul`]: projections and the vocabulary head for the few token rows of a decode,
//!   verification or draft step; a weight-streaming host kernel on Flex (CPU).
//! * [`block_matmul`]: the same products against weights kept in their GGUF block formats
//!   (Q8_0, Q4_0, Q4_1, F16, BF16), unpacked in registers by host kernels.
//!
//! Setting `REDRAFTER_KERNELS=reference` in the environment (or calling [`set_fused`]) sends
//! every op to its reference on every backend: for debugging a kernel, and for measuring what
//! the kernels buy in a whole decoding step.

pub mod beam_merge;
pub mod block_matmul;
pub mod huge_pages;
pub mod bits;
pub mod kv_relocate;
pub mod rotary;
pub mod skinny_matmul;
pub mod swiglu;
pub mod tree_attention;
pub mod tree_build;
pub mod warp_top_k;

mod backends;
mod simd;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cube")]
mod order_key;
mod setting;
#[cfg(feature = "fusion")]
mod fusion;
pub mod runtimes;

pub use beam_merge::{BeamMergeOps, Merged, beam_merge};
pub use block_matmul::{BlockMatmulOps, BlockMatrix, BlockMatrixError, block_matmul, block_matmul_prefill};
pub use bits::{pack_mask, WORD_BITS};
pub use kv_relocate::{KvRelocateOps, kv_relocate};
pub use rotary::{RotaryOps, rotary};
pub use skinny_matmul::{SkinnyMatmulOps, prefill_matmul, skinny_matmul};
pub use swiglu::{SwigluOps, swiglu};
pub use tree_attention::{TreeAttentionOps, tree_attention};
pub use tree_build::{DeviceTree, PackedTree, TreeBuildOps, tree_build};
pub use warp_top_k::{WarpTopKOps, warp_top_k};

/// Every op of this crate; what the model and the decoding loop require of a backend.
pub trait KernelBackend:
    TreeAttentionOps + KvRelocateOps + RotaryOps + SwigluOps + SkinnyMatmulOps + BlockMatmulOps + TreeBuildOps + WarpTopKOps + BeamMergeOps
{
}

impl<B> KernelBackend for B where
    B: TreeAttentionOps + KvRelocateOps + RotaryOps + SwigluOps + SkinnyMatmulOps + BlockMatmulOps + TreeBuildOps + WarpTopKOps + BeamMergeOps
{
}

static FUSED: setting::Setting = setting::Setting::new();

/// Whether the ops run their kernels (the default) or their references. Decided on first use
/// from `REDRAFTER_KERNELS` (`reference` selects the references) unless [`set_fused`] was called.
pub fn fused() -> bool {
    FUSED.get(|| usize::from(!std::env::var("REDRAFTER_KERNELS").is_ok_and(|v| v.eq_ignore_ascii_case("reference")))) == 1
}

/// Process-wide choice between kernels (`true`) and references (`false`) for every op.
pub fn set_fused(on: bool) {
    FUSED.set(usize::from(on));
}
