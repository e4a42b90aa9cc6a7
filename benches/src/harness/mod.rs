//! Plan → child measurements → records → report; and comparison of reports.

pub mod bars;
pub mod compare;
pub mod fingerprint;
pub mod measure;
pub mod peer;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod suite;

/// The version of the report format (`bench.json`); docs/bench.schema.json describes it.
pub const SCHEMA_VERSION: &str = "redrafter-bench/1";

/// A front end's exit: success, or the error on stderr and a failure status.
pub fn exit(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A progress callback for fetches that prints nothing (the assets are small or cached).
pub fn quiet(_: &str, _: u64, _: u64) {}

/// What can go wrong in the harness, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Option(String),
    #[error("{path}: {why}")]
    File { path: std::path::PathBuf, why: String },
    #[error("{0}")]
    Measure(String),
}

impl BenchError {
    pub fn file(path: &std::path::Path, why: impl std::fmt::Display) -> Self {
        Self::File { path: path.to_path_buf(), why: why.to_string() }
    }
}
