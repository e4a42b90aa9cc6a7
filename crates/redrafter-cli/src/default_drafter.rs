//! The drafter shipped for the default model (`models/drafters/smollm2-135m-instruct`, trained with
//! `redrafter train`; its README records how). It is compiled into the binary, so an installed
//! `redrafter` needs no repository checkout, and unpacked into the download cache on first use
//! because the drafter loader reads a directory.

use std::path::PathBuf;

use redrafter_io::fetch::cache_dir;

const CONFIG: &[u8] = include_bytes!("../../../models/drafters/smollm2-135m-instruct/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../../models/drafters/smollm2-135m-instruct/model.safetensors");

/// The directory of the bundled drafter, written on first use. The directory name carries the
/// weights' digest, so a new build with other weights never reads an old copy.
pub fn path() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let digest = crate::model_path::sha256_hex(WEIGHTS)[..16].to_string();
    let root = cache_dir().join("drafters");
    let dir = root.join(format!("smollm2-135m-instruct-{digest}"));
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    // Write beside, then rename: an interrupted first run never leaves a half-written drafter.
    let tmp = root.join(format!(".tmp-{digest}-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        std::fs::write(tmp.join("config.json"), CONFIG)?;
        std::fs::write(tmp.join("model.safetensors"), WEIGHTS)?;
        match std::fs::rename(&tmp, &dir) {
            // Another process got there first with the same bytes.
            Err(_) if dir.join("model.safetensors").is_file() => std::fs::remove_dir_all(&tmp),
            r => r,
        }
    };
    write().map_err(|e| format!("unpacking the bundled drafter into {}: {e}", root.display()))?;
    Ok(dir)
}
