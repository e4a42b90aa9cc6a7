//! Decode speed and peak memory of SmolLM2-135M on each CPU backend, one thread, by weight format
//! (`--weights native,f16,f32`), batch size (`--batch 1,8,32`) and, with `--drafter`, ReDrafter
//! next to autoregressive decoding; Hugging Face transformers (f32, batch 1) and, with
//! `--llama-cpp`, llama.cpp (llama-cpp-python, batch 1) as anchors.
//!
//!     cargo run --release --all-features -p redrafter-bench --bin ar_decode -- --runs 3
//!     ar_decode --backend flex --weights native,f16,f32 --batch 1,8,32 --drafter DIR --llama-cpp python3
//!     ar_decode --backend flex --weights native,f32 --llama-cpp python3 --python none
//!
//! A front end of the benchmarking harness (`redrafter_bench::harness`, the code behind
//! `redrafter bench`): one harness plan per batch size, whose rows decode `--prompt` and then the
//! fixed prompts below, cycled, each exactly `--new-tokens` tokens. Each backend is measured in a
//! child process of this binary (peak RSS is reset before each cell), runs are interleaved, the
//! table gives medians, and every ReDrafter output is checked against autoregressive decoding.
//! The peers are the harness's (`--peer`): transformers on the GGUF dequantized to f32, and
//! llama.cpp in each `--weights` format (`native` = the GGUF as stored; f16/f32 = llama.cpp's own
//! conversion). The harness's files (`bench.json` …) are written under `--out`/batch{B}; a rerun
//! with the same options measures only what is missing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use redrafter::backends::BackendKind;
use redrafter_bench::harness::peer::PeerSpec;
use redrafter_bench::harness::plan::{DrafterSpec, Plan, parse_list};
use redrafter_bench::harness::report::Cell;
use redrafter_bench::harness::suite::Prompt;
use redrafter_bench::harness::run::ChildArgs;
use redrafter_bench::harness::{BenchError, exit, quiet, run};
use redrafter_io::fetch::{SMOLLM2_135M_INSTRUCT, fetch};

/// Decode speed and peak memory of SmolLM2-135M by weight format and batch size, autoregressive
/// and ReDrafter, with transformers and llama.cpp as anchors: a front end of the harness.
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
    /// Python with torch + transformers for the reference column (skipped, with the reason, if
    /// it fails; `none` leaves it out).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Python with llama-cpp-python: llama.cpp on the same GGUF file, batch 1, in each
    /// `--weights` format (skipped, with the reason, if absent).
    #[arg(long)]
    llama_cpp: Option<String>,
    /// llama.cpp's formats, comma-separated (`stored` = the GGUF as it is, `f16`, `f32`): each
    /// must be among `--weights` (`stored` is `native`), whose formats llama.cpp runs.
    #[arg(long)]
    llama_cpp_weights: Option<String>,
    /// Where the harness keeps its records and reports (one directory per batch size).
    #[arg(long, default_value = "ar-decode-out")]
    out: PathBuf,
    #[command(flatten)]
    child: ChildArgs,
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

fn bench(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(done) = a.child.run() {
        return Ok(done?);
    }
    let weights: Vec<String> = parse_list("--weights", &a.weights)?;
    if let Some(list) = &a.llama_cpp_weights {
        for f in parse_list::<String>("--llama-cpp-weights", list)? {
            let ours = if f == "stored" { "native".to_string() } else { f.clone() };
            if !["native", "f16", "f32"].contains(&ours.as_str()) {
                return Err(BenchError::Option(format!("--llama-cpp-weights: `{f}` is not one of stored, f16, f32")).into());
            }
            if !weights.contains(&ours) {
                return Err(BenchError::Option(format!("--llama-cpp-weights {f}: llama.cpp runs the --weights formats; add {ours} to --weights")).into());
            }
        }
    }
    let backends: Vec<String> = if a.backend.is_empty() {
        [BackendKind::NdArray, BackendKind::Flex].into_iter().filter(|k| k.is_compiled()).map(|k| k.name().to_string()).collect()
    } else {
        a.backend.clone()
    };
    let mut peers = vec![];
    if a.python != "none" {
        peers.push(PeerSpec { name: "transformers".into(), python: a.python.clone().into() });
    }
    if let Some(py) = &a.llama_cpp {
        peers.push(PeerSpec { name: "llama.cpp".into(), python: py.into() });
    }
    let texts: Vec<&str> = std::iter::once(a.prompt.as_str()).chain(MORE_PROMPTS).collect();
    let model = fetch(&SMOLLM2_135M_INSTRUCT, &mut quiet)?;
    let exe = std::env::current_exe()?;
    let mut cells: Vec<Cell> = vec![];
    for batch in parse_list::<usize>("--batch", &a.batch)? {
        let plan = Plan {
            suite: "ar_decode".into(),
            prompts: (0..batch).map(|i| Prompt { category: "ar_decode".into(), text: texts[i % texts.len()].to_string(), raw: false }).collect(),
            new_tokens: a.new_tokens,
            model: model.clone(),
            weights: weights.clone(),
            backends: backends.clone(),
            threads: vec![1],
            drafters: a.drafter.iter().map(|d| DrafterSpec::drafter("ReDrafter", d.clone())).collect(),
            grids: vec![(a.beam_width, a.beam_length)],
            thresholds: vec![0.0],
            batches: vec![batch],
            temperatures: vec![0.0],
            top_k: 0,
            top_p: 1.0,
            acceptance: "exact".into(),
            seed: 0,
            runs: a.runs,
            // The peers decode one row at a time: their cells belong with batch 1.
            peers: if batch == 1 { peers.clone() } else { vec![] },
        };
        let report = run::run(&plan, &a.out.join(format!("batch{batch}")), &[exe.clone().into_os_string()], true, &mut |done, total, what| {
            eprint!("\rbatch {batch}: [{done}/{total} runs] {what}                    ");
        })?;
        eprintln!();
        for b in report.backends.iter().filter(|b| b.status != "ok") {
            eprintln!("{} skipped: {}", b.backend, b.reason.as_deref().unwrap_or("?"));
        }
        cells.extend(report.cells);
    }
    println!("| backend | weights | mode | batch | decode tok/s (median of {}; min–max) | tau | prefill ms (p50) | peak RSS MB | same tokens as AR |", a.runs);
    println!("|---|---|---|---|---|---|---|---|---|");
    for c in &cells {
        let k = &c.key;
        let mode = if k.is_autoregressive() { "autoregressive".to_string() } else { format!("ReDrafter {}x{}", k.width, k.length) };
        let d = c.decode_tokens_per_second;
        let same = match c.mismatches {
            _ if k.is_autoregressive() => "–",
            Some(0) => "yes",
            Some(_) => "**no**",
            None => "?",
        };
        let rss = c.peak_rss_mb.map_or("–".to_string(), |m| format!("{m:.0}"));
        println!("| {} | {} | {mode} | {} | {:.1} ({:.1}–{:.1}) | {:.2} | {:.0} | {rss} | {same} |", k.backend, k.weights, k.batch, d.median, d.min, d.max, c.tau, c.ttft_ms.p50);
    }
    Ok(())
}

fn main() -> ExitCode {
    exit(bench(Args::parse()))
}
