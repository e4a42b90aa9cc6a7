//! `redrafter draft-vocab`: gives a drafter a reduced draft vocabulary, the K tokens most frequent
//! in the answers of a conversation corpus (FR-Spec), or takes it away again (`--full`). The
//! drafter's weights do not change; its draft step then scores K tokens instead of V.

use std::path::PathBuf;

use clap::Args;
use redrafter::KernelBackend;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::drafter::vocab::most_frequent;
use redrafter::{load_drafter, save_drafter};

type BoxError = Box<dyn std::error::Error>;

#[derive(Args, Clone)]
pub struct DraftVocabArgs {
    /// The drafter to reduce (default: the drafter bundled for the default model).
    #[arg(long)]
    drafter: Option<PathBuf>,
    /// Where to write the drafter with its draft vocabulary.
    #[arg(long)]
    out: PathBuf,
    /// K: tokens in the draft vocabulary (the end-of-turn tokens are always among them).
    #[arg(long, required_unless_present = "full")]
    size: Option<usize>,
    /// Remove the draft vocabulary instead (tied drafters: back to the whole vocabulary).
    #[arg(long, conflicts_with = "size")]
    full: bool,
    /// Corpus whose target tokens are counted (`train --data` formats; `sharegpt` = the pinned
    /// download; a `distill-data` JSONL counts the LLM's own answers).
    #[arg(long, default_value = "sharegpt")]
    data: PathBuf,
    /// Count at most this many conversations/documents.
    #[arg(long, default_value_t = 20000)]
    max_examples: usize,
    /// Tokens per sequence counted.
    #[arg(long, default_value_t = 2048)]
    max_len: usize,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    backend: Option<String>,
    /// Store the drafter in f16.
    #[arg(long)]
    f16: bool,
}

pub fn run(args: DraftVocabArgs) -> Result<(), BoxError> {
    if args.size == Some(0) {
        return Err("--size must be at least 1".into());
    }
    let kind = BackendKind::default_for(args.backend.as_deref())?;
    let model = crate::model_path::resolve(args.model.clone())?;
    let drafter = match &args.drafter {
        Some(d) => d.clone(),
        None => crate::default_drafter::path()?,
    };
    run_on(kind, Task { args, model, drafter })?
}

struct Task {
    args: DraftVocabArgs,
    model: PathBuf,
    drafter: PathBuf,
}

impl BackendTask for Task {
    type Output = Result<(), BoxError>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output {
        let Task { args, model, drafter } = self;
        let loaded = redrafter_llama::load::<B>(&model, &device)?;
        let d = load_drafter::<B>(&drafter, &device)?;
        d.check_compatible(loaded.model.config())?;
        let Some(k) = args.size else {
            save_drafter(&d.with_full_vocab()?, &args.out, args.f16)?;
            eprintln!("drafter without a draft vocabulary saved to {}", args.out.display());
            return Ok(());
        };
        let v = loaded.model.config().vocab_size;
        if k > v {
            return Err(format!("--size {k} is larger than the vocabulary ({v} tokens)").into());
        }
        let tok = &loaded.tokenizer;
        let examples = crate::corpus::load_examples(tok, &args.data, args.max_examples, args.max_len, true)?;
        let counts = crate::corpus::target_counts(&examples, v);
        let docs = examples.len();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Err(format!("{}: no target tokens to count", args.data.display()).into());
        }
        let ids = most_frequent(&counts, k, &tok.eos);
        let covered: u64 = ids.iter().map(|&t| counts[t as usize]).sum();
        let reduced = d.with_draft_vocab(ids)?;
        save_drafter(&reduced, &args.out, args.f16)?;
        let k = reduced.draft_vocab_size();
        eprintln!(
            "{docs} examples, {total} target tokens: the {k} draft tokens cover {:.2}% of them ({} distinct tokens seen)",
            100.0 * covered as f64 / total as f64,
            counts.iter().filter(|&&c| c > 0).count()
        );
        eprintln!("drafter with a {k}-token draft vocabulary saved to {}", args.out.display());
        Ok(())
    }
}
