//! What the examples share: the default model and its bundled drafter, chat-templated prompts,
//! MT-Bench's first turns, a seeded tiny model for runs without a download, and `--flag value`
//! arguments. Each example includes this file with `#[path]`; nothing here is part of the library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use redrafter::{Drafter, DrafterConfig, KernelBackend, load_drafter, save_drafter};
use redrafter_io::{GgmlType, Message, TextTokenizer};
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};
use redrafter_llama::{LlamaConfig, LoadedModel, WeightFormat};

pub type BoxError = Box<dyn std::error::Error>;

/// `--name value` from the command line, if given.
pub fn arg_opt(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// `--name value` from the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    arg_opt(name).unwrap_or_else(|| default.to_string())
}

/// `--name value` parsed, with the flag named in the error.
pub fn arg_parse<T: std::str::FromStr>(name: &str, default: &str) -> Result<T, BoxError>
where
    T::Err: std::fmt::Display,
{
    arg(name, default).parse().map_err(|e| format!("{name}: {e}").into())
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The repository's root (examples/ is one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("examples/ has a parent").to_path_buf()
}

/// The default model (SmolLM2-135M-Instruct, Q4_1 GGUF), fetched into the cache on first use
/// (93 MB, sha256-pinned), its GGUF blocks kept on Flex.
pub fn default_model<B: KernelBackend>(device: &B::Device) -> Result<LoadedModel<B>, BoxError> {
    let path = redrafter_io::fetch::fetch(&redrafter_io::fetch::SMOLLM2_135M_INSTRUCT, &mut |what, done, total| {
        if done == total {
            eprintln!("{what}: {total} bytes");
        }
    })?;
    Ok(redrafter_llama::load_with::<B>(&path, device, WeightFormat::Native)?)
}

/// The drafter shipped for the default model (models/drafters/smollm2-135m-instruct).
pub fn bundled_drafter<B: KernelBackend>(loaded: &LoadedModel<B>, device: &B::Device) -> Result<Drafter<B>, BoxError> {
    let drafter = load_drafter::<B>(&repo_root().join("models/drafters/smollm2-135m-instruct"), device)?;
    drafter.check_compatible(loaded.model.config())?;
    Ok(drafter)
}

/// A seeded random tiny Llama (GGUF in the temp dir) and an untrained drafter for it: every
/// code path, no download, seconds to run; the numbers mean nothing.
pub fn tiny<B: KernelBackend>(device: &B::Device) -> Result<(LoadedModel<B>, Drafter<B>), BoxError> {
    let dir = std::env::temp_dir().join(format!("redrafter-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, &LlamaConfig::tiny(tiny_vocab().0.len()), 42, GgmlType::Q8_0)?;
    let loaded = redrafter_llama::load::<B>(&path, device)?;
    let llm = loaded.model.config();
    let config = DrafterConfig::for_llm(llm.vocab_size, llm.hidden_size).with_tied_lm_head(true);
    save_drafter(&Drafter::<B>::random(config, 1, device)?, &dir.join("drafter"), false)?;
    let drafter = load_drafter::<B>(&dir.join("drafter"), device)?;
    drafter.check_compatible(llm)?;
    Ok((loaded, drafter))
}

/// With `--tiny` the tiny model and drafter ([`tiny`]), else the default model and its bundled
/// drafter.
pub fn model_and_drafter<B: KernelBackend>(device: &B::Device, tiny_run: bool) -> Result<(LoadedModel<B>, Drafter<B>), BoxError> {
    if tiny_run {
        return tiny::<B>(device);
    }
    let loaded = default_model::<B>(device)?;
    let drafter = bundled_drafter(&loaded, device)?;
    Ok((loaded, drafter))
}

/// `text` as a user turn through the model's chat template (as is when it has none).
pub fn chat(tok: &TextTokenizer, text: &str) -> Result<Vec<u32>, BoxError> {
    let text = match &tok.chat_template {
        Some(t) => t.render(&[Message::new("user", text)], true)?,
        None => text.to_string(),
    };
    Ok(tok.encode(&text)?)
}

/// The first turn of the first `n` MT-Bench questions (fetched, sha256-checked), with categories.
pub fn mt_bench(n: usize) -> Result<Vec<(String, String)>, BoxError> {
    let path = redrafter_io::fetch::fetch(&redrafter_io::fetch::MT_BENCH_QUESTIONS, &mut |_, _, _| {})?;
    Ok(redrafter_io::load_mt_bench(&path)?
        .into_iter()
        .filter_map(|q| q.turns.into_iter().next().map(|t| (q.category, t)))
        .take(n)
        .collect())
}

/// The `prompt` fields of a JSONL prompt file (benches/prompts/*.jsonl).
pub fn prompt_file(path: &Path) -> Result<Vec<String>, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            v["prompt"].as_str().map(str::to_string).ok_or_else(|| format!("{} line {}: no \"prompt\" string", path.display(), i + 1).into())
        })
        .collect()
}
