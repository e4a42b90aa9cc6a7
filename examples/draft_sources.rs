//! Three draft sources in the same lossless verifier: the recurrent drafter (a trained RNN head),
//! prompt lookup (n-gram copying from the prompt and output, no training) and both (lookup where
//! the context repeats, the drafter elsewhere: `LookupFirst`), against autoregressive decoding, on
//! the code-editing prompts (benches/prompts/code_edit.jsonl), where the answer repeats much of
//! the prompt.
//!
//!     cargo run --release -p redrafter-examples --example draft_sources -- \
//!         [--prompts benches/prompts/code_edit.jsonl] [--limit 8] [--tokens 96] [--width 1] [--length 3] [--tiny]
//!
//! Greedy, flex, one batch row at a time. Prints per source: τ (tokens per LLM call), decode
//! tok/s, speedup over autoregressive decoding, and whether every token equals autoregressive
//! decoding (it must: both sources go through the same greedy verifier). A third source is one
//! struct implementing `DraftSource` (crates/redrafter/src/decode/lookup.rs is the model).
//! `--tiny` runs the same on a random tiny model (no download, numbers meaningless).

#[path = "common/mod.rs"]
mod common;

use common::*;
use redrafter::backends::FlexBackend;
use redrafter::{Autoregressive, BeamConfig, GenerationConfig, Generator, LookupFirst, PromptLookup, ReDrafter, Strategy};

fn main() -> Result<(), BoxError> {
    let device = Default::default();
    let tiny_run = flag("--tiny");
    let (loaded, drafter) = model_and_drafter::<FlexBackend>(&device, tiny_run)?;
    let tok = &loaded.tokenizer;
    let limit: usize = arg_parse("--limit", "8")?;
    let texts = if tiny_run {
        vec!["the weather".to_string(), "where there is a will".to_string()]
    } else {
        prompt_file(&repo_root().join(arg("--prompts", "benches/prompts/code_edit.jsonl")))?
    };
    let prompts: Vec<Vec<u32>> = texts.iter().take(limit).map(|t| chat(tok, t)).collect::<Result<_, _>>()?;
    let beams = BeamConfig { width: arg_parse("--width", "1")?, length: arg_parse("--length", "3")? };
    let config = GenerationConfig { max_new_tokens: arg_parse("--tokens", "96")?, eos_ids: tok.eos.clone(), ..Default::default() };
    let generator = Generator::new(&loaded.model, Some(tok));

    let mut sources: Vec<(&str, Box<dyn Strategy<FlexBackend>>)> = vec![
        ("autoregressive", Box::new(Autoregressive)),
        ("recurrent drafter", Box::new(ReDrafter::new(drafter.clone(), beams)?)),
        ("prompt lookup", Box::new(ReDrafter::new(PromptLookup::default(), beams)?)),
        ("lookup first, drafter elsewhere", Box::new(ReDrafter::new(LookupFirst::over(drafter), beams)?)),
    ];
    println!("{} prompts, W{} L{}, greedy, up to {} new tokens each\n", prompts.len(), beams.width, beams.length, config.max_new_tokens);
    println!("| source | tau | decode tok/s | speedup | tokens equal to autoregressive |");
    println!("|---|---|---|---|---|");
    let mut reference: Vec<Vec<u32>> = vec![];
    let mut ar_rate = 0.0;
    for (name, strategy) in sources.iter_mut() {
        let (mut committed, mut secs, mut calls, mut equal) = (0usize, 0.0, 0usize, true);
        for (i, p) in prompts.iter().enumerate() {
            let out = generator.generate(strategy.as_mut(), std::slice::from_ref(p), &config, None)?;
            committed += out.stats.committed_in_steps;
            secs += out.stats.decode_seconds;
            calls += out.stats.row_steps;
            match reference.get(i) {
                Some(r) => equal &= *r == out.rows[0].tokens,
                None => reference.push(out.rows[0].tokens.clone()),
            }
        }
        // τ: tokens committed per LLM call after prefill; the rate over the decode steps.
        let tau = committed as f64 / calls.max(1) as f64;
        let rate = committed as f64 / secs.max(1e-9);
        if ar_rate == 0.0 {
            ar_rate = rate;
        }
        println!("| {name} | {tau:.2} | {rate:.1} | {:.2}x | {} |", rate / ar_rate, if equal { "yes" } else { "NO" });
        if !equal {
            return Err(format!("{name}: greedy output differs from autoregressive decoding").into());
        }
    }
    Ok(())
}
