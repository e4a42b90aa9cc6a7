//! The central property: greedy ReDrafter emits exactly the tokens of greedy autoregressive
//! decoding, for every beam width, beam length and batch size, whatever the drafts are.

use redrafter::KernelBackend;
use redrafter::{
    Autoregressive, BeamConfig, DraftSource, Drafter, DrafterConfig, FinishReason, GenerationConfig, GenerationOutput,
    Generator, LookupFirst, LoopStop, PromptLookup, ReDrafter,
};
use redrafter_io::GgmlType;
use redrafter_llama::{BlockInput, Llama};
use redrafter_llama::WeightFormat;
use redrafter::decode::DecodeState;
use redrafter_tests::{Oracle, Scripted, backend_tests, tiny_gguf_model, tiny_gguf_model_as, to_vec};

/// Top-2 logit gap after `prefix`: a greedy divergence is only excusable on a near tie, where
/// batched and single-token arithmetic may round differently.
fn top2_gap<B: KernelBackend>(m: &Llama<B>, prefix: &[u32], device: &B::Device) -> f32 {
    let mut cache = m.new_cache(1, prefix.len(), device);
    let logits = to_vec(m.forward(&BlockInput::causal(&[prefix.to_vec()], &[0], device), &mut cache).logits);
    let mut last = logits[logits.len() - m.config().vocab_size..].to_vec();
    last.sort_by(|a, b| b.total_cmp(a));
    last[0] - last[1]
}

/// Compares a ReDrafter run with the autoregressive one; returns the number of near-tie
/// divergences (panics on any other difference).
fn compare<B: KernelBackend>(m: &Llama<B>, prompts: &[Vec<u32>], ar: &GenerationOutput, rd: &GenerationOutput, what: &str, device: &B::Device) -> usize {
    let mut ties = 0;
    for (r, (a, b)) in ar.rows.iter().zip(&rd.rows).enumerate() {
        if a.tokens == b.tokens {
            assert_eq!(a.finish, b.finish, "{what}: row {r} finish");
            continue;
        }
        let j = a.tokens.iter().zip(&b.tokens).take_while(|(x, y)| x == y).count();
        let prefix: Vec<u32> = prompts[r].iter().chain(&a.tokens[..j]).copied().collect();
        let gap = top2_gap(m, &prefix, device);
        assert!(
            j < a.tokens.len().min(b.tokens.len()) && gap < 1e-4,
            "{what}: row {r} diverges at token {j} (top-2 gap {gap}):\n AR {:?}\n RD {:?}",
            a.tokens,
            b.tokens
        );
        ties += 1;
    }
    ties
}

struct Case {
    prompts: Vec<Vec<u32>>,
    cfg: GenerationConfig,
}

/// Seeded prompts and stop settings: ragged batches, EOS inside accepted runs, tight contexts.
fn case(seed: u64, batch: usize, vocab: u32, ar_free: impl Fn(&[Vec<u32>], &GenerationConfig) -> Vec<Vec<u32>>) -> Case {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let prompts: Vec<Vec<u32>> =
        (0..batch).map(|_| (0..1 + next(6)).map(|_| 3 + next(vocab as u64 - 3) as u32).collect()).collect();
    let mut cfg = GenerationConfig { max_new_tokens: 4 + next(9) as usize, ..Default::default() };
    match seed % 4 {
        // The token AR emits at a random step becomes EOS, so it often lands inside a run.
        1 => {
            let free = ar_free(&prompts, &cfg);
            let row = &free[next(batch as u64) as usize];
            cfg.eos_ids = vec![row[next(row.len() as u64) as usize]];
        }
        // A context limit a few tokens past the longest prompt.
        2 => cfg.context_limit = Some(prompts.iter().map(Vec::len).max().unwrap_or(0) + 2 + next(6) as usize),
        _ => {}
    }
    Case { prompts, cfg }
}

fn run_grid<B: KernelBackend>(
    m: &Llama<B>,
    seeds: std::ops::Range<u64>,
    widths: &[usize],
    lengths: &[usize],
    batches: &[usize],
    source: &mut dyn FnMut(u64, &[Vec<u32>], &GenerationOutput) -> Box<dyn DraftSource<B>>,
    device: &B::Device,
) -> (usize, usize, Vec<usize>) {
    let g = Generator::new(m, None);
    let vocab = m.config().vocab_size as u32;
    let (mut runs, mut ties, mut counts) = (0, 0, vec![0usize; 8]);
    for seed in seeds {
        for &batch in batches {
            let ar_free = |p: &[Vec<u32>], c: &GenerationConfig| {
                g.generate(&mut Autoregressive, p, c, None).unwrap().rows.into_iter().map(|r| r.tokens).collect()
            };
            let Case { prompts, cfg } = case(seed * 7 + batch as u64, batch, vocab, ar_free);
            let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
            for &w in widths {
                for &l in lengths {
                    let src = source(seed, &prompts, &ar);
                    let mut strategy = ReDrafter::new(src, BeamConfig { width: w, length: l }).unwrap();
                    let rd = g.generate(&mut strategy, &prompts, &cfg, None).unwrap();
                    let what = format!("seed {seed} batch {batch} W {w} L {l} cfg {cfg:?}");
                    ties += compare(m, &prompts, &ar, &rd, &what, device);
                    assert!(rd.stats.steps <= ar.stats.steps, "{what}: more verification steps than AR");
                    for (k, &n) in rd.stats.accepted_counts.iter().enumerate() {
                        counts[k] += n;
                    }
                    runs += 1;
                }
            }
        }
    }
    (runs, ties, counts)
}

fn greedy_is_lossless_with_oracle_drafts<B: KernelBackend>(device: B::Device) {
    let models = [tiny_gguf_model::<B>(31, GgmlType::F32, &device), tiny_gguf_model::<B>(32, GgmlType::F32, &device)];
    let vocab = models[0].model.config().vocab_size;
    let (mut runs, mut ties, mut counts) = (0, 0, vec![0usize; 8]);
    // 100 seeds in all, split over two models; 16 on wgpu and 8 with fusion, each seed the whole
    // grid of batch sizes and beam shapes: under lavapipe on a 2-core Zen 3, 40 seeds took
    // 277 s and 20 with fusion 165 s (2026-12-07; ~15 min for 100 on the earlier machine).
    let per_model = redrafter_tests::lavapipe_sample::<B>(&device, 50, 8) as u64;
    for (i, m) in models.iter().enumerate() {
        let seeds = (i as u64 * 50)..(i as u64 * 50 + per_model);
        let mut oracle = |seed: u64, p: &[Vec<u32>], ar: &GenerationOutput| -> Box<dyn DraftSource<B>> {
            let truth = ar.rows.iter().map(|r| r.tokens.clone()).collect();
            Box::new(Oracle::new(truth, p.iter().map(Vec::len).collect(), vocab, seed))
        };
        let (r, t, c) = run_grid(&m.model, seeds, &[1, 2, 4, 8], &[2, 3, 5], &[1, 3], &mut oracle, &device);
        runs += r;
        ties += t;
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
    }
    assert_eq!(runs, 2 * per_model as usize * 4 * 3 * 2);
    assert!(ties * 100 <= runs, "{ties} near-tie divergences in {runs} runs");
    // Every accepted length 0..=4 (L = 5 drafts 4) occurred, full acceptance included.
    assert!(counts[..5].iter().all(|&n| n > 0), "accepted-length histogram {counts:?}");
    eprintln!("oracle grid: {runs} runs, {ties} near-tie divergences, accepted-length histogram {counts:?}");
}

/// The same property on weights kept in their block formats (the default for a GGUF on the CPU):
/// the block kernels give a row the same bits inside a tree as alone, so greedy ReDrafter
/// matches greedy autoregressive decoding of the same quantized model.
fn greedy_is_lossless_on_block_weights<B: KernelBackend>(device: B::Device) {
    let cases = [
        (GgmlType::Q4_1, WeightFormat::Native),
        (GgmlType::Q4_1, WeightFormat::NativeQ8),
        (GgmlType::Q8_0, WeightFormat::NativeQ8),
        (GgmlType::Q4_0, WeightFormat::Native),
        (GgmlType::BF16, WeightFormat::Native),
        (GgmlType::F32, WeightFormat::F16),
    ];
    let (mut runs, mut ties) = (0, 0);
    for (i, (ty, weights)) in cases.into_iter().enumerate() {
        let m = tiny_gguf_model_as::<B>(40 + i as u64, ty, weights, &device);
        let formats = m.model.weight_formats();
        if <B as redrafter_kernels::BlockMatmulOps>::host_resident() {
            let want = if weights == WeightFormat::F16 { "F16".to_string() } else { ty.name() };
            let act = if weights == WeightFormat::NativeQ8 { ", 8-bit activations" } else { "" };
            assert_eq!(formats, format!("{want} projections, {want} head{act}"), "{ty:?} {weights:?}");
        } else {
            assert_eq!(formats, "F32 projections, F32 head", "device backends keep dense weights");
        }
        let vocab = m.model.config().vocab_size;
        let mut oracle = |seed: u64, p: &[Vec<u32>], ar: &GenerationOutput| -> Box<dyn DraftSource<B>> {
            let truth = ar.rows.iter().map(|r| r.tokens.clone()).collect();
            Box::new(Oracle::new(truth, p.iter().map(Vec::len).collect(), vocab, seed))
        };
        // The device backends widen every format to dense f32 at load (asserted above), so
        // there the six cases differ only in their weights' rounding: two seeds each on wgpu,
        // one with fusion (6 and 3 took 117 s and 89 s under lavapipe, 2026-12-07).
        let seeds = 0..redrafter_tests::lavapipe_sample::<B>(&device, 6, 2) as u64;
        let (r, t, _) = run_grid(&m.model, seeds, &[1, 4], &[2, 4], &[1, 3], &mut oracle, &device);
        runs += r;
        ties += t;
        let dc = DrafterConfig::for_llm(vocab, m.model.config().hidden_size).with_tied_lm_head(true);
        let mut drafter = Drafter::<B>::random(dc, i as u64, &device).unwrap();
        if i % 2 == 1 {
            // Drafting through the block head's selected rows (a reduced draft vocabulary).
            drafter = drafter.with_draft_vocab((0..vocab as u32).step_by(2).collect()).unwrap();
        }
        let mut source = |_: u64, _: &[Vec<u32>], _: &GenerationOutput| -> Box<dyn DraftSource<B>> { Box::new(drafter.clone()) };
        let (r, t, _) = run_grid(&m.model, 0..2, &[1, 3], &[3], &[1, 3], &mut source, &device);
        runs += r;
        ties += t;
    }
    assert!(ties * 20 <= runs, "{ties} near-tie divergences in {runs} runs");
}

fn greedy_is_lossless_with_random_drafters<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(33, GgmlType::F32, &device);
    let cfg = m.model.config();
    let apple = DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size);
    let tied = DrafterConfig { exit_dim: 48, ..apple.clone() }.with_tied_lm_head(true);
    // The last two draft over reduced vocabularies (the tied head's rows; an own head's rows):
    // the LLM's bonus token may lie outside them, and verification still covers every token.
    let odd: Vec<u32> = (0..cfg.vocab_size as u32).filter(|t| t % 2 == 1).collect();
    let variants = [
        (apple.clone(), None),
        (DrafterConfig { rnn: false, num_draft_layers: 1, ..apple.clone() }, None),
        (tied.clone(), None),
        (tied, Some(odd.clone())),
        (apple, Some(odd)),
    ];
    for (v, (dc, vocab)) in variants.into_iter().enumerate() {
        let mut drafter = Drafter::<B>::random(dc, v as u64, &device).unwrap();
        if let Some(ids) = vocab {
            drafter = drafter.with_draft_vocab(ids).unwrap();
        }
        let mut source = |_: u64, _: &[Vec<u32>], _: &GenerationOutput| -> Box<dyn DraftSource<B>> {
            Box::new(drafter.clone())
        };
        // Two seeds of every variant on wgpu and one with fusion (4 and 2 took 127 s and 60 s
        // under lavapipe, 2026-12-07).
        let seeds = 0..redrafter_tests::lavapipe_sample::<B>(&device, 4, 2) as u64;
        let (runs, ties, _) = run_grid(&m.model, seeds, &[1, 3, 8], &[2, 4], &[1, 3], &mut source, &device);
        assert!(ties * 10 <= runs, "{ties} near-tie divergences in {runs} runs");
    }
}

fn finish_reasons_and_stats_are_reported<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(34, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let prompts = vec![vec![5, 6, 7]];
    let cfg = GenerationConfig { max_new_tokens: 9, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    let truth: Vec<Vec<u32>> = ar.rows.iter().map(|r| r.tokens.clone()).collect();
    // Width 1 with an oracle that always has the truth whole: full acceptance every step.
    let oracle = always_truth::<B>(truth);
    let mut s = ReDrafter::new(oracle, BeamConfig { width: 1, length: 4 }).unwrap();
    let rd = g.generate(&mut s, &prompts, &cfg, None).unwrap();
    assert_eq!(rd.rows[0].tokens, ar.rows[0].tokens);
    assert_eq!(rd.rows[0].finish, FinishReason::MaxNewTokens);
    // 1 token from prefill, then 4 per step: 1 + 4 + 4 = 9 in two steps.
    assert_eq!(rd.stats.steps, 2);
    assert_eq!(rd.stats.tau, 4.0);
    assert_eq!(rd.stats.acceptance_by_position, vec![1.0, 1.0, 1.0]);
    assert_eq!(rd.stats.accepted_counts, vec![0, 0, 0, 2]);
    assert_eq!(rd.stats.tree_compression, 1.0);
    let phases: Vec<&str> = rd.stats.phase_seconds.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(phases, ["draft", "tree", "verify", "accept"]);
}

/// Prompt lookup (drafts copied from the row's own context) through the same grid: lossless, and
/// on a tiny model's looping output it accepts drafts, τ above one.
fn greedy_is_lossless_with_prompt_lookup<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(38, GgmlType::F32, &device);
    let seeds = if redrafter_tests::on_wgpu::<B>(&device) { 0..6 } else { 0..20 };
    let mut lookup = |_: u64, _: &[Vec<u32>], _: &GenerationOutput| -> Box<dyn DraftSource<B>> { Box::new(PromptLookup::default()) };
    let (runs, ties, _) = run_grid(&m.model, seeds, &[1, 3], &[2, 4], &[1, 3], &mut lookup, &device);
    assert!(ties * 100 <= runs, "{ties} near-tie divergences in {runs} runs");

    let g = Generator::new(&m.model, None);
    let prompts: Vec<Vec<u32>> = (0..4u32).map(|i| vec![5 + i, 9 + 3 * i, 11, 5 + i]).collect();
    let cfg = GenerationConfig { max_new_tokens: 64, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    let mut s = ReDrafter::new(PromptLookup::default(), BeamConfig { width: 2, length: 5 }).unwrap();
    let rd = g.generate(&mut s, &prompts, &cfg, None).unwrap();
    assert_eq!(compare(&m.model, &prompts, &ar, &rd, "prompt lookup, 64 tokens", &device), 0);
    assert!(rd.stats.tau > 1.2, "a tiny model's output repeats itself, lookup should accept: τ {}", rd.stats.tau);
    eprintln!("prompt lookup on the tiny model: τ {:.2} in {} steps ({} AR)", rd.stats.tau, rd.stats.steps, ar.stats.steps);
    let bad = PromptLookup { max_ngram: 1, min_ngram: 2 };
    assert!(g.generate(&mut ReDrafter::new(bad, BeamConfig { width: 1, length: 3 }).unwrap(), &prompts, &cfg, None).is_err());
}

/// Prompt lookup first, the drafter elsewhere (`LookupFirst`): lossless over the oracle grid, with
/// rows that copy and rows that draft in one batch, and with an adaptive length whose short
/// drafter beams are padded beside full-length copies; in sampling mode the merged drafts carry
/// a distribution for every token.
fn greedy_is_lossless_with_lookup_first<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(38, GgmlType::F32, &device);
    let cfg = m.model.config();
    let dc = DrafterConfig { exit_dim: 48, ..DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size) }.with_tied_lm_head(true);
    let drafter = Drafter::<B>::random(dc, 5, &device).unwrap();
    let lookup = redrafter::decode::LOOKUP_FIRST_NGRAMS;
    let seeds = if redrafter_tests::on_wgpu::<B>(&device) { 0..4 } else { 0..12 };
    let mut first = |_: u64, _: &[Vec<u32>], _: &GenerationOutput| -> Box<dyn DraftSource<B>> {
        Box::new(LookupFirst::new(drafter.clone(), lookup).unwrap())
    };
    let (runs, ties, _) = run_grid(&m.model, seeds, &[1, 3], &[2, 4], &[1, 3], &mut first, &device);
    assert!(ties * 100 <= runs, "{ties} near-tie divergences in {runs} runs");

    let g = Generator::new(&m.model, None);
    let prompts: Vec<Vec<u32>> = (0..3u32).map(|i| vec![5 + i, 9 + 3 * i, 11, 5 + i]).collect();
    let gen_cfg = GenerationConfig { max_new_tokens: 40, ..Default::default() };
    let ar = g.generate(&mut Autoregressive, &prompts, &gen_cfg, None).unwrap();
    let (mut mixed, mut copied_all) = (0, 0);
    for (w, l, p) in [(1, 3, 0.0), (1, 4, 0.05), (2, 4, 0.05), (3, 5, 0.0)] {
        let mut s = ReDrafter::new(LookupFirst::new(drafter.clone(), lookup).unwrap(), BeamConfig { width: w, length: l })
            .unwrap()
            .draft_threshold(p)
            .unwrap();
        let rd = g.generate(&mut s, &prompts, &gen_cfg, None).unwrap();
        let what = format!("lookup first W {w} L {l} p {p}");
        assert_eq!(compare(&m.model, &prompts, &ar, &rd, &what, &device), 0, "{what}");
        let (copied, row_steps) = s.source().copied();
        assert_eq!(row_steps, rd.stats.row_steps, "{what}: one decision per row-step");
        assert!(copied > 0, "{what}: the tiny model repeats itself, some rows should copy");
        // The loop's statistics split the same row-steps: the copying rows' counts are a part of
        // the pooled ones, position by position.
        let st = &rd.stats;
        assert_eq!(st.copied_row_steps, copied, "{what}: the loop counts the source's copying row-steps");
        let (co, ca) = (&st.copy_offered_by_position, &st.copy_accepted_by_position);
        assert!(co.len() <= st.offered_by_position.len() && co.iter().zip(&st.offered_by_position).all(|(c, o)| c <= o), "{what}: {co:?}");
        assert!(ca.iter().zip(&st.accepted_by_position).all(|(c, a)| c <= a) && ca.iter().zip(co).all(|(a, o)| a <= o), "{what}: {ca:?} of {co:?}");
        let first = co.first().copied().unwrap_or(0);
        assert!(first > 0 && first <= copied, "{what}: {first} copying row-steps offered a first token, of {copied}");
        mixed += usize::from(copied < row_steps);
        copied_all += copied;
        eprintln!("{what}: τ {:.2}, {copied} of {row_steps} row-steps copied", rd.stats.tau);
    }
    assert!(mixed > 0 && copied_all > 0, "no run mixed copying and drafting rows: the test would prove nothing");

    // Sampling mode: the merged beams carry the drafter's distributions and one-hot ones for
    // copies and padding (a missing one would fail the step).
    let sampled = GenerationConfig {
        sampling: redrafter::SamplingConfig { temperature: 1.0, seed: 7, ..Default::default() },
        ..gen_cfg.clone()
    };
    for acceptance in [redrafter::Acceptance::Exact, redrafter::Acceptance::Apple] {
        let cfg = GenerationConfig { sampling: redrafter::SamplingConfig { acceptance, ..sampled.sampling.clone() }, ..sampled.clone() };
        let mut s = ReDrafter::new(LookupFirst::new(drafter.clone(), lookup).unwrap(), BeamConfig { width: 2, length: 4 })
            .unwrap()
            .draft_threshold(0.05)
            .unwrap();
        let out = g.generate(&mut s, &prompts, &cfg, None).unwrap();
        assert!(out.rows.iter().all(|r| r.tokens.len() == 40), "{acceptance:?}: every row runs to its length");
        assert!(s.source().copied().0 > 0, "{acceptance:?}: some rows copied");
    }
}

/// The loop stop ends a row at the same token whatever the strategy: autoregressive decoding and
/// a drafter whose steps accept 4 tokens at once (so the stop falls inside a step); tokens, finish
/// reason and loop start all equal the rule applied to the free output.
fn loop_stop_ends_every_strategy_at_the_same_token<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(37, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    // Prompts of 3 tokens (AlwaysTruth's bookkeeping assumes it).
    let prompts: Vec<Vec<u32>> = (0..6u32).map(|i| vec![5 + 7 * i, 6 + 11 * i, 7 + 13 * i]).collect();
    let free_cfg = GenerationConfig { max_new_tokens: 80, ..Default::default() };
    let free = g.generate(&mut Autoregressive, &prompts, &free_cfg, None).unwrap();
    let rule = LoopStop { ngram: 2, window: 8, max_repeats: 3 };
    let expected: Vec<Option<(usize, usize)>> = free.rows.iter().map(|r| redrafter::decode::find_loop(&r.tokens, rule)).collect();
    assert!(expected.iter().any(Option::is_some), "no row of the tiny model loops: the test would prove nothing");
    let cfg = GenerationConfig { stop_loops: Some(rule), ..free_cfg.clone() };
    let check = |out: &GenerationOutput, what: &str| {
        for (r, row) in out.rows.iter().enumerate() {
            match expected[r] {
                Some((stop, start)) => {
                    assert_eq!(row.tokens, free.rows[r].tokens[..stop], "{what} row {r}");
                    assert_eq!((row.finish, row.loop_start), (FinishReason::Loop, Some(start)), "{what} row {r}");
                }
                None => {
                    assert_eq!(row.tokens, free.rows[r].tokens, "{what} row {r}");
                    assert_eq!((row.finish, row.loop_start), (free.rows[r].finish, None), "{what} row {r}");
                }
            }
        }
    };
    check(&g.generate(&mut Autoregressive, &prompts, &cfg, None).unwrap(), "autoregressive");
    let truth: Vec<Vec<u32>> = free.rows.iter().map(|r| r.tokens.clone()).collect();
    let mut s = ReDrafter::new(always_truth::<B>(truth), BeamConfig { width: 1, length: 5 }).unwrap();
    check(&g.generate(&mut s, &prompts, &cfg, None).unwrap(), "full acceptance");
    let bad = GenerationConfig { stop_loops: Some(LoopStop { window: 4, max_repeats: 4, ngram: 2 }), ..free_cfg.clone() };
    assert!(g.generate(&mut Autoregressive, &prompts, &bad, None).is_err(), "a rule that can never trip is refused");
}

/// Width W copies of the truth whole (`truth[r]`: request row r's autoregressive output, after a
/// 3-token prompt): full acceptance every step.
fn always_truth<B: KernelBackend>(truth: Vec<Vec<u32>>) -> Scripted<impl FnMut(&DecodeState<B>, usize, usize, usize) -> Vec<u32>> {
    Scripted::new("truth", move |s: &DecodeState<B>, i: usize, w: usize, l: usize| {
        let done = s.cache.lens()[i] + 1 - 3;
        let mut beam = vec![s.pending[i]];
        beam.extend(truth[s.rows[i]].iter().skip(done).chain(std::iter::repeat(&0)).take(l - 1));
        beam.repeat(w)
    })
}

fn sampling_mode_runs_and_is_reproducible<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(35, GgmlType::F32, &device);
    let dc = DrafterConfig::for_llm(m.model.config().vocab_size, m.model.config().hidden_size);
    let drafter = Drafter::<B>::random(dc, 1, &device).unwrap();
    let g = Generator::new(&m.model, None);
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        sampling: redrafter::SamplingConfig { temperature: 0.8, top_k: 20, seed: 5, ..Default::default() },
        ..Default::default()
    };
    let prompts = vec![vec![5, 6, 7], vec![9, 10]];
    let run = || {
        let mut s = ReDrafter::new(drafter.clone(), BeamConfig { width: 3, length: 3 }).unwrap();
        g.generate(&mut s, &prompts, &cfg, None).unwrap()
    };
    let (a, b) = (run(), run());
    for r in 0..2 {
        assert_eq!(a.rows[r].tokens, b.rows[r].tokens);
        assert_eq!(a.rows[r].tokens.len(), 10);
    }
}

fn invalid_beam_options_are_rejected<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(36, GgmlType::F32, &device);
    let d = Drafter::<B>::random(DrafterConfig::for_llm(m.model.config().vocab_size, 64), 0, &device).unwrap();
    for (w, l) in [(0, 4), (2, 1), (2, 0)] {
        let e = ReDrafter::new(d.clone(), BeamConfig { width: w, length: l }).err().expect("invalid");
        assert!(e.to_string().contains("beam"), "{e}");
    }
}

/// Adaptive draft length (`ReDrafter::draft_threshold`): at every threshold greedy output is
/// autoregressive decoding's; a threshold below every joint probability drafts exactly what the
/// fixed length does, one above every probability drafts nothing (a step per token, as
/// autoregressive decoding), and thresholds between give steps of different lengths. Sampling
/// with either acceptance rule runs on the shorter beams (Apple's reads their distributions).
fn adaptive_length_is_lossless_and_drafts_less<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(39, GgmlType::F32, &device);
    let cfg = m.model.config();
    let g = Generator::new(&m.model, None);
    let dc = DrafterConfig { exit_dim: 48, ..DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size) }.with_tied_lm_head(true);
    let odd: Vec<u32> = (0..cfg.vocab_size as u32).filter(|t| t % 2 == 1).collect();
    let drafters = [
        Drafter::<B>::random(dc.clone(), 3, &device).unwrap(),
        Drafter::<B>::random(dc, 4, &device).unwrap().with_draft_vocab(odd).unwrap(),
    ];
    let prompts: Vec<Vec<u32>> = (0..3u32).map(|i| vec![5 + 7 * i, 6 + 11 * i, 7 + 13 * i]).collect();
    let gen_cfg = GenerationConfig { max_new_tokens: 24, ..Default::default() };
    // Six thresholds on the CPU backends, the largest two on wgpu (with and without fusion): all
    // six took 180 s and 253 s under lavapipe on a 2-core Zen 3, 2026-12-07; two, 145 s with
    // fusion, and they still draft some steps shorter than others.
    let all = [1e-4f32, 1e-3, 0.01, 0.03, 0.1, 0.3];
    let thresholds = if redrafter_tests::on_wgpu::<B>(&device) { &all[4..] } else { &all[..] };
    let mut partial = 0;
    for (d, drafter) in drafters.iter().enumerate() {
        for batch in [1, 3] {
            let prompts = &prompts[..batch];
            let ar = g.generate(&mut Autoregressive, prompts, &gen_cfg, None).unwrap();
            for (w, l) in [(1, 3), (3, 5)] {
                let run = |p: f32| {
                    let mut s = ReDrafter::new(drafter.clone(), BeamConfig { width: w, length: l }).unwrap().draft_threshold(p).unwrap();
                    g.generate(&mut s, prompts, &gen_cfg, None).unwrap()
                };
                let fixed = run(0.0);
                let what = |p: f32| format!("drafter {d} batch {batch} W {w} L {l} p {p}");
                compare(&m.model, prompts, &ar, &fixed, &what(0.0), &device);
                let low = run(1e-30);
                assert_eq!(
                    (low.stats.steps, low.stats.grid_tokens, low.stats.mean_offered),
                    (fixed.stats.steps, fixed.stats.grid_tokens, fixed.stats.mean_offered),
                    "{}: a threshold below every probability drafts the full length",
                    what(1e-30)
                );
                assert!(low.rows.iter().zip(&fixed.rows).all(|(a, b)| a.tokens == b.tokens), "{}", what(1e-30));
                let high = run(0.999_999);
                compare(&m.model, prompts, &ar, &high, &what(0.999_999), &device);
                assert_eq!(high.stats.mean_offered, 0.0, "{}: nothing is drafted", what(0.999_999));
                assert_eq!(high.stats.steps, ar.stats.steps, "{}: one step per token", what(0.999_999));
                for &p in thresholds {
                    let out = run(p);
                    compare(&m.model, prompts, &ar, &out, &what(p), &device);
                    let offered = out.stats.mean_offered;
                    assert!((0.0..=(l - 1) as f64).contains(&offered), "{}: {offered} drafted per step", what(p));
                    // The per-position counts (what the harness pools across calls) agree with the means.
                    let st = &out.stats;
                    let (o, a) = (&st.offered_by_position, &st.accepted_by_position);
                    assert_eq!(o.iter().sum::<usize>() as f64, (offered * st.row_steps as f64).round(), "{}", what(p));
                    assert_eq!(a.iter().sum::<usize>() as f64, (st.mean_accepted * st.row_steps as f64).round(), "{}", what(p));
                    assert!(o.windows(2).all(|w| w[0] >= w[1]) && a.iter().zip(o).all(|(a, o)| a <= o), "{}: {a:?} of {o:?}", what(p));
                    if offered > 0.0 && offered < (l - 1) as f64 {
                        partial += 1;
                    }
                }
            }
        }
    }
    assert!(partial > 0, "no threshold drafted some steps shorter than others: the test would prove nothing");
    // A source without probabilities (an oracle of the truth) drafts as much at p = 0.5 as at 0
    // (the full length, but for the last steps, which the output's end shortens).
    let truth: Vec<Vec<u32>> = g.generate(&mut Autoregressive, &prompts, &gen_cfg, None).unwrap().rows.into_iter().map(|r| r.tokens).collect();
    let offered = |p: f32| {
        let mut s = ReDrafter::new(always_truth::<B>(truth.clone()), BeamConfig { width: 1, length: 4 }).unwrap().draft_threshold(p).unwrap();
        g.generate(&mut s, &prompts, &gen_cfg, None).unwrap().stats.mean_offered
    };
    let full = offered(0.0);
    assert!(full > 2.5, "the oracle drafts nearly 3 tokens a step: {full}");
    assert_eq!(offered(0.5), full);
    // Sampling on shortened beams, both acceptance rules.
    for acceptance in [redrafter::Acceptance::Exact, redrafter::Acceptance::Apple] {
        let sampled = GenerationConfig {
            max_new_tokens: 12,
            sampling: redrafter::SamplingConfig { temperature: 0.8, top_k: 20, seed: 5, acceptance, ..Default::default() },
            ..Default::default()
        };
        let mut s = ReDrafter::new(drafters[0].clone(), BeamConfig { width: 2, length: 4 }).unwrap().draft_threshold(0.01).unwrap();
        let out = g.generate(&mut s, &prompts, &sampled, None).unwrap();
        assert!(out.rows.iter().all(|r| r.tokens.len() == 12), "{acceptance:?}");
    }
    for bad in [1.0, -0.1, f32::NAN] {
        let e = ReDrafter::new(drafters[0].clone(), BeamConfig { width: 1, length: 3 }).unwrap().draft_threshold(bad).err().expect("refused");
        assert!(e.to_string().contains("draft threshold"), "{e}");
    }
}

backend_tests!(
    greedy_is_lossless_with_oracle_drafts,
    greedy_is_lossless_with_random_drafters,
    greedy_is_lossless_on_block_weights,
    finish_reasons_and_stats_are_reported,
    sampling_mode_runs_and_is_reproducible,
    invalid_beam_options_are_rejected,
    loop_stop_ends_every_strategy_at_the_same_token,
    greedy_is_lossless_with_prompt_lookup,
    greedy_is_lossless_with_lookup_first,
    adaptive_length_is_lossless_and_drafts_less,
);
