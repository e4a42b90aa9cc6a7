//! The benchmarking harness behind `redrafter bench` (docs/benchmarks.md, "The harness"):
//! a plan of cells (backend × threads × weights × batch × temperature × strategy), each measured
//! in a child process per backend, results kept as JSON lines so a rerun resumes, and reports
//! (versioned JSON, CSV, SVG, Markdown) that `bench compare` merges across machines.

pub mod cli_args;
pub mod harness;
