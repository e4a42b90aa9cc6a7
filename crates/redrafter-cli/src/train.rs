//! `redrafter train`: trains a drafter for an LLM and saves it in Apple's format.

use std::io::IsTerminal;
use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use redrafter::KernelBackend;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{DrafterConfig, save_drafter};
use redrafter_train::plot::{Series, line_chart};
use redrafter_train::{
    CacheMeta, ContextAttention, ContextAttentionConfig, Example, HiddenCache, HiddenCaches, Targets, TrainConfig, Trainer, cache_key, evaluate_with,
    saved_context_attention,
};

type BoxError = Box<dyn std::error::Error>;

/// Padded tokens per forward when the hidden-state cache is filled ahead of training.
const FILL_BATCH_TOKENS: usize = 4096;

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Training data: `sharegpt` (the pinned ShareGPT V3 download), a ShareGPT JSON array (may be
    /// cut off at the end), a JSONL of {"messages": [...]} / ShareGPT records / {"text": ...},
    /// or plain text. Several sources (`--data A B`) train on their examples one after another
    /// (shuffled together), each with its own hidden-state cache, so that adding a source to a
    /// mix computes only its states.
    #[arg(long, num_args = 1.., default_value = "sharegpt")]
    data: Vec<PathBuf>,
    /// Output directory: the drafter (config.json + model.safetensors), checkpoint/, logs, plots.
    #[arg(long)]
    out: PathBuf,
    /// The LLM (GGUF or HF directory). Default: SmolLM2-135M-Instruct.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    backend: Option<String>,
    /// Optimizer steps. 0 with `--init`: only measure that drafter's held-out accuracy.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 4)]
    grad_accum: usize,
    /// Training positions drawn per sequence (0 = all); the drafter's output projection
    /// dominates the cost per position.
    #[arg(long, default_value_t = 64)]
    positions_per_sequence: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// AdamW's decoupled weight decay λ (each step shrinks every weight by lr·λ of itself); 0 =
    /// none, as in Apple's recipe. A regulariser for small data (docs/training.md).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Draft steps T trained per position.
    #[arg(long, default_value_t = 5)]
    draft_steps: usize,
    /// ground-truth (the data's tokens) or llm-greedy (the LLM's own next tokens).
    #[arg(long, default_value = "ground-truth")]
    targets: String,
    /// Weight w in [0, 1] of the LLM's own next-token distribution (over the draft vocabulary)
    /// in the loss: each draft step trains on (1 − w)·CE(label) + w·CE(LLM distribution). It is
    /// computed from the hidden states the run already has (cache or live), without another
    /// LLM pass. 0: the labels only.
    #[arg(long, default_value_t = 0.0)]
    soft_targets: f32,
    /// Residual blocks N of the head.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Head width E (default 2H).
    #[arg(long)]
    exit_dim: Option<usize>,
    /// Apple's own E→V head instead of our tied head (E→H, then the LLM's output embedding).
    #[arg(long)]
    untied_head: bool,
    /// Use at most this many conversations/documents of each `--data` source.
    #[arg(long)]
    max_examples: Option<usize>,
    /// Held-out examples for the final top-k accuracy.
    #[arg(long, default_value_t = 32)]
    eval_examples: usize,
    /// Measure the final top-k accuracy on this data instead (all of it, no hold-out), and train
    /// on every example of `--data`. `distill-data --data mt-bench --no-holdout` gives the LLM's
    /// own answers to MT-Bench: the drafter's top-1 at draft step 1 on them tracks the
    /// acceptance at draft position 1 that `mt_bench` measures (docs/training.md).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Do not remove MT-Bench questions from the data (they are the benchmark; keep them out).
    #[arg(long)]
    no_holdout: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint every N steps (the run resumes from out/checkpoint with the same options).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Store the final drafter in f16.
    #[arg(long)]
    f16: bool,
    /// Start from this drafter directory (Apple's format) instead of random weights, e.g. to
    /// fine-tune a ground-truth drafter on llm-greedy targets. Its shape must match the options.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Stop after this optimizer step (with a checkpoint); rerun the same command to resume.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Train over the K most frequent target tokens of the training data (plus the end-of-turn
    /// tokens) instead of the whole vocabulary: a reduced draft vocabulary (docs/drafter.md).
    /// With `--init`, a drafter that has one keeps its own (then this must be absent or equal).
    #[arg(long)]
    draft_vocab_size: Option<usize>,
    /// Where the LLM's hidden states of the training data are kept, f16, so that epochs after
    /// the first do not run the LLM (default: a content-addressed directory per data source under
    /// the cache dir; given with several sources, one such directory per source inside it; `off`
    /// runs the LLM for every micro-batch).
    #[arg(long)]
    hidden_cache: Option<PathBuf>,
    /// `K/N`: fill only the hidden-state cache's slots K modulo N, then exit without training,
    /// so that N processes (one per core) fill it together before the training run. Without it,
    /// training fills the whole cache first (longest examples first, in batches of similar
    /// length) and then trains.
    #[arg(long, value_parser = crate::distill::parse_shard)]
    fill_cache: Option<(usize, usize)>,
    /// The LLM layers the drafter reads, comma-separated, counted as layers applied (the LLM's
    /// layer count, e.g. 30, is its own final state; 0 the embeddings): their states, each
    /// through the LLM's final norm, side by side form the drafter's context instead of the
    /// final state alone (docs/drafter.md, "Context layers"). Default: the final layer.
    #[arg(long, value_delimiter = ',')]
    context_layers: Option<Vec<usize>>,
    /// The layers the hidden-state cache holds (a superset of `--context-layers`), so that one
    /// cache serves drafters reading different layers. Default: the context layers.
    #[arg(long, value_delimiter = ',')]
    feature_layers: Option<Vec<usize>>,
    /// A probe: train a causal attention layer of this many 64-wide heads over the context
    /// beside the drafter, added to its context vector, and measure the held-out accuracy with
    /// it. Decoding does not read it yet (docs/training.md, "Context attention"). 0: none.
    #[arg(long, default_value_t = 0)]
    context_attention: usize,
}

pub fn run(args: TrainArgs) -> Result<(), BoxError> {
    let kind = BackendKind::default_for(args.backend.as_deref())?;
    let targets = match args.targets.as_str() {
        "ground-truth" => Targets::GroundTruth,
        "llm-greedy" => Targets::LlmGreedy,
        other => return Err(format!("unknown --targets `{other}` (ground-truth or llm-greedy)").into()),
    };
    if !(0.0..=1.0).contains(&args.soft_targets) {
        return Err(format!("--soft-targets {} is outside [0, 1]", args.soft_targets).into());
    }
    if args.steps == 0 && args.init.is_none() {
        return Err("--steps 0 evaluates an existing drafter: give it with --init".into());
    }
    if args.steps == 0 && args.context_attention > 0 {
        return Err("--context-attention trains an attention beside the drafter: --steps 0 (evaluate only) has none to read".into());
    }
    let model = crate::model_path::resolve(args.model.clone())?;
    run_on(kind, Task { args, model, targets })?
}

struct Task {
    args: TrainArgs,
    model: PathBuf,
    targets: Targets,
}

impl BackendTask for Task {
    type Output = Result<(), BoxError>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output {
        let Task { args, model, targets } = self;
        let loaded = redrafter_llama::load::<Autodiff<B>>(&model, &device)?;
        let llm = loaded.model.no_grad();
        let tok = &loaded.tokenizer;
        let lc = llm.config().clone();

        // Only evaluating on --eval-data: the training data is not needed (distilled sets take
        // tens of seconds to tokenize), so it is not read.
        let eval_only = args.steps == 0 && args.eval_data.is_some();
        let usable = |e: &Example| e.tokens.len() >= args.draft_steps + 2 && e.target.iter().any(|&t| t);
        // One source given twice would open its cache twice and train on it twice over.
        let source_ids: Vec<String> = args.data.iter().map(|d| crate::corpus::source_id(d)).collect();
        if let Some((i, _)) = source_ids.iter().enumerate().find(|(i, id)| source_ids[..*i].contains(id)) {
            return Err(format!("--data {} is given twice", args.data[i].display()).into());
        }
        // Each source's usable examples (its cache's slots), in the order given.
        let mut sources: Vec<Vec<Example>> = Vec::new();
        if !eval_only {
            for data in &args.data {
                let mut ex = crate::corpus::load_examples(tok, data, args.max_examples.unwrap_or(usize::MAX), args.max_len, !args.no_holdout)?;
                ex.retain(usable);
                if args.data.len() > 1 {
                    eprintln!("{}: {} usable examples", data.display(), ex.len());
                }
                sources.push(ex);
            }
        }
        let eval = match &args.eval_data {
            Some(path) => {
                let mut eval = crate::corpus::load_examples(tok, path, usize::MAX, args.max_len, false)?;
                eval.retain(usable);
                let training: usize = sources.iter().map(Vec::len).sum();
                if eval.is_empty() || (training == 0 && !eval_only) {
                    return Err(format!("{training} usable training examples and {} for evaluation ({}): need some of each", eval.len(), path.display()).into());
                }
                eval
            }
            None => {
                // Held out from the end of the last source.
                let last = sources.last_mut().expect("--data has at least one value");
                if last.len() <= args.eval_examples {
                    return Err(format!("{} usable examples: need more than --eval-examples {}", last.len(), args.eval_examples).into());
                }
                last.split_off(last.len() - args.eval_examples)
            }
        };
        let source_sizes: Vec<usize> = sources.iter().map(Vec::len).collect();
        let examples: Vec<Example> = sources.into_iter().flatten().collect();
        let tokens: usize = examples.iter().map(|e| e.target.iter().filter(|&&t| t).count()).sum();
        if eval_only {
            eprintln!("{} examples to evaluate on", eval.len());
        } else {
            eprintln!("{} training examples ({tokens} target tokens), {} held out", examples.len(), eval.len());
        }

        if args.steps == 0 {
            let init = args.init.as_ref().expect("checked in run");
            let drafter = redrafter::load_drafter::<B>(init, &device)?;
            return write_eval(&args, &drafter, None, &llm.valid(), &eval, serde_json::json!({ "init": init }));
        }
        let mut dc = DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size).with_tied_lm_head(!args.untied_head);
        dc.num_draft_layers = args.layers;
        dc.exit_dim = args.exit_dim.unwrap_or(2 * lc.hidden_size);
        let draft_vocab = draft_vocab_ids(&args, &examples, &tok.eos, lc.vocab_size)?;
        dc.draft_vocab_size = draft_vocab.as_ref().map(Vec::len);
        // The final layer alone is Apple's drafter: leave the config as theirs.
        dc.context_layers = args.context_layers.clone().filter(|l| l[..] != [lc.num_layers]);
        dc.validate()?;
        if let Some(ids) = &draft_vocab {
            let covered = examples.iter().flat_map(|e| e.tokens.iter().zip(&e.target)).filter(|(t, m)| **m && ids.binary_search(t).is_ok()).count();
            eprintln!("draft vocabulary: {} tokens, {:.2}% of the training targets", ids.len(), 100.0 * covered as f64 / tokens.max(1) as f64);
        }
        let config = TrainConfig {
            draft_steps: args.draft_steps,
            batch_size: args.batch_size,
            positions_per_sequence: args.positions_per_sequence,
            grad_accum: args.grad_accum,
            steps: args.steps,
            lr: args.lr,
            warmup_ratio: args.warmup_ratio,
            weight_decay: args.weight_decay,
            seed: args.seed,
            targets,
            checkpoint_every: args.checkpoint_every,
            drafter: dc,
            init: args.init.clone(),
            draft_vocab,
            soft_targets: args.soft_targets,
            feature_layers: args.feature_layers.clone().filter(|f| Some(f) != args.context_layers.as_ref()),
            context_attention: (args.context_attention > 0).then_some(ContextAttentionConfig { heads: args.context_attention, head_dim: 64 }),
        };
        let features = config.features_for(lc.num_layers)?;
        std::fs::create_dir_all(&args.out)?;
        let hidden_cache = match args.hidden_cache.as_deref() {
            Some(p) if p.as_os_str() == "off" => None,
            given => {
                // The final layer alone keeps the key it always had.
                let mut model_id = format!("{}\nf32", crate::model_path::identity(&model)?);
                if features[..] != [lc.num_layers] {
                    model_id.push_str(&format!("\nlayers {features:?}"));
                }
                let width = lc.hidden_size * features.len();
                let mut parts = Vec::with_capacity(args.data.len());
                for (id, &n) in source_ids.iter().zip(&source_sizes) {
                    // Keyed by the data source, not its examples (each slot names its tokens): a
                    // data file that grows keeps the states already computed for its first examples.
                    let key = cache_key(&model_id, width, args.max_len, id);
                    let dir = match given {
                        Some(dir) if args.data.len() == 1 => dir.to_path_buf(),
                        Some(dir) => dir.join(&key[..16]),
                        None => redrafter_io::fetch::cache_dir().join("hidden").join(&key[..16]),
                    };
                    let cache = HiddenCache::open(&dir, CacheMeta::new(key, width, args.max_len, n))?;
                    eprintln!(
                        "hidden-state cache {}: {} slots filled, {n} training examples (at most {:.2} GB when full)",
                        dir.display(),
                        cache.filled(),
                        cache.full_bytes() as f64 / 1e9
                    );
                    parts.push((cache, n));
                }
                Some(HiddenCaches::new(parts)?)
            }
        };
        let mut hidden_cache = hidden_cache;
        match (&mut hidden_cache, args.fill_cache) {
            (Some(cache), shard) => {
                let shard = shard.unwrap_or((0, 1));
                let start = std::time::Instant::now();
                let mut last = 0.0;
                let filled = redrafter_train::fill_cache(&llm.valid(), &examples, cache, shard, FILL_BATCH_TOKENS, &features, &mut |done, total, tokens| {
                    let secs = start.elapsed().as_secs_f64();
                    if secs - last >= 30.0 || done == total {
                        last = secs;
                        eprintln!("hidden-state cache: {done}/{total} examples ({tokens} tokens, {:.0} tok/s)", tokens as f64 / secs.max(1e-9));
                    }
                })?;
                if args.fill_cache.is_some() {
                    eprintln!("hidden-state cache: shard {}/{} is full ({filled} examples computed now)", shard.0, shard.1);
                    return Ok(());
                }
            }
            (None, Some(_)) => return Err("--fill-cache needs the hidden-state cache (not --hidden-cache off)".into()),
            (None, None) => {}
        }
        let mut trainer = Trainer {
            llm: &llm,
            examples: &examples,
            config: config.clone(),
            out_dir: args.out.clone(),
            stop_after: args.stop_after,
            hidden_cache,
        };
        let bar = ProgressBar::new(config.steps as u64).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} (eta {eta}) {msg}").expect("template").progress_chars("=> "),
        );
        // Without a terminal (a background run with a log file) the bar draws nothing: print a
        // line about every 1% of the run instead.
        let tty = std::io::stderr().is_terminal();
        let every = (config.steps / 100).max(1);
        let (mut seconds, mut since) = (0.0, 0usize);
        let (drafter, log) = trainer.run(&mut |step, total, line| {
            let acc: Vec<String> = line.step_acc.iter().map(|a| format!("{:.0}", a * 100.0)).collect();
            let msg = format!("loss {:.3} | top-1 % per step [{}] | lr {:.1e}", line.loss, acc.join(" "), line.lr);
            (seconds, since) = (seconds + line.seconds, since + 1);
            if tty {
                bar.set_position(step as u64);
                bar.set_message(msg);
            } else if step % every == 0 || step == total {
                eprintln!("step {step}/{total} | {msg} | {:.1} s/step", seconds / since as f64);
                (seconds, since) = (0.0, 0);
            }
        })?;
        bar.finish();
        if log.last().is_none_or(|l| l.step < config.steps) {
            eprintln!("stopped at step {} of {}; rerun the same command to resume", log.last().map_or(0, |l| l.step), config.steps);
            return Ok(());
        }

        let inner = drafter.valid();
        save_drafter(&inner, &args.out, args.f16)?;
        let log_text: String = log.iter().map(|l| serde_json::to_string(l).expect("serializes") + "\n").collect();
        std::fs::write(args.out.join("train_log.jsonl"), log_text)?;
        let curve = |f: &dyn Fn(&redrafter_train::LogLine, usize) -> f64, name: &str| -> Vec<Series> {
            (0..config.draft_steps)
                .map(|i| Series { name: format!("{name} step {}", i + 1), points: log.iter().map(|l| (l.step as f64, f(l, i))).collect() })
                .collect()
        };
        let mut loss = vec![Series { name: "total".into(), points: log.iter().map(|l| (l.step as f64, l.loss)).collect() }];
        loss.extend(curve(&|l, i| l.step_loss.get(i).copied().unwrap_or(f64::NAN), "loss"));
        std::fs::write(args.out.join("loss.svg"), line_chart("Drafter training loss", "optimizer step", "cross-entropy", &loss))?;
        let acc = curve(&|l, i| l.step_acc.get(i).copied().unwrap_or(f64::NAN), "top-1");
        std::fs::write(args.out.join("accuracy.svg"), line_chart("Drafter top-1 accuracy (training batches)", "optimizer step", "accuracy", &acc))?;

        let attention = saved_context_attention(&args.out, &config, &llm.valid())?;
        if attention.is_some() {
            eprintln!("the context attention is in {} (decoding does not read it yet)", args.out.join("checkpoint").display());
        }
        write_eval(&args, &inner, attention.as_ref(), &llm.valid(), &eval, serde_json::to_value(&config)?)?;
        eprintln!("drafter saved to {}", args.out.display());
        Ok(())
    }
}

/// The held-out top-k accuracy of `drafter` per draft step: printed and written to
/// `out/eval.json` (with `config`, what made the drafter).
fn write_eval<B: KernelBackend>(
    args: &TrainArgs,
    drafter: &redrafter::Drafter<B>,
    attention: Option<&ContextAttention<B>>,
    llm: &redrafter_llama::Llama<B>,
    eval: &[Example],
    config: serde_json::Value,
) -> Result<(), BoxError> {
    let topk = evaluate_with(drafter, attention, llm, eval, args.draft_steps, args.batch_size);
    let source = args.eval_data.as_ref().map_or_else(|| format!("the last {} examples of the last --data", eval.len()), |p| p.display().to_string());
    let json = serde_json::json!({ "held_out_examples": eval.len(), "held_out": source, "top_k_accuracy_per_step": topk, "config": config });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("eval.json"), serde_json::to_string_pretty(&json)?)?;
    for (i, a) in topk.iter().enumerate() {
        eprintln!("held-out draft step {}: top-1 {:.1}%, top-5 {:.1}%", i + 1, a[0] * 100.0, a[4] * 100.0);
    }
    Ok(())
}

/// The draft vocabulary to train over: `--init`'s own when it has one (a given
/// `--draft-vocab-size` must then match it), else the `--draft-vocab-size` most frequent target
/// tokens of `examples` with the end-of-turn tokens always in.
fn draft_vocab_ids(args: &TrainArgs, examples: &[Example], eos: &[u32], vocab_size: usize) -> Result<Option<Vec<u32>>, BoxError> {
    if let Some(init) = &args.init {
        let d = redrafter::load_drafter::<burn::backend::NdArray>(init, &Default::default())?;
        if let Some(v) = d.draft_vocab() {
            if args.draft_vocab_size.is_some_and(|k| k != v.len()) {
                return Err(format!("{}: its draft vocabulary has {} tokens, not --draft-vocab-size {}", init.display(), v.len(), args.draft_vocab_size.unwrap_or(0)).into());
            }
            return Ok(Some(v.token_ids().to_vec()));
        }
    }
    let Some(k) = args.draft_vocab_size else { return Ok(None) };
    if k == 0 || k > vocab_size {
        return Err(format!("--draft-vocab-size {k} must be between 1 and the vocabulary size {vocab_size}").into());
    }
    let counts = crate::corpus::target_counts(examples, vocab_size);
    Ok(Some(redrafter::drafter::vocab::most_frequent(&counts, k, eos)))
}
