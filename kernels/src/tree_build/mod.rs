//! Prefix dedup / tree build (spec §3, kernel decomposition §3.10): the W beams of each row
//! become the packed block the verification forward reads (tokens, positions, ancestor bitsets)
//! and the unpack map acceptance reads, with no host round trip on a cubecl backend.
//!
//! Row `b` holds its `packed_len[b]` real nodes first, then filler slots up to N (the row's first
//! token at the committed position, seeing only itself), which the attention skips and the caller
//! never commits. The kernel fixes N = W·L, so no shape depends on the data and nothing has to be
//! read back to size the block; the host reference, which reads the beams back anyway, uses the
//! longest row's node count. Callers read N off the tensors.

pub mod reference;
#[cfg(feature = "cube")]
pub(crate) mod kernel;

pub use reference::PackedTree;

use burn::tensor::backend::Backend;
use burn::tensor::ops::IntTensor;
use burn::tensor::{Int, Tensor};

/// The built tree of every row, on the device: N slots per row, N ≥ every row's node count
/// (W·L from the kernel, the longest row from the reference).
#[derive(Debug, Clone)]
pub struct DeviceTree<B: Backend> {
    /// [B, N] packed tokens (fillers: the row's first beam token).
    pub tokens: Tensor<B, 2, Int>,
    /// [B, N] positions: committed length + depth (fillers: the committed length).
    pub positions: Tensor<B, 2, Int>,
    /// [B, N, words(N)] ancestor bitsets ([`crate::bits`]); fillers see only themselves.
    pub mask: Tensor<B, 3, Int>,
    /// [B, W, L] packed index of each beam position.
    pub unpack: Tensor<B, 3, Int>,
    /// [B] real packed nodes per row.
    pub packed_len: Tensor<B, 1, Int>,
}

/// `beams` [B, W, L] token ids (W, L ≥ 1); `lens` [B] committed lengths. The default is the host
/// reference ([`reference::tree_build`]); `CubeBackend` builds on the device in two launches.
pub trait TreeBuildOps: Backend {
    fn tree_build(beams: IntTensor<Self>, lens: IntTensor<Self>) -> DeviceTree<Self> {
        reference::tree_build(Tensor::from_primitive(beams), Tensor::from_primitive(lens))
    }
}

/// Tensor-level entry point of [`TreeBuildOps::tree_build`].
pub fn tree_build<B: TreeBuildOps>(beams: Tensor<B, 3, Int>, lens: Tensor<B, 1, Int>) -> DeviceTree<B> {
    let [rows, w, l] = beams.dims();
    assert!(w > 0 && l > 0, "a tree needs at least one beam of one token");
    assert_eq!(lens.dims(), [rows], "one committed length per row");
    if !crate::fused() {
        return reference::tree_build(beams, lens);
    }
    B::tree_build(beams.into_primitive(), lens.into_primitive())
}
