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
