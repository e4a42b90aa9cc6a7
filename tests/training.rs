//! Drafter training end to end on a tiny model: the loss falls and the trained drafter raises τ,
//! exact resume from a checkpoint, refusal of a checkpoint made with other options, bad data.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use redrafter::KernelBackend;
use redrafter::{Autoregressive, BeamConfig, Drafter, DrafterConfig, GenerationConfig, Generator, ReDrafter};
use redrafter_io::GgmlType;
use redrafter_tests::{backend_tests, temp_dir, tiny_gguf_model, to_vec};
use redrafter_train::data::read_corpus;
use redrafter_train::{Example, Targets, TrainConfig, Trainer};

/// Training text the LLM itself would write: its greedy continuations of short prompts, so that
/// `llm-greedy` targets are learnable.
fn self_generated<B: KernelBackend>(llm: &redrafter_llama::Llama<B>, n: usize) -> Vec<Example> {
    let g = Generator::new(llm, None);
    let prompts: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![3 + (i * 37) % 250, 3 + (i * 91) % 250]).collect();
    let out = g.generate(&mut Autoregressive, &prompts, &GenerationConfig { max_new_tokens: 30, ..Default::default() }, None).unwrap();
    prompts
        .iter()
        .zip(out.rows)
        .map(|(p, r)| {
            let tokens: Vec<u32> = p.iter().chain(&r.tokens).copied().collect();
            Example { target: vec![true; tokens.len()], tokens }
        })
        .collect()
}

fn config(steps: usize, vocab: usize, hidden: usize) -> TrainConfig {
    TrainConfig {
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
        drafter: DrafterConfig { exit_dim: 64, num_draft_layers: 1, ..DrafterConfig::for_llm(vocab, hidden) }.with_tied_lm_head(true),
        init: None,
    }
}

fn training_learns_and_raises_tau<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(51, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 24);
    let cfg = config(60, lc.vocab_size, lc.hidden_size);
    let out = temp_dir("train-learns");
    let trainer = Trainer { llm: &llm, examples: &examples, config: cfg, out_dir: out.clone(), stop_after: None };
    let (drafter, log) = trainer.run(&mut |_, _, _| {}).unwrap();
    let first: f64 = log[..5].iter().map(|l| l.loss).sum::<f64>() / 5.0;
    let last: f64 = log[log.len() - 5..].iter().map(|l| l.loss).sum::<f64>() / 5.0;
    assert!(last < 0.7 * first, "loss {first:.3} -> {last:.3}");

    // The trained drafter proposes what the LLM will say: more tokens per verification step.
    let inner = llm.valid();
    let g = Generator::new(&inner, None);
    let prompts = vec![vec![3 + 37, 3 + 91]];
    let cfg = GenerationConfig { max_new_tokens: 30, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    let tau = |d: Drafter<B>| {
        let mut s = ReDrafter::new(d, BeamConfig { width: 2, length: 4 }).unwrap();
        let out = g.generate(&mut s, &prompts, &cfg, None).unwrap();
        assert_eq!(out.rows[0].tokens, ar.rows[0].tokens);
        out.stats.tau
    };
    let random = Drafter::<B>::random(trainer.config.drafter.clone(), 1, &device).unwrap();
    let (t_random, t_trained) = (tau(random), tau(drafter.valid()));
    assert!(t_trained > t_random + 0.5, "tau random {t_random:.2}, trained {t_trained:.2}");
    eprintln!("loss {first:.3} -> {last:.3}; tau random {t_random:.2} -> trained {t_trained:.2}");
}

fn resume_is_exact_and_foreign_checkpoints_are_refused<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(52, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 8);
    // Sampled positions too: their draw must replay exactly on resume.
    let cfg = TrainConfig { positions_per_sequence: 5, ..config(6, lc.vocab_size, lc.hidden_size) };
    let weights = |d: &Drafter<Autodiff<B>>| to_vec(d.lm_head.weight.val().inner());

    let whole = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: temp_dir("train-whole"), stop_after: None };
    let (a, log_a) = whole.run(&mut |_, _, _| {}).unwrap();
    let dir = temp_dir("train-resume");
    let first = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: dir.clone(), stop_after: Some(3) };
    assert_eq!(first.run(&mut |_, _, _| {}).unwrap().1.len(), 3);
    let second = Trainer { stop_after: None, ..first };
    let (b, log_b) = second.run(&mut |_, _, _| {}).unwrap();
    assert_eq!(weights(&a), weights(&b), "resumed weights differ");
    // The log of the first half went through JSON, which keeps f64 to ~1e-15 relative.
    assert_eq!(log_a.len(), log_b.len());
    for (x, y) in log_a.iter().zip(&log_b) {
        assert!((x.loss - y.loss).abs() <= 1e-9 * x.loss.abs(), "step {}: loss {} vs {}", x.step, x.loss, y.loss);
    }

    let before = std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap();
    let other = Trainer { llm: &llm, examples: &examples, config: TrainConfig { lr: 1e-2, ..cfg }, out_dir: dir.clone(), stop_after: None };
    let e = other.run(&mut |_, _, _| {}).err().expect("foreign checkpoint");
    assert!(e.to_string().contains("another configuration"), "{e}");
    assert_eq!(std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap(), before, "nothing overwritten");
}

fn fine_tuning_starts_from_the_given_drafter<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(53, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 8);
    let cfg = config(4, lc.vocab_size, lc.hidden_size);
    let weights = |d: &Drafter<Autodiff<B>>| to_vec(d.lm_head.weight.val().inner());
    let base_dir = temp_dir("train-base");
    let (base, _) = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: base_dir.clone(), stop_after: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    let init = Some(base_dir.join("checkpoint"));

    // At learning rate 0 the run must hand back exactly the weights it started from.
    let frozen = TrainConfig { lr: 0.0, init: init.clone(), ..cfg.clone() };
    let (tuned, _) = Trainer { llm: &llm, examples: &examples, config: frozen, out_dir: temp_dir("train-tune"), stop_after: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    assert_eq!(weights(&tuned), weights(&base), "fine-tuning did not start from the saved drafter");

    let mut other = cfg.clone();
    other.drafter.exit_dim = 32;
    other.init = init;
    let e = Trainer { llm: &llm, examples: &examples, config: other, out_dir: temp_dir("train-tune-bad"), stop_after: None }
        .run(&mut |_, _, _| {})
        .err()
        .expect("a drafter of another shape");
    assert!(e.to_string().contains("differs"), "{e}");
}

fn bad_training_data_is_refused<B: KernelBackend>(_device: B::Device) {
    let dir = temp_dir("train-bad");
    let cases: [(&str, &str, &str); 4] = [
        ("empty.txt", "", "empty"),
        ("bad.jsonl", "{\"messages\": 3}\n", "line 1"),
        ("none.json", "[{\"id\": \"x\", \"conversations\": [{\"from\": \"hu", "no complete conversation"),
        ("obj.json", "{\"a\": 1}", "not a JSON array"),
    ];
    for (name, text, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let e = read_corpus(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(want) && e.contains(name), "{name}: {e}");
    }
    assert!(read_corpus(&dir.join("missing.json")).unwrap_err().to_string().contains("missing.json"));
}

backend_tests!(training_learns_and_raises_tau, resume_is_exact_and_foreign_checkpoints_are_refused, fine_tuning_starts_from_the_given_drafter, bad_training_data_is_refused);
