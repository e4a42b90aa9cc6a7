//! The drafter module and Apple's checkpoint format: forward against a plain-loop host
//! implementation of spec §1, save/load round trips, legacy tensor names, and bad files.

use redrafter::KernelBackend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter::{Drafter, DrafterConfig, DrafterError, load_drafter, save_drafter};
use redrafter_io::{HostTensor, SafetensorsFiles, TensorSource, write_safetensors};
use redrafter_io::GgmlType;
use redrafter_tests::{assert_close, backend_tests, temp_dir, tf32_matmul, tiny_gguf_model, to_vec};

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// y = W x + b with W in PyTorch layout [out, in].
fn affine(w: &HostTensor, b: Option<&HostTensor>, x: &[f32]) -> Vec<f32> {
    let (out, inp) = (w.shape[0], w.shape[1]);
    (0..out).map(|o| (0..inp).map(|i| w.data[o * inp + i] * x[i]).sum::<f32>() + b.map_or(0.0, |b| b.data[o])).collect()
}

/// Spec §1.2-1.3 written out with loops over the saved tensors: s_1 = SiLU(R_w e(g0) + b_u),
/// s_2 = SiLU(R_w e(x) + R_u s_1 + b_u), logits = O · resblocks([h, s]).
fn host_reference(dir: &std::path::Path, embed: &[f32], h: &[f32], toks: &[u32], cfg: &DrafterConfig) -> Vec<Vec<f32>> {
    let st = SafetensorsFiles::open(dir).unwrap();
    let t = |n: &str| st.tensor(n).unwrap();
    let hs = cfg.hidden_size;
    let e = |tok: u32| embed[tok as usize * hs..(tok as usize + 1) * hs].to_vec();
    let mut s: Vec<f32> = vec![0.0; hs];
    let mut out = vec![];
    for (step, &tok) in toks.iter().enumerate() {
        s = if cfg.rnn {
            let a = affine(&t("rnn_w.weight"), None, &e(tok));
            let u = affine(&t("rnn_u.weight"), Some(&t("rnn_u.bias")), &s);
            a.iter().zip(&u).map(|(a, u)| silu(a + u)).collect()
        } else {
            s.iter().zip(e(tok)).map(|(s, e)| s + e).collect()
        };
        let _ = step;
        let mut z: Vec<f32> = h.iter().chain(&s).copied().collect();
        for n in 0..cfg.num_draft_layers {
            let y = affine(&t(&format!("lm_head.{n}.linear.weight")), Some(&t(&format!("lm_head.{n}.linear.bias"))), &z);
            z = z.iter().zip(&y).map(|(z, y)| z + silu(*y)).collect();
        }
        out.push(affine(&t(&format!("lm_head.{}.weight", cfg.num_draft_layers)), None, &z));
    }
    out
}

fn drafter_forward_matches_spec_formulas<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(41, GgmlType::F32, &device);
    let lc = m.model.config();
    for rnn in [true, false] {
        let cfg = DrafterConfig { rnn, ..DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size) };
        let d = Drafter::<B>::random(cfg.clone(), 3, &device).unwrap();
        let dir = temp_dir("drafter-ref");
        save_drafter(&d, &dir, false).unwrap();
        let embed = to_vec(m.model.embed.weight.val());
        let h: Vec<f32> = (0..lc.hidden_size).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let toks = [17u32, 200];
        let want = host_reference(&dir, &embed, &h, &toks, &cfg);

        let ht = Tensor::<B, 2>::from_data(TensorData::new(h.clone(), [1, lc.hidden_size]), &device);
        let id = |t: u32| Tensor::<B, 1, Int>::from_data(TensorData::new(vec![t as i64], [1]), &device);
        // Logits of magnitude ~0.2 through three chained projections: TF32 rounding (CUDA)
        // moves them by a few 1e-4.
        let tol = if tf32_matmul::<B>(&device) { 2e-3 } else { 1e-4 };
        let s1 = d.advance(&m.model, None, id(toks[0]));
        assert_close(&to_vec(d.logits(&m.model, ht.clone(), s1.clone())), &want[0], tol, "step 1");
        let s2 = d.advance(&m.model, Some(s1), id(toks[1]));
        assert_close(&to_vec(d.logits(&m.model, ht, s2)), &want[1], tol, "step 2");
    }
}

fn checkpoint_round_trip_and_legacy_names<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(42, GgmlType::F32, &device);
    let lc = m.model.config();
    let configs = [
        DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size),
        DrafterConfig { exit_dim: 96, ..DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size) },
        DrafterConfig { exit_dim: 32, num_draft_layers: 1, ..DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size) }
            .with_tied_lm_head(true),
    ];
    let h = Tensor::<B, 2>::ones([2, lc.hidden_size], &device) * 0.3;
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![4i64, 9], [2]), &device);
    for cfg in configs {
        let d = Drafter::<B>::random(cfg.clone(), 5, &device).unwrap();
        let want = to_vec(d.logits(&m.model, h.clone(), d.advance(&m.model, None, ids.clone())));
        let dir = temp_dir("drafter-rt");
        save_drafter(&d, &dir, false).unwrap();
        let back = load_drafter::<B>(&dir, &device).unwrap();
        assert_eq!(back.config(), &cfg);
        back.check_compatible(lc).unwrap();
        let got = to_vec(back.logits(&m.model, h.clone(), back.advance(&m.model, None, ids.clone())));
        assert_close(&got, &want, 0.0, "f32 round trip");

        // f16 storage: same model up to half-precision rounding.
        let dir16 = temp_dir("drafter-f16");
        save_drafter(&d, &dir16, true).unwrap();
        let b16 = load_drafter::<B>(&dir16, &device).unwrap();
        let got = to_vec(b16.logits(&m.model, h.clone(), b16.advance(&m.model, None, ids.clone())));
        assert_close(&got, &want, 2e-2, "f16 round trip");

        // The older spellings TensorRT-LLM's converter accepts load too.
        let st = SafetensorsFiles::open(&dir).unwrap();
        let renamed: Vec<(String, HostTensor)> = st
            .names()
            .map(|n| {
                let t = st.tensor(n).unwrap();
                let n = n.replace("lm_head.", "lm_heads.").replace("input_proj.", "input_projs.");
                (n, t)
            })
            .collect();
        let legacy = temp_dir("drafter-legacy");
        std::fs::copy(dir.join("config.json"), legacy.join("config.json")).unwrap();
        let refs: Vec<(&str, &HostTensor)> = renamed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_safetensors(&legacy.join("model.safetensors"), &refs, false).unwrap();
        let l = load_drafter::<B>(&legacy, &device).unwrap();
        let got = to_vec(l.logits(&m.model, h.clone(), l.advance(&m.model, None, ids.clone())));
        assert_close(&got, &want, 0.0, "legacy names");
    }
}

fn bad_drafter_files_get_clear_errors<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(43, GgmlType::F32, &device);
    let lc = m.model.config();
    let good = Drafter::<B>::random(DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size), 1, &device).unwrap();
    let err = |edit: &dyn Fn(&std::path::Path)| -> String {
        let dir = temp_dir("drafter-bad");
        save_drafter(&good, &dir, false).unwrap();
        edit(&dir);
        load_drafter::<B>(&dir, &device).err().map(|e| e.to_string()).unwrap_or_else(|| "<loaded>".into())
    };
    let set_cfg = |dir: &std::path::Path, k: &str, v: serde_json::Value| {
        let p = dir.join("config.json");
        let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        j[k] = v;
        std::fs::write(p, j.to_string()).unwrap();
    };
    let e = err(&|d| std::fs::remove_file(d.join("config.json")).unwrap());
    assert!(e.contains("config.json"), "{e}");
    let e = err(&|d| std::fs::write(d.join("config.json"), "{ not json").unwrap());
    assert!(e.contains("invalid JSON"), "{e}");
    let e = err(&|d| set_cfg(d, "model_type", "llama".into()));
    assert!(e.contains("recurrent_drafting_drafter"), "{e}");
    let e = err(&|d| set_cfg(d, "exit_dim", "wide".into()));
    assert!(e.contains("exit_dim"), "{e}");
    let e = err(&|d| set_cfg(d, "num_draft_layers", 3.into()));
    assert!(e.contains("lm_head.2.linear.weight") && e.contains("missing"), "{e}");
    let e = err(&|d| set_cfg(d, "rnn", false.into()));
    assert!(e.contains("rnn_") && e.contains("not part of"), "{e}");
    let e = err(&|d| set_cfg(d, "hidden_size", 32.into()));
    assert!(e.contains("shape"), "{e}");
    let e = err(&|d| {
        let p = d.join("model.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    });
    assert!(e.contains("model.safetensors"), "{e}");

    // A drafter for another LLM shape loads, but is refused by the compatibility check.
    let other = Drafter::<B>::random(DrafterConfig::for_llm(lc.vocab_size + 1, lc.hidden_size), 1, &device).unwrap();
    let e = other.check_compatible(lc).unwrap_err();
    assert!(matches!(e, DrafterError::Mismatch { what: "vocabulary size", .. }), "{e}");
    let other = Drafter::<B>::random(DrafterConfig::for_llm(lc.vocab_size, 32), 1, &device).unwrap();
    assert!(other.check_compatible(lc).unwrap_err().to_string().contains("hidden size is 32"));
}

/// A reduced draft vocabulary: the drafter's logits are the full drafter's at the K ids (tied
/// head through the LLM head's rows, bound or not, on dense and block weights; own head through
/// its kept rows), they survive a save/load round trip, and `--full` gives the full drafter back.
fn draft_vocabulary_selects_the_full_logits<B: KernelBackend>(device: B::Device) {
    for (seed, ty) in [(44, GgmlType::F32), (45, GgmlType::Q8_0)] {
        let m = tiny_gguf_model::<B>(seed, ty, &device);
        let lc = m.model.config();
        let ids: Vec<u32> = (0..lc.vocab_size as u32).filter(|t| t % 3 != 1).collect();
        let h = Tensor::<B, 2>::ones([2, lc.hidden_size], &device) * 0.3;
        let toks = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![4i64, 9], [2]), &device);
        for cfg in [
            DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size),
            DrafterConfig { exit_dim: 32, num_draft_layers: 1, ..DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size) }
                .with_tied_lm_head(true),
        ] {
            let what = format!("{ty:?} tied {}", cfg.tied_lm_head);
            let full = Drafter::<B>::random(cfg.clone(), 5, &device).unwrap();
            let logits = |d: &Drafter<B>| to_vec(d.logits(&m.model, h.clone(), d.advance(&m.model, None, toks.clone())));
            let all = logits(&full);
            let v = lc.vocab_size;
            let want: Vec<f32> = (0..2).flat_map(|r| ids.iter().map(move |&t| (r, t))).map(|(r, t)| all[r * v + t as usize]).collect();
            // Unsorted and repeated ids are normalised (sorted, deduplicated).
            let mut shuffled = ids.clone();
            shuffled.reverse();
            shuffled.push(ids[0]);
            let mut d = full.clone().with_draft_vocab(shuffled).unwrap();
            assert_eq!(d.draft_vocab_size(), ids.len(), "{what}");
            assert_eq!(d.draft_vocab().unwrap().token_ids(), &ids[..], "{what}");
            assert_close(&logits(&d), &want, 1e-5, &format!("{what}: reduced"));
            d.bind(&m.model).unwrap();
            assert_close(&logits(&d), &want, 1e-5, &format!("{what}: bound"));

            let dir = temp_dir("drafter-vocab");
            save_drafter(&d, &dir, false).unwrap();
            let back = load_drafter::<B>(&dir, &device).unwrap();
            assert_eq!(back.config(), d.config(), "{what}");
            assert_eq!(back.config().draft_vocab_size, Some(ids.len()));
            assert_close(&logits(&back), &want, 1e-5, &format!("{what}: round trip"));
            // Reducing again within the vocabulary keeps a subset of the same logits.
            let sub: Vec<u32> = ids.iter().copied().step_by(2).collect();
            let want_sub: Vec<f32> = (0..2).flat_map(|r| sub.iter().map(move |&t| (r, t))).map(|(r, t)| all[r * v + t as usize]).collect();
            assert_close(&logits(&back.clone().with_draft_vocab(sub).unwrap()), &want_sub, 1e-5, &format!("{what}: nested"));
            if cfg.tied_lm_head {
                assert_close(&logits(&back.with_full_vocab().unwrap()), &all, 1e-5, &format!("{what}: full again"));
            } else {
                let e = back.clone().with_full_vocab().unwrap_err().to_string();
                assert!(e.contains("no weights for the other tokens"), "{e}");
                let e = back.with_draft_vocab(vec![1]).unwrap_err().to_string();
                assert!(e.contains("token 1 is not in"), "{e}");
            }
        }
        let d = Drafter::<B>::random(DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size), 1, &device).unwrap();
        let e = d.with_draft_vocab(vec![3, lc.vocab_size as u32]).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{e}");
    }
}

/// Damaged draft vocabularies in a checkpoint are refused with the reason.
fn bad_draft_vocabularies_get_clear_errors<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(46, GgmlType::F32, &device);
    let lc = m.model.config();
    let cfg = DrafterConfig::for_llm(lc.vocab_size, lc.hidden_size).with_tied_lm_head(true);
    let good = Drafter::<B>::random(cfg, 1, &device).unwrap().with_draft_vocab(vec![2, 5, 7]).unwrap();
    let with_ids = |ids: &[i64], key: Option<serde_json::Value>| -> String {
        let dir = temp_dir("drafter-bad-vocab");
        save_drafter(&good, &dir, false).unwrap();
        let st = SafetensorsFiles::open(&dir).unwrap();
        let floats: Vec<(String, HostTensor)> = st.names().filter(|n| *n != "draft_vocab_ids").map(|n| (n.to_string(), st.tensor(n).unwrap())).collect();
        drop(st);
        let refs: Vec<(&str, &HostTensor)> = floats.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let ints: Vec<(&str, &[i64])> = if ids.is_empty() { vec![] } else { vec![("draft_vocab_ids", ids)] };
        redrafter_io::write_safetensors_with_ints(&dir.join("model.safetensors"), &refs, &ints, false).unwrap();
        if let Some(v) = key {
            let p = dir.join("config.json");
            let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            j["draft_vocab_size"] = v;
            std::fs::write(p, j.to_string()).unwrap();
        }
        load_drafter::<B>(&dir, &device).err().map(|e| e.to_string()).unwrap_or_else(|| "<loaded>".into())
    };
    assert_eq!(with_ids(&[2, 5, 7], None), "<loaded>");
    let e = with_ids(&[], None);
    assert!(e.contains("draft_vocab_ids") && e.contains("missing"), "{e}");
    let e = with_ids(&[2, 5], None);
    assert!(e.contains("draft_vocab_ids") && e.contains("shape"), "{e}");
    let e = with_ids(&[5, 2, 7], None);
    assert!(e.contains("ascending"), "{e}");
    let e = with_ids(&[2, 5, lc.vocab_size as i64], None);
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = with_ids(&[-1, 5, 7], None);
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = with_ids(&[2, 5, 7], Some(0.into()));
    assert!(e.contains("draft_vocab_size 0"), "{e}");
    let e = with_ids(&[2, 5, 7], Some(serde_json::Value::Null));
    assert!(e.contains("draft_vocab_ids") && e.contains("not part of"), "{e}");
}

backend_tests!(
    drafter_forward_matches_spec_formulas,
    checkpoint_round_trip_and_legacy_names,
    bad_drafter_files_get_clear_errors,
    draft_vocabulary_selects_the_full_logits,
    bad_draft_vocabularies_get_clear_errors
);
