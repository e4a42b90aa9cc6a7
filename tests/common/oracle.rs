//! A draft source that knows the true greedy continuation, for driving the ReDrafter verifier
//! through every accepted length: beams hold the truth whole, the truth cut at a random depth,
//! copies and partial copies of earlier beams (deep shared prefixes, duplicates), and noise.

use redrafter::KernelBackend;
use redrafter::beam::Beams;
use redrafter::decode::DecodeState;
use redrafter::{DecodeError, DraftSource, Drafts};
use redrafter_llama::Llama;

pub struct Oracle {
    /// Per request row: the autoregressive output (the first token is the prefill's).
    truth: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    vocab: u32,
    rng: u64,
}

impl Oracle {
    pub fn new(truth: Vec<Vec<u32>>, prompt_lens: Vec<usize>, vocab: usize, seed: u64) -> Self {
        Self { truth, prompt_lens, vocab: vocab as u32, rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    fn next(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// A token that is not `avoid`, from a small pool so that beams often share tokens.
    fn noise(&mut self, avoid: Option<u32>, near: &[u32]) -> u32 {
        loop {
            let t = match self.next(3) {
                0 if !near.is_empty() => near[self.next(near.len() as u64) as usize],
                _ => self.next(self.vocab.min(8) as u64) as u32,
            };
            if Some(t) != avoid {
                return t;
            }
        }
    }
}

impl<B: KernelBackend> DraftSource<B> for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }

    fn draft(&mut self, _: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, _: bool) -> Result<Drafts<B>, DecodeError> {
        let c = len - 1;
        let mut tokens = Vec::with_capacity(state.rows.len() * width * len);
        for (i, &r) in state.rows.iter().enumerate() {
            // Tokens generated so far, the pending one included.
            let done = state.cache.lens()[i] + 1 - self.prompt_lens[r];
            let truth: Vec<u32> = self.truth[r].iter().skip(done).take(c).copied().collect();
            let mut beams: Vec<Vec<u32>> = Vec::with_capacity(width);
            for b in 0..width {
                let kind = self.next(5);
                let mut beam = vec![state.pending[i]];
                let (keep, base): (usize, Vec<u32>) = match kind {
                    0 => (c, truth.clone()),
                    1 => (self.next(c as u64 + 1) as usize, truth.clone()),
                    2 if b > 0 => (c, beams[self.next(b as u64) as usize][1..].to_vec()),
                    3 if b > 0 => (self.next(c as u64 + 1) as usize, beams[self.next(b as u64) as usize][1..].to_vec()),
                    _ => (0, truth.clone()),
                };
                for k in 0..c {
                    let t = if k < keep && k < base.len() { base[k] } else { self.noise(base.get(k).copied(), &truth) };
                    beam.push(t);
                }
                beams.push(beam);
            }
            tokens.extend(beams.concat());
        }
        Ok(Drafts::Host(Beams { rows: state.rows.len(), width, len, tokens, hist: None }))
    }
}
