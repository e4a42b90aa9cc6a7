//! `redrafter bench`: the benchmarking harness (docs/benchmarks.md, "The harness"), and
//! `redrafter bench compare` to merge results from several machines or backends.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use redrafter_bench::harness::peer::PeerSpec;
use redrafter_bench::harness::plan::{DrafterSpec, Plan, parse_grids, parse_list};
use redrafter_bench::harness::{compare, run, suite};
use redrafter_io::fetch::MT_BENCH_QUESTIONS;

type BoxError = Box<dyn std::error::Error>;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Merge result files (`bench.json`, or the directories holding them) from different machines
    /// or backends into one table, CSV and plot, flagging rows whose settings differ.
    Compare(CompareArgs),
}

#[derive(Args)]
struct CompareArgs {
    /// Result files or directories, two or more.
    #[arg(required = true, num_args = 2..)]
    results: Vec<PathBuf>,
    #[arg(long, default_value = "bench-compare")]
    out: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Prompt suite: mt-bench (80 first turns, 8 categories), raw-text (continuations without a
    /// chat template), code-edit (editing requests).
    #[arg(long, default_value = "mt-bench")]
    suite: String,
    /// Your own prompts instead of a suite: JSONL, `{"prompt": ..., "category": ..., "raw": ...}` per line.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Use only the first N prompts of the suite.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// The LLM (default: SmolLM2-135M-Instruct, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Weight formats, comma-separated: native, native-q8, f16, f32.
    #[arg(long, default_value = "native")]
    weights: String,
    /// Backends, comma-separated, or `all` (every backend compiled into this binary). One that
    /// cannot start on this machine is reported as skipped, with the reason.
    #[arg(long, default_value = "flex")]
    backends: String,
    /// Thread counts (RAYON_NUM_THREADS of each child), comma-separated.
    #[arg(long, default_value = "1")]
    threads: String,
    /// `NAME=DIR` (Apple's drafter format), `NAME=DIR+lookup` (prompt lookup first, the drafter
    /// elsewhere; `+lookup:MIN:MAX` sets the n-gram lengths) or `NAME=prompt-lookup`; repeat to
    /// compare. DIR `bundled` is the drafter bundled for the default model. Default (default model
    /// only): `bundled=bundled+lookup`, the drafter as `generate` uses it (whose CPU default also
    /// sets `--draft-thresholds 0.3`). `--drafter none`: autoregressive cells only.
    #[arg(long)]
    drafter: Vec<String>,
    /// Beam grids W x L, comma-separated.
    #[arg(long, default_value = "1x3")]
    grids: String,
    /// Adaptive draft-length thresholds p, comma-separated: every drafter and grid is measured
    /// at each (docs/adaptive-length.md); 0 = every step drafts L - 1 tokens.
    #[arg(long, default_value = "0")]
    draft_thresholds: String,
    /// Batch sizes, comma-separated (prompts are decoded in batches of this many rows).
    #[arg(long, default_value = "1")]
    batch: String,
    /// Sampling temperatures, comma-separated (0 = greedy, where outputs are checked against
    /// autoregressive decoding).
    #[arg(long, default_value = "0")]
    temperature: String,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Sampled ReDrafter's acceptance rule: exact or apple.
    #[arg(long, default_value = "exact")]
    acceptance: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A peer implementation as a baseline: `transformers=PYTHON` (Hugging Face transformers,
    /// the GGUF dequantized to f32) or `llama-cpp=PYTHON` (llama-cpp-python, the GGUF as stored
    /// for `native`, its own f16/f32 conversion for those --weights); repeatable. Autoregressive,
    /// batch 1, greedy, the same prompts and thread counts; a peer that is not installed is
    /// reported as skipped with Python's reason.
    #[arg(long)]
    peer: Vec<String>,
    /// Repeats of every cell (interleaved); reports give the median and the spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Results directory; rerunning with the same settings skips what it already holds.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Measure nothing: write the report from the records already in `--out` (same options as
    /// the run that made them), e.g. after a time limit stopped it.
    #[arg(long)]
    report_only: bool,
    #[command(flatten)]
    child: run::ChildArgs,
}

pub fn run(args: BenchArgs) -> Result<(), BoxError> {
    if let Some(BenchCommand::Compare(c)) = args.command {
        let cmp = compare::compare(&c.results)?;
        compare::write(&cmp, &c.out)?;
        print!("{}", compare::markdown(&cmp));
        eprintln!("wrote {}/compare.md, compare.csv, compare.svg", c.out.display());
        return Ok(());
    }
    let a = args.run;
    if let Some(done) = a.child.run() {
        return Ok(done?);
    }
    let default_model = a.model.is_none();
    let model = crate::model_path::resolve(a.model.clone())?;
    let (name, mut prompts) = match &a.prompts {
        Some(p) => (p.display().to_string(), suite::from_file(p)?),
        None => match a.suite.as_str() {
            "mt-bench" => ("mt-bench".to_string(), suite::mt_bench(&redrafter_io::fetch::fetch(&MT_BENCH_QUESTIONS, &mut |_, _, _| {})?)?),
            s => match suite::built_in(s) {
                Some(p) => (s.to_string(), p?),
                None => return Err(format!("--suite `{s}`: expected mt-bench, {} (or --prompts FILE)", suite::BUILT_IN.join(", ")).into()),
            },
        },
    };
    if let Some(n) = a.limit {
        if n == 0 {
            return Err("--limit must be at least 1".into());
        }
        prompts.truncate(n);
    }
    let drafters: Vec<DrafterSpec> = match a.drafter.as_slice() {
        [] if default_model => vec![DrafterSpec::parse(&bundled_dir("bundled=bundled+lookup")?)?],
        [] => return Err("--drafter NAME=DIR (or NAME=prompt-lookup, or none) is needed with --model".into()),
        [none] if none == "none" => vec![],
        specs => specs.iter().map(|s| -> Result<DrafterSpec, BoxError> { Ok(DrafterSpec::parse(&bundled_dir(s)?)?) }).collect::<Result<_, _>>()?,
    };
    let plan = Plan {
        suite: name,
        prompts,
        new_tokens: a.new_tokens,
        model,
        weights: parse_list("--weights", &a.weights)?,
        backends: run::expand_backends(&parse_list::<String>("--backends", &a.backends)?),
        threads: parse_list("--threads", &a.threads)?,
        drafters,
        grids: parse_grids(&a.grids)?,
        thresholds: parse_list("--draft-thresholds", &a.draft_thresholds)?,
        batches: parse_list("--batch", &a.batch)?,
        temperatures: parse_list("--temperature", &a.temperature)?,
        top_k: a.top_k,
        top_p: a.top_p,
        acceptance: a.acceptance.clone(),
        seed: a.seed,
        runs: a.runs,
        peers: a.peer.iter().map(|s| PeerSpec::parse(s)).collect::<Result<_, _>>()?,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs {elapsed_precise} {msg}").expect("valid template").progress_chars("=> "),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let exe = std::env::current_exe()?;
    let report = run::run(&plan, &a.out, &[exe.into_os_string(), "bench".into()], !a.report_only, &mut |done, total, what| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.to_string());
    })?;
    bar.finish_and_clear();
    print!("{}", redrafter_bench::harness::report::markdown(&report));
    let mismatched: usize = report.cells.iter().filter_map(|c| c.mismatches).sum();
    if mismatched > 0 {
        eprintln!("warning: {mismatched} greedy ReDrafter outputs differ from autoregressive decoding (see the mismatches column)");
    }
    eprintln!("wrote {}: bench.json (schema {}), bench.csv, bench.md, plots", a.out.display(), redrafter_bench::harness::SCHEMA_VERSION);
    Ok(())
}

/// A `--drafter` spec whose directory is `bundled` (`NAME=bundled`, `NAME=bundled+lookup…`) with
/// the bundled drafter's directory in its place (it is unpacked into the cache on first use);
/// any other spec as given.
fn bundled_dir(spec: &str) -> Result<String, BoxError> {
    match spec.split_once('=') {
        Some((name, what)) if what == "bundled" || what.starts_with("bundled+") => {
            let dir = crate::default_drafter::path()?;
            Ok(format!("{name}={}{}", dir.display(), &what["bundled".len()..]))
        }
        _ => Ok(spec.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_names_the_bundled_drafter_directory() {
        let dir = crate::default_drafter::path().unwrap();
        assert_eq!(bundled_dir("b=bundled").unwrap(), format!("b={}", dir.display()));
        assert_eq!(bundled_dir("f=bundled+lookup:2:3").unwrap(), format!("f={}+lookup:2:3", dir.display()));
        let spec = DrafterSpec::parse(&bundled_dir("bundled=bundled+lookup").unwrap()).unwrap();
        assert_eq!((spec.dir.as_deref(), spec.lookup_first), (Some(dir.as_path()), Some(redrafter_bench::harness::plan::LOOKUP_FIRST_DEFAULT)));
        // Anything else is left to the spec parser.
        for other in ["x=/some/dir", "prompt-lookup", "y=bundledness", "bundled"] {
            assert_eq!(bundled_dir(other).unwrap(), other);
        }
    }
}
