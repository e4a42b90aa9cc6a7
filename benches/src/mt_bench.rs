//! τ and speedup of ReDrafter over autoregressive decoding on MT-Bench's first turns (greedy,
//! batch 1), same backend, same thread count, same prompts, for a W × L grid and one or more
//! drafters (e.g. ground-truth vs distilled).
//!
//!     RAYON_NUM_THREADS=1 mt_bench --drafter gt=runs/gt --drafter distill=runs/distill \
//!         --grids 1x3,1x4,2x4,4x4 --prompts 80 --new-tokens 64 --out bench-out
//!
//! `--drafter NAME=prompt-lookup` drafts by prompt lookup instead (copies from the row's own
//! context, no trained drafter; `redrafter::PromptLookup`). `--prompts-file FILE` replaces
//! MT-Bench by a user's prompts (JSONL, one `{"prompt": ...}` per line), e.g. the code-editing set
//! `benches/prompts/code_edit.jsonl`.
//!
//! Every ReDrafter output is checked token for token against the autoregressive one (greedy
//! ReDrafter is lossless); a mismatch is reported. τ is also reported per MT-Bench category.
//! `--temperature T` (with `--top-k`, `--top-p`, `--acceptance exact|apple`) measures sampled
//! decoding instead; its outputs are not compared. Writes `mt_bench.json` and `mt_bench.svg`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use redrafter::KernelBackend;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{Autoregressive, BeamConfig, DraftSource, GenerationConfig, Generator, PromptLookup, ReDrafter, load_drafter};
use redrafter_io::Message;
use redrafter_io::fetch::{MT_BENCH_QUESTIONS, SMOLLM2_135M_INSTRUCT, fetch};
use redrafter_io::mt_bench::load_mt_bench;
use redrafter_train::plot::{Series, line_chart};

#[derive(Parser, Clone)]
struct Args {
    /// `name=dir` of a drafter (Apple's format), or `name=prompt-lookup`; repeat to compare.
    #[arg(long, required = true)]
    drafter: Vec<String>,
    /// Prompts from this JSONL file (`{"prompt": "..."}` per line) instead of MT-Bench.
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Beam grids W x L.
    #[arg(long, default_value = "1x3,1x4,2x4,4x4")]
    grids: String,
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
    weights: redrafter_llama::WeightFormat,
    /// Sample at this temperature instead of greedy decoding (0). Sampled outputs are not
    /// compared with autoregressive decoding's (they follow the same distribution, not the same
    /// draws): the mismatch column is left empty.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// How sampled drafts are accepted: exact or apple.
    #[arg(long, default_value = "exact")]
    acceptance: redrafter::Acceptance,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(serde::Serialize, Clone)]
struct Result {
    drafter: String,
    width: usize,
    length: usize,
    tau: f64,
    seconds: f64,
    ar_seconds: f64,
    speedup: f64,
    tokens: usize,
    /// Outputs that differ from autoregressive decoding's (greedy only; none when sampling).
    mismatches: Option<usize>,
    acceptance_by_position: Vec<f64>,
    tree_compression: f64,
    /// Milliseconds per ReDrafter step in each phase (draft, tree, verify, accept).
    phase_ms_per_step: Vec<(String, f64)>,
    /// Milliseconds per autoregressive decode step (prefill excluded).
    ar_ms_per_step: f64,
    /// ReDrafter decode seconds per step over autoregressive decode seconds per step: the τ at
    /// which ReDrafter breaks even.
    break_even_tau: f64,
    /// τ over the prompts of each MT-Bench category, in the order categories first appear
    /// (one entry, "prompts-file", with `--prompts-file`).
    tau_by_category: Vec<(String, f64)>,
}

struct Bench(Args);

impl BackendTask for Bench {
    type Output = Vec<Result>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Vec<Result> {
        let a = self.0;
        let model = a.model.clone().unwrap_or_else(|| fetch(&SMOLLM2_135M_INSTRUCT, &mut |_, _, _| {}).expect("fetch default model"));
        let m = redrafter_llama::load_with::<B>(&model, &device, a.weights).expect("load model");
        eprintln!("weights: {}", m.model.weight_formats());
        let tpl = m.tokenizer.chat_template.as_ref().expect("chat template");
        // (category, prompt text): the category lets τ be reported per kind of question.
        let texts: Vec<(String, String)> = match &a.prompts_file {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let text = v["prompt"].as_str().unwrap_or_else(|| panic!("{}: a line without \"prompt\"", path.display()));
                    ("prompts-file".to_string(), text.to_string())
                })
                .collect(),
            None => load_mt_bench(&fetch(&MT_BENCH_QUESTIONS, &mut |_, _, _| {}).expect("fetch MT-Bench"))
                .expect("MT-Bench")
                .into_iter()
                .map(|q| (q.category, q.turns[0].clone()))
                .collect(),
        };
        let texts = &texts[..a.prompts.min(texts.len())];
        let mut categories: Vec<String> = vec![];
        for (c, _) in texts {
            if !categories.contains(c) {
                categories.push(c.clone());
            }
        }
        let category_of: Vec<usize> = texts.iter().map(|(c, _)| categories.iter().position(|x| x == c).unwrap()).collect();
        let prompts: Vec<Vec<u32>> = texts
            .iter()
            .map(|(_, q)| m.tokenizer.encode(&tpl.render(&[Message::new("user", q)], true).expect("render")).expect("encode"))
            .collect();
        let drafters: Vec<(String, Option<redrafter::Drafter<B>>)> = a
            .drafter
            .iter()
            .map(|spec| {
                let (name, dir) = spec.split_once('=').expect("--drafter name=dir");
                if dir == "prompt-lookup" {
                    return (name.to_string(), None);
                }
                let mut d = load_drafter::<B>(dir.as_ref(), &device).expect("load drafter");
                d.bind(&m.model).expect("bind the draft vocabulary");
                (name.to_string(), Some(d))
            })
            .collect();
        let grids: Vec<(usize, usize)> = a
            .grids
            .split(',')
            .map(|g| g.split_once('x').map(|(w, l)| (w.parse().expect("W"), l.parse().expect("L"))).expect("grids are WxL"))
            .collect();
        let g = Generator::new(&m.model, None);
        let sampling = redrafter::SamplingConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
            acceptance: a.acceptance,
        };
        let greedy = sampling.is_greedy();
        let cfg = GenerationConfig { max_new_tokens: a.new_tokens, sampling, ..Default::default() };
        // Warm-up (first-touch allocations, kernel compilation).
        g.generate(&mut Autoregressive, &prompts[..1], &GenerationConfig { max_new_tokens: 4, ..cfg.clone() }, None).expect("warm-up");

        let configs: Vec<(usize, usize, usize)> =
            (0..drafters.len()).flat_map(|d| grids.iter().map(move |&(w, l)| (d, w, l))).collect();
        let mut totals = vec![(0.0f64, 0usize, 0usize, 0usize, vec![0.0; 8], 0.0f64); configs.len()];
        let mut phases: Vec<Vec<(String, f64)>> = vec![vec![]; configs.len()];
        let mut decode_seconds = vec![0.0f64; configs.len()];
        // (committed, steps) per config and category.
        let mut by_category = vec![vec![(0usize, 0usize); categories.len()]; configs.len()];
        let (mut ar_step_seconds, mut ar_steps) = (0.0, 0usize);
        let mut ar_seconds = 0.0;
        let mut tokens = 0;
        for (i, p) in prompts.iter().enumerate() {
            let t0 = Instant::now();
            let ar = g.generate(&mut Autoregressive, std::slice::from_ref(p), &cfg, None).expect("autoregressive");
            ar_seconds += t0.elapsed().as_secs_f64();
            tokens += ar.rows[0].tokens.len();
            ar_step_seconds += ar.stats.decode_seconds;
            ar_steps += ar.stats.steps;
            for (c, &(d, w, l)) in configs.iter().enumerate() {
                let source: Box<dyn DraftSource<B>> = match &drafters[d].1 {
                    Some(drafter) => Box::new(drafter.clone()),
                    None => Box::new(PromptLookup::default()),
                };
                let mut s = ReDrafter::new(source, BeamConfig { width: w, length: l }).expect("beam config");
                let t0 = Instant::now();
                let out = g.generate(&mut s, std::slice::from_ref(p), &cfg, None).expect("redrafter");
                let t = &mut totals[c];
                t.0 += t0.elapsed().as_secs_f64();
                t.1 += out.stats.committed_in_steps;
                t.2 += out.stats.steps;
                let bc = &mut by_category[c][category_of[i]];
                bc.0 += out.stats.committed_in_steps;
                bc.1 += out.stats.steps;
                t.3 += usize::from(out.rows[0].tokens != ar.rows[0].tokens);
                for (k, x) in out.stats.acceptance_by_position.iter().enumerate().take(8) {
                    t.4[k] += x * out.stats.steps as f64;
                }
                t.5 += out.stats.tree_compression * out.stats.steps as f64;
                decode_seconds[c] += out.stats.decode_seconds;
                for (name, secs) in &out.stats.phase_seconds {
                    match phases[c].iter_mut().find(|(n, _)| n == name) {
                        Some((_, s)) => *s += secs,
                        None => phases[c].push((name.clone(), *secs)),
                    }
                }
            }
            eprintln!("prompt {}/{}: AR {:.1} s so far", i + 1, prompts.len(), ar_seconds);
        }
        let ar_ms = 1e3 * ar_step_seconds / ar_steps.max(1) as f64;
        configs
            .iter()
            .zip(totals)
            .zip(phases)
            .zip(decode_seconds)
            .zip(by_category)
            .map(|((((&(d, w, l), (secs, committed, steps, mismatches, acc, comp)), phases), decode), by_cat)| {
                let per_step: Vec<(String, f64)> = phases.into_iter().map(|(n, s)| (n, 1e3 * s / steps.max(1) as f64)).collect();
                let step_ms = 1e3 * decode / steps.max(1) as f64;
                Result {
                drafter: drafters[d].0.clone(),
                width: w,
                length: l,
                tau: committed as f64 / steps.max(1) as f64,
                seconds: secs,
                ar_seconds,
                speedup: ar_seconds / secs,
                tokens,
                mismatches: greedy.then_some(mismatches),
                acceptance_by_position: acc.iter().take(l - 1).map(|x| x / steps.max(1) as f64).collect(),
                tree_compression: comp / steps.max(1) as f64,
                break_even_tau: step_ms / ar_ms,
                phase_ms_per_step: per_step,
                ar_ms_per_step: ar_ms,
                tau_by_category: categories
                    .iter()
                    .zip(by_cat)
                    .map(|(name, (c, s))| (name.clone(), c as f64 / s.max(1) as f64))
                    .collect(),
            }})
            .collect()
    }
}

fn main() {
    let args = Args::parse();
    let kind: BackendKind = args.backend.parse().expect("backend");
    let results = run_on(kind, Bench(args.clone())).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    std::fs::create_dir_all(&args.out).expect("create --out");
    std::fs::write(args.out.join("mt_bench.json"), serde_json::to_string_pretty(&results).expect("json")).expect("write");
    let mut series = vec![];
    for name in args.drafter.iter().map(|s| s.split_once('=').map_or(s.as_str(), |p| p.0)) {
        let pts = |f: fn(&Result) -> f64| {
            results.iter().filter(|r| r.drafter == name).enumerate().map(|(i, r)| (i as f64, f(r))).collect::<Vec<_>>()
        };
        series.push(Series { name: format!("{name}: speedup"), points: pts(|r| r.speedup) });
        series.push(Series { name: format!("{name}: tau"), points: pts(|r| r.tau) });
    }
    let set = args.prompts_file.as_ref().map_or("MT-Bench".to_string(), |p| p.display().to_string());
    let decoding = if args.temperature < redrafter::sampling::GREEDY_BELOW {
        "greedy".to_string()
    } else {
        format!("T {} ({} acceptance)", args.temperature, if args.acceptance == redrafter::Acceptance::Apple { "Apple's" } else { "exact" })
    };
    let title = format!("{set}, {} prompts, {decoding}, {} ({})", args.prompts, args.backend, args.grids);
    std::fs::write(args.out.join("mt_bench.svg"), line_chart(&title, "grid index (see --grids)", "speedup / tau", &series)).expect("write svg");
    println!("| drafter | W×L | τ | speedup | ReDrafter s | AR s | mismatches | acceptance by position | ms/step (AR ms/step) | break-even τ |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let acc: Vec<String> = r.acceptance_by_position.iter().map(|x| format!("{x:.2}")).collect();
        let ph: Vec<String> = r.phase_ms_per_step.iter().map(|(n, ms)| format!("{n} {ms:.1}")).collect();
        println!(
            "| {} | {}×{} | {:.2} | {:.2}x | {:.1} | {:.1} | {} | {} | {} ({:.1}) | {:.2} |",
            r.drafter, r.width, r.length, r.tau, r.speedup, r.seconds, r.ar_seconds, r.mismatches.map_or("-".to_string(), |m| m.to_string()), acc.join(" "), ph.join(", "), r.ar_ms_per_step, r.break_even_tau
        );
    }
    if let Some(first) = results.first() {
        println!();
        let names: Vec<&str> = first.tau_by_category.iter().map(|(n, _)| n.as_str()).collect();
        println!("| drafter | W×L | τ by category: {} |", names.join(" | "));
        println!("|---|---|{}", "---|".repeat(names.len()));
        for r in &results {
            let t: Vec<String> = r.tau_by_category.iter().map(|(_, t)| format!("{t:.2}")).collect();
            println!("| {} | {}×{} | {} |", r.drafter, r.width, r.length, t.join(" | "));
        }
    }
}
