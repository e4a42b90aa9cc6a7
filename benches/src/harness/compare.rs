//! `bench compare`: reports from different machines or backends side by side. Rows are the
//! settings of a cell without its backend (weights, threads, batch, temperature, strategy);
//! columns are each report's backends; a row whose reports were made under different shared
//! settings (suite, prompts, token counts, runs, model, sampling) is flagged with what differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::report::Report;
use super::{BenchError, SCHEMA_VERSION};

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Column names: `LABEL/backend`, LABEL from the file's directory (or stem).
    pub columns: Vec<String>,
    /// Per column: the machine (CPU, GPUs, commit) it was measured on.
    pub machines: Vec<String>,
    pub rows: Vec<Row>,
    /// Shared settings that are not the same in every report.
    pub differing_settings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub cell: String,
    /// Per column: (decode tok/s, speedup, τ), `None` where that report has no such cell.
    pub values: Vec<Option<(f64, Option<f64>, f64)>>,
    /// Why this row's numbers may not be comparable (empty when they are).
    pub flags: Vec<String>,
}

pub fn load(path: &Path) -> Result<Report, BenchError> {
    let path = super::run::report_path(path);
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::file(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| BenchError::file(&path, e))?;
    if v["schema"] != SCHEMA_VERSION {
        return Err(BenchError::file(&path, format!("schema {} is not {SCHEMA_VERSION} (written by another version of redrafter bench)", v["schema"])));
    }
    serde_json::from_value(v).map_err(|e| BenchError::file(&path, e))
}

fn label(path: &Path) -> String {
    let p = super::run::report_path(path);
    let dir = p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    dir.filter(|d| !d.is_empty()).unwrap_or_else(|| p.file_stem().map_or("report".into(), |s| s.to_string_lossy().into_owned()))
}

pub fn compare(paths: &[PathBuf]) -> Result<Comparison, BenchError> {
    if paths.len() < 2 {
        return Err(BenchError::Option("bench compare needs at least two result files".into()));
    }
    let reports: Vec<(String, Report)> = paths.iter().map(|p| Ok((label(p), load(p)?))).collect::<Result<_, BenchError>>()?;
    let shared = |r: &Report| {
        let s = &r.settings;
        vec![
            ("suite", s.suite.clone()),
            ("prompts", s.prompts.to_string()),
            ("new_tokens", s.new_tokens.to_string()),
            ("runs", s.runs.to_string()),
            ("model", Path::new(&s.model).file_name().map_or(s.model.clone(), |n| n.to_string_lossy().into_owned())),
            ("sampling", format!("top_k {} top_p {} {} seed {}", s.top_k, s.top_p, s.acceptance, s.seed)),
            ("drafters", s.drafters.iter().map(|d| d.0.clone()).collect::<Vec<_>>().join(",")),
        ]
    };
    let first = shared(&reports[0].1);
    let differing_settings: Vec<String> = first
        .iter()
        .enumerate()
        .filter(|(i, (_, v))| reports.iter().any(|(_, r)| &shared(r)[*i].1 != v))
        .map(|(i, (k, _))| format!("{k}: {}", reports.iter().map(|(l, r)| format!("{l}={}", shared(r)[i].1)).collect::<Vec<_>>().join(", ")))
        .collect();
    let mut columns = vec![];
    let mut machines = vec![];
    let mut col_of: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for (i, (l, r)) in reports.iter().enumerate() {
        let mut backends: Vec<String> = vec![];
        for c in &r.cells {
            if !backends.contains(&c.key.backend) {
                backends.push(c.key.backend.clone());
            }
        }
        for b in backends {
            col_of.insert((i, b.clone()), columns.len());
            columns.push(format!("{l}/{b}"));
            let f = &r.fingerprint;
            let acc = if f.gpus.is_empty() { f.vulkan_devices.join("; ") } else { f.gpus.join("; ") };
            machines.push(format!("{} ({} cores){}; commit {}", f.cpu, f.logical_cores, if acc.is_empty() { String::new() } else { format!("; {acc}") }, &f.git_commit[..f.git_commit.len().min(10)]));
        }
    }
    let mut rows: Vec<Row> = vec![];
    for (i, (_, r)) in reports.iter().enumerate() {
        for c in &r.cells {
            let k = &c.key;
            let cell = format!("{} t{} b{} T{} {}", k.weights, k.threads, k.batch, k.temperature, k.label());
            let at = match rows.iter().position(|x| x.cell == cell) {
                Some(at) => at,
                None => {
                    rows.push(Row { cell, values: vec![None; columns.len()], flags: vec![] });
                    rows.len() - 1
                }
            };
            rows[at].values[col_of[&(i, k.backend.clone())]] = Some((c.decode_tokens_per_second.median, c.speedup, c.tau));
        }
    }
    for row in &mut rows {
        if !differing_settings.is_empty() {
            row.flags.push("settings differ".into());
        }
        let taus: Vec<f64> = row.values.iter().flatten().map(|v| v.2).collect();
        if row.cell.contains(" T0 ") && taus.iter().any(|t| (t - taus[0]).abs() > 0.01) {
            row.flags.push("greedy τ differs between columns".into());
        }
        if row.values.iter().any(Option::is_none) {
            row.flags.push("missing in some columns".into());
        }
    }
    Ok(Comparison { columns, machines, rows, differing_settings })
}

pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    for (col, m) in c.columns.iter().zip(&c.machines) {
        s += &format!("* **{col}**: {m}\n");
    }
    for d in &c.differing_settings {
        s += &format!("* settings differ: {d}\n");
    }
    s += &format!("\nEach column: decode tok/s · speedup over autoregressive · τ\n\n| cell | {} | flags |\n", c.columns.join(" | "));
    s += &format!("|---|{}---|\n", "---|".repeat(c.columns.len()));
    for r in &c.rows {
        let v: Vec<String> = r
            .values
            .iter()
            .map(|v| match v {
                Some((tps, sp, tau)) => format!("{tps:.1} · {} · {tau:.2}", sp.map_or("–".to_string(), |x| format!("{x:.2}x"))),
                None => "–".into(),
            })
            .collect();
        s += &format!("| {} | {} | {} |\n", r.cell, v.join(" | "), r.flags.join("; "));
    }
    s
}

pub fn csv(c: &Comparison) -> String {
    let mut s = String::from("cell,column,decode_tok_s,speedup,tau,flags\n");
    for r in &c.rows {
        for (col, v) in c.columns.iter().zip(&r.values) {
            if let Some((tps, sp, tau)) = v {
                s += &format!("{},{col},{tps:.2},{},{tau:.3},{}\n", r.cell, sp.map_or(String::new(), |x| format!("{x:.3}")), r.flags.join("; "));
            }
        }
    }
    s
}

/// Decode tok/s of every row (a bar group), one bar per column.
pub fn svg(c: &Comparison) -> String {
    let groups: Vec<(String, Vec<Option<f64>>)> = c.rows.iter().map(|r| (r.cell.clone(), r.values.iter().map(|v| v.map(|v| v.0)).collect())).collect();
    super::bars::bar_chart("bench compare: decode tok/s", "decode tok/s", &c.columns, &groups, None)
}

/// Writes `compare.md`, `compare.csv`, `compare.svg` into `dir`.
pub fn write(c: &Comparison, dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::file(dir, e))?;
    for (name, body) in [("compare.md", markdown(c)), ("compare.csv", csv(c)), ("compare.svg", svg(c))] {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| BenchError::file(&p, e))?;
    }
    Ok(())
}
