//! The library over a backend the caller picks, and a custom backend-extension op plugged into
//! the shared decoding loop.
//!
//!     cargo run --release -p redrafter-examples --example generic_backend -- [--backend flex|ndarray|wgpu|...] [--tiny]
//!     cargo run --release -p redrafter-examples --features wgpu --example generic_backend -- --backend wgpu --tiny
//!
//! `decode::<B>` is written once against `B: KernelBackend` (every fused op the model needs) plus
//! `RowArgmaxOps`, an op defined here the way the library defines its own (kernels/src: a trait per
//! op whose default method is the reference in plain tensor ops; a backend overrides it with its
//! own kernel). Flex overrides it with a host loop; every other backend runs the reference.
//! `GreedyWithOp` is a `Strategy` of the shared loop (prefill, stopping, batching and stats come
//! from the loop) that picks each next token with the op. The example checks that it emits the
//! same tokens as the library's `Autoregressive` and as ReDrafter, on whatever backend was
//! chosen. Default model (downloaded on first use) or `--tiny` (random tiny model, no download;
//! what CI runs on ndarray and flex).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use redrafter::backends::{BackendKind, NdArrayBackend};
use redrafter::decode::DecodeState;
use redrafter::{
    Autoregressive, BeamConfig, DecodeError, GenerationConfig, GenerationStats, Generator, KernelBackend, ReDrafter, Sampler, Strategy,
};
use redrafter_llama::{BlockInput, Llama};

/// A backend-extension op: per row of `x` [n, v], the index of its largest value (the lowest
/// index among equals). The default method is the reference, in burn's tensor ops.
pub trait RowArgmaxOps: Backend {
    fn row_argmax(x: Tensor<Self, 2>) -> Tensor<Self, 1, Int> {
        let n = x.dims()[0];
        x.argmax(1).reshape([n])
    }
}

impl RowArgmaxOps for NdArrayBackend {}
#[cfg(feature = "wgpu")]
impl RowArgmaxOps for redrafter::backends::WgpuBackend {}
#[cfg(feature = "cuda")]
impl RowArgmaxOps for redrafter::backends::CudaBackend {}
#[cfg(all(feature = "wgpu", feature = "fusion"))]
impl RowArgmaxOps for redrafter::backends::WgpuFusionBackend {}
#[cfg(all(feature = "cuda", feature = "fusion"))]
impl RowArgmaxOps for redrafter::backends::CudaFusionBackend {}

/// Flex's own implementation: Flex tensors live in host memory, so a plain loop over each row.
#[cfg(feature = "flex")]
impl RowArgmaxOps for redrafter::backends::FlexBackend {
    fn row_argmax(x: Tensor<Self, 2>) -> Tensor<Self, 1, Int> {
        let [n, v] = x.dims();
        let device = x.device();
        let data = x.into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("converted to f32");
        let ids: Vec<i64> = values
            .chunks_exact(v)
            .map(|row| row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as i64)
            .collect();
        Tensor::from_data(TensorData::new(ids, [n]), &device)
    }
}

/// Greedy autoregressive decoding whose next token comes from [`RowArgmaxOps`].
struct GreedyWithOp;

impl<B: KernelBackend + RowArgmaxOps> Strategy<B> for GreedyWithOp {
    fn name(&self) -> String {
        "greedy (custom argmax op)".into()
    }

    fn step(&mut self, model: &Llama<B>, state: &mut DecodeState<B>, _: &mut Sampler, stats: &mut GenerationStats) -> Result<Vec<Vec<u32>>, DecodeError> {
        let t0 = Instant::now();
        let n = state.rows.len();
        let device = state.hidden.device();
        // Each row's pending token, at the position after its cached tokens.
        let tokens = state.pending.iter().map(|&t| t as i64).collect();
        let positions = state.cache.lens().iter().map(|&l| l as i64).collect();
        let input = BlockInput::from_host(tokens, positions, vec![true; n], n, 1, &device);
        let hidden = model.forward_hidden(&input, &mut state.cache).reshape([n, model.config().hidden_size]);
        state.cache.commit(&vec![vec![0]; n])?;
        let next: Vec<u32> = B::row_argmax(model.logits(hidden.clone())).into_data().iter::<i64>().map(|t| t as u32).collect();
        state.hidden = hidden;
        state.pending = next.clone();
        stats.end_phase::<B>("forward", t0, &device)?;
        Ok(next.into_iter().map(|t| vec![t]).collect())
    }
}

/// Everything below is written once, for any backend.
fn decode<B: KernelBackend + RowArgmaxOps>(device: B::Device, tiny_run: bool) -> Result<(), BoxError> {
    let (loaded, drafter) = model_and_drafter::<B>(&device, tiny_run)?;
    let tok = &loaded.tokenizer;
    let texts = ["the weather", "where there is a will"];
    let prompts: Vec<Vec<u32>> = texts.iter().map(|t| chat(tok, t)).collect::<Result<_, _>>()?;
    let config = GenerationConfig { max_new_tokens: 24, eos_ids: tok.eos.clone(), ..Default::default() };
    let generator = Generator::new(&loaded.model, Some(tok));
    let mut redrafter = ReDrafter::new(drafter, BeamConfig { width: 2, length: 3 })?;
    let strategies: [&mut dyn Strategy<B>; 3] = [&mut Autoregressive, &mut GreedyWithOp, &mut redrafter];
    let mut reference = None;
    for strategy in strategies {
        let out = generator.generate(strategy, &prompts, &config, None)?;
        let tokens: Vec<Vec<u32>> = out.rows.iter().map(|r| r.tokens.clone()).collect();
        println!("{:<32} {:>6.1} tok/s  tau {:.2}  {:?}", out.stats.strategy, out.stats.tokens_per_second, out.stats.tau, out.rows[0].text);
        match &reference {
            None => reference = Some(tokens),
            Some(r) if *r == tokens => {}
            Some(_) => return Err(format!("{} differs from autoregressive decoding", out.stats.strategy).into()),
        }
    }
    println!("all three emitted the same tokens");
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let kind = BackendKind::default_for(arg_opt("--backend").as_deref())?;
    // A GPU backend without a driver is an error with the fix, not a panic.
    redrafter::backends::probe(kind)?;
    let tiny_run = flag("--tiny");
    println!("backend {kind}");
    match kind {
        BackendKind::NdArray => decode::<NdArrayBackend>(Default::default(), tiny_run),
        #[cfg(feature = "flex")]
        BackendKind::Flex => decode::<redrafter::backends::FlexBackend>(Default::default(), tiny_run),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => decode::<redrafter::backends::WgpuBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice, tiny_run),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => decode::<redrafter::backends::CudaBackend>(burn::backend::cuda::CudaDevice::new(0), tiny_run),
        #[cfg(all(feature = "wgpu", feature = "fusion"))]
        BackendKind::WgpuFusion => decode::<redrafter::backends::WgpuFusionBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice, tiny_run),
        #[cfg(all(feature = "cuda", feature = "fusion"))]
        BackendKind::CudaFusion => decode::<redrafter::backends::CudaFusionBackend>(burn::backend::cuda::CudaDevice::new(0), tiny_run),
        #[allow(unreachable_patterns)]
        other => Err(format!("{other} is not compiled into this example").into()),
    }
}
