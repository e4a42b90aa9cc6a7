//! Decides, when the tests are built, which backend- or download-dependent tests cannot run here,
//! so that the test runner reports them as `ignored` with the reason instead of `ok`: the standard
//! harness has no way for a running test to say "skipped". `cargo test` builds and runs in one
//! command, so the environment seen here is the one the tests run in (each variable below is a
//! rerun trigger).
//!
//! - `redrafter_no_cuda`: CUDA needs a GPU; set `REDRAFTER_TEST_CUDA=1` to run those tests (they
//!   then fail, not skip, where the GPU is missing).
//! - `redrafter_no_wgpu`: `REDRAFTER_SKIP_WGPU` is set, or no Vulkan driver manifest (ICD) exists
//!   on Linux (install `mesa-vulkan-drivers libvulkan1` for lavapipe). macOS (Metal) and Windows
//!   (DX12) need none.
//! - `redrafter_no_real_model`: `REDRAFTER_SKIP_REAL_MODEL` is set (the SmolLM2 tests download the
//!   pinned model otherwise, and fail if they cannot).

use std::path::PathBuf;

fn main() {
    for var in ["REDRAFTER_TEST_CUDA", "REDRAFTER_SKIP_WGPU", "REDRAFTER_SKIP_REAL_MODEL", "VK_ICD_FILENAMES", "VK_DRIVER_FILES", "XDG_DATA_DIRS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for cfg in ["redrafter_no_cuda", "redrafter_no_wgpu", "redrafter_no_real_model"] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    if std::env::var("REDRAFTER_TEST_CUDA").map_or(true, |v| v != "1") {
        println!("cargo:rustc-cfg=redrafter_no_cuda");
    }
    if std::env::var_os("REDRAFTER_SKIP_WGPU").is_some() || !has_vulkan_driver() {
        println!("cargo:rustc-cfg=redrafter_no_wgpu");
    }
    if std::env::var_os("REDRAFTER_SKIP_REAL_MODEL").is_some() {
        println!("cargo:rustc-cfg=redrafter_no_real_model");
    }
}

/// Whether the Vulkan loader will find a driver: an ICD manifest named by the environment or in
/// one of the loader's search directories. Directories that exist are rerun triggers, so
/// installing a driver later rebuilds with the wgpu tests enabled.
fn has_vulkan_driver() -> bool {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "android" && os != "freebsd" {
        return true;
    }
    for var in ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"] {
        if let Ok(list) = std::env::var(var) {
            return list.split(':').any(|p| PathBuf::from(p).is_file());
        }
    }
    let mut dirs: Vec<PathBuf> = ["/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"].map(PathBuf::from).to_vec();
    if let Ok(xdg) = std::env::var("XDG_DATA_DIRS") {
        dirs.extend(xdg.split(':').filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join("vulkan/icd.d")));
    }
    let mut found = false;
    for d in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo:rerun-if-changed={}", d.display());
        found |= std::fs::read_dir(d).into_iter().flatten().flatten().any(|e| e.path().extension().is_some_and(|x| x == "json"));
    }
    found
}
