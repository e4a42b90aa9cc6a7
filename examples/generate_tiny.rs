//! Self-contained: writes a seeded random tiny Llama as GGUF and a random drafter in Apple's
//! format, loads both back, and decodes a batch of prompts greedily twice with the shared decoding
//! loop: autoregressively, then with ReDrafter. The outputs are identical (greedy ReDrafter is
//! lossless); the stats show what ReDrafter measures. No download needed.
//!
//!     cargo run --release -p redrafter --example generate_tiny

use redrafter::backends::NdArrayBackend;
use redrafter::{
    Autoregressive, BeamConfig, Drafter, DrafterConfig, GenerationConfig, Generator, ReDrafter, load_drafter,
    save_drafter,
};
use redrafter_io::GgmlType;
use redrafter_llama::LlamaConfig;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let path = std::env::temp_dir().join("redrafter-example-tiny.gguf");
    write_tiny_gguf(&path, &LlamaConfig::tiny(tiny_vocab().0.len()), 42, GgmlType::Q8_0)?;
    let loaded = redrafter_llama::load::<NdArrayBackend>(&path, &device)?;
    let llm = loaded.model.config();

    // An untrained drafter accepts little; `redrafter train` (issue 5) makes a useful one.
    let drafter_dir = std::env::temp_dir().join("redrafter-example-drafter");
    let config = DrafterConfig::for_llm(llm.vocab_size, llm.hidden_size).with_tied_lm_head(true);
    save_drafter(&Drafter::<NdArrayBackend>::random(config, 1, &device)?, &drafter_dir, false)?;
    let drafter = load_drafter::<NdArrayBackend>(&drafter_dir, &device)?;
    drafter.check_compatible(llm)?;

    let prompts: Vec<Vec<u32>> = ["the weather", "where there is a will"]
        .iter()
        .map(|p| loaded.tokenizer.encode(p))
        .collect::<Result<_, _>>()?;
    let config = GenerationConfig { max_new_tokens: 16, ..Default::default() };
    let generator = Generator::new(&loaded.model, Some(&loaded.tokenizer));
    let ar = generator.generate(&mut Autoregressive, &prompts, &config, None)?;
    let mut redrafter = ReDrafter::new(drafter, BeamConfig { width: 4, length: 4 })?;
    let rd = generator.generate(&mut redrafter, &prompts, &config, None)?;
    for (i, (a, r)) in ar.rows.iter().zip(&rd.rows).enumerate() {
        println!("row {i}: {:?} -> {:?} ({:?})", prompts[i], r.tokens, r.finish);
        assert_eq!(a.tokens, r.tokens, "greedy ReDrafter must match autoregressive decoding");
    }
    println!("autoregressive: {}", serde_json::to_string(&ar.stats)?);
    println!("redrafter:      {}", serde_json::to_string_pretty(&rd.stats)?);
    Ok(())
}
