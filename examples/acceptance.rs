//! Where drafts succeed and fail: per MT-Bench category, how often the k-th drafted token is
//! accepted, and which (drafted → LLM's) token pairs most often end an accepted run.
//!
//!     cargo run --release -p redrafter-examples --example acceptance -- \
//!         [--questions 80] [--tokens 64] [--width 1] [--length 4] [--top 15] [--tiny]
//!
//! Default model and bundled drafter, flex, greedy. It records every ReDrafter step
//! (`ReDrafter::record_steps`): the winning beam, how many drafts were accepted, and the LLM's
//! bonus token, which under greedy decoding is the LLM's own choice at the first rejected
//! position. A drafter that fails mostly on one category (coding, math) wants data of that kind;
//! one that fails on the first position everywhere is under-trained (docs/training.md).
//! `--tiny` runs it on a random tiny model (no download, numbers meaningless).

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use redrafter::backends::FlexBackend;
use redrafter::{BeamConfig, GenerationConfig, Generator, ReDrafter};

fn main() -> Result<(), BoxError> {
    let device = Default::default();
    let tiny_run = flag("--tiny");
    let (loaded, drafter) = model_and_drafter::<FlexBackend>(&device, tiny_run)?;
    let tok = &loaded.tokenizer;
    let questions: Vec<(String, String)> = if tiny_run {
        vec![("tiny".into(), "the weather".into()), ("tiny".into(), "where there is a will".into())]
    } else {
        mt_bench(arg_parse("--questions", "80")?)?
    };
    let beams = BeamConfig { width: arg_parse("--width", "1")?, length: arg_parse("--length", "4")? };
    let config = GenerationConfig { max_new_tokens: arg_parse("--tokens", "64")?, eos_ids: tok.eos.clone(), ..Default::default() };
    let generator = Generator::new(&loaded.model, Some(tok));
    let mut redrafter = ReDrafter::new(drafter, beams)?.record_steps(true);

    let drafts = beams.length - 1;
    // Per category: steps offering position k (at full length), and steps accepting it.
    let mut by_category: BTreeMap<String, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    let mut misses: HashMap<(u32, u32), usize> = HashMap::new();
    for (i, (category, text)) in questions.iter().enumerate() {
        eprint!("\r{}/{} {category:<12}", i + 1, questions.len());
        generator.generate(&mut redrafter, &[chat(tok, text)?], &config, None)?;
        let (offered, accepted) = by_category.entry(category.clone()).or_insert_with(|| (vec![0; drafts], vec![0; drafts]));
        for step in redrafter.take_steps() {
            let a = &step.accepted[0];
            // Steps near the end of the context draft shorter beams; count the positions they offer.
            let len = step.beams.len;
            for k in 0..len - 1 {
                offered[k] += 1;
                accepted[k] += usize::from(k < a.drafted);
            }
            if a.drafted < len - 1 {
                let drafted = step.beams.beam(0, a.beam)[a.drafted + 1];
                *misses.entry((drafted, a.bonus)).or_default() += 1;
            }
        }
    }
    eprintln!();
    let header: String = (1..=drafts).map(|k| format!(" draft {k} |")).collect();
    println!("acceptance of the k-th drafted token (W{} L{}), by category\n", beams.width, beams.length);
    println!("| category | steps |{header} tau |");
    println!("|---|---|{}---|", "---|".repeat(drafts));
    for (category, (offered, accepted)) in &by_category {
        let cells: String = (0..drafts).map(|k| format!(" {:.0}% |", 100.0 * accepted[k] as f64 / offered[k].max(1) as f64)).collect();
        // τ = 1 + accepted drafts per step.
        let tau = 1.0 + accepted.iter().sum::<usize>() as f64 / offered[0].max(1) as f64;
        println!("| {category} | {} |{cells} {tau:.2} |", offered[0]);
    }
    let mut misses: Vec<((u32, u32), usize)> = misses.into_iter().collect();
    misses.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let show = |id: u32| format!("{:?}", tok.decode(&[id]).unwrap_or_else(|_| format!("#{id}")));
    println!("\nmost frequent first rejections: the drafter's token, the LLM's\n");
    println!("| drafted | LLM | times |\n|---|---|---|");
    for ((d, b), n) in misses.iter().take(arg_parse("--top", "15")?) {
        println!("| {} | {} | {n} |", show(*d), show(*b));
    }
    Ok(())
}
