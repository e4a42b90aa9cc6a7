//! Absurd options and long runs: every request is either a correct generation or a typed error,
//! never a panic, an overflow, an OOM kill or garbage (the hardening issue's regressions), and
//! greedy ReDrafter stays equal to autoregressive decoding over thousands of tokens.

use redrafter::KernelBackend;
use redrafter::{
    Autoregressive, BeamConfig, DecodeError, Drafter, DrafterConfig, FinishReason, GenerationConfig, LoopStop, GenerationOutput, Generator,
    ReDrafter, SamplingConfig, Strategy,
};
use redrafter_io::GgmlType;
use redrafter_io::budget;
use redrafter_llama::LoadedModel;
use redrafter_tests::{Oracle, Rng, backend_tests, temp_dir, tiny_config, tiny_gguf_model};

fn random_drafter<B: KernelBackend>(m: &LoadedModel<B>, device: &B::Device) -> Drafter<B> {
    let c = m.model.config();
    Drafter::<B>::random(DrafterConfig::for_llm(c.vocab_size, c.hidden_size).with_tied_lm_head(true), 4, device).unwrap()
}

/// `max_new_tokens = usize::MAX` means "until the context is full"; `longest + max_new_tokens`
/// used to overflow (a panic in debug builds, a cache too small for the prompt in release).
fn unbounded_max_new_tokens_fill_the_context<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(41, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let prompts = vec![vec![3, 4, 5], vec![9]];
    let cfg = GenerationConfig { max_new_tokens: usize::MAX, context_limit: Some(40), ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    let mut rd = ReDrafter::new(random_drafter(&m, &device), BeamConfig { width: 2, length: 3 }).unwrap();
    let rd = g.generate(&mut rd, &prompts, &cfg, None).unwrap();
    for (r, p) in prompts.iter().enumerate() {
        assert_eq!(ar.rows[r].finish, FinishReason::ContextLimit, "row {r}");
        assert_eq!(p.len() + ar.rows[r].tokens.len(), 40, "row {r}");
        assert_eq!(rd.rows[r].tokens, ar.rows[r].tokens, "row {r}");
    }
}

/// An empty stop string is found in every text: it used to end every row after one token.
fn empty_stop_strings_are_refused<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(42, GgmlType::F32, &device);
    let g = Generator::new(&m.model, Some(&m.tokenizer));
    let cfg = GenerationConfig { stop_strings: vec!["x".into(), String::new()], ..Default::default() };
    let e = g.generate(&mut Autoregressive, &[vec![5, 6]], &cfg, None).err().expect("refused");
    assert!(matches!(&e, DecodeError::InvalidOption(m) if m.contains("stop string must not be empty")), "{e}");
}

/// A tiny positive temperature used to turn the logits into NaN and pick the least likely token.
fn tiny_temperatures_decode_greedily<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(43, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let prompts = vec![vec![7, 8, 9], vec![30, 31]];
    let greedy = g.generate(&mut Autoregressive, &prompts, &GenerationConfig { max_new_tokens: 10, ..Default::default() }, None).unwrap();
    for t in [1e-38, 1e-12, 5e-6] {
        let cfg = GenerationConfig {
            max_new_tokens: 10,
            sampling: SamplingConfig { temperature: t, seed: 9, ..Default::default() },
            ..Default::default()
        };
        let out = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
        let mut rd = ReDrafter::new(random_drafter(&m, &device), BeamConfig { width: 2, length: 3 }).unwrap();
        let rd = g.generate(&mut rd, &prompts, &cfg, None).unwrap();
        for r in 0..prompts.len() {
            assert_eq!(out.rows[r].tokens, greedy.rows[r].tokens, "temperature {t}, row {r}");
            assert_eq!(rd.rows[r].tokens, greedy.rows[r].tokens, "temperature {t}, ReDrafter row {r}");
        }
    }
}

/// `--beam-width 100000` used to allocate a 300000-token tree until the OOM killer ended the
/// process; the memory check now refuses it before the KV cache exists, stating the bytes.
fn huge_requests_are_refused_by_the_memory_budget<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(44, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let cfg = GenerationConfig { max_new_tokens: 4, ..Default::default() };
    budget::scoped(1 << 30, || {
        let mut rd = ReDrafter::new(random_drafter(&m, &device), BeamConfig { width: 100_000, length: 3 }).unwrap();
        let e = g.generate(&mut rd, &[vec![5, 6]], &cfg, None).err().expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("300000 token(s) per step") && msg.contains("above the memory limit of 1.0 GiB"), "{msg}");
        // A batch far too large for the KV cache.
        let rows = vec![vec![5u32, 6]; 200_000];
        let e = g.generate(&mut Autoregressive, &rows, &cfg, None).err().expect("refused");
        assert!(e.to_string().contains("generating 200000 row(s)"), "{e}");
        // The same requests at a sane size run.
        let mut rd = ReDrafter::new(random_drafter(&m, &device), BeamConfig { width: 4, length: 3 }).unwrap();
        assert!(g.generate(&mut rd, &[vec![5, 6]], &cfg, None).is_ok());
    });
}

/// Greedy ReDrafter equals autoregressive decoding over 4096 new tokens on a ragged batch (the
/// KV cache is relocated thousands of times), and the statistics add up. On wgpu 512 tokens
/// (about 100 relocations per row) and 256 with fusion: under lavapipe on a 2-core Zen 3,
/// 1024 and 512 took 90 s and 63 s (2026-12-07; the 4096-token run ~4 min on the machine before).
fn long_generation_stays_lossless<B: KernelBackend>(device: B::Device) {
    let new_tokens = redrafter_tests::lavapipe_sample::<B>(&device, 4096, 512);
    let mut cfg = tiny_config();
    cfg.max_position_embeddings = new_tokens + 64;
    let dir = temp_dir("long");
    let path = dir.join("long.gguf");
    redrafter_llama::testing::write_tiny_gguf(&path, &cfg, 45, GgmlType::F32).unwrap();
    let m = redrafter_llama::load::<B>(&path, &device).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let g = Generator::new(&m.model, None);
    let prompts = vec![vec![3, 4, 5, 6, 7], vec![11, 12]];
    let gen_cfg = GenerationConfig { max_new_tokens: new_tokens, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &gen_cfg, None).unwrap();
    let truth = ar.rows.iter().map(|r| r.tokens.clone()).collect();
    let oracle = Oracle::new(truth, prompts.iter().map(Vec::len).collect(), m.model.config().vocab_size, 5);
    let mut rd = ReDrafter::new(oracle, BeamConfig { width: 2, length: 5 }).unwrap();
    let out = g.generate(&mut rd, &prompts, &gen_cfg, None).unwrap();
    for (r, row) in ar.rows.iter().enumerate() {
        assert_eq!(row.tokens.len(), new_tokens, "row {r}");
        assert_eq!(row.finish, FinishReason::MaxNewTokens);
        let same = row.tokens.iter().zip(&out.rows[r].tokens).take_while(|(a, b)| a == b).count();
        assert_eq!(same, new_tokens, "row {r}: ReDrafter diverges from autoregressive decoding at token {same} of {new_tokens}");
        assert_eq!(out.rows[r].finish, FinishReason::MaxNewTokens);
    }
    consistent(&ar, 2 * new_tokens);
    consistent(&out, 2 * new_tokens);
    assert!(out.stats.tau > 1.5, "the oracle's drafts should be accepted often: tau {}", out.stats.tau);
    assert!(out.stats.steps < ar.stats.steps, "{} ReDrafter steps vs {} autoregressive", out.stats.steps, ar.stats.steps);
}

fn consistent(out: &GenerationOutput, new: usize) {
    let s = &out.stats;
    assert_eq!(s.new_tokens, new, "{}", s.strategy);
    assert_eq!(out.rows.iter().map(|r| r.tokens.len()).sum::<usize>(), new);
    // Each row's first token comes from prefill; the steps committed the rest (at most one
    // step's worth cut away at max_new_tokens per row).
    assert!(s.committed_in_steps >= new - out.rows.len(), "{}: {} committed", s.strategy, s.committed_in_steps);
    if !s.accepted_counts.is_empty() {
        assert_eq!(s.accepted_counts.iter().sum::<usize>(), s.row_steps, "{}", s.strategy);
    }
    assert!(s.tau >= 1.0 && s.tau.is_finite(), "{}: tau {}", s.strategy, s.tau);
}

backend_tests!(
    unbounded_max_new_tokens_fill_the_context,
    empty_stop_strings_are_refused,
    tiny_temperatures_decode_greedily,
    huge_requests_are_refused_by_the_memory_budget,
    long_generation_stays_lossless,
);

/// Property test of option validation: random (often absurd) combinations of every generation
/// option. A request succeeds exactly when the options are valid, and then its output obeys
/// them; otherwise it is a typed error. Nothing panics.
#[test]
fn option_validation_property() {
    let device = Default::default();
    let m = tiny_gguf_model::<redrafter::backends::NdArrayBackend>(46, GgmlType::F32, &device);
    let g = Generator::new(&m.model, Some(&m.tokenizer));
    let model_max = m.model.config().max_position_embeddings;
    let mut rng = Rng(0x5EED);
    let (mut ok, mut refused) = (0, 0);
    for case in 0..300 {
        // Each option is valid three times in four, so that both outcomes are common.
        macro_rules! pick {
            ($good:expr, $bad:expr) => {{
                let (good, bad) = ($good, $bad);
                if rng.below(4) == 0 { rng.pick(&bad) } else { rng.pick(&good) }
            }};
        }
        let temperature: f32 = pick!([0.0, 1e-38, 0.7, 1.0], [-1.0, f32::NAN, f32::INFINITY]);
        let top_p: f32 = pick!([1.0, 0.5, 0.95], [0.0, -0.1, 1.5, f32::NAN]);
        let top_k: usize = pick!([0, 1, 5, usize::MAX], [0]);
        let max_new_tokens: usize = pick!([1, 3, 7, usize::MAX], [0]);
        let context_limit: Option<usize> = pick!([None, Some(20), Some(usize::MAX)], [Some(0), Some(1), Some(6)]);
        let stop_strings: Vec<String> = pick!([vec![], vec!["e".to_string()]], [vec![String::new()], vec!["zz".to_string(), String::new()]]);
        let rule = |ngram, window, max_repeats| Some(LoopStop { ngram, window, max_repeats });
        let stop_loops: Option<LoopStop> = pick!([None, rule(4, 32, 16), rule(1, 2, 1)], [rule(0, 8, 2), rule(2, 0, 0), rule(2, 4, 4)]);
        let prompt_len: usize = pick!([1, 4, 12], [0, 19, model_max]);
        let rows = 1 + rng.below(3);
        let row_seeds: Vec<u64> = pick!([vec![], (0..rows as u64).map(|r| 3 * r + 1).collect()], [vec![1; rows + 1]]);
        let (width, length): (usize, usize) = (pick!([1, 3], [0, 100_000]), pick!([2, 4], [0, 1]));
        let redrafter = rng.below(2) == 1;
        let acceptance = if rng.below(2) == 1 { redrafter::Acceptance::Apple } else { redrafter::Acceptance::Exact };
        let prompts: Vec<Vec<u32>> = (0..rows).map(|r| (0..prompt_len).map(|i| ((i * 7 + r) % 50) as u32 + 1).collect()).collect();
        let cfg = GenerationConfig {
            max_new_tokens,
            sampling: SamplingConfig { temperature, top_k, top_p, seed: case, acceptance },
            stop_strings: stop_strings.clone(),
            eos_ids: vec![],
            context_limit,
            sync_phases: false,
            stop_loops,
            row_seeds: row_seeds.clone(),
        };
        let limit = context_limit.map_or(model_max, |c| c.min(model_max));
        let beams_valid = width >= 1 && length >= 2;
        let valid = temperature.is_finite()
            && temperature >= 0.0
            && top_p > 0.0
            && top_p <= 1.0
            && max_new_tokens >= 1
            && !stop_strings.iter().any(String::is_empty)
            && stop_loops.is_none_or(|r| r.ngram >= 1 && r.window >= 1 && r.max_repeats < r.window)
            && prompt_len >= 1
            && prompt_len < limit
            && (row_seeds.is_empty() || row_seeds.len() == rows)
            && (!redrafter || (beams_valid && width < 100_000));
        let what = format!(
            "case {case}: T {temperature} top-p {top_p} top-k {top_k} max {max_new_tokens} ctx {context_limit:?} stop {stop_strings:?} \
             loops {stop_loops:?} prompt {prompt_len} rows {rows} row seeds {row_seeds:?} redrafter {redrafter} W {width} L {length} {acceptance:?}"
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            budget::scoped(1 << 30, || {
                let mut strategy: Box<dyn Strategy<redrafter::backends::NdArrayBackend>> = if redrafter {
                    match ReDrafter::new(random_drafter(&m, &device), BeamConfig { width, length }) {
                        Ok(s) => Box::new(s),
                        Err(e) => return Err(e),
                    }
                } else {
                    Box::new(Autoregressive)
                };
                g.generate(strategy.as_mut(), &prompts, &cfg, None)
            })
        }));
        let result = result.unwrap_or_else(|_| panic!("{what}: panicked"));
        match result {
            Ok(out) => {
                assert!(valid, "{what}: accepted, but the options are invalid");
                ok += 1;
                for (r, row) in out.rows.iter().enumerate() {
                    assert!(!row.tokens.is_empty() && row.tokens.len() <= max_new_tokens, "{what}: row {r}");
                    assert!(prompt_len + row.tokens.len() <= limit, "{what}: row {r} leaves the context");
                    if row.finish == FinishReason::MaxNewTokens {
                        assert_eq!(row.tokens.len(), max_new_tokens, "{what}: row {r}");
                    }
                    assert_eq!(row.finish == FinishReason::Loop, row.loop_start.is_some(), "{what}: row {r}");
                    if row.finish == FinishReason::Loop {
                        assert!(stop_loops.is_some() && row.loop_start < Some(row.tokens.len()), "{what}: row {r}");
                    }
                }
            }
            Err(e) => {
                assert!(!valid, "{what}: refused, but the options are valid: {e}");
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    assert!(ok >= 20 && refused >= 20, "the generator should hit both sides: {ok} ok, {refused} refused");
    eprintln!("option validation: {ok} valid requests ran, {refused} refused");
}
