//! Run-time choice among the burn backends compiled into this build.

use std::fmt;
use std::str::FromStr;

use redrafter_llama::KernelBackend;

use crate::error::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-ndarray on the CPU (always compiled in).
    NdArray,
    /// burn-flex, burn's pure-Rust CPU backend (feature `flex`).
    Flex,
    /// cubecl on wgpu: Vulkan, Metal, DX12; lavapipe on a CPU-only machine (feature `wgpu`).
    Wgpu,
    /// cubecl on CUDA (feature `cuda`).
    Cuda,
    /// [`Wgpu`](Self::Wgpu) under burn's kernel fusion, which fuses the model's element-wise ops
    /// (features `wgpu` and `fusion`); what `burn::backend::Wgpu` is by default.
    WgpuFusion,
    /// [`Cuda`](Self::Cuda) under burn's kernel fusion (features `cuda` and `fusion`).
    CudaFusion,
}

pub const ALL: [BackendKind; 6] = [
    BackendKind::NdArray,
    BackendKind::Flex,
    BackendKind::Wgpu,
    BackendKind::Cuda,
    BackendKind::WgpuFusion,
    BackendKind::CudaFusion,
];

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::NdArray => "ndarray",
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
            Self::WgpuFusion => "wgpu-fusion",
            Self::CudaFusion => "cuda-fusion",
        }
    }

    /// Whether this backend runs on an NVIDIA GPU through CUDA (which needs a GPU to test).
    pub fn is_cuda(self) -> bool {
        matches!(self, Self::Cuda | Self::CudaFusion)
    }

    pub fn is_compiled(self) -> bool {
        match self {
            Self::NdArray => true,
            Self::Flex => cfg!(feature = "flex"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
            Self::WgpuFusion => cfg!(all(feature = "wgpu", feature = "fusion")),
            Self::CudaFusion => cfg!(all(feature = "cuda", feature = "fusion")),
        }
    }

    pub fn compiled() -> Vec<BackendKind> {
        ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// `--backend`: the named one, or the default CPU backend (flex when compiled in, else ndarray).
    pub fn default_for(name: Option<&str>) -> Result<Self, DecodeError> {
        match name {
            Some(name) => name.parse(),
            None if Self::Flex.is_compiled() => Ok(Self::Flex),
            None => Ok(Self::NdArray),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names = || Self::compiled().iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        let kind = ALL.into_iter().find(|k| k.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            DecodeError::InvalidOption(format!("unknown backend `{s}` (this build has: {})", names()))
        })?;
        if !kind.is_compiled() {
            return Err(DecodeError::InvalidOption(format!(
                "backend `{s}` is not compiled into this build (rebuild with `--features {}`; this build has: {})",
                s.replace('-', ","),
                names()
            )));
        }
        Ok(kind)
    }
}

/// Work that is generic over the backend; [`run_on`] instantiates it for the chosen one.
pub trait BackendTask {
    type Output;
    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output;
}

pub type NdArrayBackend = burn::backend::NdArray<f32>;
#[cfg(feature = "flex")]
pub type FlexBackend = burn::backend::Flex<f32>;
#[cfg(feature = "wgpu")]
pub type WgpuBackend = redrafter_kernels::runtimes::Wgpu;
#[cfg(feature = "cuda")]
pub type CudaBackend = redrafter_kernels::runtimes::Cuda;
#[cfg(all(feature = "wgpu", feature = "fusion"))]
pub type WgpuFusionBackend = redrafter_kernels::runtimes::WgpuFusion;
#[cfg(all(feature = "cuda", feature = "fusion"))]
pub type CudaFusionBackend = redrafter_kernels::runtimes::CudaFusion;

/// Runs `task` on `kind`'s default device, after [`probe`] found that the device starts: a
/// machine without the backend's driver gets [`DecodeError::BackendUnavailable`], not a panic.
pub fn run_on<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output, DecodeError> {
    probe(kind)?;
    Ok(run_unprobed(kind, task))
}

/// Starts `kind`'s device once, so that a missing driver or GPU is an error with the fix instead
/// of a panic deep inside the runtime. cubecl's wgpu and CUDA runtimes panic when they find no
/// adapter or no driver ("No possible adapter available"); they offer no fallible constructor,
/// so the probe catches that panic silently (`redrafter_io::guard`) and reports its message. The CPU backends need no
/// probe. A backend that started once is not probed again.
pub fn probe(kind: BackendKind) -> Result<(), DecodeError> {
    use std::sync::Mutex;
    static STARTED: Mutex<Vec<BackendKind>> = Mutex::new(Vec::new());
    if matches!(kind, BackendKind::NdArray | BackendKind::Flex)
        || STARTED.lock().unwrap_or_else(|e| e.into_inner()).contains(&kind)
    {
        return Ok(());
    }
    struct Start;
    impl BackendTask for Start {
        type Output = ();
        fn run<B: KernelBackend>(self, device: B::Device) {
            let _ = burn::tensor::Tensor::<B, 1>::zeros([1], &device).into_data();
        }
    }
    match redrafter_io::guard::catch_panic(|| run_unprobed(kind, Start)) {
        Ok(()) => {
            STARTED.lock().unwrap_or_else(|e| e.into_inner()).push(kind);
            Ok(())
        }
        Err(why) => Err(DecodeError::BackendUnavailable { backend: kind.name(), why, fix: fix_for(kind) }),
    }
}

/// What to do when `kind` cannot start.
fn fix_for(kind: BackendKind) -> &'static str {
    if kind.is_cuda() {
        "CUDA needs an NVIDIA GPU and its driver (libcuda.so); on a machine without one use --backend flex (CPU) or wgpu"
    } else {
        "wgpu found no GPU adapter: install a Vulkan driver (without a GPU, Mesa's lavapipe runs Vulkan on the CPU: apt-get install mesa-vulkan-drivers libvulkan1), or use --backend flex"
    }
}

fn run_unprobed<T: BackendTask>(kind: BackendKind, task: T) -> T::Output {
    match kind {
        BackendKind::NdArray => task.run::<NdArrayBackend>(Default::default()),
        #[cfg(feature = "flex")]
        BackendKind::Flex => task.run::<FlexBackend>(Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => task.run::<WgpuBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => task.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(0)),
        #[cfg(all(feature = "wgpu", feature = "fusion"))]
        BackendKind::WgpuFusion => task.run::<WgpuFusionBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice),
        #[cfg(all(feature = "cuda", feature = "fusion"))]
        BackendKind::CudaFusion => task.run::<CudaFusionBackend>(burn::backend::cuda::CudaDevice::new(0)),
        #[allow(unreachable_patterns)]
        other => unreachable!("{other} is not compiled in; FromStr rejects it"),
    }
}
