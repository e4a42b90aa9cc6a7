//! Text <-> token ids, built either from a GGUF's `tokenizer.ggml.*` arrays or from `tokenizer.json`,
//! plus the model's chat template.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::chat::ChatTemplate;
use crate::error::{IoError, Result, io_err};
use crate::gguf::{GgufFile, GgufValue};

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

pub struct TextTokenizer {
    inner: Tokenizer,
    pub bos: Option<u32>,
    /// Ids that end generation (the model's EOS plus end-of-turn tokens).
    pub eos: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<ChatTemplate>,
}

fn tok_err(e: impl std::fmt::Display) -> IoError {
    IoError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.meta_str("tokenizer.ggml.model").map_err(|_| {
            IoError::Tokenizer(format!(
                "{} has no tokenizer (metadata `tokenizer.ggml.model` is missing)",
                gguf_path(gguf)
            ))
        })?;
        if model != "gpt2" {
            return Err(IoError::Tokenizer(format!(
                "{}: tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)",
                gguf_path(gguf)
            )));
        }
        let tokens = gguf.meta_strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = gguf
            .meta_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| IoError::Tokenizer(format!("merge `{m}` is not two space-separated tokens")))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(tok_err)?;

        let pre = gguf.meta_str("tokenizer.ggml.pre").unwrap_or("default");
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        inner.with_decoder(Some(ByteLevel::default()));

        let types: Vec<u64> = match gguf.meta("tokenizer.ggml.token_type") {
            Some(GgufValue::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => vec![],
        };
        let special: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
            .filter_map(|(i, _)| tokens.get(i))
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(special).map_err(tok_err)?;

        let id = |key: &str| gguf.meta_u64(key).ok().map(|v| v as u32);
        let bos = id("tokenizer.ggml.bos_token_id");
        let mut eos: Vec<u32> = id("tokenizer.ggml.eos_token_id").into_iter().collect();
        eos.extend(id("tokenizer.ggml.eot_token_id"));
        let add_bos = matches!(gguf.meta("tokenizer.ggml.add_bos_token"), Some(GgufValue::Bool(true)));
        let chat_template = gguf
            .meta_str("tokenizer.chat_template")
            .ok()
            .map(|src| ChatTemplate::new(src, token_str(&tokens, bos), token_str(&tokens, eos.first().copied())))
            .transpose()?;
        Self::finish(inner, bos, eos, add_bos, chat_template)
    }

    /// `dir` holds `tokenizer.json` and optionally `tokenizer_config.json` (chat template, special tokens).
    pub fn from_hf_dir(dir: &Path, config_eos: &[u32], config_bos: Option<u32>) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(IoError::Tokenizer(format!("{} is missing", tj.display())));
        }
        // The tokenizers crate panics on some malformed files (an unwrap in its decoder
        // deserializer, found by tests/fuzz_inputs.rs) instead of returning its error.
        let inner = crate::guard::catch_panic(|| Tokenizer::from_file(&tj))
            .map_err(|why| IoError::Tokenizer(format!("{}: not a valid tokenizer.json ({why})", tj.display())))?
            .map_err(|e| IoError::Tokenizer(format!("{}: {e}", tj.display())))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
            serde_json::from_str(&text).map_err(|source| IoError::Json { path: cfg_path.clone(), source })?
        } else {
            serde_json::Value::Null
        };
        let tok_field = |k: &str| -> Option<String> {
            match cfg.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                v => v.get("content")?.as_str().map(str::to_string),
            }
        };
        let mut eos = config_eos.to_vec();
        if let Some(id) = tok_field("eos_token").and_then(|t| inner.token_to_id(&t)) {
            eos.push(id);
        }
        let bos = config_bos.or_else(|| tok_field("bos_token").and_then(|t| inner.token_to_id(&t)));
        let add_bos = cfg.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let chat_template = cfg
            .get("chat_template")
            .and_then(|v| v.as_str())
            .map(|src| ChatTemplate::new(src, tok_field("bos_token"), tok_field("eos_token")))
            .transpose()?;
        Self::finish(inner, bos, eos, add_bos, chat_template)
    }

    fn finish(
        inner: Tokenizer,
        bos: Option<u32>,
        mut eos: Vec<u32>,
        add_bos: bool,
        chat_template: Option<ChatTemplate>,
    ) -> Result<Self> {
        // ChatML models end a turn with <|im_end|>, which is not always declared as EOS.
        eos.extend(["<|im_end|>", "<|eot_id|>", "<|end|>"].iter().filter_map(|t| inner.token_to_id(t)));
        eos.sort_unstable();
        eos.dedup();
        Ok(Self { inner, bos, eos, add_bos, chat_template })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes `text`; special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json`.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner.save(path, true).map_err(|e| IoError::Tokenizer(format!("{}: {e}", path.display())))
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }
}

fn gguf_path(g: &GgufFile) -> String {
    use crate::host::TensorSource;
    g.path().display().to_string()
}

fn token_str(tokens: &[&str], id: Option<u32>) -> Option<String> {
    id.and_then(|i| tokens.get(i as usize)).map(|s| s.to_string())
}

fn pre_tokenizer(pre: &str) -> Result<Sequence> {
    let byte_level = ByteLevel::new(false, true, true);
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => Sequence::new(vec![byte_level.into()]),
        // llama.cpp's STARCODER family: digits are split one by one before the GPT-2 regex.
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()])
        }
        "llama-bpe" | "llama3" | "llama-v3" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(tok_err)?;
            Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()])
        }
        other => {
            return Err(IoError::Tokenizer(format!(
                "pre-tokenizer `{other}` is not supported (supported: default/gpt2, smollm/starcoder, llama-bpe)"
            )));
        }
    })
}
