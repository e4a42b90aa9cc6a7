//! The parent side: one child process per backend and thread count (a backend that cannot
//! start, or crashes, costs only its own cells), records appended to `runs.jsonl` as they come
//! (a rerun skips what is there), then the report.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use redrafter::backends::BackendKind;

use super::BenchError;
use super::fingerprint::Fingerprint;
use super::measure::{BackendRecord, Child, Record, RunRecord, done_id};
use super::peer;
use super::plan::Plan;
use super::report::{self, Report};

/// The hidden options by which a front end (`redrafter bench`, `mt_bench`, `ar_decode`) runs as
/// the child of its own run: flattened into its clap arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    #[arg(long, hide = true)]
    child_plan: Option<PathBuf>,
    #[arg(long, hide = true)]
    child_backend: Option<String>,
    #[arg(long, hide = true, default_value_t = 1)]
    child_threads: usize,
}

impl ChildArgs {
    /// Whether this process was started as a child; then runs [`child`].
    pub fn run(&self) -> Option<Result<(), BenchError>> {
        let (plan, backend) = (self.child_plan.as_ref()?, self.child_backend.as_ref()?);
        Some(child(plan, backend, self.child_threads))
    }
}

/// Drains a child's stderr on a thread (so that a chatty child never blocks on a full pipe),
/// keeping its last `keep` lines.
pub fn stderr_tail(err: impl std::io::Read + Send + 'static, keep: usize) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut tail: Vec<String> = vec![];
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            tail.push(line);
            if tail.len() > keep {
                tail.remove(0);
            }
        }
        tail
    })
}

/// What a child prints before each record, so that stray output on stdout is never taken for one.
pub const RECORD_PREFIX: &str = "@bench-record ";

/// Progress: (runs recorded, runs planned, what is running).
pub type OnProgress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Runs `plan` into `out` (`plan.json`, `runs.jsonl`, then the report files). `child` is the
/// command that runs one backend: it gets `--child-plan FILE --child-backend NAME
/// --child-threads N` appended (`redrafter bench` hands its own executable). With `measure`
/// false nothing runs: the report is written from the records already there (e.g. after a run
/// was stopped by a time limit).
pub fn run(plan: &Plan, out: &Path, child: &[OsString], measure: bool, progress: OnProgress<'_>) -> Result<Report, BenchError> {
    plan.validate()?;
    std::fs::create_dir_all(out).map_err(|e| BenchError::file(out, e))?;
    let plan_path = out.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_string_pretty(plan).map_err(|e| BenchError::Measure(e.to_string()))?)
        .map_err(|e| BenchError::file(&plan_path, e))?;
    let settings = plan.settings_id();
    let records_path = out.join("runs.jsonl");
    let mut records = read_records(&records_path)?;
    let done = done_runs(&records, &settings);
    let peer_cells: usize = plan.peers.iter().map(|p| plan.peer_cells(p, 1).len()).sum();
    let total: usize = (plan.backends.len() * plan.cells("", 1).len() + peer_cells) * plan.threads.len() * plan.runs;
    let mut recorded = done.len().min(total);
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&records_path).map_err(|e| BenchError::file(&records_path, e))?;
    let mut append = |r: &Record, records: &mut Vec<Record>| -> Result<(), BenchError> {
        let line = serde_json::to_string(r).map_err(|e| BenchError::Measure(e.to_string()))?;
        writeln!(file, "{line}").and_then(|_| file.flush()).map_err(|e| BenchError::file(&records_path, e))?;
        records.push(r.clone());
        Ok(())
    };
    for backend in plan.backends.iter().filter(|_| measure) {
        for &threads in &plan.threads {
            let cells = plan.cells(backend, threads);
            if cells.iter().all(|k| (0..plan.runs).all(|r| done.contains(&done_id(k, r)))) {
                continue;
            }
            let skipped = |reason: String| {
                Record::Backend(BackendRecord { settings: settings.clone(), backend: backend.clone(), threads, status: "skipped".into(), reason: Some(reason), weights: vec![] })
            };
            if let Err(e) = backend.parse::<BackendKind>() {
                append(&skipped(e.to_string()), &mut records)?;
                continue;
            }
            progress(recorded, total, &format!("{backend}, {threads} thread(s): starting"));
            let threads_s = threads.to_string();
            let mut cmd = Command::new(&child[0]);
            cmd.args(&child[1..])
                .arg("--child-plan")
                .arg(&plan_path)
                .args(["--child-backend", backend, "--child-threads", &threads_s])
                .envs([("RAYON_NUM_THREADS", &threads_s), ("OMP_NUM_THREADS", &threads_s), ("MKL_NUM_THREADS", &threads_s)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut proc = cmd.spawn().map_err(|e| BenchError::Measure(format!("could not start the {backend} child: {e}")))?;
            let err_thread = stderr_tail(proc.stderr.take().expect("piped stderr"), 20);
            let mut started = false;
            for line in BufReader::new(proc.stdout.take().expect("piped stdout")).lines().map_while(Result::ok) {
                let Some(json) = line.strip_prefix(RECORD_PREFIX) else { continue };
                let r: Record = serde_json::from_str(json).map_err(|e| BenchError::Measure(format!("a {backend} record: {e}")))?;
                match &r {
                    Record::Run(run) => {
                        recorded += 1;
                        progress(recorded, total, &format!("{backend}, {threads} thread(s): {} run {}", run.key.label(), run.run + 1));
                    }
                    Record::Backend(b) => started |= b.status == "ok",
                }
                append(&r, &mut records)?;
            }
            let status = proc.wait().map_err(|e| BenchError::Measure(e.to_string()))?;
            let tail = err_thread.join().unwrap_or_default();
            if !status.success() {
                let why = tail.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_else(|| format!("exit status {status}"));
                let why = shorten(why.trim_start_matches("error: "), 600);
                let why = if started { format!("stopped after {recorded} runs: {why}") } else { why };
                append(&skipped(why), &mut records)?;
            }
        }
    }
    // Peers after our backends, one process per peer and thread count.
    for peer in plan.peers.iter().filter(|_| measure) {
        for &threads in &plan.threads {
            let todo: Vec<(String, usize)> = (0..plan.runs)
                .flat_map(|r| plan.peer_cells(peer, threads).into_iter().map(move |k| (k, r)))
                .filter(|(k, r)| !done.contains(&done_id(k, *r)))
                .map(|(k, r)| (k.weights, r))
                .collect();
            if todo.is_empty() {
                continue;
            }
            progress(recorded, total, &format!("{}, {threads} thread(s): starting", peer.name));
            let record = |status: &str, reason: Option<String>, weights: Vec<super::measure::WeightsReady>| {
                Record::Backend(BackendRecord { settings: settings.clone(), backend: peer.name.clone(), threads, status: status.into(), reason, weights })
            };
            let mut on_run = |weights: &str, run: usize, metrics: super::measure::RunMetrics| -> Result<(), BenchError> {
                let key = plan.peer_cells(peer, threads).into_iter().find(|k| k.weights == weights).ok_or_else(|| BenchError::Measure(format!("{}: a run of weights `{weights}`, which were not asked for", peer.name)))?;
                recorded += 1;
                progress(recorded, total, &format!("{}, {threads} thread(s): {weights} run {}", peer.name, run + 1));
                append(&Record::Run(RunRecord { settings: settings.clone(), key, run, metrics }), &mut records)
            };
            let result = peer::run(peer, &plan.model, &plan.prompts, plan.new_tokens, threads, &todo, out, &mut on_run);
            let r = match result {
                Ok(ready) => record("ok", None, ready),
                Err(e) => record("skipped", Some(shorten(&e.to_string(), 600)), vec![]),
            };
            append(&r, &mut records)?;
        }
    }
    let report = report::build(plan, &settings, &records, Fingerprint::here());
    report::write(&report, out)?;
    Ok(report)
}

/// `s` cut in the middle to at most about `max` characters: a runtime's error can list every
/// library it searched, while what matters is its start and the fix at its end.
fn shorten(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    let (head, tail) = (max / 3, max - max / 3);
    format!("{} … {}", chars[..head].iter().collect::<String>(), chars[chars.len() - tail..].iter().collect::<String>())
}

/// The child's entry: measures one backend at one thread count, printing each record on stdout.
pub fn child(plan_path: &Path, backend: &str, threads: usize) -> Result<(), BenchError> {
    let text = std::fs::read_to_string(plan_path).map_err(|e| BenchError::file(plan_path, e))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| BenchError::file(plan_path, e))?;
    let settings = plan.settings_id();
    let records = read_records(&plan_path.with_file_name("runs.jsonl"))?;
    let done = done_runs(&records, &settings);
    let kind: BackendKind = backend.parse().map_err(|e: redrafter::DecodeError| BenchError::Option(e.to_string()))?;
    let mut emit = |r: Record| {
        println!("{RECORD_PREFIX}{}", serde_json::to_string(&r).expect("a record serializes"));
    };
    let task = Child { plan: &plan, settings, backend: backend.to_string(), threads, done, emit: &mut emit };
    redrafter::backends::run_on(kind, task).map_err(|e| BenchError::Measure(e.to_string()))?
}

/// Every record of `runs.jsonl`; a torn last line (a killed run) is ignored, any other bad line
/// is an error naming it.
pub fn read_records(path: &Path) -> Result<Vec<Record>, BenchError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(BenchError::file(path, e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let complete = if text.ends_with('\n') { lines.len() } else { lines.len().saturating_sub(1) };
    lines[..complete]
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| BenchError::file(path, format!("line {}: {e}", i + 1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_last_lines_are_ignored_and_long_reasons_shortened() {
        let dir = std::env::temp_dir().join(format!("redrafter-bench-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("runs.jsonl");
        let line = r#"{"record":"backend","settings":"s","backend":"flex","threads":1,"status":"ok","reason":null,"weights":[]}"#;
        std::fs::write(&p, format!("{line}\n{}", &line[..40])).unwrap();
        assert_eq!(read_records(&p).unwrap().len(), 1);
        std::fs::write(&p, format!("{}\n{line}\n", &line[..40])).unwrap();
        assert!(read_records(&p).unwrap_err().to_string().contains("line 1"));
        assert!(read_records(&dir.join("absent.jsonl")).unwrap().is_empty());
        let long = format!("start {} the fix", "x".repeat(2000));
        let short = shorten(&long, 600);
        assert!(short.starts_with("start") && short.ends_with("the fix") && short.chars().count() < 610);
        assert_eq!(shorten("short", 600), "short");
    }
}

fn done_runs(records: &[Record], settings: &str) -> HashSet<String> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Run(r) if r.settings == settings => Some(done_id(&r.key, r.run)),
            _ => None,
        })
        .collect()
}

/// `--backends all`: every backend compiled into this build.
pub fn expand_backends(list: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for b in list {
        let names: Vec<String> = if b == "all" { BackendKind::compiled().iter().map(|k| k.name().to_string()).collect() } else { vec![b.clone()] };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// Where a result directory's report is: `DIR/bench.json` or the file itself.
pub fn report_path(p: &Path) -> PathBuf {
    if p.is_dir() { p.join("bench.json") } else { p.to_path_buf() }
}
