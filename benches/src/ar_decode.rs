//! Decode speed and peak memory of SmolLM2-135M on each CPU backend, one thread, by weight format
//! (`--weights native,f16,f32`), batch size (`--batch 1,8,32`) and, with `--drafter`, ReDrafter
//! next to autoregressive decoding; Hugging Face transformers (f32, batch 1) and, with
//! `--llama-cpp`, llama.cpp (llama-cpp-python, the same GGUF as stored, batch 1) as anchors.
//!
//!     cargo run --release --all-features -p redrafter-bench --bin ar_decode -- --runs 3
//!     ar_decode --backend flex --weights native,f16,f32 --batch 1,8,32 --drafter DIR --llama-cpp python3
//!     ar_decode --backend flex --weights native,f32 --llama-cpp python3 --llama-cpp-weights stored,f32
//!
//! Each measurement runs in a child process so that peak RSS belongs to one configuration alone.
//! The transformers and llama.cpp columns are the harness's peers (`redrafter_bench::harness::peer`,
//! what `redrafter bench --peer` runs), one process per run.
//! Runs are interleaved (every configuration once, then again), so drift of a noisy machine
//! spreads over all columns; the table gives medians.

use redrafter_bench::harness::peer::{self, PeerSpec};
use redrafter_bench::harness::report::median;
use redrafter_bench::harness::suite::Prompt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use redrafter::KernelBackend;
use clap::Parser;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{Autoregressive, BeamConfig, GenerationConfig, Generator, ReDrafter, Strategy, load_drafter};
use redrafter_io::Message;
use redrafter_io::fetch::{SMOLLM2_135M_INSTRUCT, fetch};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "Write a short story about a robot who learns to paint.")]
    prompt: String,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Backends to measure (default: every compiled-in CPU backend).
    #[arg(long)]
    backend: Vec<String>,
    /// Weight formats, comma-separated (native, native-q8, f16, f32).
    #[arg(long, default_value = "f32")]
    weights: String,
    /// Batch sizes, comma-separated; row i decodes prompt i of a fixed list (cycled).
    #[arg(long, default_value = "1")]
    batch: String,
    /// A drafter directory: adds ReDrafter rows (`--beam-width`, `--beam-length`) beside each
    /// autoregressive row.
    #[arg(long)]
    drafter: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    beam_width: usize,
    #[arg(long, default_value_t = 3)]
    beam_length: usize,
    /// Python with torch + transformers for the reference column (skipped if it fails; `none`
    /// skips it).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Python with llama-cpp-python: llama.cpp on the same GGUF file, batch 1 (skipped if absent).
    #[arg(long)]
    llama_cpp: Option<String>,
    /// llama.cpp's weight formats, comma-separated: `stored` (the GGUF as it is), `f16`, `f32`
    /// (the same file converted by llama.cpp's own quantizer, `allow_requantize`, kept in the
    /// cache dir), so each of our formats has its llama.cpp twin.
    #[arg(long, default_value = "stored")]
    llama_cpp_weights: String,
    /// Internal: measure one configuration in this process and print one JSON line.
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true, default_value = "f32")]
    child_weights: redrafter_llama::WeightFormat,
    #[arg(long, hide = true, default_value_t = 1)]
    child_batch: usize,
    #[arg(long, hide = true)]
    child_redrafter: bool,
}

/// Prompts of the batch rows: the `--prompt` first, then these, cycled.
const MORE_PROMPTS: [&str; 7] = [
    "Explain what a hash table is.",
    "Give me three tips for learning a new language.",
    "Write a poem about the sea.",
    "What are the main causes of climate change?",
    "Describe how a bicycle works.",
    "Write a letter to a friend about a recent trip.",
    "Summarise the plot of a detective story you invent.",
];

struct Measure {
    prompt: String,
    new_tokens: usize,
    model: PathBuf,
    weights: redrafter_llama::WeightFormat,
    batch: usize,
    drafter: Option<(PathBuf, BeamConfig)>,
}

impl BackendTask for Measure {
    type Output = serde_json::Value;

    fn run<B: KernelBackend>(self, device: B::Device) -> serde_json::Value {
        let m = redrafter_llama::load_with::<B>(&self.model, &device, self.weights).expect("load model");
        let tpl = m.tokenizer.chat_template.as_ref().expect("chat template");
        let encode = |p: &str| m.tokenizer.encode(&tpl.render(&[Message::new("user", p)], true).unwrap()).unwrap();
        let prompts: Vec<&str> = std::iter::once(self.prompt.as_str()).chain(MORE_PROMPTS).collect();
        let rows: Vec<Vec<u32>> = (0..self.batch).map(|i| encode(prompts[i % prompts.len()])).collect();
        let g = Generator::new(&m.model, None);
        // No stop at EOS: every row decodes `new_tokens`, so batches do the same work per row.
        let cfg = GenerationConfig { max_new_tokens: self.new_tokens, ..Default::default() };
        let mut strategy: Box<dyn Strategy<B>> = match &self.drafter {
            Some((dir, beams)) => {
                let mut d = load_drafter::<B>(dir, &device).expect("drafter");
                d.bind(&m.model).expect("bind the draft vocabulary");
                Box::new(ReDrafter::new(d, *beams).expect("beams"))
            }
            None => Box::new(Autoregressive),
        };
        // Warm-up: first-touch allocations and (on cubecl) kernel compilation.
        g.generate(strategy.as_mut(), &rows, &GenerationConfig { max_new_tokens: 4, ..cfg.clone() }, None).unwrap();
        let t = Instant::now();
        let out = g.generate(strategy.as_mut(), &rows, &cfg, None).unwrap();
        let wall = t.elapsed().as_secs_f64();
        serde_json::json!({
            "prompt_tokens": rows[0].len(),
            "new_tokens": out.rows.iter().map(|r| r.tokens.len()).sum::<usize>(),
            "tokens": out.rows.iter().map(|r| r.tokens.clone()).collect::<Vec<_>>(),
            "tau": out.stats.tau,
            "weights": m.model.weight_formats(),
            "decode_tokens_per_second": out.stats.decode_tokens_per_second,
            "prefill_seconds": out.stats.prefill_seconds,
            "wall_seconds": wall,
            "peak_rss_mb": peak_rss_mb(),
        })
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One column's measurement: a child of this binary on one of our backends, or a peer.
enum Job {
    Ours(Command),
    Peer(PeerSpec, String),
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
}

fn exit_with(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}

fn main() {
    let args = Args::parse();
    let model = fetch(&SMOLLM2_135M_INSTRUCT, &mut |_, _, _| {}).expect("fetch default model");
    if let Some(b) = &args.child {
        let kind: BackendKind = b.parse().expect("backend");
        let beams = BeamConfig { width: args.beam_width, length: args.beam_length };
        let drafter = args.child_redrafter.then(|| (args.drafter.clone().expect("--drafter"), beams));
        let task = Measure { prompt: args.prompt.clone(), new_tokens: args.new_tokens, model, weights: args.child_weights, batch: args.child_batch, drafter };
        println!("{}", run_on(kind, task).unwrap_or_else(|e| exit_with(&e)));
        return;
    }
    let backends: Vec<String> = if args.backend.is_empty() {
        [BackendKind::NdArray, BackendKind::Flex].into_iter().filter(|k| k.is_compiled()).map(|k| k.name().to_string()).collect()
    } else {
        args.backend.clone()
    };
    let exe = std::env::current_exe().expect("current exe");
    let one_thread = [("RAYON_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")];
    // Every configuration: (label, key of its autoregressive twin, is it autoregressive, command line).
    let mut configs: Vec<(String, String, bool, Job)> = vec![];
    for backend in &backends {
        for w in list(&args.weights) {
            for b in list(&args.batch) {
                let modes: &[bool] = if args.drafter.is_some() { &[false, true] } else { &[false] };
                for &rd in modes {
                    let mut c = Command::new(&exe);
                    c.args(["--child", backend, "--child-weights", &w, "--child-batch", &b, "--new-tokens", &args.new_tokens.to_string(), "--prompt", &args.prompt]);
                    if rd {
                        let d = args.drafter.as_ref().unwrap();
                        c.arg("--child-redrafter").arg("--drafter").arg(d);
                        c.args(["--beam-width", &args.beam_width.to_string(), "--beam-length", &args.beam_length.to_string()]);
                    }
                    let mode = if rd { format!("ReDrafter {}x{}", args.beam_width, args.beam_length) } else { "autoregressive".into() };
                    configs.push((format!("{backend} | {w} | {mode} | {b}"), format!("{backend}/{w}/{b}"), !rd, Job::Ours(c)));
                }
            }
        }
    }
    // The peers run through the harness's scripts (`redrafter_bench::harness::peer`), one
    // process per run as ours, on this one prompt.
    let prompt = [Prompt { category: "ar_decode".into(), text: args.prompt.clone(), raw: false }];
    if args.python != "none" {
        let peer = PeerSpec { name: "transformers".into(), python: args.python.clone().into() };
        configs.push(("transformers (torch, CPU) | f32 | autoregressive | 1".into(), "transformers".into(), true, Job::Peer(peer, "f32".into())));
    }
    if let Some(py) = &args.llama_cpp {
        for fmt in list(&args.llama_cpp_weights) {
            let ours = match fmt.as_str() {
                "stored" => "native",
                "f16" | "f32" => fmt.as_str(),
                _ => exit_with(&format!("--llama-cpp-weights: `{fmt}` is not one of stored, f16, f32")),
            };
            let peer = PeerSpec { name: "llama.cpp".into(), python: py.into() };
            let weights = if fmt == "stored" { "GGUF as stored".to_string() } else { format!("{fmt} (llama.cpp's conversion)") };
            configs.push((format!("llama.cpp (llama-cpp-python) | {weights} | autoregressive | 1"), format!("llama.cpp/{fmt}"), true, Job::Peer(peer, ours.into())));
        }
    }
    let work = std::env::temp_dir().join(format!("ar_decode-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap_or_else(|e| exit_with(&e));
    let mut runs: Vec<Vec<serde_json::Value>> = vec![vec![]; configs.len()];
    let mut failed = vec![false; configs.len()];
    for r in 0..args.runs {
        for (i, (label, _, _, job)) in configs.iter_mut().enumerate() {
            if failed[i] {
                continue;
            }
            eprint!("\rrun {}/{}: {label}                    ", r + 1, args.runs);
            let cmd = match job {
                Job::Ours(cmd) => cmd,
                Job::Peer(peer, weights) => {
                    let mut got = None;
                    let res = peer::run(peer, &model, &prompt, args.new_tokens, 1, &[(weights.clone(), r)], &work, &mut |_, _, m| {
                        got = Some(serde_json::json!({
                            "decode_tokens_per_second": m.committed as f64 / m.decode_seconds,
                            "prefill_seconds": m.prefill_seconds,
                            "peak_rss_mb": m.peak_rss_mb,
                        }));
                        Ok(())
                    });
                    match (res, got) {
                        (Ok(_), Some(v)) => runs[i].push(v),
                        (Err(e), _) => {
                            eprintln!("\n{label} failed: {e}");
                            failed[i] = true;
                        }
                        (Ok(_), None) => {
                            eprintln!("\n{label} printed no run");
                            failed[i] = true;
                        }
                    }
                    continue;
                }
            };
            match cmd.envs(one_thread).output() {
                Ok(o) if o.status.success() => {
                    let line = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string();
                    runs[i].push(serde_json::from_str::<serde_json::Value>(&line).expect("child json"));
                }
                Ok(o) => {
                    eprintln!("\n{label} failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
                    failed[i] = true;
                }
                Err(e) => {
                    eprintln!("\n{label} could not start: {e}");
                    failed[i] = true;
                }
            }
        }
    }
    eprintln!();
    println!("| backend | weights | mode | batch | decode tok/s (median of {}) | runs | tau | prefill s | peak RSS MB | same tokens as AR |", args.runs);
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ar_tokens: std::collections::HashMap<String, serde_json::Value> = Default::default();
    for ((label, key, is_ar, _), rs) in configs.iter().zip(&runs) {
        if rs.is_empty() {
            continue;
        }
        let col = |k: &str| median(rs.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect());
        let all: Vec<String> = rs.iter().map(|r| format!("{:.1}", r["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN))).collect();
        // ReDrafter's tokens against the autoregressive row of the same backend, weights and batch.
        let same = if *is_ar {
            ar_tokens.insert(key.clone(), rs[0]["tokens"].clone());
            "–".to_string()
        } else {
            match ar_tokens.get(key) {
                Some(t) if !t.is_null() => if *t == rs[0]["tokens"] { "yes".into() } else { "**no**".into() },
                _ => "?".into(),
            }
        };
        let tau = rs[0]["tau"].as_f64().map_or("–".to_string(), |t| format!("{t:.2}"));
        println!("| {label} | {:.1} | {} | {tau} | {:.2} | {:.0} | {same} |", col("decode_tokens_per_second"), all.join(", "), col("prefill_seconds"), col("peak_rss_mb"));
    }
}
