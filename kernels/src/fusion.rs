//! The ops on `Fusion<CubeBackend<R, ..>>`, burn's kernel-fusion decorator (what `burn::backend::Wgpu`
//! and `Cuda` are when burn's `fusion` feature is on, as it is by default).
//!
//! Each op is registered on the fusion stream as a custom operation, the pattern of burn-vision:
//! the stream flushes the fused element-wise work before it, then `execute` runs the inner
//! `CubeBackend`'s kernel on the materialised handles. Output shapes must be known when the op is
//! registered, which is why this is implemented for `CubeBackend` inside and not for any fusion
//! backend: its tree build always has W·L slots, where the host reference sizes its output from
//! the data.

use std::marker::PhantomData;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::element::BoolElement;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

use crate::bits::words;
use crate::tree_build::DeviceTree;
use crate::{BeamMergeOps, BlockMatmulOps, KvRelocateOps, RotaryOps, SkinnyMatmulOps, SwigluOps, TreeAttentionOps, TreeBuildOps, WarpTopKOps};

type Inner<R, F, I, BT> = CubeBackend<R, F, I, BT>;
type Runtime<R, F, I, BT> = <Inner<R, F, I, BT> as FusionBackend>::FusionRuntime;
type Handles<R, F, I, BT> = HandleContainer<<Runtime<R, F, I, BT> as FusionRuntime>::FusionHandle>;

/// Which op a [`Custom`] runs, with its non-tensor arguments.
#[derive(Debug, Clone, Copy)]
enum Kind {
    TreeAttention { scale: f32 },
    KvRelocate,
    SkinnyMatmul,
    TreeBuild,
    WarpTopK { k: usize },
    BeamMerge,
}

/// One registered op: its tensors (`desc`) and what to run on them.
struct Custom<R, F, I, BT> {
    desc: CustomOpIr,
    kind: Kind,
    _backend: PhantomData<fn() -> (R, F, I, BT)>,
}

impl<R, F, I, BT> std::fmt::Debug for Custom<R, F, I, BT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custom").field("desc", &self.desc).field("kind", &self.kind).finish()
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Operation<Runtime<R, F, I, BT>> for Custom<R, F, I, BT> {
    fn execute(&self, h: &mut Handles<R, F, I, BT>) {
        type B<R, F, I, BT> = Inner<R, F, I, BT>;
        let ins = &self.desc.inputs;
        let outs = &self.desc.outputs;
        let float = |h: &mut Handles<R, F, I, BT>, i: usize| h.get_float_tensor::<B<R, F, I, BT>>(&ins[i]);
        let int = |h: &mut Handles<R, F, I, BT>, i: usize| h.get_int_tensor::<B<R, F, I, BT>>(&ins[i]);
        match self.kind {
            Kind::TreeAttention { scale } => {
                // Inputs: q, kb, vb, lens, bits, then the committed k and v when there are any.
                let (q, kb, vb) = (float(h, 0), float(h, 1), float(h, 2));
                let (lens, bits) = (int(h, 3), int(h, 4));
                let committed = (ins.len() == 7).then(|| (float(h, 5), float(h, 6)));
                let out = B::<R, F, I, BT>::tree_attention(q, committed, lens, kb, vb, bits, scale);
                h.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, out);
            }
            Kind::KvRelocate => {
                let (cache, block, src, dst) = (float(h, 0), float(h, 1), int(h, 2), int(h, 3));
                let out = B::<R, F, I, BT>::kv_relocate(cache, block, src, dst);
                h.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, out);
            }
            Kind::SkinnyMatmul => {
                let out = B::<R, F, I, BT>::skinny_matmul(float(h, 0), float(h, 1));
                h.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, out);
            }
            Kind::TreeBuild => {
                let tree = B::<R, F, I, BT>::tree_build(int(h, 0), int(h, 1));
                let parts = [tree.tokens.into_primitive(), tree.positions.into_primitive(), tree.mask.into_primitive()];
                for (o, t) in outs.iter().zip(parts) {
                    h.register_int_tensor::<B<R, F, I, BT>>(&o.id, t);
                }
                h.register_int_tensor::<B<R, F, I, BT>>(&outs[3].id, tree.unpack.into_primitive());
                h.register_int_tensor::<B<R, F, I, BT>>(&outs[4].id, tree.packed_len.into_primitive());
            }
            Kind::WarpTopK { k } => {
                let (logq, ids) = B::<R, F, I, BT>::warp_top_k(float(h, 0), k);
                h.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, logq);
                h.register_int_tensor::<B<R, F, I, BT>>(&outs[1].id, ids);
            }
            Kind::BeamMerge => {
                let (scores, logq, ids, beams) = (float(h, 0), float(h, 1), int(h, 2), int(h, 3));
                let (s, r, b) = B::<R, F, I, BT>::beam_merge(scores, logq, ids, beams);
                h.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, s);
                h.register_int_tensor::<B<R, F, I, BT>>(&outs[1].id, r);
                h.register_int_tensor::<B<R, F, I, BT>>(&outs[2].id, b);
            }
        }
    }
}

type Fused<R, F, I, BT> = Fusion<Inner<R, F, I, BT>>;
type FTensor<R, F, I, BT> = FusionTensor<Runtime<R, F, I, BT>>;

/// Registers `kind` on the stream of its `inputs`, with outputs of these shapes and types.
fn register<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    name: &'static str,
    kind: Kind,
    inputs: Vec<FTensor<R, F, I, BT>>,
    outputs: &[(Shape, DType)],
) -> Vec<FTensor<R, F, I, BT>> {
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(&inputs);
    let outs: Vec<TensorIr> = outputs.iter().map(|(s, d)| TensorIr::uninit(client.create_empty_handle(), s.clone(), *d)).collect();
    let ins: Vec<TensorIr> = inputs.into_iter().map(FusionTensor::into_ir).collect();
    let desc = CustomOpIr::new(name, &ins, &outs);
    client.register(streams, OperationIr::Custom(desc.clone()), Custom::<R, F, I, BT> { desc, kind, _backend: PhantomData })
}

fn single<T>(v: Vec<T>) -> T {
    v.into_iter().next().expect("the op has one output")
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TreeAttentionOps for Fused<R, F, I, BT> {
    fn tree_attention(
        q: FloatTensor<Self>,
        committed: Option<(FloatTensor<Self>, FloatTensor<Self>)>,
        lens: IntTensor<Self>,
        kb: FloatTensor<Self>,
        vb: FloatTensor<Self>,
        bits: IntTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let out = [(q.shape.clone(), q.dtype)];
        let mut inputs = vec![q, kb, vb, lens, bits];
        inputs.extend(committed.into_iter().flat_map(|(k, v)| [k, v]));
        single(register::<R, F, I, BT>("redrafter_tree_attention", Kind::TreeAttention { scale }, inputs, &out))
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> KvRelocateOps for Fused<R, F, I, BT> {
    fn kv_relocate(cache: FloatTensor<Self>, block: FloatTensor<Self>, src: IntTensor<Self>, dst: IntTensor<Self>) -> FloatTensor<Self> {
        let out = [(cache.shape.clone(), cache.dtype)];
        single(register::<R, F, I, BT>("redrafter_kv_relocate", Kind::KvRelocate, vec![cache, block, src, dst], &out))
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> BlockMatmulOps for Fused<R, F, I, BT> {}
// Elementwise: the reference's ops are what burn fuses and launches anyway.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> RotaryOps for Fused<R, F, I, BT> {}
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SwigluOps for Fused<R, F, I, BT> {}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SkinnyMatmulOps for Fused<R, F, I, BT> {
    fn skinny_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = [(Shape::new([x.shape[0], w.shape[1]]), x.dtype)];
        single(register::<R, F, I, BT>("redrafter_skinny_matmul", Kind::SkinnyMatmul, vec![x, w], &out))
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TreeBuildOps for Fused<R, F, I, BT> {
    fn tree_build(beams: IntTensor<Self>, lens: IntTensor<Self>) -> DeviceTree<Self> {
        let (rows, w, l) = (beams.shape[0], beams.shape[1], beams.shape[2]);
        let (n, dt) = (w * l, beams.dtype);
        let shapes = [
            (Shape::new([rows, n]), dt),
            (Shape::new([rows, n]), dt),
            (Shape::new([rows, n, words(n)]), dt),
            (Shape::new([rows, w, l]), dt),
            (Shape::new([rows]), dt),
        ];
        let mut out = register::<R, F, I, BT>("redrafter_tree_build", Kind::TreeBuild, vec![beams, lens], &shapes).into_iter();
        let mut next = || out.next().expect("five outputs");
        DeviceTree {
            tokens: Tensor::from_primitive(next()),
            positions: Tensor::from_primitive(next()),
            mask: Tensor::from_primitive(next()),
            unpack: Tensor::from_primitive(next()),
            packed_len: Tensor::from_primitive(next()),
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> WarpTopKOps for Fused<R, F, I, BT> {
    fn warp_top_k(logits: FloatTensor<Self>, k: usize) -> (FloatTensor<Self>, IntTensor<Self>) {
        let shape = Shape::new([logits.shape[0], k.min(logits.shape[1])]);
        let outs = [(shape.clone(), logits.dtype), (shape, I::dtype())];
        let mut out = register::<R, F, I, BT>("redrafter_warp_top_k", Kind::WarpTopK { k }, vec![logits], &outs).into_iter();
        (out.next().expect("log q"), out.next().expect("ids"))
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> BeamMergeOps for Fused<R, F, I, BT> {
    fn beam_merge(
        scores: FloatTensor<Self>,
        logq: FloatTensor<Self>,
        ids: IntTensor<Self>,
        beams: IntTensor<Self>,
    ) -> (FloatTensor<Self>, IntTensor<Self>, IntTensor<Self>) {
        let (rows, w, t) = (beams.shape[0], beams.shape[1], beams.shape[2]);
        let outs = [
            (scores.shape.clone(), scores.dtype),
            (Shape::new([rows, w]), beams.dtype),
            (Shape::new([rows, w, t + 1]), beams.dtype),
        ];
        let mut out = register::<R, F, I, BT>("redrafter_beam_merge", Kind::BeamMerge, vec![scores, logq, ids, beams], &outs).into_iter();
        (out.next().expect("scores"), out.next().expect("rows"), out.next().expect("beams"))
    }
}
