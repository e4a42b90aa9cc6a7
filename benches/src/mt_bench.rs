//! τ and speedup of ReDrafter over autoregressive decoding on MT-Bench's first turns (batch 1),
//! same backend, same thread count, same prompts, for a W × L grid and one or more drafters
//! (e.g. ground-truth vs distilled).
//!
//!     RAYON_NUM_THREADS=1 mt_bench --drafter gt=runs/gt --drafter distill=runs/distill \
//!         --grids 1x3,1x4,2x4,4x4 --prompts 80 --new-tokens 64 --out bench-out
//!
//! A front end of the benchmarking harness (`redrafter_bench::harness`, the code behind
//! `redrafter bench`): these options become one harness plan on one backend, measured in a child
//! process of this binary, and the results are the harness's (`bench.json`, `bench.csv`,
//! `bench.md`, plots; τ per MT-Bench category, acceptance by position, ms per phase, break-even
//! τ, and every greedy ReDrafter output checked token for token against autoregressive
//! decoding). `redrafter bench` takes several backends, batch sizes and thread counts at once.
//!
//! `--drafter NAME=prompt-lookup` drafts by prompt lookup instead (no trained drafter).
//! `--prompts-file FILE` replaces MT-Bench by a user's prompts (JSONL, one `{"prompt": ...}` per
//! line), e.g. the code-editing set `benches/prompts/code_edit.jsonl`. `--temperature T` (with
//! `--top-k`, `--top-p`, `--acceptance exact|apple`) measures sampled decoding instead.
//! The thread count is the caller's `RAYON_NUM_THREADS` (all cores when unset).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use redrafter_bench::cli_args::SamplingArgs;
use redrafter_bench::harness::plan::{DrafterSpec, Plan, parse_grids, parse_list};
use redrafter_bench::harness::run::ChildArgs;
use redrafter_bench::harness::{BenchError, exit, quiet, report, run, suite};
use redrafter_io::fetch::{MT_BENCH_QUESTIONS, SMOLLM2_135M_INSTRUCT, fetch};

/// τ and speedup of ReDrafter over autoregressive decoding on MT-Bench's first turns (batch 1), one
/// backend, one thread count, one or more drafters and W × L grids: a front end of the harness.
#[derive(Parser)]
struct Args {
    /// `name=dir` of a drafter (Apple's format), `name=dir+lookup` (prompt lookup first, the
    /// drafter elsewhere; `+lookup:MIN:MAX` sets the n-gram lengths), or `name=prompt-lookup`;
    /// repeat to compare.
    #[arg(long, required_unless_present = "child_plan")]
    drafter: Vec<String>,
    /// Prompts from this JSONL file (`{"prompt": "..."}` per line) instead of MT-Bench.
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Beam grids W x L.
    #[arg(long, default_value = "1x3,1x4,2x4,4x4")]
    grids: String,
    /// Adaptive draft-length thresholds p, comma-separated: every drafter and grid is measured
    /// at each (docs/adaptive-length.md); 0 = every step drafts L - 1 tokens.
    #[arg(long, default_value = "0")]
    draft_thresholds: String,
    /// MT-Bench first turns to use (80 = all).
    #[arg(long, default_value_t = 80)]
    prompts: usize,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    #[arg(long, default_value = "flex")]
    backend: String,
    /// The LLM (default: SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// How the LLM's weights are held: native (the GGUF's blocks on CPU backends), native-q8
    /// (the same with 8-bit activations), f16 or f32.
    #[arg(long, default_value = "native")]
    weights: String,
    /// Sampled outputs (`--temperature` above 0) are not compared with autoregressive
    /// decoding's (same distribution, not the same draws).
    #[command(flatten)]
    sampling: SamplingArgs,
    /// How sampled drafts are accepted: exact or apple.
    #[arg(long, default_value = "exact")]
    acceptance: String,
    /// Repeats of every cell (interleaved); the report gives the median and the spread.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[command(flatten)]
    child: ChildArgs,
}

fn bench(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(done) = a.child.run() {
        return Ok(done?);
    }
    let (name, mut prompts) = match &a.prompts_file {
        Some(p) => (p.display().to_string(), suite::from_file(p)?),
        None => ("mt-bench".to_string(), suite::mt_bench(&fetch(&MT_BENCH_QUESTIONS, &mut quiet)?)?),
    };
    if a.prompts == 0 {
        return Err(BenchError::Option("--prompts must be at least 1".into()).into());
    }
    prompts.truncate(a.prompts);
    let threads = match std::env::var("RAYON_NUM_THREADS") {
        Ok(v) => v.parse().map_err(|_| BenchError::Option(format!("RAYON_NUM_THREADS `{v}` is not a thread count")))?,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let plan = Plan {
        suite: name,
        prompts,
        new_tokens: a.new_tokens,
        model: match a.model {
            Some(m) => m,
            None => fetch(&SMOLLM2_135M_INSTRUCT, &mut quiet)?,
        },
        weights: vec![a.weights],
        backends: vec![a.backend],
        threads: vec![threads],
        drafters: a.drafter.iter().map(|s| DrafterSpec::parse(s)).collect::<Result<_, _>>()?,
        grids: parse_grids(&a.grids)?,
        thresholds: parse_list("--draft-thresholds", &a.draft_thresholds)?,
        batches: vec![1],
        temperatures: vec![a.sampling.temperature],
        top_k: a.sampling.top_k,
        top_p: a.sampling.top_p,
        acceptance: a.acceptance,
        seed: a.sampling.seed,
        runs: a.runs,
        peers: vec![],
    };
    let exe = std::env::current_exe()?;
    let rep = run::run(&plan, &a.out, &[exe.into_os_string()], true, &mut |done, total, what| {
        eprintln!("[{done}/{total} runs] {what}");
    })?;
    print!("{}", report::markdown(&rep));
    let mismatched: usize = rep.cells.iter().filter_map(|c| c.mismatches).sum();
    if mismatched > 0 {
        eprintln!("warning: {mismatched} greedy ReDrafter outputs differ from autoregressive decoding (see the mismatches column)");
    }
    eprintln!("wrote {}: bench.json, bench.csv, bench.md, plots", a.out.display());
    Ok(())
}

fn main() -> ExitCode {
    exit(bench(Args::parse()))
}
