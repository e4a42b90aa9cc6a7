//! Training a drafter from scratch, on the CPU, in well under a minute, and τ rising as it trains.
//!
//!     cargo run --release -p redrafter-examples --example train_tiny -- [--steps 60] [--every 15] [--out train-tiny]
//!
//! The seeded tiny model (random weights, no download) writes its own greedy continuations of 24
//! short prompts, and a fresh drafter learns to predict them (targets: the LLM's own greedy
//! tokens, the distillation recipe of docs/training.md) with `redrafter_train::Trainer`. Every
//! `--every` steps the run stops, τ of the drafter so far is measured at W2 L4 on the first
//! training prompt (its tokens checked against autoregressive decoding), and training resumes
//! from its checkpoint, exactly where it stopped. The tiny LLM is random, so there is nothing to
//! generalise: this shows the training loop at work (the drafter learns what the LLM says), not
//! a drafter for unseen text; `redrafter train` on the default model is that (docs/training.md). Prints the curve and writes `tau.svg` and `loss.svg`
//! to `--out`.

#[path = "common/mod.rs"]
mod common;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use common::*;
use redrafter::backends::FlexBackend;
use redrafter::{Autoregressive, BeamConfig, Drafter, DrafterConfig, GenerationConfig, Generator, ReDrafter};
use redrafter_io::GgmlType;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};
use redrafter_llama::{Llama, LlamaConfig};
use redrafter_train::plot::{Series, line_chart};
use redrafter_train::{Example, Targets, TrainConfig, Trainer};

type Train = Autodiff<FlexBackend>;

/// τ of `drafter` at W2 L4 on the first training prompt; its tokens must be the LLM's.
fn tau(llm: &Llama<FlexBackend>, drafter: Drafter<FlexBackend>) -> Result<f64, BoxError> {
    let g = Generator::new(llm, None);
    let prompt = vec![vec![3, 3]];
    let cfg = GenerationConfig { max_new_tokens: 40, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompt, &cfg, None)?;
    let out = g.generate(&mut ReDrafter::new(drafter, BeamConfig { width: 2, length: 4 })?, &prompt, &cfg, None)?;
    if out.rows[0].tokens != ar.rows[0].tokens {
        return Err("greedy ReDrafter differs from autoregressive decoding".into());
    }
    Ok(out.stats.tau)
}

fn main() -> Result<(), BoxError> {
    let device = Default::default();
    let (steps, every): (usize, usize) = (arg_parse("--steps", "60")?, arg_parse("--every", "15")?);
    if every == 0 || steps == 0 {
        return Err("--steps and --every must be at least 1".into());
    }
    let out = std::path::PathBuf::from(arg("--out", "train-tiny"));
    // A fresh run: the trainer resumes from a checkpoint it finds, and refuses a foreign one.
    let _ = std::fs::remove_dir_all(out.join("checkpoint"));
    std::fs::create_dir_all(&out)?;
    let gguf = out.join("tiny.gguf");
    write_tiny_gguf(&gguf, &LlamaConfig::tiny(tiny_vocab().0.len()), 51, GgmlType::F32)?;
    let llm = redrafter_llama::load::<Train>(&gguf, &device)?.model.no_grad();
    let inner = llm.valid();
    let lc = inner.config().clone();

    // What the LLM itself says after 24 two-token prompts: the training data.
    let prompts: Vec<Vec<u32>> = (0..24u32).map(|i| vec![3 + (i * 37) % 250, 3 + (i * 91) % 250]).collect();
    let answers = Generator::new(&inner, None).generate(&mut Autoregressive, &prompts, &GenerationConfig { max_new_tokens: 30, ..Default::default() }, None)?;
    let examples: Vec<Example> = prompts
        .iter()
        .zip(answers.rows)
        .map(|(p, r)| {
            let tokens: Vec<u32> = p.iter().chain(&r.tokens).copied().collect();
            Example { target: vec![true; tokens.len()], tokens }
        })
        .collect();
    let config = TrainConfig {
        draft_steps: 3,
        batch_size: 4,
        positions_per_sequence: 0,
        grad_accum: 2,
        steps,
        lr: 3e-3,
        warmup_ratio: 0.1,
        weight_decay: 0.0,
        seed: 1,
        targets: Targets::LlmGreedy,
        checkpoint_every: 0,
        drafter: DrafterConfig { exit_dim: 64, num_draft_layers: 1, ..DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size) }.with_tied_lm_head(true),
        init: None,
        draft_vocab: None,
        soft_targets: 0.0,
        feature_layers: None,
        context_attention: None,
    };

    let t0 = std::time::Instant::now();
    let mut taus = vec![(0.0, tau(&inner, Drafter::<FlexBackend>::random(config.drafter.clone(), 1, &device)?)?)];
    println!("step {:>4}: tau {:.2} (untrained)", 0, taus[0].1);
    let mut losses = vec![];
    let mut stop = every.min(steps);
    loop {
        let mut trainer = Trainer { llm: &llm, examples: &examples, config: config.clone(), out_dir: out.clone(), stop_after: Some(stop), hidden_cache: None };
        let (drafter, log) = trainer.run(&mut |_, _, _| {})?;
        let t = tau(&inner, drafter.valid())?;
        let loss = log.last().map_or(f64::NAN, |l| l.loss);
        println!("step {stop:>4}: tau {t:.2}, loss {loss:.3} ({:.1} s)", t0.elapsed().as_secs_f64());
        taus.push((stop as f64, t));
        losses = log.iter().map(|l| (l.step as f64, l.loss)).collect();
        if stop == steps {
            break;
        }
        stop = (stop + every).min(steps);
    }
    std::fs::write(out.join("tau.svg"), line_chart("tau while training (tiny model, W2 L4)", "optimizer step", "tau", &[Series { name: "tau".into(), points: taus }]))?;
    std::fs::write(out.join("loss.svg"), line_chart("training loss", "optimizer step", "loss", &[Series { name: "loss".into(), points: losses }]))?;
    println!("wrote {}/tau.svg and loss.svg", out.display());
    Ok(())
}
