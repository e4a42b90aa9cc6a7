//! Every example with a `--tiny` mode runs to the end and says what it should: `cargo test` builds
//! the examples into `target/<profile>/examples/` before it runs this, and each is run from there
//! with a random tiny model (no download). Lossless checks inside the examples make a wrong
//! decode an error exit.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/tiny_examples-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} is missing: run `cargo test` for the whole package (it builds the examples), not only this test", path.display());
    path
}

fn run(name: &str, args: &[&str], cwd: &std::path::Path) -> String {
    let out = Command::new(example(name)).args(args).current_dir(cwd).output().expect("the example starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redrafter-tiny-examples-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn tree_view_draws_the_step() {
    let dir = scratch("tree");
    let out = run("tree_view", &["--tiny", "--step", "1", "--width", "3", "--length", "4"], &dir);
    assert!(out.contains("3 beams x 4 tokens = 12 grid tokens"), "{out}");
    let svg = std::fs::read_to_string(dir.join("tree.svg")).expect("tree.svg written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("verified tree"), "{svg}");
}

#[test]
fn draft_sources_agree_with_autoregressive() {
    let out = run("draft_sources", &["--tiny", "--tokens", "16"], &scratch("sources"));
    for source in ["autoregressive", "recurrent drafter", "prompt lookup"] {
        assert!(out.contains(&format!("| {source} |")) && !out.contains("| NO |"), "{out}");
    }
}

#[test]
fn wl_ablation_writes_table_and_plots() {
    let dir = scratch("wl");
    let out = run("wl_ablation", &["--tiny", "--widths", "1,2", "--lengths", "2,3", "--tokens", "12", "--out", "wl"], &dir);
    assert_eq!(out.lines().filter(|l| l.starts_with("| 1 |") || l.starts_with("| 2 |")).count(), 4, "{out}");
    for f in ["table.md", "tau.svg", "speedup.svg"] {
        assert!(dir.join("wl").join(f).is_file(), "{f} missing");
    }
}

#[test]
fn acceptance_tables_each_category() {
    let out = run("acceptance", &["--tiny", "--tokens", "16", "--length", "3"], &scratch("acceptance"));
    assert!(out.contains("| tiny |") && out.contains("draft 1 | draft 2 |"), "{out}");
}

#[test]
fn generic_backend_runs_on_ndarray_and_flex() {
    for backend in ["ndarray", "flex"] {
        let out = run("generic_backend", &["--tiny", "--backend", backend], &scratch(backend));
        assert!(out.contains(&format!("backend {backend}")) && out.contains("all three emitted the same tokens"), "{out}");
    }
}

#[test]
fn train_tiny_raises_tau() {
    let dir = scratch("train");
    let out = run("train_tiny", &["--steps", "30", "--every", "15", "--out", "t"], &dir);
    let taus: Vec<f64> = out.lines().filter_map(|l| l.split("tau ").nth(1)?.split([' ', ',']).next()?.parse().ok()).collect();
    assert_eq!(taus.len(), 3, "{out}");
    assert!(taus[2] > taus[0] + 0.5, "tau did not rise: {out}");
    assert!(dir.join("t").join("tau.svg").is_file() && dir.join("t").join("loss.svg").is_file());
}
