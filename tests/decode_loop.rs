//! The shared decoding loop: batching, stop conditions, sampling, streaming.

use redrafter::KernelBackend;
use redrafter::{Autoregressive, DecodeError, FinishReason, GenerationConfig, Generator, SamplingConfig};
use redrafter_io::GgmlType;
use redrafter_llama::{BlockInput, Llama};
use redrafter_tests::{backend_tests, tiny_gguf_model, to_vec};

/// Greedy continuation computed the slow, obvious way: re-run the whole sequence every token.
fn naive_greedy<B: KernelBackend>(m: &Llama<B>, prompt: &[u32], n: usize, device: &B::Device) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let v = m.config().vocab_size;
    for _ in 0..n {
        let mut cache = m.new_cache(1, seq.len(), device);
        let logits = to_vec(m.forward(&BlockInput::causal(&[seq.clone()], &[0], device), &mut cache).logits);
        seq.push(redrafter::sampling::argmax(&logits[logits.len() - v..]));
    }
    seq[prompt.len()..].to_vec()
}

fn greedy_batch_matches_naive_decoding<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(11, GgmlType::F32, &device);
    let prompts: Vec<Vec<u32>> = vec![vec![5, 6, 7], vec![40, 41, 42, 43, 44, 45], vec![200]];
    let cfg = GenerationConfig { max_new_tokens: 12, ..Default::default() };
    let out = Generator::new(&m.model, None).generate(&mut Autoregressive, &prompts, &cfg, None).unwrap();
    for (r, p) in prompts.iter().enumerate() {
        assert_eq!(out.rows[r].tokens, naive_greedy(&m.model, p, 12, &device), "row {r}");
        assert_eq!(out.rows[r].finish, FinishReason::MaxNewTokens);
    }
    let s = &out.stats;
    assert_eq!((s.new_tokens, s.steps, s.tau), (36, 11, 1.0));
}

fn stops_at_eos_max_tokens_and_context<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(12, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let free = g.generate(&mut Autoregressive, &[vec![5, 6, 7]], &GenerationConfig { max_new_tokens: 10, ..Default::default() }, None).unwrap();
    let toks = &free.rows[0].tokens;

    // Declaring the 4th generated token as EOS ends the row there, EOS included.
    let cfg = GenerationConfig { max_new_tokens: 10, eos_ids: vec![toks[3]], ..Default::default() };
    let first = toks.iter().position(|t| *t == toks[3]).unwrap();
    let out = g.generate(&mut Autoregressive, &[vec![5, 6, 7], vec![9]], &cfg, None).unwrap();
    assert_eq!(out.rows[0].tokens, toks[..=first]);
    assert_eq!(out.rows[0].finish, FinishReason::Eos);

    // Context limit 8 with a 3-token prompt leaves room for exactly 5 tokens.
    let cfg = GenerationConfig { max_new_tokens: 10, context_limit: Some(8), ..Default::default() };
    let out = g.generate(&mut Autoregressive, &[vec![5, 6, 7]], &cfg, None).unwrap();
    assert_eq!(out.rows[0].tokens, toks[..5]);
    assert_eq!(out.rows[0].finish, FinishReason::ContextLimit);
}

fn stop_strings_and_streaming<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(13, GgmlType::F32, &device);
    let g = Generator::new(&m.model, Some(&m.tokenizer));
    let prompt = m.tokenizer.encode("the weather").unwrap();
    let base = GenerationConfig { max_new_tokens: 24, ..Default::default() };
    let mut streamed = String::new();
    let mut on = |_: usize, s: &str| streamed.push_str(s);
    let free = g.generate(&mut Autoregressive, &[prompt.clone()], &base, Some(&mut on)).unwrap();
    assert_eq!(streamed, free.rows[0].text, "streamed text adds up to the final text");

    // Stop on a piece of the text that appears after the first few characters.
    let text = free.rows[0].text.clone();
    let cut = text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap();
    let stop: String = text[cut..].chars().take(3).collect();
    let expected_end = text.find(&stop).unwrap();
    let cfg = GenerationConfig { stop_strings: vec![stop.clone()], ..base };
    let mut streamed = String::new();
    let mut on = |_: usize, s: &str| streamed.push_str(s);
    let out = g.generate(&mut Autoregressive, &[prompt], &cfg, Some(&mut on)).unwrap();
    assert_eq!(out.rows[0].finish, FinishReason::StopString, "stop {stop:?} in {text:?}");
    assert_eq!(out.rows[0].text, text[..expected_end]);
    assert_eq!(streamed, out.rows[0].text, "no part of the stop string is streamed");
}

fn seeded_sampling_is_reproducible_per_row<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(14, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let cfg = |seed| GenerationConfig {
        max_new_tokens: 16,
        sampling: SamplingConfig { temperature: 1.0, top_k: 40, top_p: 0.95, seed, ..Default::default() },
        ..Default::default()
    };
    let a = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &cfg(1), None).unwrap();
    let b = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &cfg(1), None).unwrap();
    let c = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &cfg(2), None).unwrap();
    assert_eq!(a.rows[0].tokens, b.rows[0].tokens);
    assert_eq!(a.rows[1].tokens, b.rows[1].tokens);
    assert_ne!(a.rows[0].tokens, c.rows[0].tokens, "a different seed gives a different sample");
    // Seeds given per row follow the row, not its slot: swapped prompts with swapped seeds give
    // swapped answers (distill-data seeds each answer by its conversation id).
    let seeded = |seeds: Vec<u64>| GenerationConfig { row_seeds: seeds, ..cfg(1) };
    let d = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &seeded(vec![11, 22]), None).unwrap();
    let e = g.generate(&mut Autoregressive, &[vec![4, 5], vec![1, 2, 3]], &seeded(vec![22, 11]), None).unwrap();
    assert_eq!(d.rows[0].tokens, e.rows[1].tokens);
    assert_eq!(d.rows[1].tokens, e.rows[0].tokens);
    let f = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &seeded(vec![12, 22]), None).unwrap();
    assert_ne!(d.rows[0].tokens, f.rows[0].tokens, "row 0's own seed decides its sample");
    let bad = g.generate(&mut Autoregressive, &[vec![1, 2, 3], vec![4, 5]], &seeded(vec![11]), None);
    assert!(matches!(bad, Err(DecodeError::InvalidOption(_))), "one seed for two prompts is refused");
}

fn invalid_requests_are_errors<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(15, GgmlType::F32, &device);
    let g = Generator::new(&m.model, None);
    let ok = GenerationConfig::default();
    let limit = m.model.config().max_position_embeddings;
    let e = g.generate(&mut Autoregressive, &[vec![1; limit]], &ok, None).err().unwrap();
    assert!(matches!(e, DecodeError::PromptTooLong { len, .. } if len == limit), "{e}");
    let e = g.generate(&mut Autoregressive, &[vec![1, 2], vec![]], &ok, None).err().unwrap();
    assert!(matches!(e, DecodeError::EmptyPrompt { row: 1 }), "{e}");
    let e = g.generate(&mut Autoregressive, &[vec![1, 100_000]], &ok, None).err().unwrap();
    assert!(matches!(e, DecodeError::TokenOutOfRange { id: 100_000, .. }), "{e}");
    let bad = GenerationConfig { max_new_tokens: 0, ..Default::default() };
    assert!(matches!(g.generate(&mut Autoregressive, &[vec![1]], &bad, None), Err(DecodeError::InvalidOption(_))));
    let bad = GenerationConfig { sampling: SamplingConfig { temperature: -0.5, ..Default::default() }, ..Default::default() };
    assert!(matches!(g.generate(&mut Autoregressive, &[vec![1]], &bad, None), Err(DecodeError::InvalidOption(_))));
}

backend_tests!(
    greedy_batch_matches_naive_decoding,
    stops_at_eos_max_tokens_and_context,
    stop_strings_and_streaming,
    seeded_sampling_is_reproducible_per_row,
    invalid_requests_are_errors,
);
