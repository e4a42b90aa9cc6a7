//! `redrafter_no_real_model` when `REDRAFTER_SKIP_REAL_MODEL` is set: the test that downloads
//! the default model is then reported as ignored, not as passed (the test harness has no run-time
//! skip; tests/build.rs does the same for the integration tests). `redrafter_no_cuda` unless
//! `REDRAFTER_TEST_CUDA=1`: only then is there a GPU, and the "CUDA without a GPU" test is ignored.

fn main() {
    println!("cargo:rerun-if-env-changed=REDRAFTER_SKIP_REAL_MODEL");
    println!("cargo:rerun-if-env-changed=REDRAFTER_TEST_CUDA");
    println!("cargo::rustc-check-cfg=cfg(redrafter_no_real_model)");
    println!("cargo::rustc-check-cfg=cfg(redrafter_no_cuda)");
    if std::env::var("REDRAFTER_TEST_CUDA").map_or(true, |v| v != "1") {
        println!("cargo:rustc-cfg=redrafter_no_cuda");
    }
    if std::env::var_os("REDRAFTER_SKIP_REAL_MODEL").is_some() {
        println!("cargo:rustc-cfg=redrafter_no_real_model");
    }
}
