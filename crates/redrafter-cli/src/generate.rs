use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use redrafter::KernelBackend;
use clap::Args;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{
    Autoregressive, BeamConfig, GenerationConfig, GenerationStats, Generator, ReDrafter, Strategy,
    load_drafter,
};
use redrafter_bench::cli_args::SamplingArgs;
use redrafter_io::Message;

type BoxError = Box<dyn std::error::Error>;

#[derive(Args, Clone)]
pub struct GenerateArgs {
    /// The prompt; read from stdin when absent or `-`.
    prompt: Option<String>,
    /// A GGUF file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).
    /// Default: SmolLM2-135M-Instruct, downloaded on first use.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute backend: ndarray, flex, wgpu, cuda, wgpu-fusion or cuda-fusion (those compiled into
    /// this build; the -fusion kinds add burn's kernel fusion).
    /// Default: flex if compiled in (the fastest CPU backend here), else ndarray.
    #[arg(long)]
    backend: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// How sampled ReDrafter steps accept drafts: `exact` (every token follows the LLM's
    /// sampling distribution) or `apple` (the reference's approximate rule, to compare with it).
    #[arg(long, default_value = "exact")]
    acceptance: redrafter::Acceptance,
    /// Use the prompt as is, without the model's chat template.
    #[arg(long)]
    raw: bool,
    /// System message for the chat template.
    #[arg(long)]
    system: Option<String>,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Stop once the output falls into a repetition loop: more than 16 of the last 32 tokens
    /// close a 4-gram seen before in the output (finish reason `loop`).
    #[arg(long)]
    stop_loops: bool,
    /// Cap on prompt + generated tokens (default: the model's context length).
    #[arg(long)]
    context_limit: Option<usize>,
    /// Print one JSON object {"tokens", "text", "stats"} on stdout instead of streaming text.
    #[arg(long)]
    json: bool,
    /// A ReDrafter drafter directory (Apple's format: config.json + model.safetensors).
    /// Default: the drafter bundled for the default model; with another `--model` and no
    /// drafter, decoding is autoregressive.
    #[arg(long)]
    drafter: Option<PathBuf>,
    /// Beams drafted per step (W). The default is the fastest measured with the bundled drafter on
    /// a CPU (docs/training.md); wider and longer trees pay off with a better drafter or a GPU.
    #[arg(long, default_value_t = 1)]
    beam_width: usize,
    /// Tokens per beam, counting the LLM's own next token (L; each beam drafts L - 1).
    #[arg(long, default_value_t = 3)]
    beam_length: usize,
    /// Adaptive draft length: a step drafts a token only while the drafter's joint probability
    /// of the best beam, that token included, is at least P, so unlikely drafts are not verified
    /// (docs/adaptive-length.md). 0 = off: every step drafts L - 1 tokens. Default: 0.3 on the
    /// CPU backends, where it measured fastest (1.09x against 0.99x at W1 L3 on MT-Bench), and
    /// off on GPUs, where each draft step would add a synchronisation and nothing is measured yet.
    #[arg(long, value_parser = parse_threshold)]
    draft_threshold: Option<f32>,
    /// Plain autoregressive decoding even when a drafter is given (the baseline).
    #[arg(long)]
    autoregressive: bool,
    /// Draft by prompt lookup instead of the drafter: the last tokens are looked up earlier in
    /// the prompt and output, and what followed them is verified (no trained drafter needed;
    /// pays off when the answer repeats its input, as in code editing).
    #[arg(long, conflicts_with = "drafter")]
    prompt_lookup: bool,
    /// Draft with the drafter alone. By default a row whose last 2–4 tokens occurred before in
    /// its context copies what followed them there (prompt lookup) and the drafter drafts
    /// elsewhere: on MT-Bench τ 1.63 against 1.47 at W1 L3, same tokens (docs/prompt-lookup.md,
    /// "Copy first").
    #[arg(long)]
    no_lookup_first: bool,
    /// Wait for the device at the end of every phase, so that the reported phase times are the
    /// device's (wgpu, CUDA; slower). Without it, a GPU step's work shows up in "verify".
    #[arg(long)]
    sync_phases: bool,
    /// How the LLM's weights are held: `native` keeps a GGUF's blocks (Q8_0, Q4_0, Q4_1, F16,
    /// BF16) as stored and multiplies them directly with f32 activations (CPU backends; f32 on
    /// GPUs), `native-q8` does so with activations rounded to 8 bits (llama.cpp's way: faster,
    /// other answers), `f16` converts every projection and the head to f16 (CPU backends), `f32`
    /// widens everything.
    #[arg(long, default_value = "native")]
    weights: redrafter_llama::WeightFormat,
}

pub fn run(args: GenerateArgs) -> Result<(), BoxError> {
    let kind = BackendKind::default_for(args.backend.as_deref())?;
    let prompt = match args.prompt.as_deref() {
        Some(p) if p != "-" => p.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    // The bundled drafter was trained for the default model only.
    let drafter = match (&args.drafter, &args.model) {
        (Some(p), _) => Some(p.clone()),
        (None, None) if !args.autoregressive => Some(crate::default_drafter::path()?),
        _ => None,
    };
    let model = crate::model_path::resolve(args.model.clone())?;
    run_on(kind, Task { args, prompt, model, kind, drafter })?
}

struct Task {
    args: GenerateArgs,
    prompt: String,
    model: PathBuf,
    kind: BackendKind,
    drafter: Option<PathBuf>,
}

impl BackendTask for Task {
    type Output = Result<(), BoxError>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output {
        let Task { args, prompt, model, kind, drafter } = self;
        let t0 = Instant::now();
        let loaded = redrafter_llama::load_with::<B>(&model, &device, args.weights)?;
        let load_seconds = t0.elapsed().as_secs_f64();
        let weights = loaded.model.weight_formats();
        let weight_mb = loaded.model.step_weight_bytes() as f64 / 1e6;
        let tok = &loaded.tokenizer;

        let text = match (&tok.chat_template, args.raw) {
            (Some(t), false) => {
                let mut msgs = vec![];
                if let Some(s) = &args.system {
                    msgs.push(Message::new("system", s));
                }
                msgs.push(Message::new("user", &prompt));
                t.render(&msgs, true)?
            }
            _ => prompt,
        };
        let ids = tok.encode(&text)?;
        let beams = BeamConfig { width: args.beam_width, length: args.beam_length };
        let threshold = args.draft_threshold.unwrap_or(if B::host_resident() { DEFAULT_CPU_DRAFT_THRESHOLD } else { 0.0 });
        let mut strategy: Box<dyn Strategy<B>> = match (&drafter, args.autoregressive) {
            (_, false) if args.prompt_lookup => {
                Box::new(ReDrafter::new(redrafter::PromptLookup::default(), beams)?.draft_threshold(threshold)?)
            }
            (Some(path), false) => {
                let drafter = load_drafter::<B>(path, &device)?;
                drafter.check_compatible(loaded.model.config())?;
                let source: Box<dyn redrafter::DraftSource<B>> =
                    if args.no_lookup_first { Box::new(drafter) } else { Box::new(redrafter::LookupFirst::over(drafter)) };
                Box::new(ReDrafter::new(source, beams)?.draft_threshold(threshold)?)
            }
            _ => {
                beams.validate()?;
                Box::new(Autoregressive)
            }
        };
        let config = GenerationConfig {
            max_new_tokens: args.max_new_tokens,
            sampling: args.sampling.config(args.acceptance),
            stop_strings: args.stop.clone(),
            eos_ids: tok.eos.clone(),
            context_limit: args.context_limit,
            sync_phases: args.sync_phases,
            stop_loops: args.stop_loops.then(redrafter::LoopStop::default),
            row_seeds: vec![],
        };
        let generator = Generator::new(&loaded.model, Some(tok));
        let mut stdout = std::io::stdout();
        let mut stream = |_: usize, s: &str| {
            let _ = stdout.write_all(s.as_bytes());
            let _ = stdout.flush();
        };
        let on_text: Option<&mut dyn FnMut(usize, &str)> = if args.json { None } else { Some(&mut stream) };
        let out = generator.generate(strategy.as_mut(), &[ids], &config, on_text)?;
        let row = &out.rows[0];
        let s = &out.stats;
        if args.json {
            let json = serde_json::json!({
                "tokens": row.tokens,
                "text": row.text,
                "finish_reason": row.finish,
                "loop_start": row.loop_start,
                "prompt_tokens": row.prompt_tokens,
                "backend": kind.name(),
                "model": loaded.source,
                "stats": with_weights(s, args.weights, &weights, weight_mb),
                "load_seconds": load_seconds,
            });
            println!("{json}");
        } else {
            println!();
            eprintln!(
                "[{} on {}] {} prompt + {} new tokens ({:?}) | prefill {:.2}s, decode {:.2}s | {:.1} tok/s ({:.1} tok/s decode) | {} steps, tau {:.2} | load {:.1}s | weights {weights} ({weight_mb:.0} MB/step)",
                s.strategy, kind, row.prompt_tokens, row.tokens.len(), row.finish, s.prefill_seconds, s.decode_seconds,
                s.tokens_per_second, s.decode_tokens_per_second, s.steps, s.tau, load_seconds,
            );
            if !s.acceptance_by_position.is_empty() {
                eprintln!("{}", speculative_summary(s));
            }
        }
        Ok(())
    }
}

/// `--draft-threshold` when none is given, on backends whose tensors live in host memory
/// (docs/adaptive-length.md, "Measured").
const DEFAULT_CPU_DRAFT_THRESHOLD: f32 = 0.3;

/// `--draft-threshold`: a probability in [0, 1).
pub(crate) fn parse_threshold(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if redrafter::decode::validate_draft_threshold(p).is_ok() => Ok(p),
        _ => Err(format!("--draft-threshold {s:?}: expected a probability in [0, 1), e.g. 0.2")),
    }
}

/// The run's stats with the weights it ran on: what was asked (`--weights`), what each kind of
/// weight ended up as, and the bytes of weight a decode step reads.
fn with_weights(s: &GenerationStats, asked: redrafter_llama::WeightFormat, formats: &str, mb: f64) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("weights".into(), serde_json::json!({ "requested": asked.name(), "formats": formats, "step_weight_mb": mb }));
    }
    v
}

/// The ReDrafter numbers of a run: acceptance per draft position, tree compression, phase times.
fn speculative_summary(s: &GenerationStats) -> String {
    let acc: Vec<String> = s.acceptance_by_position.iter().map(|a| format!("{:.0}%", a * 100.0)).collect();
    let total: f64 = s.phase_seconds.iter().map(|p| p.1).sum();
    let phases: Vec<String> =
        s.phase_seconds.iter().map(|(n, t)| format!("{n} {:.2}s ({:.0}%)", t, 100.0 * t / total.max(1e-12))).collect();
    let timing = if s.synced_phases { "device time" } else { "host time" };
    format!(
        "accepted per step {:.2} of {:.2} drafted | acceptance by draft position [{}] | tree compression {:.2} ({} packed / {} grid tokens) | {} ({timing})",
        s.mean_accepted,
        s.mean_offered,
        acc.join(", "),
        s.tree_compression,
        s.packed_tokens,
        s.grid_tokens,
        phases.join(", ")
    )
}
