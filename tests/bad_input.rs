//! Bad model files get a clear error naming the problem: never a panic, never garbage.

use redrafter::backends::NdArrayBackend;
use redrafter_io::{GgmlType, GgufValue};
use redrafter_llama::testing::{tiny_gguf, write_tiny_hf_dir};
use redrafter_llama::load;
use redrafter_tests::{temp_dir, tiny_config};

fn load_err(path: &std::path::Path) -> String {
    match load::<NdArrayBackend>(path, &Default::default()) {
        Ok(_) => panic!("{} loaded, but it is broken", path.display()),
        Err(e) => e.to_string(),
    }
}

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = temp_dir("bad").join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn good_gguf() -> Vec<u8> {
    tiny_gguf(&tiny_config(), 1, GgmlType::Q8_0).to_bytes()
}

#[test]
fn truncated_gguf() {
    let b = good_gguf();
    for cut in [10, 200, b.len() / 2, b.len() - 40] {
        let e = load_err(&write("trunc.gguf", &b[..cut]));
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn wrong_magic() {
    let e = load_err(&write("magic.gguf", b"PK\x03\x04 this is a zip file, not a model"));
    assert!(e.contains("not a GGUF file"), "{e}");
}

#[test]
fn unsupported_tensor_type() {
    let mut b = good_gguf();
    // Retag the first tensor (token_embd, Q8_0 = 8) as Q4_K (12): its info record ends with type + offset.
    let name = b"token_embd.weight";
    let at = b.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 2 * 8;
    assert_eq!(&b[at..at + 4], &8u32.to_le_bytes());
    b[at..at + 4].copy_from_slice(&12u32.to_le_bytes());
    let e = load_err(&write("q4k.gguf", &b));
    assert!(e.contains("token_embd.weight") && e.contains("not supported"), "{e}");
}

#[test]
fn unsupported_architecture() {
    let w = tiny_gguf(&tiny_config(), 1, GgmlType::F32).meta("general.architecture", GgufValue::String("mamba".into()));
    let e = load_err(&write("mamba.gguf", &w.to_bytes()));
    assert!(e.contains("architecture `mamba` is not supported"), "{e}");

    let dir = temp_dir("hf-arch");
    write_tiny_hf_dir(&dir, &tiny_config(), 1).unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("architecture `gpt_neox` is not supported"), "{e}");
}

#[test]
fn missing_tokenizer() {
    let w = tiny_gguf(&tiny_config(), 1, GgmlType::F32).meta("tokenizer.ggml.model", GgufValue::U32(0));
    let e = load_err(&write("notok.gguf", &w.to_bytes()));
    assert!(e.contains("tokenizer"), "{e}");

    let dir = temp_dir("hf-notok");
    write_tiny_hf_dir(&dir, &tiny_config(), 1).unwrap();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json is missing"), "{e}");
}

#[test]
fn tensor_with_wrong_shape() {
    // A config that claims a wider FFN than the tensors have.
    let w = tiny_gguf(&tiny_config(), 1, GgmlType::F32).meta("llama.feed_forward_length", GgufValue::U32(128));
    let e = load_err(&write("shape.gguf", &w.to_bytes()));
    assert!(e.contains("blk.0.ffn_gate.weight") && e.contains("shape"), "{e}");

    let dir = temp_dir("hf-shape");
    write_tiny_hf_dir(&dir, &tiny_config(), 1).unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"hidden_size\": 64", "\"hidden_size\": 48");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("shape") || e.contains("invalid model config"), "{e}");
}

#[test]
fn corrupt_safetensors_and_config() {
    let dir = temp_dir("hf-corrupt");
    write_tiny_hf_dir(&dir, &tiny_config(), 1).unwrap();
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains("not a valid safetensors file"), "{e}");

    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
}

#[test]
fn missing_file() {
    let e = load_err(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}

#[test]
fn invalid_config_values() {
    let w = tiny_gguf(&tiny_config(), 1, GgmlType::F32).meta("llama.attention.head_count_kv", GgufValue::U32(3));
    let e = load_err(&write("heads.gguf", &w.to_bytes()));
    assert!(e.contains("num_heads (4) must be a multiple of num_kv_heads (3)"), "{e}");
}

/// Sizes in a config.json that would need more memory than there is: refused with the bytes
/// before anything is allocated (an absurd `max_position_embeddings` used to build RoPE tables
/// of that length; an absurd layer count in a drafter used to allocate until the OOM killer came).
#[test]
fn absurd_model_sizes_are_refused_by_the_memory_budget() {
    let dir = temp_dir("hf-absurd");
    write_tiny_hf_dir(&dir, &tiny_config(), 1).unwrap();
    let clean = std::fs::read_to_string(dir.join("config.json")).unwrap();
    for (key, value) in [("max_position_embeddings", "1099511627776"), ("num_hidden_layers", "4000000000000"), ("vocab_size", "18446744073709551615")] {
        let mut j: serde_json::Value = serde_json::from_str(&clean).unwrap();
        j[key] = serde_json::from_str(value).unwrap();
        std::fs::write(dir.join("config.json"), j.to_string()).unwrap();
        let e = load_err(&dir);
        assert!(e.contains("above the memory limit"), "{key}: {e}");
    }
    let w = tiny_gguf(&tiny_config(), 1, GgmlType::F32).meta("llama.context_length", GgufValue::U64(1 << 42));
    let e = load_err(&write("ctx.gguf", &w.to_bytes()));
    assert!(e.contains("above the memory limit") && e.contains("4398046511104 positions"), "{e}");
}

#[test]
fn absurd_drafter_configs_are_refused() {
    use redrafter::{Drafter, DrafterConfig, load_drafter, save_drafter};
    let dir = temp_dir("drafter-absurd");
    let d = Drafter::<NdArrayBackend>::random(DrafterConfig::for_llm(tiny_config().vocab_size, 64), 1, &Default::default()).unwrap();
    save_drafter(&d, &dir, false).unwrap();
    let clean = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let with = |key: &str, value: u64| {
        let mut j: serde_json::Value = serde_json::from_str(&clean).unwrap();
        j[key] = value.into();
        std::fs::write(dir.join("config.json"), j.to_string()).unwrap();
        match load_drafter::<NdArrayBackend>(&dir, &Default::default()) {
            Ok(_) => panic!("{key} = {value} loaded"),
            Err(e) => e.to_string(),
        }
    };
    for (key, value) in [("num_draft_layers", 1u64 << 40), ("exit_dim", 1 << 40), ("hidden_size", 1 << 33), ("num_draft_layers", u64::MAX)] {
        let e = with(key, value);
        assert!(e.contains("above the memory limit") && e.contains("config.json"), "{key} = {value}: {e}");
    }
    // Within the budget but beyond what the file holds: refused before a per-layer list is built.
    let e = with("num_draft_layers", 1000);
    assert!(e.contains("num_draft_layers is 1000, but the checkpoint holds only"), "{e}");
}
