//! Seeded random Llama models written in the same formats the loaders read (GGUF and a Hugging
//! Face directory), with a small byte-level BPE tokenizer, for tests and examples that must not
//! download anything.

use std::path::Path;

use redrafter_io::{GgmlType, GgufValue, GgufWriter, HostTensor, IoError, write_safetensors};

use crate::config::LlamaConfig;
use crate::error::ModelError;

pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Special tokens of the tiny tokenizer, at ids 0, 1, 2 as in SmolLM2.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

const MERGES: [(&str, &str); 12] = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
    ("o", "n"), ("Ġ", "s"), ("r", "e"), ("a", "t"), ("Ġ", "w"), ("o", "r"),
];

/// GPT-2's reversible map from bytes to printable characters.
pub fn byte_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut map = vec![' '; 256];
    for (b, c) in printable.iter().zip(chars) {
        map[*b as usize] = char::from_u32(c).expect("valid code point");
    }
    map
}

/// Vocabulary (specials, 256 bytes, merged tokens), merges, and ggml token types.
pub fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<u32>) {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_to_unicode().into_iter().map(String::from));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    let merges = MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let types = (0..tokens.len()).map(|i| if i < SPECIALS.len() { 3 } else { 1 }).collect();
    (tokens, merges, types)
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize], scale: f32, offset: f32) -> HostTensor {
        let n = shape.iter().product();
        HostTensor::new(shape.to_vec(), (0..n).map(|_| offset + scale * self.next()).collect())
    }
}

/// Random weights in Hugging Face naming and layout ([out, in]).
pub fn random_weights(cfg: &LlamaConfig, seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = SplitMix(seed);
    let (h, i, qd, kvd) = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
    let proj = |rng: &mut SplitMix, o: usize, n: usize| rng.tensor(&[o, n], 1.5 / (n as f32).sqrt(), 0.0);
    let mut w = vec![("model.embed_tokens.weight".to_string(), rng.tensor(&[cfg.vocab_size, h], 1.0, 0.0))];
    for l in 0..cfg.num_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        w.push((p("input_layernorm"), rng.tensor(&[h], 0.2, 1.0)));
        w.push((p("self_attn.q_proj"), proj(&mut rng, qd, h)));
        w.push((p("self_attn.k_proj"), proj(&mut rng, kvd, h)));
        w.push((p("self_attn.v_proj"), proj(&mut rng, kvd, h)));
        w.push((p("self_attn.o_proj"), proj(&mut rng, h, qd)));
        w.push((p("post_attention_layernorm"), rng.tensor(&[h], 0.2, 1.0)));
        w.push((p("mlp.gate_proj"), proj(&mut rng, i, h)));
        w.push((p("mlp.up_proj"), proj(&mut rng, i, h)));
        w.push((p("mlp.down_proj"), proj(&mut rng, h, i)));
    }
    w.push(("model.norm.weight".to_string(), rng.tensor(&[h], 0.2, 1.0)));
    if !cfg.tie_word_embeddings {
        w.push(("lm_head.weight".to_string(), proj(&mut rng, cfg.vocab_size, h)));
    }
    w
}

/// llama.cpp's Q/K row permutation (HF rotate-half pairs -> interleaved pairs).
fn permute_rows(t: &HostTensor, heads: usize) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let d = rows / heads;
    let mut out = vec![0f32; t.data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let src = h * d + j * (d / 2) + i;
                let dst = h * d + 2 * i + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

fn gguf_name(hf: &str) -> String {
    if hf == "model.embed_tokens.weight" {
        return "token_embd.weight".into();
    }
    if hf == "model.norm.weight" {
        return "output_norm.weight".into();
    }
    if hf == "lm_head.weight" {
        return "output.weight".into();
    }
    let rest = hf.strip_prefix("model.layers.").expect("layer tensor");
    let (l, part) = rest.split_once('.').expect("layer index");
    let part = part.trim_end_matches(".weight");
    let g = match part {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("unknown tensor {other}"),
    };
    format!("blk.{l}.{g}.weight")
}

fn strings(v: &[String]) -> GgufValue {
    GgufValue::Array(v.iter().map(|s| GgufValue::String(s.clone())).collect())
}

/// A GGUF writer holding the tiny model's metadata and tensors (2-D weights as `ty`), so tests can
/// add or corrupt entries before writing.
pub fn tiny_gguf(cfg: &LlamaConfig, seed: u64, ty: GgmlType) -> GgufWriter {
    let (tokens, merges, types) = tiny_vocab();
    assert_eq!(tokens.len(), cfg.vocab_size, "LlamaConfig::tiny(tiny_vocab().0.len()) gives a matching vocab");
    let mut w = GgufWriter::new()
        .meta("general.architecture", GgufValue::String("llama".into()))
        .meta("general.name", GgufValue::String(format!("tiny-random-{seed}")))
        .meta("llama.context_length", GgufValue::U32(cfg.max_position_embeddings as u32))
        .meta("llama.embedding_length", GgufValue::U32(cfg.hidden_size as u32))
        .meta("llama.block_count", GgufValue::U32(cfg.num_layers as u32))
        .meta("llama.feed_forward_length", GgufValue::U32(cfg.intermediate_size as u32))
        .meta("llama.attention.head_count", GgufValue::U32(cfg.num_heads as u32))
        .meta("llama.attention.head_count_kv", GgufValue::U32(cfg.num_kv_heads as u32))
        .meta("llama.rope.dimension_count", GgufValue::U32(cfg.head_dim as u32))
        .meta("llama.rope.freq_base", GgufValue::F32(cfg.rope_theta as f32))
        .meta("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(cfg.rms_norm_eps as f32))
        .meta("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", GgufValue::String("smollm".into()))
        .meta("tokenizer.ggml.tokens", strings(&tokens))
        .meta("tokenizer.ggml.merges", strings(&merges))
        .meta("tokenizer.ggml.token_type", GgufValue::Array(types.iter().map(|t| GgufValue::I32(*t as i32)).collect()))
        .meta("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
        .meta("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
        .meta("tokenizer.chat_template", GgufValue::String(CHATML_TEMPLATE.into()));
    for (name, t) in random_weights(cfg, seed) {
        let t = if name.ends_with("q_proj.weight") {
            permute_rows(&t, cfg.num_heads)
        } else if name.ends_with("k_proj.weight") {
            permute_rows(&t, cfg.num_kv_heads)
        } else {
            t
        };
        let dtype = if t.shape.len() == 2 { ty } else { GgmlType::F32 };
        w = w.tensor(&gguf_name(&name), &t.shape, dtype, &t.data);
    }
    w
}

pub fn write_tiny_gguf(path: &Path, cfg: &LlamaConfig, seed: u64, ty: GgmlType) -> Result<(), ModelError> {
    Ok(tiny_gguf(cfg, seed, ty).write(path)?)
}

/// The same model as a Hugging Face directory (config.json, model.safetensors, tokenizer files).
pub fn write_tiny_hf_dir(dir: &Path, cfg: &LlamaConfig, seed: u64) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| IoError::Io { path: dir.to_path_buf(), source })?;
    let weights = random_weights(cfg, seed);
    let refs: Vec<(&str, &HostTensor)> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&dir.join("model.safetensors"), &refs, false)?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    let tok_cfg = serde_json::json!({
        "chat_template": CHATML_TEMPLATE,
        "bos_token": SPECIALS[1],
        "eos_token": SPECIALS[2],
    });
    let write = |name: &str, v: &serde_json::Value| -> Result<(), ModelError> {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(|source| IoError::Io { path: p, source })?;
        Ok(())
    };
    write("config.json", &config)?;
    write("tokenizer_config.json", &tok_cfg)?;
    // tokenizer.json: the same tokenizer the GGUF describes, serialised by the tokenizers crate.
    let tmp = dir.join("tokenizer-source.gguf");
    tiny_gguf(&LlamaConfig { num_layers: 0, ..cfg.clone() }, seed, GgmlType::F32).write(&tmp)?;
    let tok = redrafter_io::TextTokenizer::from_gguf(&redrafter_io::GgufFile::open(&tmp)?)?;
    tok.save_json(&dir.join("tokenizer.json"))?;
    std::fs::remove_file(&tmp).map_err(|source| IoError::Io { path: tmp, source })?;
    Ok(())
}
