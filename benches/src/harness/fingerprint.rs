//! The environment every result names: machine, accelerators, software versions, date.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CPU model name (`/proc/cpuinfo`), or the architecture where unknown.
    pub cpu: String,
    /// Logical CPUs of the machine (`/proc/cpuinfo`).
    pub logical_cores: usize,
    /// Logical CPUs this process may run on (its affinity mask, e.g. under `taskset`).
    pub usable_cores: usize,
    pub memory_gib: Option<f64>,
    pub os: String,
    /// NVIDIA GPUs as `nvidia-smi` reports them: name, driver, memory, max SM clock (empty when
    /// there is no `nvidia-smi`).
    pub gpus: Vec<String>,
    /// Vulkan devices (`vulkaninfo --summary`: name and driver), what wgpu runs on; empty when
    /// `vulkaninfo` is not installed.
    pub vulkan_devices: Vec<String>,
    pub redrafter: String,
    pub git_commit: String,
    pub burn: String,
    pub cubecl: String,
    /// UTC, ISO 8601.
    pub date: String,
}

impl Fingerprint {
    pub fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let kb: f64 = m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
            Some((kb / (1024.0 * 1024.0) * 10.0).round() / 10.0)
        });
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Self {
            cpu,
            logical_cores: match cpuinfo.lines().filter(|l| l.starts_with("processor")).count() {
                0 => usable,
                n => n,
            },
            usable_cores: usable,
            memory_gib,
            os: format!("{} {}", std::env::consts::OS, kernel.trim()).trim().to_string(),
            gpus: command_lines("nvidia-smi", &["--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]),
            vulkan_devices: vulkan_devices(),
            redrafter: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("REDRAFTER_GIT_COMMIT").to_string(),
            burn: env!("REDRAFTER_BURN_VERSION").to_string(),
            cubecl: env!("REDRAFTER_CUBECL_VERSION").to_string(),
            date: utc_now(),
        }
    }
}

fn command_lines(cmd: &str, args: &[&str]) -> Vec<String> {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        }
        _ => vec![],
    }
}

/// `deviceName` and `driverName`/`driverInfo` pairs of `vulkaninfo --summary`.
fn vulkan_devices() -> Vec<String> {
    let lines = command_lines("vulkaninfo", &["--summary"]);
    let value = |l: &str| l.split_once('=').map(|(_, v)| v.trim().to_string());
    let mut out = vec![];
    let mut name = None;
    for l in &lines {
        if l.starts_with("deviceName") {
            name = value(l);
        } else if l.starts_with("driverInfo") {
            if let (Some(n), Some(d)) = (name.take(), value(l)) {
                out.push(format!("{n} (driver {d})"));
            }
        }
    }
    out
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, H. Hinnant's algorithm).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// This process's peak resident memory in MB (`VmHWM`), where the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets this process's peak resident memory to its current value (Linux ≥ 4.0:
/// `/proc/self/clear_refs` ← 5), so that the next [`peak_rss_mb`] is the peak of what ran since.
/// Returns false where the OS does not offer it (the peak then includes earlier work).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_resets_to_the_current_size() {
        let big = vec![1u8; 256 << 20];
        std::hint::black_box(&big);
        let high = super::peak_rss_mb();
        drop(big);
        if super::reset_peak_rss() {
            let after = super::peak_rss_mb().unwrap();
            assert!(after + 200.0 < high.unwrap(), "peak {after} MB after the reset, {high:?} before");
        }
    }

    #[test]
    fn date_is_iso_utc() {
        let d = super::utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z') && &d[10..11] == "T", "{d}");
    }
}
