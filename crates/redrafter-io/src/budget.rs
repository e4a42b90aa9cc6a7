//! The memory budget: every allocation whose size a file or an option controls is checked against
//! it first, so an absurd `config.json`, tensor shape or `--beam-width` ends in an error that states
//! the bytes asked for and the limit, instead of the kernel's OOM killer ending the process.
//!
//! The limit is, in order of precedence: a [`scoped`] limit on the calling thread (tests, library
//! callers that fence one load), the process-wide [`set_limit`] (the CLI's `--memory-limit`), the
//! `REDRAFTER_MEMORY_LIMIT` environment variable, and otherwise the machine's physical memory
//! (`MemTotal` of `/proc/meminfo`; 16 GiB where that cannot be read). The checks estimate the
//! large buffers of one request (weights, KV cache, a step's logits), not every small vector, so
//! the limit is what one such request may take, not a hard cap on the process.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable read when no limit was set in the process.
pub const ENV: &str = "REDRAFTER_MEMORY_LIMIT";

/// Used where the physical memory cannot be read.
const FALLBACK: u64 = 16 << 30;

/// 0 = not set.
static PROCESS_LIMIT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SCOPED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// An allocation that would exceed the memory limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs {} ({bytes} bytes), above the memory limit of {} ({limit} bytes); if this machine really has the memory, raise the limit with --memory-limit or {ENV}",
    human(*bytes), human(*limit as u128)
)]
pub struct OverBudget {
    pub what: String,
    pub bytes: u128,
    pub limit: u64,
}

/// Sets the process-wide limit in bytes (the CLI's `--memory-limit`).
pub fn set_limit(bytes: u64) {
    PROCESS_LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

/// Runs `f` with `bytes` as the limit for checks made on this thread; the previous limit is back
/// afterwards, also when `f` panics.
pub fn scoped<R>(bytes: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(bytes))));
    f()
}

/// The limit in effect on this thread, in bytes.
pub fn limit() -> u64 {
    if let Some(l) = SCOPED.with(Cell::get) {
        return l;
    }
    match PROCESS_LIMIT.load(Ordering::Relaxed) {
        0 => {
            let l = std::env::var(ENV).ok().and_then(|v| parse_size(&v).ok()).unwrap_or_else(physical_memory);
            // Racing first calls compute the same value.
            PROCESS_LIMIT.store(l.max(1), Ordering::Relaxed);
            l.max(1)
        }
        l => l,
    }
}

/// Fails when `bytes` exceeds the limit. `what` names the allocation for the message
/// ("the KV cache of 8 rows × 4096 positions").
pub fn check(what: impl fmt::Display, bytes: u128) -> Result<(), OverBudget> {
    let limit = limit();
    if bytes > limit as u128 { Err(OverBudget { what: what.to_string(), bytes, limit }) } else { Ok(()) }
}

/// The product of `factors`, saturating at `u128::MAX` (which no limit admits): sizes computed
/// from untrusted numbers go through this so that an overflow cannot wrap into a small request.
pub fn product(factors: &[u128]) -> u128 {
    factors.iter().fold(1u128, |acc, &f| acc.saturating_mul(f))
}

/// Physical memory in bytes (Linux: `MemTotal`), or 16 GiB when it cannot be read.
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(FALLBACK)
}

/// Parses a size: a number of bytes with an optional unit, `K`/`M`/`G`/`T` (powers of 1024, also
/// spelled `KiB`, `KB`, ...), e.g. `512M`, `24GiB`, `1.5g`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a size (e.g. 512M, 24G, 1000000)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use K, M, G or T)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{s}` is not a usable memory size (at least 1 byte, below 16 EiB)"));
    }
    Ok(bytes as u64)
}

/// `1.5 GiB`, `512.0 MiB`, `300 B`.
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("24GiB"), Ok(24 << 30));
        assert_eq!(parse_size(" 1.5 g "), Ok(3 << 29));
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-3G").is_err());
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown unit `parsecs`"));
        assert!(parse_size("lots").unwrap_err().contains("`lots` is not a size"));
        assert!(parse_size("nanG").is_err());
        assert!(parse_size("1e30").is_err());
    }

    #[test]
    fn scoped_limit_applies_on_this_thread_and_is_restored() {
        let outer = limit();
        scoped(1000, || {
            assert_eq!(limit(), 1000);
            let e = check("a test buffer", 1001).unwrap_err();
            assert!(e.to_string().contains("a test buffer needs 1001 B (1001 bytes), above the memory limit of 1000 B"), "{e}");
            assert!(check("a test buffer", 1000).is_ok());
            // Another thread does not see this thread's limit.
            assert_eq!(std::thread::spawn(limit).join().unwrap(), outer);
        });
        assert_eq!(limit(), outer);
        let _ = std::panic::catch_unwind(|| scoped(5, || panic!("inside")));
        assert_eq!(limit(), outer);
    }

    #[test]
    fn products_saturate() {
        assert_eq!(product(&[3, 4, 5]), 60);
        assert_eq!(product(&[u64::MAX as u128, u64::MAX as u128, 4]), u128::MAX);
        assert!(check("x", product(&[1 << 62, 1 << 62, 1 << 62])).is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(300), "300 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(24 << 30), "24.0 GiB");
    }
}
