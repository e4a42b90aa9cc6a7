//! The `redrafter` binary: bad input gives a message and a non-zero exit code, never a panic.

use std::process::Command;

use redrafter_io::GgmlType;
use redrafter_llama::LlamaConfig;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};

/// Each test writes its own file: rewriting one that another test's process has memory-mapped
/// would kill that process with SIGBUS.
fn tiny_model(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("redrafter-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tiny.gguf");
    write_tiny_gguf(&p, &LlamaConfig::tiny(tiny_vocab().0.len()), 1, GgmlType::Q8_0).unwrap();
    p
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redrafter")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn generates_json_with_a_local_model() {
    let m = tiny_model("json");
    let (code, stdout, stderr) = run(&["generate", "the weather", "--model", m.to_str().unwrap(), "--max-new-tokens", "5", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 5);
    assert!(v["text"].is_string());
    assert_eq!(v["stats"]["new_tokens"], 5);
    assert!(v["stats"]["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_backend() {
    let (code, _, stderr) = run(&["generate", "hi", "--backend", "tpu", "--model", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown backend `tpu`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn prompt_longer_than_context() {
    let m = tiny_model("long");
    let long = "the ".repeat(400);
    let (code, _, stderr) = run(&["generate", &long, "--raw", "--model", m.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("but the context holds 256"), "{stderr}");
}

#[test]
fn bad_model_file_and_options() {
    let bad = std::env::temp_dir().join(format!("redrafter-cli-bad-{}.gguf", std::process::id()));
    std::fs::write(&bad, b"GGUF\x03\0\0\0").unwrap();
    let (code, _, stderr) = run(&["generate", "hi", "--model", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("truncated"), "{stderr}");

    let m = tiny_model("opts");
    let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--top-p", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("top-p must be in (0, 1]"), "{stderr}");
}
