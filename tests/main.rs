//! All cross-crate tests, in one binary (see Cargo.toml for why).

mod bad_input;
mod decode_loop;
mod model_equivalence;
mod reference_smollm2;
