//! The beam shape's effect: τ, decode speed and speedup over autoregressive decoding for every
//! beam width W and beam length L of a grid, on the first MT-Bench questions. Writes a Markdown
//! table and two SVG plots (τ and speedup against L, one line per W).
//!
//!     cargo run --release -p redrafter-examples --example wl_ablation -- \
//!         [--widths 1,2,4] [--lengths 2,3,4,5] [--questions 8] [--tokens 64] [--out wl-ablation] [--tiny]
//!
//! Default model and bundled drafter, flex, greedy, one prompt at a time; every ReDrafter run is
//! checked token for token against autoregressive decoding. More W gives the LLM more candidates
//! (τ rises) but a bigger tree to verify; more L lets a good draft run further but drafts more
//! tokens that get thrown away. Where the speedup peaks depends on the machine: on a CPU a wide
//! tree costs nearly its size (docs/benchmarks.md), on a GPU it is nearly free. `--tiny` runs the
//! grid on a random tiny model (no download, numbers meaningless).

#[path = "common/mod.rs"]
mod common;

use common::*;
use redrafter::backends::FlexBackend;
use redrafter::{Autoregressive, BeamConfig, GenerationConfig, Generator, ReDrafter, Strategy};
use redrafter_train::plot::{Series, line_chart};

fn list(name: &str, default: &str) -> Result<Vec<usize>, BoxError> {
    arg(name, default).split(',').map(|s| s.trim().parse::<usize>().map_err(|e| format!("{name}: {s:?}: {e}").into())).collect()
}

fn main() -> Result<(), BoxError> {
    let device = Default::default();
    let tiny_run = flag("--tiny");
    let (loaded, drafter) = model_and_drafter::<FlexBackend>(&device, tiny_run)?;
    let tok = &loaded.tokenizer;
    let (widths, lengths) = (list("--widths", "1,2,4")?, list("--lengths", "2,3,4,5")?);
    let n: usize = arg_parse("--questions", "8")?;
    let texts: Vec<String> =
        if tiny_run { vec!["the weather".into(), "where there is a will".into()] } else { mt_bench(n)?.into_iter().map(|(_, t)| t).collect() };
    let prompts: Vec<Vec<u32>> = texts.iter().map(|t| chat(tok, t)).collect::<Result<_, _>>()?;
    let config = GenerationConfig { max_new_tokens: arg_parse("--tokens", "64")?, eos_ids: tok.eos.clone(), ..Default::default() };
    let generator = Generator::new(&loaded.model, Some(tok));
    let out = std::path::PathBuf::from(arg("--out", "wl-ablation"));
    std::fs::create_dir_all(&out)?;

    // One pass over the prompts: (τ, decode tok/s, tokens of every prompt).
    let run = |strategy: &mut dyn Strategy<FlexBackend>| -> Result<(f64, f64, Vec<Vec<u32>>), BoxError> {
        let (mut committed, mut calls, mut secs, mut tokens) = (0usize, 0usize, 0.0, vec![]);
        for p in &prompts {
            let o = generator.generate(strategy, std::slice::from_ref(p), &config, None)?;
            (committed, calls, secs) = (committed + o.stats.committed_in_steps, calls + o.stats.row_steps, secs + o.stats.decode_seconds);
            tokens.push(o.rows[0].tokens.clone());
        }
        Ok((committed as f64 / calls.max(1) as f64, committed as f64 / secs.max(1e-9), tokens))
    };
    eprintln!("autoregressive over {} prompts ...", prompts.len());
    let (_, ar_rate, reference) = run(&mut Autoregressive)?;
    let mut table = format!(
        "{} prompts, up to {} new tokens, greedy, flex; autoregressive {ar_rate:.1} tok/s\n\n| W | L | tau | decode tok/s | speedup |\n|---|---|---|---|---|\n",
        prompts.len(),
        config.max_new_tokens
    );
    let (mut tau_series, mut speed_series) = (vec![], vec![]);
    for &w in &widths {
        let (mut taus, mut speeds) = (vec![], vec![]);
        for &l in &lengths {
            eprintln!("W{w} L{l} ...");
            let mut strategy = ReDrafter::new(drafter.clone(), BeamConfig { width: w, length: l })?;
            let (tau, rate, tokens) = run(&mut strategy)?;
            if tokens != reference {
                return Err(format!("W{w} L{l}: greedy ReDrafter differs from autoregressive decoding").into());
            }
            table += &format!("| {w} | {l} | {tau:.2} | {rate:.1} | {:.2}x |\n", rate / ar_rate);
            taus.push((l as f64, tau));
            speeds.push((l as f64, rate / ar_rate));
        }
        tau_series.push(Series { name: format!("W = {w}"), points: taus });
        speed_series.push(Series { name: format!("W = {w}"), points: speeds });
    }
    print!("{table}");
    std::fs::write(out.join("table.md"), &table)?;
    std::fs::write(out.join("tau.svg"), line_chart("tau by beam shape", "beam length L", "tau (tokens per LLM call)", &tau_series))?;
    std::fs::write(out.join("speedup.svg"), line_chart("speedup over autoregressive decoding", "beam length L", "speedup", &speed_series))?;
    eprintln!("wrote {}/table.md, tau.svg, speedup.svg", out.display());
    Ok(())
}
