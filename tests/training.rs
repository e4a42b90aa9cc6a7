//! Drafter training end to end on a tiny model: the loss falls and the trained drafter raises τ,
//! exact resume from a checkpoint, refusal of a checkpoint made with other options, bad data.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use redrafter::KernelBackend;
use redrafter::{Autoregressive, BeamConfig, Drafter, DrafterConfig, GenerationConfig, Generator, ReDrafter};
use redrafter_io::GgmlType;
use redrafter_tests::{backend_tests, temp_dir, tiny_gguf_model, to_vec};
use redrafter_train::data::read_corpus;
use redrafter_train::trainer::make_batch;
use redrafter_train::{CacheMeta, Example, HiddenCache, HiddenCaches, Targets, TrainConfig, Trainer, fill_cache};

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
        draft_vocab: None,
        soft_targets: 0.0,
        feature_layers: None,
        context_attention: None,
    }
}

/// The mean loss of the first and last five steps; the last must be under 0.7 of the first.
fn loss_falls(log: &[redrafter_train::LogLine]) -> (f64, f64) {
    let first: f64 = log[..5].iter().map(|l| l.loss).sum::<f64>() / 5.0;
    let last: f64 = log[log.len() - 5..].iter().map(|l| l.loss).sum::<f64>() / 5.0;
    assert!(last < 0.7 * first, "loss {first:.3} -> {last:.3}");
    (first, last)
}

/// τ of `drafter` at W2 L4 on a fixed prompt, asserting its tokens equal autoregressive decoding.
fn lossless_tau<B: KernelBackend>(llm: &redrafter_llama::Llama<B>, drafter: Drafter<B>) -> f64 {
    let g = Generator::new(llm, None);
    let prompts = vec![vec![3 + 37, 3 + 91]];
    let cfg = GenerationConfig { max_new_tokens: 30, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    let mut s = ReDrafter::new(drafter, BeamConfig { width: 2, length: 4 }).unwrap();
    let out = g.generate(&mut s, &prompts, &cfg, None).unwrap();
    assert_eq!(out.rows[0].tokens, ar.rows[0].tokens);
    out.stats.tau
}

fn training_learns_and_raises_tau<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(51, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 24);
    let cfg = config(60, lc.vocab_size, lc.hidden_size);
    let out = temp_dir("train-learns");
    let mut trainer = Trainer { llm: &llm, examples: &examples, config: cfg, out_dir: out.clone(), stop_after: None, hidden_cache: None };
    let (drafter, log) = trainer.run(&mut |_, _, _| {}).unwrap();
    let (first, last) = loss_falls(&log);

    // The trained drafter proposes what the LLM will say: more tokens per verification step.
    let inner = llm.valid();
    let tau = |d: Drafter<B>| lossless_tau(&inner, d);
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

    let mut whole = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: temp_dir("train-whole"), stop_after: None, hidden_cache: None };
    let (a, log_a) = whole.run(&mut |_, _, _| {}).unwrap();
    let dir = temp_dir("train-resume");
    let mut first = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: dir.clone(), stop_after: Some(3), hidden_cache: None };
    assert_eq!(first.run(&mut |_, _, _| {}).unwrap().1.len(), 3);
    let mut second = Trainer { stop_after: None, ..first };
    let (b, log_b) = second.run(&mut |_, _, _| {}).unwrap();
    assert_eq!(weights(&a), weights(&b), "resumed weights differ");
    // The log of the first half went through JSON, which keeps f64 to ~1e-15 relative.
    assert_eq!(log_a.len(), log_b.len());
    for (x, y) in log_a.iter().zip(&log_b) {
        assert!((x.loss - y.loss).abs() <= 1e-9 * x.loss.abs(), "step {}: loss {} vs {}", x.step, x.loss, y.loss);
    }

    let before = std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap();
    let mut other = Trainer { llm: &llm, examples: &examples, config: TrainConfig { lr: 1e-2, ..cfg }, out_dir: dir.clone(), stop_after: None, hidden_cache: None };
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
    let (base, _) = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: base_dir.clone(), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    let init = Some(base_dir.join("checkpoint"));

    // At learning rate 0 the run must hand back exactly the weights it started from.
    let frozen = TrainConfig { lr: 0.0, init: init.clone(), ..cfg.clone() };
    let (tuned, _) = Trainer { llm: &llm, examples: &examples, config: frozen, out_dir: temp_dir("train-tune"), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    assert_eq!(weights(&tuned), weights(&base), "fine-tuning did not start from the saved drafter");

    let mut other = cfg.clone();
    other.drafter.exit_dim = 32;
    other.init = init;
    let e = Trainer { llm: &llm, examples: &examples, config: other, out_dir: temp_dir("train-tune-bad"), stop_after: None, hidden_cache: None }
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

/// `distill-data` lines carry the answer's generated ids: they are the targets verbatim (no
/// round trip through text), after the same prompt tokens a plain conversation gets; a file that
/// mixes the two kinds, or ids without a final assistant turn, is refused.
fn answered_lines_train_on_the_generated_ids<B: KernelBackend>(device: B::Device) {
    use redrafter_train::data::{Corpus, tokenize_answered, tokenize_conversation};
    let m = tiny_gguf_model::<B>(3, GgmlType::F32, &device);
    let (tok, tpl) = (&m.tokenizer, m.tokenizer.chat_template.as_ref().expect("tiny model has a chat template"));
    let dir = temp_dir("answered");
    let p = dir.join("distill.jsonl");
    // Ids a text round trip would not produce: "he" (one merged token as text) in two pieces.
    let (t, h) = (tok.encode("h").unwrap()[0], tok.encode("e").unwrap()[0]);
    assert_eq!(tok.encode("he").unwrap().len(), 1, "the tiny vocabulary merges h e");
    let eos = tok.eos[0];
    let line = serde_json::json!({"id": 0, "messages": [{"role": "user", "content": "the weather"}, {"role": "assistant", "content": "he"}],
        "answer_ids": [t, h, eos], "finish": "eos"});
    std::fs::write(&p, format!("{line}\n")).unwrap();
    let Corpus::Answered(a) = read_corpus(&p).unwrap() else { panic!("an answered corpus") };
    let ex = tokenize_answered(tok, tpl, &a[0], 512).unwrap();
    let plain = tokenize_conversation(tok, tpl, &a[0].messages, 512).unwrap();
    let prompt = plain.target.iter().position(|&m| m).expect("the plain conversation has targets");
    assert_eq!(ex.tokens[..prompt], plain.tokens[..prompt], "the same prompt tokens");
    assert_eq!(ex.tokens[prompt..], [t, h, eos], "the generated ids, nothing re-tokenized or added");
    assert_eq!(ex.target, [vec![false; prompt], vec![true; 3]].concat());
    assert_ne!(plain.tokens[prompt..], ex.tokens[prompt..], "the text round trip would have changed the ids");
    assert_eq!(tokenize_answered(tok, tpl, &a[0], prompt + 1).unwrap().tokens.len(), prompt + 1, "max_len cuts");

    // A later turn (`distill-data --later-turns`): the data's own earlier answer is context,
    // only the LLM's generated ids are targets (a plain conversation trains on both answers).
    let later = serde_json::json!({"id": 0, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "the weather"}, {"role": "assistant", "content": "he"}], "answer_ids": [t, h, eos], "finish": "eos"});
    std::fs::write(&p, format!("{later}\n")).unwrap();
    let Corpus::Answered(a) = read_corpus(&p).unwrap() else { panic!("an answered corpus") };
    let ex = tokenize_answered(tok, tpl, &a[0], 512).unwrap();
    let plain = tokenize_conversation(tok, tpl, &a[0].messages, 512).unwrap();
    let context = ex.tokens.len() - 3;
    assert_eq!(ex.tokens[..context], plain.tokens[..context], "the same context tokens");
    assert_eq!(ex.tokens[context..], [t, h, eos]);
    assert_eq!(ex.target, [vec![false; context], vec![true; 3]].concat(), "only the generated answer is a target");
    assert!(plain.target[..context].iter().any(|&m| m), "as plain conversation, the earlier answer is a target");

    let plain_line = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#;
    std::fs::write(&p, format!("{line}\n{plain_line}\n")).unwrap();
    assert!(read_corpus(&p).unwrap_err().to_string().contains("mixes"));
    std::fs::write(&p, r#"{"messages": [{"role": "user", "content": "a"}], "answer_ids": [5]}"#).unwrap();
    assert!(read_corpus(&p).unwrap_err().to_string().contains("line 1: answer_ids without a final assistant turn"));
}

fn hidden_cache_gives_the_same_training<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(54, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 8);
    let cfg = TrainConfig { positions_per_sequence: 5, ..config(4, lc.vocab_size, lc.hidden_size) };
    let weights = |d: &Drafter<Autodiff<B>>| to_vec(d.lm_head.weight.val().inner());
    let cache_dir = temp_dir("train-hidden-cache");
    let open = |ex: &[Example]| {
        let max_len = ex.iter().map(|e| e.tokens.len()).max().unwrap();
        let meta = CacheMeta::new("test".into(), lc.hidden_size, max_len, ex.len());
        HiddenCache::open(&cache_dir, meta).unwrap()
    };
    let run = |ex: &[Example], cache: Option<HiddenCache>, name: &str| {
        let mut t = Trainer { llm: &llm, examples: ex, config: cfg.clone(), out_dir: temp_dir(name), stop_after: None, hidden_cache: cache.map(Into::into) };
        let (d, log) = t.run(&mut |_, _, _| {}).unwrap();
        (weights(&d), log.iter().map(|l| l.loss).collect::<Vec<f64>>(), t.hidden_cache.map(|c| c.filled()))
    };
    let (w_live, loss_live, _) = run(&examples, None, "train-hc-live");
    // First run fills the cache (4 steps × 2 micro-batches × 4 rows cover all 8 examples)...
    let (w_fill, loss_fill, filled) = run(&examples, Some(open(&examples)), "train-hc-fill");
    assert_eq!(filled, Some(examples.len()));
    // ...the second reads every state from it.
    let (w_read, loss_read, _) = run(&examples, Some(open(&examples)), "train-hc-read");
    assert_eq!(loss_live, loss_fill, "the same batches give the same loss live and while filling");
    assert_eq!(loss_live, loss_read, "... and read back from the cache");
    assert_eq!(w_live, w_fill);
    assert_eq!(w_live, w_read);
    // Other data under the same slots: each slot knows its tokens, so nothing stale is served.
    let mut reversed = examples.clone();
    reversed.reverse();
    let (w_rev_live, loss_rev_live, _) = run(&reversed, None, "train-hc-rev-live");
    let (w_rev, loss_rev, _) = run(&reversed, Some(open(&reversed)), "train-hc-rev");
    assert_eq!(loss_rev, loss_rev_live);
    assert_eq!(w_rev, w_rev_live);
    assert_ne!(loss_rev, loss_live, "the reversed order is another run");
}

/// `fill_cache` ahead of training, in two shards whose caches are open together (as two
/// processes would hold them): every slot ends up holding its example's states (as a live
/// forward gives them, up to the f16 rounding of a differently padded batch), a second fill
/// computes nothing, and training then reads every state from the cache.
fn filling_the_cache_ahead_in_shards<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(55, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let inner = llm.valid();
    let lc = llm.config().clone();
    let mut examples = self_generated(&inner, 9);
    // Unequal lengths, so the longest-first batches are padded.
    for (i, e) in examples.iter_mut().enumerate() {
        e.tokens.truncate(10 + 3 * i);
        e.target.truncate(10 + 3 * i);
    }
    let cache_dir = temp_dir("train-fill-cache");
    let max_len = examples.iter().map(|e| e.tokens.len()).max().unwrap();
    let open = || HiddenCaches::from(HiddenCache::open(&cache_dir, CacheMeta::new("fill".into(), lc.hidden_size, max_len, examples.len())).unwrap());
    let (mut a, mut b) = (open(), open());
    let mut calls = vec![];
    // 60 padded tokens a batch: two or three of these rows at a time.
    assert_eq!(fill_cache(&inner, &examples, &mut a, (0, 2), 60, &[inner.config().num_layers], &mut |d, t, _| calls.push((d, t))).unwrap(), 5);
    assert_eq!(calls.last(), Some(&(5, 5)));
    assert!(calls.len() >= 2, "more than one batch: {calls:?}");
    assert_eq!(fill_cache(&inner, &examples, &mut b, (1, 2), 60, &[inner.config().num_layers], &mut |_, _, _| {}).unwrap(), 4);
    assert_eq!((a.filled(), b.filled()), (9, 9), "both mappings see both shards' slots");
    drop((a, b));
    let mut c = open();
    assert_eq!(fill_cache(&inner, &examples, &mut c, (0, 1), 60, &[inner.config().num_layers], &mut |_, _, _| panic!("nothing to fill")).unwrap(), 0);
    assert!(fill_cache(&inner, &examples, &mut c, (2, 2), 60, &[inner.config().num_layers], &mut |_, _, _| {}).is_err(), "shard K must be < N");
    for (s, e) in examples.iter().enumerate() {
        let cached = c.get(s, &e.tokens).expect("filled");
        let live = &redrafter_train::features::live_states(&inner, &[e.tokens.as_slice()], &[inner.config().num_layers])[0];
        assert_eq!(cached.len(), live.len());
        for (x, y) in cached.iter().zip(live) {
            assert!((x - y).abs() <= 1e-2 * y.abs().max(1.0), "slot {s}: cached {x} vs live {y}");
        }
    }
    let cfg = TrainConfig { positions_per_sequence: 5, ..config(3, lc.vocab_size, lc.hidden_size) };
    let mut t = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: temp_dir("train-fill-run"), stop_after: None, hidden_cache: Some(c) };
    let (_, log) = t.run(&mut |_, _, _| {}).unwrap();
    let mut live = Trainer { llm: &llm, examples: &examples, config: cfg, out_dir: temp_dir("train-fill-live"), stop_after: None, hidden_cache: None };
    let (_, live_log) = live.run(&mut |_, _, _| {}).unwrap();
    for (x, y) in log.iter().zip(&live_log) {
        assert!((x.loss - y.loss).abs() <= 1e-3 * y.loss.abs(), "loss from the filled cache {} vs live {}", x.loss, y.loss);
    }
}

/// A drafter reading earlier layers besides the last (`context_layers`): the layer states are
/// those of the model cut after that layer; training from a cache that holds more layers
/// (`feature_layers`) gives the loss and weights of live training over the context layers
/// alone; layer sets that cannot work are refused with a message.
fn context_layers_train_from_a_wider_cache<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(56, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let inner = llm.valid();
    let lc = llm.config().clone();
    let last = lc.num_layers;
    assert!(last >= 2, "the tiny model has {last} layers");
    let examples = self_generated(&inner, 8);

    // Layer l's state is the cut model's output: an independent forward for each layer.
    let row = [examples[0].tokens.as_slice()];
    let all = redrafter_train::features::live_states(&inner, &row, &[last, 0, 1])[0].clone();
    let h = lc.hidden_size;
    for (i, l) in [last, 0, 1].into_iter().enumerate() {
        let mut cut = inner.clone();
        cut.layers.truncate(l);
        let own = &redrafter_train::features::live_states(&cut, &row, &[l])[0];
        let mine: Vec<f32> = all.chunks(3 * h).flat_map(|tok| tok[i * h..(i + 1) * h].to_vec()).collect();
        assert_eq!(&mine, own, "layer {l}");
    }

    let drafter = DrafterConfig { context_layers: Some(vec![1, last]), ..config(4, lc.vocab_size, lc.hidden_size).drafter };
    assert_eq!(drafter.context_width(), 2 * h);
    assert!(drafter.has_input_proj(), "E 64 reads 3H through input_proj");
    let cfg = TrainConfig { positions_per_sequence: 5, targets: Targets::GroundTruth, drafter, ..config(4, lc.vocab_size, lc.hidden_size) };
    let wide = TrainConfig { feature_layers: Some(vec![0, last, 1]), ..cfg.clone() };
    let cache_dir = temp_dir("train-context-cache");
    let max_len = examples.iter().map(|e| e.tokens.len()).max().unwrap();
    let cache = HiddenCache::open(&cache_dir, CacheMeta::new("ctx".into(), 3 * h, max_len, examples.len())).unwrap();
    let run = |c: &TrainConfig, cache: Option<HiddenCache>, name: &str| {
        let mut t = Trainer { llm: &llm, examples: &examples, config: c.clone(), out_dir: temp_dir(name), stop_after: None, hidden_cache: cache.map(Into::into) };
        let (d, log) = t.run(&mut |_, _, _| {}).unwrap();
        (to_vec(d.lm_head.weight.val().inner()), log.iter().map(|l| l.loss).collect::<Vec<f64>>())
    };
    let (w_live, loss_live) = run(&cfg, None, "train-ctx-live");
    // A trained context drafter decodes losslessly (its context comes from the verify pass).
    let mut t = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: temp_dir("train-ctx-decode"), stop_after: None, hidden_cache: None };
    let trained = t.run(&mut |_, _, _| {}).unwrap().0.valid();
    lossless_tau(&inner, trained);
    let (w_wide, loss_wide) = run(&wide, Some(cache), "train-ctx-wide");
    assert_eq!(loss_live, loss_wide, "the context layers picked from a wider cache are the live ones");
    assert_eq!(w_live, w_wide);
    // Apple's drafter (final layer only) learns something else from the same data.
    let (_, loss_final) = run(&TrainConfig { drafter: config(4, lc.vocab_size, lc.hidden_size).drafter, ..cfg.clone() }, None, "train-ctx-final");
    assert_ne!(loss_final, loss_live);

    // Widening an Apple-shaped drafter (E = 2H) keeps its function: the new layer weighs zero.
    let apple = DrafterConfig { exit_dim: 2 * h, context_layers: None, ..cfg.drafter.clone() };
    let base = Drafter::<B>::random(apple, 3, &device).unwrap();
    let wide = base.clone().with_context_layers(vec![1, last], last).unwrap();
    assert!(wide.input_proj.is_some() && wide.config().context_layers == Some(vec![1, last]));
    let rand = |seed: u64| {
        let mut r = redrafter_tests::Rng(seed);
        burn::tensor::Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(r.floats(6 * h), [6, h]), &device)
    };
    let (mid, fin, s) = (rand(1), rand(2), rand(3));
    let before = to_vec(base.logits(&inner, fin.clone(), s.clone()));
    let after = to_vec(wide.logits(&inner, burn::tensor::Tensor::cat(vec![mid, fin], 1), s));
    redrafter_tests::assert_close(&after, &before, 1e-5, "widened drafter");
    // Decoding feeds it the same context: the same drafts, so the same τ, and lossless.
    assert_eq!(lossless_tau(&inner, wide.clone()), lossless_tau(&inner, base.clone()), "widened drafter decodes as before");
    assert!(base.clone().with_context_layers(vec![0, 1], last).unwrap_err().to_string().contains("last layer"));
    assert!(base.clone().with_context_layers(vec![last], last).is_err(), "nothing to widen");
    assert!(wide.with_context_layers(vec![0, last], last).is_err(), "already widened");

    let refused = |c: TrainConfig| c.features_for(last).unwrap_err().to_string();
    assert!(refused(TrainConfig { feature_layers: Some(vec![0, last]), ..cfg.clone() }).contains("reads layer 1"));
    assert!(refused(TrainConfig { feature_layers: Some(vec![1, 1, last]), ..cfg.clone() }).contains("distinct"));
    assert!(refused(TrainConfig { feature_layers: Some(vec![1, last + 1]), ..cfg.clone() }).contains("distinct layers"));
    let mid_only = DrafterConfig { context_layers: Some(vec![1]), ..cfg.drafter.clone() };
    assert!(refused(TrainConfig { targets: Targets::LlmGreedy, drafter: mid_only, ..cfg.clone() }).contains("last layer"));
    let twice = DrafterConfig { context_layers: Some(vec![1, 1]), ..cfg.drafter.clone() };
    assert!(twice.validate().unwrap_err().to_string().contains("twice"));
    let deep = Drafter::<B>::random(DrafterConfig { context_layers: Some(vec![last + 1]), ..cfg.drafter.clone() }, 1, &device).unwrap();
    assert!(deep.check_compatible(&lc).unwrap_err().to_string().contains(&format!("layer {}", last + 1)));
}

fn to_ints<B: burn::tensor::backend::Backend>(t: burn::tensor::Tensor<B, 2, burn::tensor::Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

/// A reduced draft vocabulary: the K most frequent tokens of the training targets.
fn top_tokens(examples: &[Example], vocab: usize, k: usize) -> Vec<u32> {
    let mut counts = vec![0u64; vocab];
    examples.iter().flat_map(|e| &e.tokens[2..]).for_each(|&t| counts[t as usize] += 1);
    redrafter::drafter::vocab::most_frequent(&counts, k, &[])
}

fn training_over_a_draft_vocabulary<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(51, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 24);
    // Two thirds of the tokens the labels use (positions 2.. of each sequence), so some labels
    // fall outside the K.
    let mut seen: Vec<u32> = examples.iter().flat_map(|e| e.tokens[2..].to_vec()).collect();
    seen.sort_unstable();
    seen.dedup();
    let k = seen.len() * 2 / 3;
    let ids = top_tokens(&examples, lc.vocab_size, k);
    let covered = examples.iter().flat_map(|e| &e.tokens[2..]).filter(|t| ids.binary_search(t).is_ok()).count() as f64
        / examples.iter().map(|e| e.tokens.len() - 2).sum::<usize>() as f64;
    let mut cfg = config(60, lc.vocab_size, lc.hidden_size);
    cfg.drafter.draft_vocab_size = Some(k);
    cfg.draft_vocab = Some(ids.clone());
    assert!(covered < 1.0, "every token is in the K = {k}");

    // Labels are draft ids; those outside the K do not count.
    let exs: Vec<&Example> = examples.iter().collect();
    let slots: Vec<usize> = (0..exs.len()).collect();
    let truth = |c: &TrainConfig| TrainConfig { targets: Targets::GroundTruth, ..c.clone() };
    let (full_batch, full_valid) = make_batch(&llm, &exs, &slots, None, &truth(&config(1, lc.vocab_size, lc.hidden_size)), 7).unwrap();
    let (batch, valid) = make_batch(&llm, &exs, &slots, None, &truth(&cfg), 7).unwrap();
    let (full_labels, labels) = (to_ints(full_batch.labels), to_ints(batch.labels));
    assert!(labels.iter().all(|&d| (d as usize) < k));
    let (mut kept, mut dropped) = (0, 0);
    for ((&fl, &l), (&fv, &v)) in full_labels.iter().zip(&labels).zip(full_valid.concat().iter().zip(&valid.concat())) {
        match ids.binary_search(&(fl as u32)) {
            Ok(d) => {
                assert_eq!((l as usize, v), (d, fv));
                kept += fv as usize;
            }
            Err(_) => {
                assert!(!v, "label {fl} outside the draft vocabulary counted");
                dropped += fv as usize;
            }
        }
    }
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");

    let out = temp_dir("train-vocab");
    let mut trainer = Trainer { llm: &llm, examples: &examples, config: cfg.clone(), out_dir: out.clone(), stop_after: None, hidden_cache: None };
    let (drafter, log) = trainer.run(&mut |_, _, _| {}).unwrap();
    let (first, last) = loss_falls(&log);

    // The checkpoint is a drafter over the K tokens that drafts them and stays lossless.
    let saved = redrafter::load_drafter::<B>(&out.join("checkpoint"), &device).unwrap();
    assert_eq!(saved.draft_vocab().map(|v| v.token_ids().to_vec()), Some(ids.clone()));
    assert_eq!(drafter.valid().draft_vocab_size(), k);
    let inner = llm.valid();
    let tau = |d: Drafter<B>| lossless_tau(&inner, d);
    let random = Drafter::<B>::random(DrafterConfig { draft_vocab_size: None, ..cfg.drafter.clone() }, 1, &device).unwrap();
    let (t_random, t_trained) = (tau(random.with_draft_vocab(ids.clone()).unwrap()), tau(saved));
    eprintln!("K {k} covers {:.0}% of the labels; loss {first:.3} -> {last:.3}; tau random {t_random:.2} -> trained {t_trained:.2}", covered * 100.0);
    assert!(t_trained > t_random + 0.5, "tau random {t_random:.2}, trained {t_trained:.2}");

    // Resume re-attaches the vocabulary: stopped and resumed equals straight through.
    let short = TrainConfig { steps: 4, positions_per_sequence: 5, ..cfg.clone() };
    let weights = |d: &Drafter<Autodiff<B>>| to_vec(d.lm_head.weight.val().inner());
    let (a, _) = Trainer { llm: &llm, examples: &examples, config: short.clone(), out_dir: temp_dir("train-vocab-whole"), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    let dir = temp_dir("train-vocab-resume");
    let mut first = Trainer { llm: &llm, examples: &examples, config: short.clone(), out_dir: dir, stop_after: Some(2), hidden_cache: None };
    first.run(&mut |_, _, _| {}).unwrap();
    let (b, _) = Trainer { stop_after: None, ..first }.run(&mut |_, _, _| {}).unwrap();
    assert_eq!(weights(&a), weights(&b), "resumed weights differ");

    // Fine-tuning a full-vocabulary drafter over K reduces it first; at lr 0 nothing moves.
    let full_dir = temp_dir("train-vocab-full");
    let full_cfg = config(2, lc.vocab_size, lc.hidden_size);
    let (full, _) = Trainer { llm: &llm, examples: &examples, config: full_cfg, out_dir: full_dir.clone(), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    let tune = TrainConfig { lr: 0.0, steps: 2, init: Some(full_dir.join("checkpoint")), ..cfg.clone() };
    let (tuned, _) = Trainer { llm: &llm, examples: &examples, config: tune, out_dir: temp_dir("train-vocab-tune"), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .unwrap();
    assert_eq!(weights(&tuned), weights(&full));
    assert_eq!(tuned.draft_vocab().map(|v| v.token_ids().to_vec()), Some(ids.clone()));

    // Mismatched vocabulary settings are refused with a message.
    let bad = TrainConfig { draft_vocab: Some(ids[..k - 1].to_vec()), ..cfg };
    let e = Trainer { llm: &llm, examples: &examples, config: bad, out_dir: temp_dir("train-vocab-bad"), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .err()
        .expect("vocabulary size mismatch");
    assert!(e.to_string().contains("draft_vocab_size"), "{e}");
}

/// Soft targets: every label's teacher row is the LLM's distribution at the label's own position
/// (its argmax is the `llm-greedy` label, over all V tokens and over a draft vocabulary), a
/// weight of 0 adds no teacher, one outside [0, 1] is refused, and training on them raises τ.
fn soft_targets_follow_the_llm<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<Autodiff<B>>(51, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 24);
    let exs: Vec<&Example> = examples.iter().collect();
    let slots: Vec<usize> = (0..exs.len()).collect();
    let soft = TrainConfig { soft_targets: 0.5, positions_per_sequence: 5, ..config(60, lc.vocab_size, lc.hidden_size) };
    let ids = top_tokens(&examples, lc.vocab_size, 40);
    let reduced = TrainConfig {
        drafter: DrafterConfig { draft_vocab_size: Some(ids.len()), ..soft.drafter.clone() },
        draft_vocab: Some(ids.clone()),
        ..soft.clone()
    };
    for (cfg, k) in [(&soft, lc.vocab_size), (&reduced, ids.len())] {
        let (batch, valid) = make_batch(&llm, &exs, &slots, None, cfg, 7).unwrap();
        let teacher = batch.teacher.expect("soft targets give a teacher");
        assert_eq!(teacher.weight, 0.5);
        let [n, t, kk] = teacher.probs.dims();
        assert_eq!((n, t, kk), (valid.len(), 3, k));
        let probs = to_vec(teacher.probs.inner());
        let labels = to_ints(batch.labels);
        let mut checked = 0;
        for (j, &v) in valid.concat().iter().enumerate() {
            let row = &probs[j * k..(j + 1) * k];
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "teacher row {j} sums to {sum}");
            if v {
                let max = row.iter().cloned().fold(f32::MIN, f32::max);
                let label = labels[j] as usize;
                assert!(row[label] >= max * (1.0 - 1e-6), "row {j}: label {label} has p {} but the max is {max}", row[label]);
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} labels checked");
    }
    let (plain, _) = make_batch(&llm, &exs, &slots, None, &TrainConfig { soft_targets: 0.0, ..soft.clone() }, 7).unwrap();
    assert!(plain.teacher.is_none());
    let bad = TrainConfig { soft_targets: 1.5, ..soft.clone() };
    let e = Trainer { llm: &llm, examples: &examples, config: bad, out_dir: temp_dir("train-soft-bad"), stop_after: None, hidden_cache: None }
        .run(&mut |_, _, _| {})
        .err()
        .expect("weight outside [0, 1]");
    assert!(e.to_string().contains("soft-target weight 1.5"), "{e}");

    let mut trainer = Trainer { llm: &llm, examples: &examples, config: soft.clone(), out_dir: temp_dir("train-soft"), stop_after: None, hidden_cache: None };
    let (drafter, log) = trainer.run(&mut |_, _, _| {}).unwrap();
    let inner = llm.valid();
    let random = Drafter::<B>::random(soft.drafter.clone(), 1, &device).unwrap();
    let (t_random, t_trained) = (lossless_tau(&inner, random), lossless_tau(&inner, drafter.valid()));
    eprintln!("soft targets: loss {:.3} -> {:.3}; tau random {t_random:.2} -> trained {t_trained:.2}", log[0].loss, log[log.len() - 1].loss);
    assert!(t_trained > t_random + 0.5, "tau random {t_random:.2}, trained {t_trained:.2}");
}

/// `weight_decay` is AdamW's decoupled decay: the same run with it ends with a smaller residual
/// block (its weights shrink by lr·λ of themselves each step on top of the same kind of update),
/// and a negative or non-finite one is refused. One CPU backend: the optimizer is burn's, the
/// same on every backend.
#[test]
fn weight_decay_shrinks_the_drafter_and_bad_values_are_refused() {
    type B = redrafter_tests::backends::NdArrayBackend;
    let device = Default::default();
    let m = tiny_gguf_model::<Autodiff<B>>(53, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 8);
    let base = config(12, lc.vocab_size, lc.hidden_size);
    let norm = |wd: f32, name: &str| {
        let cfg = TrainConfig { weight_decay: wd, ..base.clone() };
        let mut t = Trainer { llm: &llm, examples: &examples, config: cfg, out_dir: temp_dir(name), stop_after: None, hidden_cache: None };
        let (drafter, _) = t.run(&mut |_, _, _| {}).unwrap();
        let w = to_vec(drafter.valid().blocks[0].linear.weight.val());
        w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
    };
    let (plain, decayed) = (norm(0.0, "train-wd0"), norm(20.0, "train-wd20"));
    // The learning rates of the 12 steps (peak 3e-3, one warm-up step, cosine) sum to 0.021, so
    // λ = 20 alone scales the weights by about 0.65 (the product of 1 − 20·lr); the updates
    // themselves are Adam-normalised and about the same size in both runs.
    assert!(decayed < 0.85 * plain, "weight norm without decay {plain:.4}, with {decayed:.4}");
    for bad in [-0.1f32, f32::NAN, f32::INFINITY] {
        let cfg = TrainConfig { weight_decay: bad, ..base.clone() };
        let e = Trainer { llm: &llm, examples: &examples, config: cfg, out_dir: temp_dir("train-wd-bad"), stop_after: None, hidden_cache: None }
            .run(&mut |_, _, _| {})
            .err()
            .expect("bad weight decay");
        assert!(e.to_string().contains("weight decay"), "{e}");
    }
}

/// The context-attention probe (context_attention.rs): it starts as a no-op (the first step's
/// loss is the plain drafter's, bit for bit), it is trained (later losses differ, its output is
/// no longer zero), and a run that stops and resumes ends with the same drafter, attention and
/// losses. One CPU backend: the module is plain tensor ops.
#[test]
fn context_attention_starts_as_a_no_op_trains_and_resumes_exactly() {
    use burn::tensor::{Distribution, Tensor};
    use redrafter_train::{ContextAttentionConfig, saved_context_attention};
    type B = redrafter_tests::backends::NdArrayBackend;
    let device = Default::default();
    let m = tiny_gguf_model::<Autodiff<B>>(54, GgmlType::F32, &device);
    let llm = m.model.no_grad();
    let lc = llm.config().clone();
    let examples = self_generated(&llm.valid(), 8);
    let plain = TrainConfig { positions_per_sequence: 5, ..config(6, lc.vocab_size, lc.hidden_size) };
    let cfg = TrainConfig { context_attention: Some(ContextAttentionConfig { heads: 2, head_dim: 8 }), ..plain.clone() };
    let run = |c: &TrainConfig, dir: &std::path::Path, stop: Option<usize>| {
        Trainer { llm: &llm, examples: &examples, config: c.clone(), out_dir: dir.to_path_buf(), stop_after: stop, hidden_cache: None }.run(&mut |_, _, _| {}).unwrap()
    };
    let (_, log_plain) = run(&plain, &temp_dir("train-att-plain"), None);
    let whole = temp_dir("train-att-whole");
    let (a, log_a) = run(&cfg, &whole, None);
    assert_eq!(log_a[0].loss, log_plain[0].loss, "a zero output projection adds nothing");
    assert!(log_a[1..].iter().zip(&log_plain[1..]).any(|(x, y)| x.loss != y.loss), "the attention changes training");

    let resumed = temp_dir("train-att-resume");
    assert_eq!(run(&cfg, &resumed, Some(3)).1.len(), 3);
    let (b, log_b) = run(&cfg, &resumed, None);
    let weights = |d: &Drafter<Autodiff<B>>| to_vec(d.lm_head.weight.val().inner());
    assert_eq!(weights(&a), weights(&b), "resumed drafter differs");
    for (x, y) in log_a.iter().zip(&log_b) {
        assert!((x.loss - y.loss).abs() <= 1e-9 * x.loss.abs(), "step {}: loss {} vs {}", x.step, x.loss, y.loss);
    }
    let inner = llm.valid();
    let ctx = Tensor::<B, 3>::random([1, 6, lc.hidden_size], Distribution::Default, &device);
    let emb = Tensor::<B, 3>::random([1, 6, lc.hidden_size], Distribution::Default, &device);
    let out = |dir: &std::path::Path| to_vec(saved_context_attention(dir, &cfg, &inner).unwrap().expect("saved").forward(ctx.clone(), emb.clone()));
    let (oa, ob) = (out(&whole), out(&resumed));
    assert!(oa.iter().any(|&x| x != 0.0), "the output projection was trained");
    assert_eq!(oa, ob, "resumed attention differs");
    assert!(saved_context_attention(&whole, &plain, &inner).unwrap().is_none());
    for (heads, head_dim) in [(0, 8), (1 << 40, 64)] {
        let bad = TrainConfig { context_attention: Some(ContextAttentionConfig { heads, head_dim }), ..plain.clone() };
        let e = Trainer { llm: &llm, examples: &examples, config: bad, out_dir: temp_dir("train-att-bad"), stop_after: None, hidden_cache: None }
            .run(&mut |_, _, _| {})
            .err()
            .expect("bad attention size");
        assert!(e.to_string().contains("context attention of"), "{e}");
    }
}

backend_tests!(
    training_learns_and_raises_tau,
    soft_targets_follow_the_llm,
    resume_is_exact_and_foreign_checkpoints_are_refused,
    fine_tuning_starts_from_the_given_drafter,
    bad_training_data_is_refused,
    answered_lines_train_on_the_generated_ids,
    hidden_cache_gives_the_same_training,
    filling_the_cache_ahead_in_shards,
    context_layers_train_from_a_wider_cache,
    training_over_a_draft_vocabulary
);
