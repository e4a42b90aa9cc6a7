//! Mutation fuzzing of every file a user hands the loaders: GGUF models, Hugging Face directories
//! (config.json, model.safetensors, tokenizer.json) and drafter checkpoints (config.json,
//! model.safetensors). Seeded truncations, byte flips in headers, count fields set to 0 and 2^62,
//! wrong dtypes, shapes and offsets, and JSON values replaced by absurd ones. Every case must end
//! in `Ok` or a typed error: no panic, no abort, no OOM kill, and bounded memory.
//!
//! The corpus runs in a child process (this same test binary, running the ignored test
//! [`corpus`]) under `ulimit -v`, so that an abort or a kill shows up as the child's exit status
//! instead of taking the whole test run down, and so that the peak RSS it reports is its own.
//! `REDRAFTER_FUZZ_CASES` (default 1200) and `REDRAFTER_FUZZ_SEED` (default 1) change the run.

use std::path::{Path, PathBuf};

use redrafter::backends::NdArrayBackend;
use redrafter::{Drafter, DrafterConfig, load_drafter, save_drafter};
use redrafter_io::GgmlType;
use redrafter_llama::testing::{tiny_gguf, write_tiny_hf_dir};
use redrafter_tests::{Rng, temp_dir, tiny_config};
use serde_json::Value;

/// The memory budget inside the child: a tiny model needs a few MB, so every absurd size in a
/// mutated file must be refused by the budget or by a size check, never allocated.
const BUDGET: u64 = 256 << 20;
/// The child's address-space limit (`ulimit -v`), far above what a clean load needs.
const ADDRESS_SPACE_KIB: u64 = 8 << 20;
/// The largest peak RSS a single case may reach.
const MAX_CASE_RSS_KIB: u64 = 512 << 10;

#[test]
fn mutated_inputs_never_panic_abort_or_blow_memory() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args(["fuzz_inputs::corpus", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .output()
        .expect("run the fuzz corpus in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = stdout.lines().filter(|l| l.starts_with("fuzz:")).collect();
    for l in &summary {
        eprintln!("{l}");
    }
    // A signal (abort, SIGKILL, SIGSEGV) leaves no exit code.
    assert!(out.status.code().is_some(), "the fuzz child died from a signal ({}); its stderr ends:\n{}", out.status, tail(&stderr));
    assert!(out.status.success(), "the fuzz child failed ({}):\n{}\n{}", out.status, tail(&stdout), tail(&stderr));
    assert!(summary.iter().any(|l| l.starts_with("fuzz: total")), "no summary from the child:\n{}", tail(&stdout));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Values that break size arithmetic.
const NASTY_U64: [u64; 9] = [0, 1, 3, 1 << 31, 1 << 32, 1 << 62, u64::MAX, u64::MAX - 7, 1 << 63];

/// One fuzzable input: a file inside a directory that `load` reads.
#[derive(Clone, Copy, Debug)]
enum Target {
    Gguf,
    HfConfig,
    HfSafetensors,
    HfTokenizer,
    DrafterConfig,
    DrafterSafetensors,
}

const TARGETS: [Target; 6] =
    [Target::Gguf, Target::HfConfig, Target::HfSafetensors, Target::HfTokenizer, Target::DrafterConfig, Target::DrafterSafetensors];

impl Target {
    /// The file of the clean artifact that this target mutates.
    fn file(self) -> &'static str {
        match self {
            Self::Gguf => "tiny.gguf",
            Self::HfConfig | Self::DrafterConfig => "config.json",
            Self::HfSafetensors | Self::DrafterSafetensors => "model.safetensors",
            Self::HfTokenizer => "tokenizer.json",
        }
    }
}

/// Clean artifacts, written once: a GGUF (Q8_0 and F32 tensors), an HF directory and a drafter
/// with an input projection (f16 tensors).
struct Clean {
    gguf: Vec<u8>,
    hf: PathBuf,
    drafter: PathBuf,
}

fn clean() -> Clean {
    let root = temp_dir("fuzz-clean");
    let cfg = tiny_config();
    let hf = root.join("hf");
    write_tiny_hf_dir(&hf, &cfg, 3).expect("write the HF dir");
    let drafter = root.join("drafter");
    let mut dc = DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size);
    dc.exit_dim = 32;
    let d = Drafter::<NdArrayBackend>::random(dc, 5, &Default::default()).expect("random drafter");
    save_drafter(&d, &drafter, true).expect("save drafter");
    Clean { gguf: tiny_gguf(&cfg, 2, GgmlType::Q8_0).to_bytes(), hf, drafter }
}

/// Mutates raw bytes: truncation, byte flips near the start (the header), or a u64 field at a
/// random 8-byte-aligned header position set to a nasty value.
fn mutate_bytes(rng: &mut Rng, mut b: Vec<u8>, header: usize) -> (Vec<u8>, String) {
    let header = header.clamp(1, b.len().max(1));
    match rng.below(4) {
        0 => {
            let cut = rng.below(b.len());
            b.truncate(cut);
            (b, format!("truncated to {cut}"))
        }
        1 => {
            let n = 1 + rng.below(8);
            let at: Vec<usize> = (0..n).map(|_| rng.below(header.min(b.len()))).collect();
            for &i in &at {
                b[i] ^= 1 << rng.below(8);
            }
            (b, format!("bit flips at {at:?}"))
        }
        _ => {
            let at = rng.below(header.min(b.len()).saturating_sub(8).max(1));
            let v = rng.pick(&NASTY_U64);
            if at + 8 <= b.len() {
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            (b, format!("u64 {v} at {at}"))
        }
    }
}

/// GGUF-aware mutations: the counts at bytes 8 and 16, and each tensor info's rank, dims, type and
/// offset (found by name), besides the raw ones.
fn mutate_gguf(rng: &mut Rng, clean: &[u8]) -> (Vec<u8>, String) {
    let mut b = clean.to_vec();
    let names: [&[u8]; 4] = [b"token_embd.weight", b"blk.0.attn_q.weight", b"output_norm.weight", b"blk.1.ffn_down.weight"];
    match rng.below(6) {
        0 => {
            let at = rng.pick(&[8usize, 16]);
            let v = rng.pick(&NASTY_U64);
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            (b, format!("count at {at} = {v}"))
        }
        1 | 2 => {
            let name = rng.pick(&names);
            let Some(p) = b.windows(name.len()).position(|w| w == name) else { return mutate_bytes(rng, b, 4096) };
            let info = p + name.len();
            let rank = u32::from_le_bytes(b[info..info + 4].try_into().unwrap()) as usize;
            let field = rng.below(4);
            let what = String::from_utf8_lossy(name).to_string();
            match field {
                0 => {
                    let v = rng.pick(&[0u32, 5, 2, u32::MAX]);
                    b[info..info + 4].copy_from_slice(&v.to_le_bytes());
                    (b, format!("{what}: rank {v}"))
                }
                1 => {
                    let d = rng.below(rank);
                    let at = info + 4 + 8 * d;
                    let v = rng.pick(&NASTY_U64);
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    (b, format!("{what}: dim {d} = {v}"))
                }
                2 => {
                    let at = info + 4 + 8 * rank;
                    let v = rng.pick(&[0u32, 1, 2, 3, 6, 7, 9, 12, 14, 30, 39, 1000, u32::MAX]);
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    (b, format!("{what}: type {v}"))
                }
                _ => {
                    let at = info + 4 + 8 * rank + 4;
                    let v = rng.pick(&NASTY_U64).wrapping_sub(rng.below(64) as u64);
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    (b, format!("{what}: offset {v}"))
                }
            }
        }
        _ => mutate_bytes(rng, b, 4096),
    }
}

/// safetensors-aware mutations: the header's length, and its JSON (dtypes, shapes, offsets).
fn mutate_safetensors(rng: &mut Rng, clean: &[u8]) -> (Vec<u8>, String) {
    let n = u64::from_le_bytes(clean[..8].try_into().unwrap()) as usize;
    if rng.below(3) == 0 {
        return mutate_bytes(rng, clean.to_vec(), 8 + n);
    }
    let mut header: Value = serde_json::from_slice(&clean[8..8 + n]).expect("clean header");
    let names: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    let name = names[rng.below(names.len())].clone();
    let entry = &mut header[&name];
    let what = match rng.below(4) {
        0 => {
            let d = rng.pick(&["F64", "I8", "BOOL", "U8", "F8_E4M3", "Q4", "I64", "F16"]);
            entry["dtype"] = d.into();
            format!("{name}: dtype {d}")
        }
        1 => {
            let shape: Vec<u64> = match rng.below(4) {
                0 => vec![],
                1 => vec![0],
                2 => vec![1 << 62, 1 << 62],
                _ => vec![rng.pick(&NASTY_U64), 3],
            };
            entry["shape"] = serde_json::json!(shape);
            format!("{name}: shape {shape:?}")
        }
        2 => {
            let (a, b) = (rng.pick(&NASTY_U64), rng.pick(&NASTY_U64));
            entry["data_offsets"] = serde_json::json!([a, b]);
            format!("{name}: offsets [{a}, {b}]")
        }
        _ => {
            header.as_object_mut().unwrap().remove(&name);
            format!("{name}: removed")
        }
    };
    let text = serde_json::to_vec(&header).unwrap();
    let mut b = (text.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(&text);
    b.extend_from_slice(&clean[8 + n..]);
    (b, what)
}

/// JSON mutations: a random value (at any depth) replaced by an absurd one, a key removed, or
/// the text truncated / flipped.
fn mutate_json(rng: &mut Rng, clean: &[u8]) -> (Vec<u8>, String) {
    if rng.below(4) == 0 {
        let len = clean.len();
        return mutate_bytes(rng, clean.to_vec(), len);
    }
    let mut v: Value = serde_json::from_slice(clean).expect("clean json");
    // Walk down a random path, preferring objects' keys (where the sizes live).
    let mut path: Vec<String> = vec![];
    let mut at = &v;
    loop {
        match at {
            Value::Object(m) if !m.is_empty() && (path.is_empty() || rng.below(3) != 0) => {
                let (k, next) = m.iter().nth(rng.below(m.len())).unwrap();
                path.push(k.clone());
                at = next;
            }
            Value::Array(a) if !a.is_empty() && rng.below(2) == 0 => {
                let i = rng.below(a.len());
                path.push(i.to_string());
                at = &a[i];
            }
            _ => break,
        }
    }
    let pointer: String = path.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
    let replacement = match rng.below(10) {
        0 => serde_json::json!(0),
        1 => serde_json::json!(-1),
        2 => serde_json::json!(1u64 << 62),
        3 => serde_json::json!(u64::MAX),
        4 => serde_json::json!(1e308),
        5 => serde_json::json!(0.5),
        6 => serde_json::json!("not a number"),
        7 => Value::Null,
        8 => serde_json::json!([1, 2, 3]),
        _ => serde_json::json!({}),
    };
    let what = format!("{} = {replacement}", path.join("."));
    *v.pointer_mut(&pointer).expect("the walked path exists") = replacement;
    (serde_json::to_vec(&v).unwrap(), what)
}

/// Peak RSS since the last reset, in KiB (Linux; 0 elsewhere).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS (Linux 4.0+: writing 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Loads the mutated artifact; `Err` with the panic message when a load panicked.
fn load(target: Target, path: &Path) -> Result<Result<(), String>, String> {
    let device = Default::default();
    let run = || -> Result<(), String> {
        match target {
            Target::DrafterConfig | Target::DrafterSafetensors => {
                load_drafter::<NdArrayBackend>(path, &device).map(|_| ()).map_err(|e| e.to_string())
            }
            _ => redrafter_llama::load::<NdArrayBackend>(path, &device).map(|_| ()).map_err(|e| e.to_string()),
        }
    };
    redrafter_io::guard::catch_panic(|| redrafter_io::budget::scoped(BUDGET, run))
}

#[test]
#[ignore = "the fuzz corpus itself: mutated_inputs_never_panic_abort_or_blow_memory runs it in a child process"]
fn corpus() {
    let cases: usize = std::env::var("REDRAFTER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1200);
    let seed: u64 = std::env::var("REDRAFTER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let clean = clean();
    let work = temp_dir("fuzz-cases");
    let mut panics = vec![];
    let mut worst = (0u64, String::new());
    let (mut refused, mut loaded) = (0, 0);
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for case in 0..cases {
        let target = TARGETS[case % TARGETS.len()];
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ case as u64);
        let dir = work.join(format!("case-{case}"));
        let (path, mutated_file) = match target {
            Target::Gguf => {
                std::fs::create_dir_all(&dir).unwrap();
                (dir.join("tiny.gguf"), dir.join("tiny.gguf"))
            }
            Target::HfConfig | Target::HfSafetensors | Target::HfTokenizer => {
                copy_dir(&clean.hf, &dir);
                (dir.clone(), dir.join(target.file()))
            }
            Target::DrafterConfig | Target::DrafterSafetensors => {
                copy_dir(&clean.drafter, &dir);
                (dir.clone(), dir.join(target.file()))
            }
        };
        let original = match target {
            Target::Gguf => clean.gguf.clone(),
            _ => std::fs::read(&mutated_file).unwrap(),
        };
        let (bytes, what) = match target {
            Target::Gguf => mutate_gguf(&mut rng, &original),
            Target::HfSafetensors | Target::DrafterSafetensors => mutate_safetensors(&mut rng, &original),
            _ => mutate_json(&mut rng, &original),
        };
        std::fs::write(&mutated_file, &bytes).unwrap();
        reset_peak_rss();
        let result = load(target, &path);
        let rss = peak_rss_kib();
        let label = format!("case {case} ({target:?}, seed {seed}): {what}");
        if rss > worst.0 {
            worst = (rss, label.clone());
        }
        match result {
            Err(msg) => panics.push(format!("{label}: panicked: {msg}")),
            Ok(Err(e)) => {
                refused += 1;
                // Group messages by their first words, to show which checks the corpus reaches.
                let kind: String = e.split_whitespace().filter(|w| !w.contains('/')).take(4).collect::<Vec<_>>().join(" ");
                *errors.entry(kind).or_default() += 1;
                assert!(!e.is_empty(), "{label}: an error without a message");
            }
            Ok(Ok(())) => loaded += 1,
        }
        if rss > MAX_CASE_RSS_KIB {
            panics.push(format!("{label}: peak RSS {rss} KiB above {MAX_CASE_RSS_KIB} KiB"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&work);
    let mut by_count: Vec<_> = errors.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1));
    for (kind, n) in by_count.iter().take(12) {
        println!("fuzz: error `{kind} ...` x{n}");
    }
    println!(
        "fuzz: total {cases} cases (seed {seed}), {refused} refused with an error, {loaded} loaded, {} failures; worst case peak RSS {:.1} MiB: {}",
        panics.len(),
        worst.0 as f64 / 1024.0,
        worst.1
    );
    assert!(panics.is_empty(), "{} of {cases} cases failed:\n{}", panics.len(), panics.join("\n"));
}
