//! Building a [`Llama`] from a GGUF file or a Hugging Face directory.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use redrafter_io::{GgufFile, HostTensor, SafetensorsFiles, TensorSource, TextTokenizer, IoError, GgmlType};
use redrafter_kernels::{BlockMatmulOps, BlockMatrix};

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::ModelError;
use crate::model::{Attention, DecoderLayer, Llama, Mlp};
use crate::projection::{Projection, WeightFormat};
use crate::rope::Rope;
use crate::torch_layout::{linear_from_torch, linear_from_torch_rows, to_device as tensor};
use crate::weight_arena::WeightArena;

/// A model ready to generate with: weights, tokenizer, and where they came from.
pub struct LoadedModel<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: TextTokenizer,
    pub source: String,
}

/// Loads a GGUF file, or a directory with `config.json`, safetensors weights and `tokenizer.json`,
/// with every weight widened to f32 (the reference path; see [`load_with`]).
pub fn load<B: BlockMatmulOps>(path: &Path, device: &B::Device) -> Result<LoadedModel<B>, ModelError> {
    load_with(path, device, WeightFormat::F32)
}

/// [`load`] with a choice of weight format. [`WeightFormat::Native`] keeps a GGUF's block
/// tensors (Q8_0, Q4_0, Q4_1, F16, BF16) as stored where `BlockMatmulOps::host_resident` says
/// so (Flex), and widens them to f32 elsewhere (a GPU would pay a device sync per projection;
/// NdArray lacks the bit-exact tree attention). The token embedding for lookups is always f32.
pub fn load_with<B: BlockMatmulOps>(path: &Path, device: &B::Device, weights: WeightFormat) -> Result<LoadedModel<B>, ModelError> {
    if path.is_dir() {
        return load_hf_dir(path, device, weights);
    }
    if !path.exists() {
        return Err(IoError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        }
        .into());
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return load_hf_dir(path.parent().unwrap_or(Path::new(".")), device, weights);
    }
    load_gguf(path, device, weights)
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

pub fn load_gguf<B: BlockMatmulOps>(path: &Path, device: &B::Device, weights: WeightFormat) -> Result<LoadedModel<B>, ModelError> {
    let gguf = GgufFile::open(path)?;
    let config = gguf_config(&gguf)?;
    let tokenizer = TextTokenizer::from_gguf(&gguf)?;
    let model = build(&gguf, Some(&gguf), &GGUF_NAMES, config, device, weights)?;
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

pub fn load_hf_dir<B: BlockMatmulOps>(dir: &Path, device: &B::Device, weights: WeightFormat) -> Result<LoadedModel<B>, ModelError> {
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
    let tensors = SafetensorsFiles::open(dir)?;
    let model = build(&tensors, None, &HF_NAMES, config, device, weights)?;
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
/// `row_len` elements per row: f32 values, or a row's bytes of blocks.
fn unpermute<T: Copy + Default>(data: &[T], rows: usize, row_len: usize, heads: usize) -> Vec<T> {
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * d + 2 * i + j;
                let dst = h * d + j * half + i;
                out[dst * row_len..(dst + 1) * row_len].copy_from_slice(&data[src * row_len..(src + 1) * row_len]);
            }
        }
    }
    out
}

fn unpermute_rows(t: HostTensor, heads: usize) -> HostTensor {
    let data = unpermute(&t.data, t.shape[0], t.shape[1], heads);
    HostTensor::new(t.shape, data)
}

/// A weight that could not become a [`BlockMatrix`], named with its file and tensor.
fn block_error(path: &Path, name: &str, e: redrafter_kernels::BlockMatrixError) -> ModelError {
    ModelError::Format { path: path.display().to_string(), what: format!("tensor `{name}`: {e}") }
}

/// A GGUF tensor's own blocks as a [`BlockMatrix`] (`None` for F32 and other dense types), its
/// shape checked first; rows unpermuted for Q/K.
fn gguf_blocks(g: &GgufFile, name: &str, shape: [usize; 2], heads: Option<usize>) -> Result<Option<BlockMatrix>, ModelError> {
    let Some(info) = g.tensors.get(name) else { return Ok(None) };
    if !BlockMatrix::supports(info.dtype) {
        return Ok(None);
    }
    if info.shape() != shape {
        return Err(IoError::ShapeMismatch { path: g.path().to_path_buf(), tensor: name.into(), expected: shape.to_vec(), found: info.shape() }.into());
    }
    let raw = g.tensor_bytes(info)?;
    let row_bytes = raw.len() / shape[0].max(1);
    let bytes = match heads {
        Some(h) => unpermute(raw, shape[0], row_bytes, h),
        None => raw.to_vec(),
    };
    Ok(Some(BlockMatrix::new(info.dtype, shape[0], shape[1], bytes).map_err(|e| block_error(g.path(), name, e))?))
}

fn build<B: BlockMatmulOps>(
    src: &dyn TensorSource,
    gguf: Option<&GgufFile>,
    names: &Naming,
    config: LlamaConfig,
    device: &B::Device,
    weights: WeightFormat,
) -> Result<Llama<B>, ModelError> {
    let c = &config;
    // Blocks only where x lives in host memory (see `load_with`).
    let weights = if B::host_resident() { weights } else { WeightFormat::F32 };
    // The sizes come from the file: refuse a model that cannot fit before allocating any of it.
    // Native blocks are counted at a byte per weight (Q8_0 is 1.06, Q4_x 0.56); the f32 token
    // embedding every format keeps is counted on top.
    let per_weight = match weights {
        WeightFormat::F32 => 4,
        WeightFormat::F16 => 2,
        _ => 1,
    };
    let embed = redrafter_io::budget::product(&[c.vocab_size as u128, c.hidden_size as u128, 4]);
    let bytes = c.num_parameters().saturating_mul(per_weight).saturating_add(embed).saturating_add(c.rope_bytes());
    redrafter_io::budget::check(
        format_args!("{} ({} layers, hidden {}, vocabulary {}, {} positions) as {}", src.path().display(), c.num_layers, c.hidden_size, c.vocab_size, c.max_position_embeddings, weights.name()),
        bytes,
    )
    .map_err(IoError::from)?;
    let (h, kvd, qd) = (c.hidden_size, c.num_kv_heads * c.head_dim, c.num_heads * c.head_dim);
    // A host-resident backend streams its large weights, f32 or blocks, from huge pages
    // (redrafter_kernels::huge_pages).
    let arena = (B::host_resident() && crate::weight_arena::enabled()).then(WeightArena::new);
    let data = |t: HostTensor| match &arena {
        Some(a) => a.data(t),
        None => TensorData::new(t.data, t.shape),
    };
    let blocks = |b: BlockMatrix| Projection::blocks(match &arena {
        Some(a) => b.in_huge_pages(a.blocks()),
        None => b,
    });
    // The file's own blocks, where `native` keeps them.
    let native = |name: &str, shape: [usize; 2], heads: Option<usize>| -> Result<Option<Projection<B>>, ModelError> {
        match gguf {
            Some(g) if weights.keeps_blocks() => {
                Ok(gguf_blocks(g, name, shape, heads)?.map(|b| blocks(b.with_activations(weights.activations()))))
            }
            _ => Ok(None),
        }
    };
    // A widened [out, in] weight as f16 blocks or a dense layer; `heads` undoes llama.cpp's Q/K row order.
    let widened = |name: &str, mut t: HostTensor, heads: Option<usize>| -> Result<Projection<B>, ModelError> {
        if let Some(heads) = heads {
            t = unpermute_rows(t, heads);
        }
        if weights == WeightFormat::F16 {
            let b = BlockMatrix::from_f32(GgmlType::F16, t.shape[0], t.shape[1], &t.data).map_err(|e| block_error(src.path(), name, e))?;
            return Ok(blocks(b));
        }
        // Flex's few-row matmul streams the stored [out, in] rows (docs/skinny-matmul.md).
        Ok(Projection::Dense(if B::host_resident() { linear_from_torch_rows(data(t), None, device) } else { linear_from_torch(t, None, device) }))
    };
    let proj = |name: &str, shape: [usize; 2], heads: Option<usize>| -> Result<Projection<B>, ModelError> {
        match native(name, shape, heads)? {
            Some(p) => Ok(p),
            None => widened(name, src.tensor_shaped(name, &shape)?, heads),
        }
    };
    let norm = |name: &str| -> Result<RmsNorm<B>, ModelError> {
        let g = src.tensor_shaped(name, &[h])?;
        Ok(RmsNorm { gamma: Param::from_tensor(tensor(g, device)), epsilon: c.rms_norm_eps })
    };
    let qk = |heads: usize| names.unpermute_qk.then_some(heads);
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let name = |part: &str| (names.layer)(i, part);
        layers.push(DecoderLayer {
            input_norm: norm(&name("input_norm"))?,
            attn: Attention {
                q_proj: proj(&name("q"), [qd, h], qk(c.num_heads))?,
                k_proj: proj(&name("k"), [kvd, h], qk(c.num_kv_heads))?,
                v_proj: proj(&name("v"), [kvd, h], None)?,
                o_proj: proj(&name("o"), [h, qd], None)?,
            },
            post_attn_norm: norm(&name("post_attn_norm"))?,
            mlp: Mlp {
                gate_proj: proj(&name("gate"), [c.intermediate_size, h], None)?,
                up_proj: proj(&name("up"), [c.intermediate_size, h], None)?,
                down_proj: proj(&name("down"), [h, c.intermediate_size], None)?,
            },
        });
    }
    let embed_host = src.tensor_shaped(names.embed, &[c.vocab_size, h])?;
    // An untied head is read once: as blocks, else widened.
    let head = match native(names.lm_head, [c.vocab_size, h], None)? {
        Some(p) => Some(p),
        None => match src.try_tensor(names.lm_head)? {
            Some(t) => Some(widened(names.lm_head, t.expect_shape(src.path(), names.lm_head, &[c.vocab_size, h])?, None)?),
            None => None,
        },
    };
    let lm_head = match (c.tie_word_embeddings, head) {
        (_, Some(head)) => Some(head),
        // A tied head in blocks reads the embedding table's own blocks (or an f16 copy); the
        // lookups keep the f32 table.
        (true, None) => match weights {
            WeightFormat::F32 => None,
            WeightFormat::Native | WeightFormat::NativeQ8 => native(names.embed, [c.vocab_size, h], None)?,
            WeightFormat::F16 => Some(blocks(
                BlockMatrix::from_f32(GgmlType::F16, c.vocab_size, h, &embed_host.data).map_err(|e| block_error(src.path(), names.embed, e))?,
            )),
        },
        (false, None) => {
            return Err(IoError::MissingTensor { path: src.path().to_path_buf(), tensor: names.lm_head.into() }.into());
        }
    };
    // The table goes to huge pages only where it is also the output head (streamed every step);
    // for lookups alone (a row per token) ordinary pages do.
    let embed_data = if lm_head.is_none() { data(embed_host) } else { TensorData::new(embed_host.data, embed_host.shape) };
    let embed = Embedding { weight: Param::from_tensor(Tensor::from_data(embed_data, device)) };
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
