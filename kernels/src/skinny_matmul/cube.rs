//! The op on cubecl runtimes: cubecl's unit matmul (one f32 FMA chain per output element, no
//! tensor cores), chosen explicitly instead of burn's default.
//!
//! burn's default on CUDA is a tensor-core kernel that rounds f32 inputs to TF32 (11 significant
//! bits). TF32 rounding turns the 1e-7 differences between a token verified alone and the same
//! token verified inside a tree into occasional 1e-3 jumps, which flip near-tied argmaxes: on an
//! H100, greedy ReDrafter on SmolLM2-135M differed from greedy autoregressive decoding on 2 of 20
//! MT-Bench prompts at W2 L3 (64 tokens each). Every model projection goes through this op, so
//! on GPUs the model is f32 end to end, as it is on the CPU backends. Where no tensor cores exist
//! (wgpu) burn's own choice already falls back to this kernel.

use burn::tensor::DType;
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::tensor::CubeTensor;
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems, MatmulSetupError};
use cubek::matmul::launch::{Strategy, launch_ref};
use cubek::std::InputBinding;

/// `x` [m, k] · `w` [k, n] in f32 arithmetic. `Err` when the runtime cannot run the unit kernel
/// for these inputs; the caller then takes the backend's matmul.
pub(crate) fn launch<R: CubeRuntime>(x: CubeTensor<R>, w: CubeTensor<R>) -> Result<CubeTensor<R>, MatmulSetupError> {
    let dtype: DType = x.dtype;
    let out = init_matmul_output(&x, &w, dtype);
    let client = out.client.clone();
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: dtype.into(), rhs: dtype.into(), out: dtype.into() });
    launch_ref(
        &Strategy::SimpleUnit(Default::default()),
        &client,
        InputBinding::new(x.binding(), dtype.into()),
        InputBinding::new(w.binding(), dtype.into()),
        out.clone().binding(),
        &mut dtypes,
    )?;
    Ok(out)
}
