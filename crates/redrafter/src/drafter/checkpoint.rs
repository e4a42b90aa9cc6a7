//! Apple's drafter checkpoint: a directory with `config.json` and `model.safetensors` holding
//! PyTorch-layout tensors (spec §1.6). Older spellings (`lm_heads.*`, `input_projs.*`, bare
//! `0.{n}.*`) and TensorRT-LLM's `drafter.` prefix are accepted when loading.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use redrafter_io::{HostTensor, IoError, SafetensorsFiles, TensorSource, write_safetensors_with_ints};
use redrafter_llama::torch_layout::{linear_from_torch, linear_to_torch};

use super::{DRAFT_VOCAB_TENSOR, DraftVocab, Drafter, DrafterConfig, DrafterError, ResBlock, expected_shapes};

/// Other names under which the tensor `name` has been saved.
fn aliases(name: &str) -> Vec<String> {
    let mut v = vec![name.to_string()];
    if let Some(rest) = name.strip_prefix("lm_head.") {
        v.push(format!("lm_heads.{rest}"));
        v.push(format!("0.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("input_proj.") {
        v.push(format!("input_projs.{rest}"));
    }
    let prefixed: Vec<String> = v.iter().map(|n| format!("drafter.{n}")).collect();
    v.extend(prefixed);
    v
}

/// The checkpoint directory of `path`: the path itself, or the parent of a `.safetensors` file.
fn checkpoint_dir(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "safetensors") {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    }
}

/// Loads a drafter directory (or its `model.safetensors`) onto `device`.
pub fn load_drafter<B: Backend>(path: &Path, device: &B::Device) -> Result<Drafter<B>, DrafterError> {
    let dir = checkpoint_dir(path);
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| IoError::Io { path: cfg_path.clone(), source })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| IoError::Json { path: cfg_path.clone(), source })?;
    if let Some(t) = json.get("model_type").and_then(|v| v.as_str()) {
        if t != "recurrent_drafting_drafter" {
            return Err(DrafterError::InvalidConfig(format!(
                "{}: model_type is `{t}`, expected `recurrent_drafting_drafter`",
                cfg_path.display()
            )));
        }
    }
    // serde's messages do not name the key at fault; check the fields we read first.
    let bad = |what: String| DrafterError::InvalidConfig(format!("{}: {what}", cfg_path.display()));
    for key in ["vocab_size", "hidden_size", "exit_dim", "num_draft_layers"] {
        if !json.get(key).is_some_and(|v| v.is_u64()) {
            return Err(bad(format!("`{key}` is missing or not a non-negative integer")));
        }
    }
    for key in ["rnn", "emb_norm", "tied_lm_head"] {
        if json.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(bad(format!("`{key}` must be true or false")));
        }
    }
    let config: DrafterConfig = serde_json::from_value(json)
        .map_err(|e| DrafterError::InvalidConfig(format!("{}: {e}", cfg_path.display())))?;
    config.validate()?;
    redrafter_io::budget::check(
        format_args!(
            "the drafter of {} ({} layers, hidden {}, exit dim {}; f32)",
            cfg_path.display(),
            config.num_draft_layers,
            config.hidden_size,
            config.exit_dim
        ),
        config.num_parameters().saturating_mul(4),
    )
    .map_err(IoError::from)?;
    let src = SafetensorsFiles::open(&dir)?;
    // Each residual block is two tensors of the file: a layer count beyond what the file holds
    // is wrong, and is refused before the per-layer tensor list is built.
    let held = src.names().count();
    if config.num_draft_layers > held {
        return Err(bad(format!("num_draft_layers is {}, but the checkpoint holds only {held} tensors", config.num_draft_layers)));
    }

    let mut used = vec![];
    let mut get = |name: &str, shape: &[usize]| -> Result<HostTensor, DrafterError> {
        for alias in aliases(name) {
            if let Some(t) = src.try_tensor(&alias)? {
                used.push(alias.clone());
                return Ok(t.expect_shape(src.path(), &alias, shape)?);
            }
        }
        Err(IoError::MissingTensor { path: src.path().to_path_buf(), tensor: name.to_string() }.into())
    };
    let shapes = expected_shapes(&config);
    let shape = |n: &str| shapes.iter().find(|(k, _)| k == n).map(|(_, s)| s.clone()).expect("known tensor");
    let mut lin = |w: &str, b: Option<&str>| -> Result<_, DrafterError> {
        let wt = get(w, &shape(w))?;
        let bt = b.map(|b| get(b, &shape(b))).transpose()?;
        Ok(linear_from_torch::<B>(wt, bt, device))
    };
    let (rnn_w, rnn_u) = if config.rnn {
        (Some(lin("rnn_w.weight", None)?), Some(lin("rnn_u.weight", Some("rnn_u.bias"))?))
    } else {
        (None, None)
    };
    let input_proj =
        if config.has_input_proj() { Some(lin("input_proj.weight", Some("input_proj.bias"))?) } else { None };
    let n = config.num_draft_layers;
    let blocks = (0..n)
        .map(|i| {
            let (w, b) = (format!("lm_head.{i}.linear.weight"), format!("lm_head.{i}.linear.bias"));
            Ok(ResBlock { linear: lin(&w, Some(&b))? })
        })
        .collect::<Result<Vec<_>, DrafterError>>()?;
    let lm_head = lin(&format!("lm_head.{n}.weight"), None)?;
    let vocab = match config.draft_vocab_size {
        None => None,
        Some(k) => {
            let name = DRAFT_VOCAB_TENSOR;
            let (shape, ids) = src
                .try_ints(name)?
                .ok_or_else(|| IoError::MissingTensor { path: src.path().to_path_buf(), tensor: name.to_string() })?;
            if shape != [k] {
                return Err(IoError::ShapeMismatch { path: src.path().to_path_buf(), tensor: name.into(), expected: vec![k], found: shape }.into());
            }
            let v = config.vocab_size;
            let ids: Vec<u32> = ids
                .iter()
                .map(|&t| u32::try_from(t).ok().filter(|&t| (t as usize) < v).ok_or(t))
                .collect::<Result<_, i64>>()
                .map_err(|t| DrafterError::InvalidConfig(format!("{}: `{name}` holds {t}, outside the vocabulary of {v}", dir.display())))?;
            used.push(name.to_string());
            Some(DraftVocab::new(ids, v, device).map_err(|e| DrafterError::InvalidConfig(format!("{}: {e}", dir.display())))?)
        }
    };

    // A tensor nobody reads means the config does not describe this file (e.g. `rnn` or
    // `num_draft_layers` is wrong): refuse rather than silently drop weights.
    let unused: Vec<&str> = src.names().filter(|n| !used.iter().any(|u| u == n) && !n.ends_with("emb_norm.weight")).collect();
    if let Some(extra) = unused.first() {
        return Err(DrafterError::InvalidConfig(format!(
            "{}: tensor `{extra}` is not part of a drafter with this config.json ({} unexpected tensors)",
            dir.display(),
            unused.len()
        )));
    }
    Ok(Drafter { rnn_w, rnn_u, input_proj, blocks, lm_head, vocab, bound: None, config })
}

/// Writes `config.json` and `model.safetensors` (f32, or f16 to halve the size) into `dir`.
pub fn save_drafter<B: Backend>(drafter: &Drafter<B>, dir: &Path, as_f16: bool) -> Result<(), DrafterError> {
    std::fs::create_dir_all(dir).map_err(|source| IoError::Io { path: dir.to_path_buf(), source })?;
    let mut tensors: Vec<(String, HostTensor)> = vec![];
    let mut push = |name: &str, layer: &burn::nn::Linear<B>| {
        let (w, b) = linear_to_torch(layer);
        tensors.push((format!("{name}.weight"), w));
        if let Some(b) = b {
            tensors.push((format!("{name}.bias"), b));
        }
    };
    if let (Some(w), Some(u)) = (&drafter.rnn_w, &drafter.rnn_u) {
        push("rnn_w", w);
        push("rnn_u", u);
    }
    if let Some(p) = &drafter.input_proj {
        push("input_proj", p);
    }
    for (i, block) in drafter.blocks.iter().enumerate() {
        push(&format!("lm_head.{i}.linear"), &block.linear);
    }
    push(&format!("lm_head.{}", drafter.blocks.len()), &drafter.lm_head);
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let ids: Vec<i64> = drafter.vocab.as_ref().map_or(vec![], |v| v.token_ids().iter().map(|&t| t as i64).collect());
    let ints: Vec<(&str, &[i64])> = if drafter.vocab.is_some() { vec![(DRAFT_VOCAB_TENSOR, &ids)] } else { vec![] };
    write_safetensors_with_ints(&dir.join("model.safetensors"), &refs, &ints, as_f16)?;
    let cfg = dir.join("config.json");
    let mut json = drafter.config.to_json();
    json["torch_dtype"] = if as_f16 { "float16" } else { "float32" }.into();
    let text = serde_json::to_string_pretty(&json).expect("json value serializes");
    std::fs::write(&cfg, text + "\n").map_err(|source| IoError::Io { path: cfg, source })?;
    Ok(())
}
