//! Records what a bench result must name about its build: the burn and cubecl versions (from
//! Cargo.lock) and the git commit, as compile-time environment variables.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    for (pkg, var) in [("burn", "REDRAFTER_BURN_VERSION"), ("cubecl", "REDRAFTER_CUBECL_VERSION")] {
        println!("cargo:rustc-env={var}={}", locked_version(&lock, pkg).unwrap_or("unknown"));
    }
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    // The commit: HEAD, or the ref it names (rerun when either moves).
    let git = root.join(".git");
    let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    let commit = match head.trim().strip_prefix("ref: ") {
        Some(r) => {
            println!("cargo:rerun-if-changed={}", git.join(r).display());
            println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
            std::fs::read_to_string(git.join(r)).ok().or_else(|| {
                let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
                packed.lines().find(|l| l.ends_with(r)).map(|l| l.split(' ').next().unwrap_or("").to_string())
            })
        }
        None => Some(head.clone()),
    };
    let commit = commit.map(|c| c.trim().to_string()).filter(|c| c.len() >= 7).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=REDRAFTER_GIT_COMMIT={commit}");
}

/// The version of `name` in a Cargo.lock (`name = "burn"` followed by `version = "…"`).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("name = \"{name}\"") {
            return lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"');
        }
    }
    None
}
