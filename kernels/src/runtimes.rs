//! The cubecl backends by name, spelled out: burn's `Wgpu` and `Cuda` aliases mean
//! `Fusion<CubeBackend<..>>` when burn's `fusion` feature is on anywhere in the build, so they
//! cannot name the plain backend.

#[cfg(feature = "cube")]
use burn_cubecl::CubeBackend;

/// cubecl on wgpu (Vulkan, Metal, DX12), without burn's kernel fusion.
#[cfg(feature = "wgpu")]
pub type Wgpu = CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;
/// cubecl on CUDA, without burn's kernel fusion.
#[cfg(feature = "cuda")]
pub type Cuda = CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// [`Wgpu`] under burn's kernel fusion (what `burn::backend::Wgpu` is by default).
#[cfg(all(feature = "wgpu", feature = "fusion"))]
pub type WgpuFusion = burn_fusion::Fusion<Wgpu>;
/// [`Cuda`] under burn's kernel fusion (what `burn::backend::Cuda` is by default).
#[cfg(all(feature = "cuda", feature = "fusion"))]
pub type CudaFusion = burn_fusion::Fusion<Cuda>;
