//! Self-contained: writes a seeded random tiny Llama as GGUF, loads it back, and decodes a batch
//! of prompts greedily with the shared decoding loop, printing per-row outputs and the stats.
//! No download needed.
//!
//!     cargo run --release -p redrafter --example generate_tiny

use redrafter::backends::NdArrayBackend;
use redrafter::{Autoregressive, GenerationConfig, Generator};
use redrafter_io::GgmlType;
use redrafter_llama::LlamaConfig;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let path = std::env::temp_dir().join("redrafter-example-tiny.gguf");
    write_tiny_gguf(&path, &LlamaConfig::tiny(tiny_vocab().0.len()), 42, GgmlType::Q8_0)?;
    let loaded = redrafter_llama::load::<NdArrayBackend>(&path, &device)?;

    let prompts: Vec<Vec<u32>> = ["the weather", "where there is a will"]
        .iter()
        .map(|p| loaded.tokenizer.encode(p))
        .collect::<Result<_, _>>()?;
    let config = GenerationConfig { max_new_tokens: 16, ..Default::default() };
    let out = Generator::new(&loaded.model, Some(&loaded.tokenizer)).generate(&mut Autoregressive, &prompts, &config, None)?;
    for (i, row) in out.rows.iter().enumerate() {
        println!("row {i}: {:?} -> {:?} ({:?})", prompts[i], row.tokens, row.finish);
    }
    println!("{}", serde_json::to_string_pretty(&out.stats)?);
    Ok(())
}
