//! `redrafter`: generate text with a Llama-family model on any compiled-in burn backend.

mod bench;
mod default_drafter;
mod corpus;
mod distill;
mod draft_vocab;
mod generate;
mod model_path;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "redrafter", version, about = "ReDrafter speculative decoding on burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Most memory one request may ask for (weights, KV cache, a step's workspace), e.g. 8G or
    /// 512M; larger requests stop with an error that states the bytes. Default: the
    /// REDRAFTER_MEMORY_LIMIT environment variable, else the machine's physical memory.
    #[arg(long, global = true, value_parser = redrafter_io::budget::parse_size)]
    memory_limit: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt (argument, or stdin when absent or `-`).
    Generate(generate::GenerateArgs),
    /// Train a drafter for the LLM (Apple's checkpoint format), with progress, plots and held-out accuracy.
    Train(train::TrainArgs),
    /// Distillation data: the LLM's own answers to conversation prompts (greedy, or sampled with `--temperature`), as a JSONL for `train --data`.
    DistillData(distill::DistillArgs),
    /// Give a drafter a reduced draft vocabulary (the K most frequent answer tokens of a corpus), or remove it.
    DraftVocab(draft_vocab::DraftVocabArgs),
    /// Benchmark autoregressive and ReDrafter decoding over backends, weights, drafters, grids,
    /// batch sizes and temperatures (JSON, CSV, SVG; resumable); `bench compare` merges results.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Some(bytes) = cli.memory_limit {
        redrafter_io::budget::set_limit(bytes);
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Train(args) => train::run(args),
        Command::DistillData(args) => distill::run(args),
        Command::DraftVocab(args) => draft_vocab::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
