//! Dynamic tree attention's data (spec §3). The host build, [`PackedTree`], lives with its device
//! kernel in `redrafter-kernels` (`tree_build`); this module turns it into the verification
//! forward's input.

use burn::tensor::backend::Backend;
pub use redrafter_kernels::tree_build::{DeviceTree, PackedTree};
use redrafter_llama::BlockInput;

/// The verification forward's input: packed tokens at tree positions under the tree mask.
pub fn block_input<B: Backend>(tree: &PackedTree, committed: &[usize], device: &B::Device) -> BlockInput<B> {
    let tokens = tree.tokens.iter().map(|&t| t as i64).collect();
    BlockInput::from_host(tokens, tree.positions(committed), tree.ancestor_mask(), tree.rows, tree.max_packed, device)
}
