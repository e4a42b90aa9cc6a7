//! The kernels behind the ops for every cubecl runtime (CUDA, wgpu, ...).

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn_cubecl::element::BoolElement;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};

use burn::tensor::Tensor;

use crate::tree_build::DeviceTree;
use crate::{KvRelocateOps, SkinnyMatmulOps, TreeAttentionOps, TreeBuildOps, kv_relocate, tree_attention, tree_build};

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TreeAttentionOps for CubeBackend<R, F, I, BT> {
    fn tree_attention(
        q: FloatTensor<Self>,
        committed: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        lens: IntTensor<Self>,
        kb: FloatTensor<Self>,
        vb: FloatTensor<Self>,
        bits: IntTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        tree_attention::kernel::launch(q, committed, lens, kb, vb, bits, scale)
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> KvRelocateOps for CubeBackend<R, F, I, BT> {
    fn kv_relocate(cache: FloatTensor<Self>, block: FloatTensor<Self>, src: IntTensor<Self>, dst: IntTensor<Self>) -> FloatTensor<Self> {
        kv_relocate::kernel::launch(cache, block, src, dst)
    }
}

// GPUs keep their own matmul (tiled, tensor cores); the streaming host kernel is a CPU answer.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SkinnyMatmulOps for CubeBackend<R, F, I, BT> {}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TreeBuildOps for CubeBackend<R, F, I, BT> {
    fn tree_build(beams: IntTensor<Self>, lens: IntTensor<Self>) -> DeviceTree<Self> {
        let [tokens, positions, mask, unpack, packed_len] = tree_build::kernel::launch(beams, lens);
        DeviceTree {
            tokens: Tensor::from_primitive(tokens),
            positions: Tensor::from_primitive(positions),
            mask: Tensor::from_primitive(mask),
            unpack: Tensor::from_primitive(unpack),
            packed_len: Tensor::from_primitive(packed_len),
        }
    }
}
