//! The drafter's beam search (spec §2.2) on every backend against a brute force: at every step,
//! all W·V children of all beams scored and fully sorted on the host. On wgpu/cuda the search
//! runs the `warp_top_k` and `beam_merge` kernels; on the CPU backends their host references.

use burn::tensor::{Int, Tensor, TensorData};
use redrafter::KernelBackend;
use redrafter::beam::{LOG_ZERO, SparseLogProbs, WARP_TOP_K, beam_search};
use redrafter::{Drafter, DrafterConfig};
use redrafter_io::GgmlType;
use redrafter_llama::{BlockInput, Llama};
use redrafter_tests::{backend_tests, tiny_gguf_model, to_vec};

/// Log-probs of one drafter row after the top-50 warp, and its sparse form.
fn warped(row: &[f32]) -> (Vec<f32>, SparseLogProbs) {
    let mut sorted = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (max, thr) = (sorted[0], sorted[WARP_TOP_K.min(row.len()) - 1]);
    let lse = row.iter().filter(|&&l| l >= thr).map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
    let logq: Vec<f32> = row.iter().map(|&l| if l >= thr { l - max - lse } else { LOG_ZERO - lse }).collect();
    let tokens: Vec<u32> = (0..row.len() as u32).filter(|&t| row[t as usize] >= thr).collect();
    let logp = tokens.iter().map(|&t| logq[t as usize]).collect();
    (logq, SparseLogProbs { tokens, logp, floor: LOG_ZERO - lse })
}

fn ids<B: KernelBackend>(v: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Beams [rows, W, L] and the distribution behind every drafted token, by brute force.
fn brute_force<B: KernelBackend>(
    d: &Drafter<B>,
    llm: &Llama<B>,
    hidden: Tensor<B, 2>,
    g0: &[u32],
    w: usize,
    l: usize,
) -> (Vec<u32>, Vec<SparseLogProbs>) {
    let (rows, device) = (g0.len(), hidden.device());
    // A reduced draft vocabulary scores draft ids; beams and distributions hold token ids.
    let map: Vec<u32> = match d.draft_vocab() {
        Some(v) => v.token_ids().to_vec(),
        None => (0..llm.config().vocab_size as u32).collect(),
    };
    let mut beams: Vec<Vec<u32>> = (0..rows * w).map(|x| vec![g0[x / w]]).collect();
    let mut hist: Vec<Vec<SparseLogProbs>> = vec![vec![]; rows * w];
    let mut scores: Vec<f32> = (0..rows * w).map(|x| if x % w == 0 { 0.0 } else { LOG_ZERO }).collect();
    let spread = ids::<B>((0..rows * w).map(|x| (x / w) as i64).collect(), &device);
    let ctx = hidden.select(0, spread.clone());
    // Every beam starts as g0 with the zero state.
    let mut state = d.advance(llm, None, ids::<B>(g0.iter().map(|&t| t as i64).collect(), &device)).select(0, spread);
    for step in 0..l - 1 {
        let logits = to_vec(d.logits(llm, ctx.clone(), state.clone()));
        let v = logits.len() / (rows * w);
        let rows_warped: Vec<(Vec<f32>, SparseLogProbs)> = logits
            .chunks(v)
            .map(|row| {
                let (logq, mut sparse) = warped(row);
                sparse.tokens.iter_mut().for_each(|t| *t = map[*t as usize]);
                (logq, sparse)
            })
            .collect();
        let mut parents = vec![];
        let (mut next_beams, mut next_hist, mut next_scores) = (vec![], vec![], vec![]);
        for r in 0..rows {
            let mut all: Vec<(f32, usize, u32)> = vec![];
            for i in 0..w {
                for t in 0..v {
                    all.push((scores[r * w + i] + rows_warped[r * w + i].0[t], i, t as u32));
                }
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            for &(score, i, t) in &all[..w] {
                let p = r * w + i;
                parents.push(p as i64);
                next_beams.push([beams[p].clone(), vec![map[t as usize]]].concat());
                let mut h = hist[p].clone();
                h.push(rows_warped[p].1.clone());
                next_hist.push(h);
                next_scores.push(score);
            }
        }
        let last: Vec<i64> = next_beams.iter().map(|b: &Vec<u32>| *b.last().unwrap() as i64).collect();
        (beams, hist, scores) = (next_beams, next_hist, next_scores);
        if step + 2 < l {
            state = d.advance(llm, Some(state.select(0, ids::<B>(parents, &device))), ids::<B>(last, &device));
        }
    }
    (beams.concat(), hist.concat())
}

fn beam_search_matches_a_full_sort<B: KernelBackend>(device: B::Device) {
    let m = tiny_gguf_model::<B>(41, GgmlType::F32, &device);
    let cfg = m.model.config();
    let prompts = vec![vec![5, 6, 7, 8], vec![40, 41], vec![9]];
    let mut cache = m.model.new_cache(3, 8, &device);
    let h = m.model.forward_hidden(&BlockInput::causal(&prompts, &[0, 0, 0], &device), &mut cache);
    // The hidden state after each prompt's last token, and each row's own g0.
    let last = ids::<B>(vec![3, 4 + 1, 8], &device);
    let hidden = h.reshape([12, cfg.hidden_size]).select(0, last);
    let g0 = [17, 200, 3];
    // Draft vocabularies: every third token (ties of the warp then break on draft ids, which
    // follow token ids), and 60 tokens, close to the warp's 50.
    let thirds: Vec<u32> = (0..cfg.vocab_size as u32).step_by(3).collect();
    let sixty: Vec<u32> = (0..60).map(|i| (i * 37 % cfg.vocab_size) as u32).collect();
    for (v, (dc, vocab)) in [
        (DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size), None),
        (DrafterConfig { rnn: false, num_draft_layers: 2, ..DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size) }, None),
        (DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size), Some(thirds.clone())),
        (DrafterConfig { exit_dim: 48, ..DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size) }.with_tied_lm_head(true), Some(thirds)),
        (DrafterConfig::for_llm(cfg.vocab_size, cfg.hidden_size).with_tied_lm_head(true), Some(sixty)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = Drafter::<B>::random(dc, 7 + v as u64, &device).unwrap();
        if let Some(ids) = vocab {
            d = d.with_draft_vocab(ids).unwrap();
            // Bound or not, the tied head's rows give the same beams.
            if v == 4 {
                d.bind(&m.model).unwrap();
            }
        }
        for (w, l) in [(1, 2), (1, 4), (2, 3), (4, 4), (8, 3)] {
            let what = format!("drafter {v} W {w} L {l}");
            let (want, want_hist) = brute_force(&d, &m.model, hidden.clone(), &g0, w, l);
            let got = beam_search(&d, &m.model, hidden.clone(), &g0, w, l, true);
            assert_eq!(got.tokens.dims(), [3, w, l], "{what}");
            let tokens: Vec<u32> = got.tokens.clone().into_data().iter::<i64>().map(|t| t as u32).collect();
            assert_eq!(tokens, want, "{what}: beams");
            if let Some(vocab) = d.draft_vocab() {
                let drafted = (0..tokens.len()).filter(|i| i % l != 0).map(|i| tokens[i]);
                assert!(drafted.clone().all(|t| vocab.draft_id(t).is_some()), "{what}: a drafted token outside the draft vocabulary");
            }
            let hist = got.hist.expect("kept");
            assert_eq!(hist.len(), want_hist.len(), "{what}: one distribution per drafted token");
            for (i, (a, b)) in hist.iter().zip(&want_hist).enumerate() {
                assert_eq!(a.tokens, b.tokens, "{what}: kept tokens of distribution {i}");
                let d = a.logp.iter().zip(&b.logp).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(d < 1e-5, "{what}: distribution {i} off by {d}");
            }
            // Greedy mode keeps nothing and drafts the same beams.
            let greedy = beam_search(&d, &m.model, hidden.clone(), &g0, w, l, false);
            assert!(greedy.hist.is_none());
            assert_eq!(greedy.tokens.into_data().iter::<i64>().map(|t| t as u32).collect::<Vec<_>>(), want, "{what}: greedy");
        }
    }
}

backend_tests!(beam_search_matches_a_full_sort);
