//! Resolves `--model`: a given path, or the default model fetched into the cache on first use.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use redrafter_io::fetch::{SMOLLM2_135M_INSTRUCT, fetch};

pub fn resolve(model: Option<PathBuf>) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(p) = model {
        return Ok(p);
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:>18} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut last = String::new();
    let path = fetch(&SMOLLM2_135M_INSTRUCT, &mut |what, done, total| {
        if what != last {
            bar.reset();
            bar.set_message(what.to_string());
            last = what.to_string();
        }
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    Ok(path)
}

/// Lower-case hex of the sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A content identity of the model at `path` for caches of what it computes: the sha256 of the
/// file, or of each regular file of a directory (sorted by name).
pub fn identity(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    use redrafter_io::fetch::sha256_file;
    if path.is_file() {
        return Ok(sha256_file(path, &mut |_, _, _| {})?);
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    names.sort();
    let mut id = String::new();
    for p in names {
        id += &format!("{}:{}\n", p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), sha256_file(&p, &mut |_, _, _| {})?);
    }
    Ok(id)
}
