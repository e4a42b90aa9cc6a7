//! The reduced draft vocabulary (FR-Spec; EAGLE-3's draft vocabulary): the drafter scores only
//! K frequent tokens of the LLM's V, so a draft step multiplies a [K, H] slice of the output head
//! instead of all of it. Verification still runs over the full vocabulary, so greedy ReDrafter
//! stays lossless; a token outside the K can only arrive as the LLM's own bonus token.
//! See docs/drafter.md, "Reduced draft vocabulary".

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use redrafter_llama::{KernelBackend, Llama, Projection};

use super::DrafterError;

/// The K draft tokens, as full-vocabulary ids in ascending order (so the warp's tie rule, lower
/// id first, is the same in both numberings), and the LLM's head restricted to them once bound.
#[derive(Module, Debug)]
pub struct DraftVocab<B: Backend> {
    /// [K] full-vocabulary ids of the draft tokens: draft id d is token `ids[d]`.
    pub ids: Tensor<B, 1, Int>,
    /// The LLM head's rows at `ids`, in the head's own format (tied drafters; see
    /// [`Drafter::bind`](super::Drafter::bind)). Unbound, each product selects them anew.
    pub head: Option<Projection<B>>,
    #[module(skip)]
    host: Vec<u32>,
}

impl<B: Backend> DraftVocab<B> {
    /// Checks `ids` (non-empty, ascending without repeats, inside `vocab_size`) and uploads them.
    pub fn new(ids: Vec<u32>, vocab_size: usize, device: &B::Device) -> Result<Self, DrafterError> {
        check_ids(&ids, vocab_size)?;
        let t = Tensor::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect(), [ids.len()]), device);
        Ok(Self { ids: t, head: None, host: ids })
    }

    /// K.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// The full-vocabulary ids, draft id order.
    pub fn token_ids(&self) -> &[u32] {
        &self.host
    }

    /// The draft id of full-vocabulary `token`, if it is one of the K.
    pub fn draft_id(&self, token: u32) -> Option<u32> {
        self.host.binary_search(&token).ok().map(|d| d as u32)
    }

    /// Full-vocabulary ids of draft ids `d` (any shape).
    pub fn to_tokens<const D: usize>(&self, d: Tensor<B, D, Int>) -> Tensor<B, D, Int> {
        let dims = d.dims();
        let n: usize = dims.iter().product();
        self.ids.clone().select(0, d.reshape([n])).reshape(dims)
    }
}

impl<B: KernelBackend> DraftVocab<B> {
    /// Draft logits [n, K] of head inputs `x` [n, H] through the LLM's head rows.
    pub(super) fn logits(&self, llm: &Llama<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.head {
            Some(head) => head.forward_2d(x),
            None => llm.head_rows(&self.host).expect("ids were checked against the drafter's vocabulary, which matches the LLM's").forward_2d(x),
        }
    }
}

/// The rules a draft vocabulary's ids follow.
pub fn check_ids(ids: &[u32], vocab_size: usize) -> Result<(), DrafterError> {
    let bad = |what: String| Err(DrafterError::InvalidConfig(format!("draft vocabulary: {what}")));
    if ids.is_empty() {
        return bad("it is empty".into());
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
        return bad(format!("ids must be ascending without repeats, found {} then {}", w[0], w[1]));
    }
    let last = *ids.last().expect("non-empty");
    if last as usize >= vocab_size {
        return bad(format!("id {last} is outside the vocabulary of {vocab_size}"));
    }
    Ok(())
}

/// The `k` most frequent tokens of `counts` (one count per full-vocabulary id; ties to the lower
/// id) plus every id of `always` (e.g. the end-of-turn tokens, which the drafter must be able to
/// propose), in ascending id order. `k` counts the forced ids too.
pub fn most_frequent(counts: &[u64], k: usize, always: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..counts.len() as u32).collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let mut ids: Vec<u32> = always.iter().copied().filter(|&t| (t as usize) < counts.len()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut taken = vec![false; counts.len()];
    ids.iter().for_each(|&t| taken[t as usize] = true);
    let want = k.max(ids.len());
    for t in order {
        if ids.len() >= want {
            break;
        }
        if !taken[t as usize] {
            taken[t as usize] = true;
            ids.push(t);
        }
    }
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_ascending_and_inside_the_vocabulary() {
        assert!(check_ids(&[0, 3, 9], 10).is_ok());
        for (ids, msg) in [(vec![], "empty"), (vec![3, 3], "ascending"), (vec![4, 2], "ascending"), (vec![1, 10], "outside")] {
            let e = check_ids(&ids, 10).unwrap_err().to_string();
            assert!(e.contains(msg), "{ids:?}: {e}");
        }
    }

    #[test]
    fn most_frequent_keeps_forced_ids_and_breaks_ties_low() {
        let counts = [5u64, 0, 7, 7, 1, 0];
        assert_eq!(most_frequent(&counts, 3, &[]), vec![0, 2, 3]);
        assert_eq!(most_frequent(&counts, 3, &[5]), vec![2, 3, 5]);
        assert_eq!(most_frequent(&counts, 2, &[1, 5, 4]), vec![1, 4, 5], "forced ids win over k");
        assert_eq!(most_frequent(&counts, 10, &[]).len(), 6);
    }
}
