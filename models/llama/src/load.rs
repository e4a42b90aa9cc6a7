//! Building a [`Llama`] from a GGUF file or a Hugging Face directory.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::backend::Backend;
use redrafter_io::{GgufFile, HostTensor, SafetensorsFiles, TensorSource, TextTokenizer, IoError};

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::ModelError;
use crate::model::{Attention, DecoderLayer, Llama, Mlp};
use crate::rope::Rope;
use crate::torch_layout::{linear_from_torch, to_device as tensor};

/// A model ready to generate with: weights, tokenizer, and where they came from.
pub struct LoadedModel<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: TextTokenizer,
    pub source: String,
}

/// Loads a GGUF file, or a directory with `config.json`, safetensors weights and `tokenizer.json`.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<LoadedModel<B>, ModelError> {
    if path.is_dir() {
        return load_hf_dir(path, device);
    }
    if !path.exists() {
        return Err(IoError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        }
        .into());
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return load_hf_dir(path.parent().unwrap_or(Path::new(".")), device);
    }
    load_gguf(path, device)
}

/// Tensor names of one format, and whether Q/K rows need llama.cpp's RoPE permutation undone.
struct Naming {
    embed: &'static str,
    norm: &'static str,
    lm_head: &'static str,
    layer: fn(usize, &str) -> String,
    unpermute_qk: bool,
}

const GGUF_NAMES: Naming = Naming {
    embed: "token_embd.weight",
    norm: "output_norm.weight",
    lm_head: "output.weight",
    layer: |i, part| {
        let name = match part {
            "input_norm" => "attn_norm",
            "q" => "attn_q",
            "k" => "attn_k",
            "v" => "attn_v",
            "o" => "attn_output",
            "post_attn_norm" => "ffn_norm",
            "gate" => "ffn_gate",
            "up" => "ffn_up",
            "down" => "ffn_down",
            other => other,
        };
        format!("blk.{i}.{name}.weight")
    },
    unpermute_qk: true,
};

const HF_NAMES: Naming = Naming {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head.weight",
    layer: |i, part| {
        let name = match part {
            "input_norm" => "input_layernorm",
            "q" => "self_attn.q_proj",
            "k" => "self_attn.k_proj",
            "v" => "self_attn.v_proj",
            "o" => "self_attn.o_proj",
            "post_attn_norm" => "post_attention_layernorm",
            "gate" => "mlp.gate_proj",
            "up" => "mlp.up_proj",
            "down" => "mlp.down_proj",
            other => other,
        };
        format!("model.layers.{i}.{name}.weight")
    },
    unpermute_qk: false,
};

pub fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<LoadedModel<B>, ModelError> {
    let gguf = GgufFile::open(path)?;
    let config = gguf_config(&gguf)?;
    let tokenizer = TextTokenizer::from_gguf(&gguf)?;
    let model = build(&gguf, &GGUF_NAMES, config, device)?;
    Ok(LoadedModel { model, tokenizer, source: path.display().to_string() })
}

fn gguf_config(g: &GgufFile) -> Result<LlamaConfig, ModelError> {
    let arch = g.meta_str("general.architecture")?.to_string();
    if arch != "llama" {
        return Err(ModelError::UnsupportedArchitecture(arch));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u = |k: &str| -> Result<usize, ModelError> { Ok(g.meta_u64(&key(k))? as usize) };
    let hidden = u("embedding_length")?;
    let heads = u("attention.head_count")?;
    let kv_heads = u("attention.head_count_kv").unwrap_or(heads);
    let head_dim = u("attention.key_length").or_else(|_| u("rope.dimension_count")).unwrap_or(hidden / heads.max(1));
    let embd = g.tensors.get("token_embd.weight").ok_or_else(|| IoError::MissingTensor {
        path: g.path().to_path_buf(),
        tensor: "token_embd.weight".into(),
    })?;
    let vocab = u("vocab_size").unwrap_or(embd.shape()[0]);
    let rope_scaling = if let Some(f) = g.try_tensor("rope_freqs.weight")? {
        RopeScaling::FreqFactors(f.data)
    } else {
        match g.meta_str(&key("rope.scaling.type")) {
            Ok("linear") => RopeScaling::Linear { factor: g.meta_f64(&key("rope.scaling.factor"))? },
            Ok("none") | Err(_) => RopeScaling::None,
            Ok(other) => {
                return Err(ModelError::InvalidConfig(format!("RoPE scaling `{other}` is not supported")));
            }
        }
    };
    let config = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: u("feed_forward_length")?,
        num_layers: u("block_count")?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rope_theta: g.meta_f64(&key("rope.freq_base")).unwrap_or(10000.0),
        rope_scaling,
        rms_norm_eps: g.meta_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        max_position_embeddings: u("context_length").unwrap_or(2048),
        tie_word_embeddings: !g.tensors.contains_key("output.weight"),
    };
    config.validate()?;
    Ok(config)
}

pub fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<LoadedModel<B>, ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| IoError::Io { path: cfg_path.clone(), source })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| IoError::Json { path: cfg_path.clone(), source })?;
    let config = hf_config(&json, &cfg_path)?;
    let ids = |k: &str| -> Vec<u32> {
        match json.get(k) {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32).into_iter().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
            _ => vec![],
        }
    };
    let tokenizer = TextTokenizer::from_hf_dir(dir, &ids("eos_token_id"), ids("bos_token_id").first().copied())?;
    let weights = SafetensorsFiles::open(dir)?;
    let model = build(&weights, &HF_NAMES, config, device)?;
    Ok(LoadedModel { model, tokenizer, source: dir.display().to_string() })
}

fn hf_config(j: &serde_json::Value, path: &Path) -> Result<LlamaConfig, ModelError> {
    let model_type = j.get("model_type").and_then(|v| v.as_str()).unwrap_or("<missing model_type>");
    if model_type != "llama" {
        return Err(ModelError::UnsupportedArchitecture(model_type.to_string()));
    }
    let missing = |k: &str| ModelError::Format { path: path.display().to_string(), what: format!("`{k}` is missing or not a number") };
    let u = |k: &str| j.get(k).and_then(|v| v.as_u64()).map(|v| v as usize).ok_or_else(|| missing(k));
    let f = |k: &str, d: f64| j.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let hidden = u("hidden_size")?;
    let heads = u("num_attention_heads")?;
    let rope_scaling = match j.get("rope_scaling") {
        None | Some(serde_json::Value::Null) => RopeScaling::None,
        Some(s) => {
            let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|v| v.as_str()).unwrap_or("");
            let sf = |k: &str| s.get(k).and_then(|v| v.as_f64()).ok_or_else(|| missing(&format!("rope_scaling.{k}")));
            match kind {
                "linear" => RopeScaling::Linear { factor: sf("factor")? },
                "llama3" => RopeScaling::Llama3 {
                    factor: sf("factor")?,
                    low_freq_factor: sf("low_freq_factor")?,
                    high_freq_factor: sf("high_freq_factor")?,
                    original_max_position_embeddings: sf("original_max_position_embeddings")? as usize,
                },
                "default" => RopeScaling::None,
                other => return Err(ModelError::InvalidConfig(format!("RoPE scaling `{other}` is not supported"))),
            }
        }
    };
    let config = LlamaConfig {
        vocab_size: u("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: u("intermediate_size")?,
        num_layers: u("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: u("num_key_value_heads").unwrap_or(heads),
        head_dim: u("head_dim").unwrap_or(hidden / heads.max(1)),
        rope_theta: f("rope_theta", 10000.0),
        rope_scaling,
        rms_norm_eps: f("rms_norm_eps", 1e-6),
        max_position_embeddings: u("max_position_embeddings").unwrap_or(2048),
        tie_word_embeddings: j.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    config.validate()?;
    Ok(config)
}

/// Undoes llama.cpp's Q/K row permutation: within each head, GGUF row `2i + j` is HF row `j·(d/2) + i`.
fn unpermute_rows(t: HostTensor, heads: usize) -> HostTensor {
    let [rows, cols] = [t.shape[0], t.shape[1]];
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0f32; t.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * d + 2 * i + j;
                let dst = h * d + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(t.shape, out)
}

fn build<B: Backend>(src: &dyn TensorSource, names: &Naming, config: LlamaConfig, device: &B::Device) -> Result<Llama<B>, ModelError> {
    let c = &config;
    let (h, kvd, qd) = (c.hidden_size, c.num_kv_heads * c.head_dim, c.num_heads * c.head_dim);
    let norm = |name: &str| -> Result<RmsNorm<B>, ModelError> {
        let g = src.tensor_shaped(name, &[h])?;
        Ok(RmsNorm { gamma: Param::from_tensor(tensor(g, device)), epsilon: c.rms_norm_eps })
    };
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let name = |part: &str| (names.layer)(i, part);
        let w = |part: &str, shape: [usize; 2]| src.tensor_shaped(&name(part), &shape);
        let (mut q, mut k) = (w("q", [qd, h])?, w("k", [kvd, h])?);
        if names.unpermute_qk {
            q = unpermute_rows(q, c.num_heads);
            k = unpermute_rows(k, c.num_kv_heads);
        }
        layers.push(DecoderLayer {
            input_norm: norm(&name("input_norm"))?,
            attn: Attention {
                q_proj: linear_from_torch(q, None, device),
                k_proj: linear_from_torch(k, None, device),
                v_proj: linear_from_torch(w("v", [kvd, h])?, None, device),
                o_proj: linear_from_torch(w("o", [h, qd])?, None, device),
            },
            post_attn_norm: norm(&name("post_attn_norm"))?,
            mlp: Mlp {
                gate_proj: linear_from_torch(w("gate", [c.intermediate_size, h])?, None, device),
                up_proj: linear_from_torch(w("up", [c.intermediate_size, h])?, None, device),
                down_proj: linear_from_torch(w("down", [h, c.intermediate_size])?, None, device),
            },
        });
    }
    let embed = Embedding { weight: Param::from_tensor(tensor(src.tensor_shaped(names.embed, &[c.vocab_size, h])?, device)) };
    let lm_head = match (c.tie_word_embeddings, src.try_tensor(names.lm_head)?) {
        (_, Some(w)) => Some(linear_from_torch(w.expect_shape(src.path(), names.lm_head, &[c.vocab_size, h])?, None, device)),
        (true, None) => None,
        (false, None) => {
            return Err(IoError::MissingTensor { path: src.path().to_path_buf(), tensor: names.lm_head.into() }.into());
        }
    };
    Ok(Llama { embed, layers, norm: norm(names.norm)?, lm_head, rope: Rope::new(&config, device), config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp permutes HF rows with reshape(heads, 2, d/2, cols).swapaxes(1, 2).
        let (heads, d, cols) = (2, 4, 3);
        let hf: Vec<f32> = (0..heads * d * cols).map(|v| v as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..d / 2 {
                    let src = h * d + j * (d / 2) + i;
                    let dst = h * d + 2 * i + j;
                    gguf[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        let back = unpermute_rows(HostTensor::new(vec![heads * d, cols], gguf), heads);
        assert_eq!(back.data, hf);
    }
}
