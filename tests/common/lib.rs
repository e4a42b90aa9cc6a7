//! Shared helpers for the cross-crate tests: seeded tiny models on disk, tolerances, and
//! [`backend_tests!`], which runs one generic test body on every compiled-in backend.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use redrafter::KernelBackend;
use burn::tensor::Tensor;
use redrafter_io::GgmlType;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf, write_tiny_hf_dir};
use redrafter_llama::{LlamaConfig, LoadedModel, WeightFormat};

pub use redrafter::backends;

mod oracle;
mod scripted;
pub use oracle::Oracle;
pub use scripted::Scripted;

/// A fresh directory under the system temp dir, unique to this call: tests run in parallel and a
/// file rewritten while another test has it memory-mapped would kill that test with SIGBUS.
/// Every directory lives under `redrafter-tests/<pid>-...`; the first call of a process removes
/// what earlier test processes left there once they have exited, so runs do not pile up.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let root = std::env::temp_dir().join("redrafter-tests");
    SWEEP.call_once(|| sweep_exited(&root));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = root.join(format!("{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Removes the directories of test processes that no longer run. Liveness is read from
/// `/proc`, so elsewhere nothing is removed.
fn sweep_exited(root: &std::path::Path) {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !proc.join(p.to_string()).exists()) {
            // Another process may sweep the same entry at the same time; either removal is fine.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The tests' seeded generator (an LCG's high bits): random problems, fuzz mutations and option
/// combinations are reproducible from their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Uniform in `0..n` (`n` at least 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| (self.next() % 20001) as f32 / 10000.0 - 1.0).collect()
    }
    pub fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())].clone()
    }
}

pub fn tiny_config() -> LlamaConfig {
    LlamaConfig::tiny(tiny_vocab().0.len())
}

/// The seeded tiny model, written as GGUF (`ty` for 2-D weights) and loaded back.
pub fn tiny_gguf_model<B: KernelBackend>(seed: u64, ty: GgmlType, device: &B::Device) -> LoadedModel<B> {
    tiny_gguf_model_as(seed, ty, WeightFormat::F32, device)
}

/// [`tiny_gguf_model`] loaded with a choice of weight format (`Native` keeps `ty`'s blocks).
pub fn tiny_gguf_model_as<B: KernelBackend>(seed: u64, ty: GgmlType, weights: WeightFormat, device: &B::Device) -> LoadedModel<B> {
    let dir = temp_dir("gguf");
    let path = dir.join(format!("tiny-{seed}-{}.gguf", ty.name()));
    write_tiny_gguf(&path, &tiny_config(), seed, ty).expect("write tiny gguf");
    let model = redrafter_llama::load_with(&path, device, weights).expect("load tiny gguf");
    // The weights are on the device now; most tests load several models, so do not keep the files.
    let _ = std::fs::remove_dir_all(dir);
    model
}

/// The same seeded model as a Hugging Face directory, loaded back.
pub fn tiny_hf_model<B: KernelBackend>(seed: u64, device: &B::Device) -> LoadedModel<B> {
    let dir = temp_dir(&format!("hf-{seed}"));
    write_tiny_hf_dir(&dir, &tiny_config(), seed).expect("write tiny hf dir");
    let model = redrafter_llama::load(&dir, device).expect("load tiny hf dir");
    let _ = std::fs::remove_dir_all(dir);
    model
}

pub fn to_vec<B: KernelBackend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data")
}

/// Largest absolute difference, with a readable panic when it exceeds `tol`.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let (i, d) = a.iter().zip(b).map(|(x, y)| (x - y).abs()).enumerate().fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    assert!(d <= tol, "{what}: max |diff| {d} > {tol} at {i} ({} vs {})", a[i], b[i]);
}

/// Whether `B`'s f32 matmul rounds its inputs to TF32 (11 significant bits): burn's CUDA matmul
/// runs on tensor cores in TF32 wherever the GPU has them. Tensor-op paths (matmul, the ops'
/// references, `Linear`) then agree with f64 host loops to about 1e-3 relative instead of 1e-6.
/// The fused `#[cube]` kernels compute in full f32 on every backend and keep tight tolerances.
pub fn tf32_matmul<B: burn::tensor::backend::Backend>(device: &B::Device) -> bool {
    B::name(device).contains("cuda")
}

/// Whether `B` runs on wgpu: in CI that is lavapipe, which executes every kernel launch on the
/// CPU, so the longest property tests run a smaller sample there (each says how much).
pub fn on_wgpu<B: burn::tensor::backend::Backend>(device: &B::Device) -> bool {
    B::name(device).contains("wgpu")
}

/// The sample a long property test runs on `B`: `cpu` on the CPU backends, `wgpu` on plain wgpu
/// (lavapipe in CI), and half of `wgpu` on wgpu with fusion: plain wgpu's kernels plus fused
/// element-wise programs, which under lavapipe make a tiny model's step 2.5–3.5x slower than
/// plain wgpu (measured 2026-12-06: the same 1024-token run 95 s against 28 s, the oracle grid
/// 218 s against 91 s, the largest share of the tests' time); half still covers every beam shape
/// and batch size once more.
pub fn lavapipe_sample<B: burn::tensor::backend::Backend>(device: &B::Device, cpu: usize, wgpu: usize) -> usize {
    let name = B::name(device);
    match (name.contains("wgpu"), name.contains("fusion")) {
        (true, true) => wgpu / 2,
        (true, false) => wgpu,
        _ => cpu,
    }
}

/// TF32 keeps 10 explicit mantissa bits, so a product of two rounded inputs is off by at most
/// 2⁻¹⁰ of |x||w|, and a dot product by at most `TF32_REL · Σ|x||w|` (plus f32 accumulation).
pub const TF32_REL: f32 = 1.0 / 1024.0;

/// `backend_tests!(a, b)` expands, for each compiled backend, to `#[test]`s that call
/// `a::<Backend>(device)` and `b::<Backend>(device)`. Backends this machine cannot run (decided
/// when the tests are built, see `tests/build.rs`) get `#[ignore]` with the reason, so the runner
/// reports them as ignored rather than passed.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod ndarray {
            $( #[test] fn $name() { super::$name::<$crate::backends::NdArrayBackend>(Default::default()); } )*
        }
        #[cfg(feature = "flex")]
        mod flex {
            $( #[test] fn $name() { super::$name::<$crate::backends::FlexBackend>(Default::default()); } )*
        }
        #[cfg(feature = "wgpu")]
        mod wgpu {
            $( #[test]
            #[cfg_attr(redrafter_no_wgpu, ignore = "no Vulkan driver when the tests were built (or REDRAFTER_SKIP_WGPU)")]
            fn $name() {
                super::$name::<$crate::backends::WgpuBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice);
            } )*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $( #[test]
            #[cfg_attr(redrafter_no_cuda, ignore = "CUDA needs a GPU: build and run the tests with REDRAFTER_TEST_CUDA=1")]
            fn $name() {
                super::$name::<$crate::backends::CudaBackend>(burn::backend::cuda::CudaDevice::new(0));
            } )*
        }
        #[cfg(all(feature = "wgpu", feature = "fusion"))]
        mod wgpu_fusion {
            $( #[test]
            #[cfg_attr(redrafter_no_wgpu, ignore = "no Vulkan driver when the tests were built (or REDRAFTER_SKIP_WGPU)")]
            fn $name() {
                super::$name::<$crate::backends::WgpuFusionBackend>(burn::backend::wgpu::WgpuDevice::DefaultDevice);
            } )*
        }
        #[cfg(all(feature = "cuda", feature = "fusion"))]
        mod cuda_fusion {
            $( #[test]
            #[cfg_attr(redrafter_no_cuda, ignore = "CUDA needs a GPU: build and run the tests with REDRAFTER_TEST_CUDA=1")]
            fn $name() {
                super::$name::<$crate::backends::CudaFusionBackend>(burn::backend::cuda::CudaDevice::new(0));
            } )*
        }
    };
}
