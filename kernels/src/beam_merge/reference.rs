//! The host merge, the reference of [`BeamMergeOps`](super::BeamMergeOps).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::Merged;

/// Chooses the `width` best children over all beams: joint score = beam score + log q. Returns
/// (parent beam, token, score), best first; ties go to the lower parent, then the lower token.
pub fn select_children(scores: &[f32], candidates: &[&[(u32, f32)]], width: usize) -> Vec<(usize, u32, f32)> {
    let mut all: Vec<(usize, u32, f32)> = candidates
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |&(t, lq)| (i, t, scores[i] + lq)))
        .collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    all.truncate(width);
    all
}

fn ints<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

/// The op's reference: [`select_children`] per row, with the read-back and the upload.
pub fn beam_merge<B: Backend>(
    scores: Tensor<B, 2>,
    logq: Tensor<B, 2>,
    ids: Tensor<B, 2, Int>,
    beams: Tensor<B, 3, Int>,
) -> Merged<B> {
    let [rows, w] = scores.dims();
    let [cand_rows, k] = logq.dims();
    let t = beams.dims()[2];
    let per_row = cand_rows / rows;
    let device = scores.device();
    let scores = scores.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
    let logq = logq.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
    let ids = ints(ids);
    let beams = ints(beams);
    let (mut out_scores, mut out_rows, mut out_beams) = (vec![], vec![], vec![]);
    for b in 0..rows {
        let row_of = |i: usize| b * per_row + i.min(per_row - 1);
        let cands: Vec<Vec<(u32, f32)>> = (0..w)
            .map(|i| (0..k).map(|c| (ids[row_of(i) * k + c] as u32, logq[row_of(i) * k + c])).collect())
            .collect();
        let cands: Vec<&[(u32, f32)]> = cands.iter().map(Vec::as_slice).collect();
        for (parent, tok, score) in select_children(&scores[b * w..(b + 1) * w], &cands, w) {
            out_scores.push(score);
            out_rows.push(row_of(parent) as i64);
            out_beams.extend_from_slice(&beams[(b * w + parent) * t..(b * w + parent + 1) * t]);
            out_beams.push(tok as i64);
        }
    }
    // Fewer than W candidates exist only when W·min(W, V) < W, i.e. never; the shapes assume W.
    Merged {
        scores: Tensor::from_data(TensorData::new(out_scores, [rows, w]), &device),
        rows: Tensor::from_data(TensorData::new(out_rows, [rows, w]), &device),
        beams: Tensor::from_data(TensorData::new(out_beams, [rows, w, t + 1]), &device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_beam_zero_is_alive_at_the_start() {
        let cands = vec![(5u32, -0.1f32), (6, -2.0), (7, -3.0)];
        let scores = [0.0, crate::warp_top_k::LOG_ZERO, crate::warp_top_k::LOG_ZERO];
        let chosen = select_children(&scores, &[&cands, &cands, &cands], 3);
        assert_eq!(chosen.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(0, 5), (0, 6), (0, 7)]);
    }

    #[test]
    fn equal_scores_go_to_the_lower_parent_then_the_lower_token() {
        let a = [(9u32, -1.0f32), (3, -1.0)];
        let b = [(1u32, -1.0f32), (2, -0.5)];
        let chosen = select_children(&[0.0, 0.0], &[&a, &b], 4);
        assert_eq!(chosen.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(1, 2), (0, 3), (0, 9), (1, 1)]);
    }
}
