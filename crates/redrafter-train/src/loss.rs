//! The ReDrafter training loss (spec §6.2): for draft steps i = 1..T, the drafter at position t
//! consumes e(y_{t+i}) after i − 1 earlier steps and predicts y_{t+i+1} from the LLM state h_t;
//! the loss is the sum over steps of each step's mean cross-entropy over target positions.
//! With soft targets (`TrainConfig::soft_targets` = w), each position's term mixes the label's
//! cross-entropy with the cross-entropy against the LLM's own next-token distribution there:
//! (1 − w)·(−log q(label)) + w·(−Σ_j p_j log q_j) (docs/training.md, "Soft targets").

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use redrafter::Drafter;
use redrafter_llama::{KernelBackend, Llama};

/// A batch of draft chains, one per sampled training position t: `hidden` [N, C] is the LLM's
/// post-norm state at t (C = H; the context layers' states side by side when the drafter reads
/// several), `inputs` [N, T] the tokens the drafter consumes at steps 1..T
/// (y_{t+1}, ..., y_{t+T}), `labels` [N, T] what each step must predict (y_{t+2}, ...), and
/// `valid` [N, T] which labels count; `teacher`, with soft targets, the LLM's distribution over
/// the drafter's vocabulary at each label.
pub struct Batch<B: Backend> {
    pub hidden: Tensor<B, 2>,
    pub inputs: Tensor<B, 2, Int>,
    pub labels: Tensor<B, 2, Int>,
    pub valid: Tensor<B, 2, Bool>,
    pub teacher: Option<Teacher<B>>,
}

/// The LLM's own next-token distribution at every label of a batch, and its weight in the loss.
pub struct Teacher<B: Backend> {
    /// [N, T, K]: for chain n and draft step i, the LLM's softmax at the position whose next
    /// token is `labels[n, i]`, over the drafter's K tokens (renormalised over them). A constant:
    /// no gradient flows into the LLM.
    pub probs: Tensor<B, 3>,
    /// w in (1 − w)·CE(label) + w·CE(probs), in [0, 1].
    pub weight: f32,
}

/// Per row, the loss term of one draft step: −log q(label), or with a teacher distribution `p`
/// [N, K] of weight w, (1 − w)·(−log q(label)) + w·(−Σ_j p_j log q_j). `log_q` is [N, K].
pub fn row_loss<B: Backend>(log_q: Tensor<B, 2>, labels: Tensor<B, 1, Int>, teacher: Option<(Tensor<B, 2>, f32)>) -> Tensor<B, 1> {
    let n = labels.dims()[0];
    let hard = log_q.clone().gather(1, labels.unsqueeze_dim(1)).reshape([n]).neg();
    match teacher {
        None => hard,
        Some((p, w)) => {
            let soft = (p * log_q).sum_dim(1).reshape([n]).neg();
            hard.mul_scalar(1.0 - w) + soft.mul_scalar(w)
        }
    }
}

/// Per draft step: mean cross-entropy, top-1 hits and the number of target positions.
pub struct StepLoss<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub correct: Tensor<B, 1, Int>,
    pub count: usize,
}

/// Returns the summed loss and the per-step terms (`None` for steps without a valid label).
/// `valid_counts[i]` is the number of valid labels of step i + 1, counted on the host.
pub fn redrafter_loss<B: KernelBackend>(
    drafter: &Drafter<B>,
    llm: &Llama<B>,
    batch: &Batch<B>,
    valid_counts: &[usize],
) -> (Tensor<B, 1>, Vec<Option<StepLoss<B>>>) {
    // The context may hold several layers' states; the embeddings are H wide.
    let (n, h) = (batch.hidden.dims()[0], llm.config().hidden_size);
    let steps = batch.inputs.dims()[1];
    let emb = llm.embed.forward(batch.inputs.clone()); // [N, T, H], frozen
    let mut state: Option<Tensor<B, 2>> = None;
    let mut total: Option<Tensor<B, 1>> = None;
    let mut out = vec![];
    for i in 0..steps {
        let x: Tensor<B, 2> = emb.clone().slice([0..n, i..i + 1, 0..h]).reshape([n, h]);
        let s = drafter.advance_embedded(state.take(), x);
        state = Some(s.clone());
        let count = valid_counts.get(i).copied().unwrap_or(0);
        if count == 0 {
            out.push(None);
            continue;
        }
        let logits = drafter.logits(llm, batch.hidden.clone(), s); // [N, V]
        let labels: Tensor<B, 1, Int> = batch.labels.clone().slice([0..n, i..i + 1]).reshape([n]);
        let valid: Tensor<B, 1, Bool> = batch.valid.clone().slice([0..n, i..i + 1]).reshape([n]);
        let teacher = batch.teacher.as_ref().map(|t| {
            let k = t.probs.dims()[2];
            (t.probs.clone().slice([0..n, i..i + 1, 0..k]).reshape([n, k]), t.weight)
        });
        let per_row = row_loss(log_softmax(logits.clone(), 1), labels.clone(), teacher);
        let loss = (per_row * valid.clone().float()).sum().div_scalar(count as f32);
        let hit = logits.argmax(1).reshape([n]).equal(labels).bool_and(valid).int().sum();
        total = Some(match total {
            Some(t) => t + loss.clone(),
            None => loss.clone(),
        });
        out.push(Some(StepLoss { loss, correct: hit, count }));
    }
    let device = batch.hidden.device();
    (total.unwrap_or_else(|| Tensor::zeros([1], &device)), out)
}

/// Valid labels per draft step (column) of a host-side [N, T] validity matrix.
pub fn valid_counts(valid: &[Vec<bool>], steps: usize) -> Vec<usize> {
    (0..steps).map(|i| valid.iter().filter(|row| row.get(i).copied().unwrap_or(false)).count()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn cross_entropy_matches_the_spec_value() {
        // Labels [0 1 2 1] over a vocabulary of 3 (the shape of the spec §10 case; its logits are
        // not public): the per-step term against a hand-computed mean cross-entropy.
        let dev = Default::default();
        let logits = Tensor::<NdArray, 2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.5, 0.1, 0.2, 3.0, 2.0, 1.0, 0.0, 0.0, 1.0, 0.0], [4, 3]),
            &dev,
        );
        let labels = Tensor::<NdArray, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), &dev);
        let logp = log_softmax(logits, 1);
        let ce: f32 = logp.gather(1, labels.unsqueeze_dim(1)).mean().neg().into_scalar();
        let lse = |r: [f32; 3]| r.iter().map(|x| x.exp()).sum::<f32>().ln();
        let want = ((lse([1.0, 2.0, 0.5]) - 1.0) + (lse([0.1, 0.2, 3.0]) - 0.2) + (lse([2.0, 1.0, 0.0]) - 0.0)
            + (lse([0.0, 1.0, 0.0]) - 1.0))
            / 4.0;
        assert!((ce - want).abs() < 1e-5, "{ce} vs {want}");
    }

    #[test]
    fn soft_targets_mix_the_label_and_the_teacher() {
        let dev = Default::default();
        let logits = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, 0.1, 0.2, 3.0], [2, 3]), &dev);
        let log_q = log_softmax(logits, 1);
        let labels = || Tensor::<NdArray, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &dev);
        let host = |t: Tensor<NdArray, 1>| t.into_data().to_vec::<f32>().unwrap();
        let hard = host(row_loss(log_q.clone(), labels(), None));
        // A one-hot teacher at the labels is the hard loss, whatever its weight.
        let one_hot = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0], [2, 3]), &dev);
        for w in [0.3, 1.0] {
            let mixed = host(row_loss(log_q.clone(), labels(), Some((one_hot.clone(), w))));
            assert!(mixed.iter().zip(&hard).all(|(a, b)| (a - b).abs() < 1e-6), "{mixed:?} vs {hard:?}");
        }
        // A uniform teacher at weight w: (1 − w)·hard + w·mean_j(−log q_j), by hand.
        let uniform = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![1.0f32 / 3.0; 6], [2, 3]), &dev);
        let got = host(row_loss(log_q.clone(), labels(), Some((uniform, 0.25))));
        let lq = log_q.into_data().to_vec::<f32>().unwrap();
        for r in 0..2 {
            let mean = -(lq[3 * r] + lq[3 * r + 1] + lq[3 * r + 2]) / 3.0;
            let want = 0.75 * hard[r] + 0.25 * mean;
            assert!((got[r] - want).abs() < 1e-5, "row {r}: {} vs {want}", got[r]);
            assert!(got[r] != hard[r]);
        }
    }

    #[test]
    fn counts_are_per_draft_step() {
        let valid = vec![vec![true, true, false], vec![true, false, false]];
        assert_eq!(valid_counts(&valid, 3), vec![2, 1, 0]);
    }
}
