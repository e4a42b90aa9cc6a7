//! Dynamic tree attention's data (spec §3). The builds (the host [`PackedTree`] and the device
//! kernel) live in `redrafter-kernels` (`tree_build`); this module calls the op for the decoding
//! step and keeps the host's view of the result.

use burn::tensor::{Int, Tensor, TensorData};
pub use redrafter_kernels::tree_build::{DeviceTree, PackedTree};
use redrafter_llama::KernelBackend;

/// Builds the tree of `beams` [rows, W, L] on the device for rows with `committed` cached tokens.
pub fn tree_build<B: KernelBackend>(beams: Tensor<B, 3, Int>, committed: &[usize], device: &B::Device) -> DeviceTree<B> {
    let lens: Vec<i64> = committed.iter().map(|&l| l as i64).collect();
    let lens = Tensor::<B, 1, Int>::from_data(TensorData::new(lens, [committed.len()]), device);
    redrafter_kernels::tree_build(beams, lens)
}

/// What acceptance and the KV commit read of a built tree, on the host: the unpack map and the
/// node count of every row, for a block of `slots` slots per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeIndex {
    pub width: usize,
    pub len: usize,
    /// Slots per row of the verified block (the longest row, or W·L on the device build).
    pub slots: usize,
    /// [rows, W, L] packed index of each beam position.
    pub unpack: Vec<usize>,
    /// Real packed nodes per row.
    pub packed_len: Vec<usize>,
}

impl TreeIndex {
    /// Packed index of beam `i`'s position `k` in row `r`.
    pub fn node(&self, r: usize, i: usize, k: usize) -> usize {
        self.unpack[(r * self.width + i) * self.len + k]
    }
}

impl From<&PackedTree> for TreeIndex {
    fn from(t: &PackedTree) -> Self {
        Self { width: t.width, len: t.len, slots: t.max_packed, unpack: t.unpack.clone(), packed_len: t.packed_len.clone() }
    }
}
