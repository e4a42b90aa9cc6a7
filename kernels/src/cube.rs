//! The kernels behind the ops for every cubecl runtime (CUDA, wgpu, ...).

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn_cubecl::element::BoolElement;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};

use burn::tensor::Tensor;

use crate::tree_build::DeviceTree;
use crate::{
    BeamMergeOps, BlockMatmulOps, KvRelocateOps, RotaryOps, SkinnyMatmulOps, SwigluOps, TreeAttentionOps, TreeBuildOps, WarpTopKOps, beam_merge, kv_relocate,
    skinny_matmul, tree_attention, tree_build, warp_top_k,
};

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

// Full-f32 unit matmul instead of burn's default, which may be TF32 on tensor cores
// (skinny_matmul::cube says why). Any row count: decode rows of a large batch go here too.
// Blocks only through the read-back; the loader keeps dense weights on devices.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> BlockMatmulOps for CubeBackend<R, F, I, BT> {}
// Elementwise: the reference's ops are what burn fuses and launches anyway.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> RotaryOps for CubeBackend<R, F, I, BT> {}
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SwigluOps for CubeBackend<R, F, I, BT> {}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SkinnyMatmulOps for CubeBackend<R, F, I, BT> {
    fn skinny_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        skinny_matmul::cube::launch(x.clone(), w.clone()).unwrap_or_else(|_| Self::float_matmul(x, w))
    }
}

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

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> WarpTopKOps for CubeBackend<R, F, I, BT> {
    fn warp_top_k(logits: FloatTensor<Self>, k: usize) -> (FloatTensor<Self>, IntTensor<Self>) {
        warp_top_k::kernel::launch(logits, k, I::dtype())
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> BeamMergeOps for CubeBackend<R, F, I, BT> {
    fn beam_merge(
        scores: FloatTensor<Self>,
        logq: FloatTensor<Self>,
        ids: IntTensor<Self>,
        beams: IntTensor<Self>,
    ) -> (FloatTensor<Self>, IntTensor<Self>, IntTensor<Self>) {
        beam_merge::kernel::launch(scores, logq, ids, beams)
    }
}
