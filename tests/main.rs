//! All cross-crate tests, in one binary (see Cargo.toml for why).

mod bad_input;
mod beam_search;
mod decode_loop;
mod drafter_checkpoint;
mod exact_sampling;
mod fuzz_inputs;
mod hostile_options;
mod kernels;
mod model_equivalence;
mod redrafter_lossless;
mod redrafter_smollm2;
mod reference_smollm2;
mod training;
