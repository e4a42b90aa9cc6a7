//! A draft source whose beams the test writes itself: a closure gives each active row's W beams
//! of the step's length, concatenated. Tests that fix the drafts (the truth whole, a table of
//! chosen beams) need only that closure, not a `DraftSource` impl each.

use redrafter::KernelBackend;
use redrafter::beam::Beams;
use redrafter::decode::DecodeState;
use redrafter::{DecodeError, DraftSource, Drafts};
use redrafter_llama::Llama;

pub struct Scripted<F> {
    name: &'static str,
    beams: F,
}

impl<F> Scripted<F> {
    /// `beams(state, i, width, len)`: the `width` beams of `len` tokens of active row `i`, one
    /// after another, each starting with the row's pending token.
    pub fn new(name: &'static str, beams: F) -> Self {
        Self { name, beams }
    }
}

impl<B: KernelBackend, F> DraftSource<B> for Scripted<F>
where
    F: FnMut(&DecodeState<B>, usize, usize, usize) -> Vec<u32>,
{
    fn name(&self) -> String {
        self.name.into()
    }

    fn draft(&mut self, _: &Llama<B>, state: &DecodeState<B>, width: usize, len: usize, _: bool) -> Result<Drafts<B>, DecodeError> {
        let rows = state.rows.len();
        let mut tokens = Vec::with_capacity(rows * width * len);
        for i in 0..rows {
            let beams = (self.beams)(state, i, width, len);
            assert_eq!(beams.len(), width * len, "{}: row {i} needs {width} beams of {len} tokens", self.name);
            tokens.extend(beams);
        }
        Ok(Drafts::Host(Beams { rows, width, len, tokens, hist: None }))
    }
}
