//! The host warp (spec §1.4, §2.2 step 2), the reference of [`WarpTopKOps`](super::WarpTopKOps):
//! Apple's top-50 warp of a drafter row, its log-softmax, and the row's best tokens.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::{LOG_ZERO, WARP_TOP_K};

/// One warped drafter distribution, stored sparsely: the kept tokens and their log-probs; every
/// other token has log-prob `floor` (effectively zero probability).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseLogProbs {
    pub tokens: Vec<u32>,
    pub logp: Vec<f32>,
    pub floor: f32,
}

impl SparseLogProbs {
    pub fn logp_of(&self, token: u32) -> f32 {
        self.tokens.iter().position(|&t| t == token).map_or(self.floor, |i| self.logp[i])
    }
}

/// A row of drafter logits after the warp: its best `k` tokens with their log-probs (best first,
/// lower id first on ties) and, if asked for, the whole sparse distribution.
pub struct Warped {
    pub top: Vec<(u32, f32)>,
    pub dist: Option<SparseLogProbs>,
}

/// Warps one row of logits: every logit below the 50th largest (ties of the 50th kept) becomes
/// [`LOG_ZERO`], then log-softmax. A partial selection, O(V), instead of sorting the row.
pub fn warp(logits: &[f32], k: usize, keep_dist: bool) -> Warped {
    let v = logits.len();
    let kk = WARP_TOP_K.min(v);
    let want = k.max(kk).min(v);
    let desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    let mut idx: Vec<u32> = (0..v as u32).collect();
    if want < v {
        idx.select_nth_unstable_by(want - 1, desc);
        idx.truncate(want);
    }
    idx.sort_unstable_by(desc);
    let max = logits[idx[0] as usize];
    let threshold = logits[idx[kk - 1] as usize];
    let lse: f32 = logits.iter().filter(|&&l| l >= threshold).map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
    // log_softmax of the warped, max-shifted logits: kept tokens l − max − lse, the rest −50000 − lse.
    let floor = LOG_ZERO - lse;
    let logq = |t: u32| {
        let l = logits[t as usize];
        if l >= threshold { l - max - lse } else { floor }
    };
    let top = idx.iter().take(k.min(v)).map(|&t| (t, logq(t))).collect();
    let dist = keep_dist.then(|| {
        let tokens: Vec<u32> = (0..v as u32).filter(|&t| logits[t as usize] >= threshold).collect();
        let logp = tokens.iter().map(|&t| logq(t)).collect();
        SparseLogProbs { tokens, logp, floor }
    });
    Warped { top, dist }
}

/// The op's reference: the host warp of every row, with the read-back and the upload.
pub fn warp_top_k<B: Backend>(logits: Tensor<B, 2>, k: usize) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let [rows, v] = logits.dims();
    let device = logits.device();
    let host = logits.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
    let kk = k.min(v);
    let mut logq = Vec::with_capacity(rows * kk);
    let mut ids = Vec::with_capacity(rows * kk);
    for row in host.chunks(v) {
        for (t, lq) in warp(row, k, false).top {
            ids.push(t as i64);
            logq.push(lq);
        }
    }
    (
        Tensor::from_data(TensorData::new(logq, [rows, kk]), &device),
        Tensor::from_data(TensorData::new(ids, [rows, kk]), &device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_keeps_top_50_and_normalises_over_them() {
        let logits: Vec<f32> = (0..200).map(|i| (i % 100) as f32 * 0.1).collect();
        let w = warp(&logits, 3, true);
        // Values 9.9 (ids 99, 199), 9.8 (98, 198), ...: ties go to the lower id.
        assert_eq!(w.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![99, 199, 98]);
        let d = w.dist.unwrap();
        assert_eq!(d.tokens.len(), 50, "the 50th largest value is 7.5 (25 values × 2 copies)");
        let total: f64 = d.logp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(d.floor < -49000.0);
        assert_eq!(d.logp_of(0), d.floor);
        // Ties at the threshold keep more than 50.
        let flat = vec![1.0f32; 60];
        assert_eq!(warp(&flat, 1, true).dist.unwrap().tokens.len(), 60);
    }
}
